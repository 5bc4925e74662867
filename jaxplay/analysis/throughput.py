"""Training throughput by batch size, read the playbook's way: where doubling the batch size stops
(nearly) doubling examples per second, and the largest batch size still worth using (playbook
"Determining the feasible batch sizes and estimating training throughput"), and whether a
recorded probe still measured the study's model and optimizer (the playbook repeats the probe
whenever they change: choose_probe). Pure analysis of measured rows; jaxplay.tuning.batch_size
measures them.
"""

from __future__ import annotations

import dataclasses
import statistics

# "Near doubling": throughput grew by at least this fraction of the batch-size ratio (>= 1.8x for a
# doubling). The playbook asks for "(nearly)" double; 10% slack absorbs run-to-run noise of a
# shared machine yet still flags a real bottleneck or saturation.
NEAR_LINEAR_EFFICIENCY = 0.9
# "No real gain": a larger batch size must buy at least 10% more examples/s to be worth it; less
# is within timing noise and does not repay re-tuning the hyperparameters for a new batch size.
MIN_USEFUL_GAIN = 1.1
# Timed periods of one batch size that differ by more than this fraction of their median make
# the 10% thresholds above meaningless: the machine was busy, so the report says so.
NOISY_SPREAD = 0.25
RETUNE = "remember that changing the batch size requires re-tuning most hyperparameters"


@dataclasses.dataclass(frozen=True)
class Row:
    """The measured training throughput of one batch size."""

    batch_size: int
    steps_per_period: int
    period_seconds: tuple[float, ...]  # every timed period, in order

    @property
    def seconds_per_step(self) -> float:
        """Median time per training step."""
        return statistics.median(self.period_seconds) / self.steps_per_period

    @property
    def steps_per_second(self) -> float:
        """Training steps per second (median)."""
        return 1.0 / self.seconds_per_step

    @property
    def examples_per_second(self) -> float:
        """Training throughput in the playbook's sense: examples processed per second."""
        return self.batch_size / self.seconds_per_step

    @property
    def spread(self) -> float:
        """(slowest - fastest) / median timed period: how far to trust the row on a busy machine."""
        return (max(self.period_seconds) - min(self.period_seconds)) / statistics.median(
            self.period_seconds
        )


@dataclasses.dataclass
class Probe:
    """What `probe` found: the measured batch sizes and why it went no further."""

    rows: list[Row]  # smallest batch size first
    stop: str  # why no larger batch size was measured
    out_of_memory: int | None = None  # the batch size that exceeded device memory, if one did
    device: str = ""

    def to_json(self) -> dict:
        """The probe as the store records it."""
        rows = [dataclasses.asdict(r) for r in self.rows]
        return {"rows": rows, "stop": self.stop, "out_of_memory": self.out_of_memory,
                "device": self.device}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict) -> Probe:
        rows = [
            Row(r["batch_size"], r["steps_per_period"], tuple(r["period_seconds"]))
            for r in data["rows"]
        ]
        return cls(rows, data["stop"], data.get("out_of_memory"), data.get("device", ""))


@dataclasses.dataclass(frozen=True)
class Summary:
    """How throughput scales with the batch size, in the playbook's terms."""

    speedups: tuple  # per row: its examples/s over the previous row's (None for the first)
    notes: tuple  # per row: 'near doubling', 'sub-linear', 'no real gain', 'slower' or ''
    doubling_until: int | None  # throughput (nearly) doubled at every step up to this batch size
    still_doubling: bool  # ...and it still did at the largest batch size probed
    max_useful: int | None  # smallest batch size that no larger one beats by MIN_USEFUL_GAIN
    still_growing: bool  # throughput still grew meaningfully at the largest batch size probed
    slower: tuple  # batch sizes clearly slower than the previous one
    recommendation: str


def analyze(rows: list[Row]) -> Summary:
    """The playbook's reading of a probe: where throughput stops doubling, the max useful
    batch size."""
    rows = sorted(rows, key=lambda r: r.batch_size)
    speedups, notes = [None], [""]
    for prev, row in zip(rows, rows[1:]):
        gain = row.examples_per_second / prev.examples_per_second
        linear = row.batch_size / prev.batch_size  # 2 for a doubling; explicit lists may differ
        speedups.append(gain)
        notes.append(
            "near doubling"
            if gain >= NEAR_LINEAR_EFFICIENCY * linear
            else "sub-linear"
            if gain >= MIN_USEFUL_GAIN
            else "no real gain"
            if gain >= 1 / MIN_USEFUL_GAIN
            else "slower"
        )
    if len(rows) < 2:
        what = (
            "no batch size was measured"
            if not rows
            else (
                f"only batch size {rows[0].batch_size} was measured: "
                "probe two or more to see how throughput scales"
            )
        )
        return Summary(
            tuple(speedups[: len(rows)]),
            tuple(notes[: len(rows)]),
            None,
            False,
            rows[0].batch_size if rows else None,
            False,
            (),
            what,
        )

    sizes = [r.batch_size for r in rows]
    first_break = next((i for i in range(1, len(rows)) if notes[i] != "near doubling"), None)
    still_doubling = first_break is None
    doubling_until = sizes[-1] if still_doubling else sizes[first_break - 1]
    # The smallest batch size that no larger one beats meaningfully: robust to a noisy dip or a
    # drop in the middle, unlike "the last step that gained".
    throughput = [r.examples_per_second for r in rows]
    useful = next(
        i
        for i in range(len(rows))
        if all(t < MIN_USEFUL_GAIN * throughput[i] for t in throughput[i + 1 :])
    )
    max_useful = sizes[useful]
    still_growing = useful == len(rows) - 1 and notes[-1] in ("near doubling", "sub-linear")
    slower = tuple(s for s, n in zip(sizes, notes) if n == "slower")

    if still_doubling:
        text = (
            f"throughput (nearly) doubles with every doubling of the batch size up to {sizes[-1]}, "
            "the largest probed: the device is not saturated, so a larger batch size should "
            f"train faster if it fits; {RETUNE}"
        )
    else:
        parts = [f"throughput stops doubling after batch size {doubling_until}"]
        if max_useful > doubling_until:
            parts.append(
                f"it still grows up to {max_useful}"
                + (", the largest probed" if still_growing else "")
            )
        if max_useful < sizes[-1]:
            above = [s for s in slower if s > max_useful]
            parts.append(
                f"batch sizes above {max_useful} bring no speed-up"
                + (f" ({', '.join(map(str, above))} slower)" if above else "")
                + f": use at most {max_useful}, and {RETUNE}"
            )
        else:
            parts.append(f"a larger batch size may still help a little if it fits; {RETUNE}")
        text = "; ".join(parts)
    return Summary(
        tuple(speedups),
        tuple(notes),
        doubling_until,
        still_doubling,
        max_useful,
        still_growing,
        slower,
        text,
    )


def header() -> str:
    return (
        f"{'batch':>7} {'steps/s':>10} {'examples/s':>12} {'ms/step':>10} "
        f"{'spread':>7} {'speedup':>8}  note"
    )


def line(row: Row, speedup: float | None, note: str, mark: str = "") -> str:
    gain = "-" if speedup is None else f"{speedup:.2f}x"
    return (
        f"{row.batch_size:>7} {row.steps_per_second:>10.1f} {row.examples_per_second:>12.0f} "
        f"{1e3 * row.seconds_per_step:>10.3f} {row.spread:>7.0%} {gain:>8}  {note}{mark}"
    ).rstrip()


def report(result: Probe, summary: Summary | None = None) -> str:
    """The whole table, why the probe stopped and the recommendation, as text."""
    summary = summary or analyze(result.rows)
    lines = [header()]
    for row, gain, note in zip(result.rows, summary.speedups, summary.notes):
        lines.append(
            line(row, gain, note, "  <- max useful" if row.batch_size == summary.max_useful else "")
        )
    if result.out_of_memory is not None:
        lines.append(f"{result.out_of_memory:>7}  out of memory")
    lines += conclusion(result, summary)
    return "\n".join(lines)


def conclusion(result: Probe, summary: Summary) -> list[str]:
    """Why the probe stopped, the recommendation, and warnings about the measurement."""
    advice = summary.recommendation
    if not result.rows and result.out_of_memory is not None:
        advice = (
            f"even batch size {result.out_of_memory} does not fit: try a smaller --min_batch_size, "
            "a smaller model or train.compute_dtype='bfloat16'"
        )
    lines = [f"stopped: {result.stop}", f"recommendation: {advice}"]
    noisy = [r.batch_size for r in result.rows if r.spread > NOISY_SPREAD]
    if noisy:
        lines.append(
            f"warning: timings of batch size {', '.join(map(str, noisy))} vary by more than "
            f"{NOISY_SPREAD:.0%} between repeats (other work on this machine?); the reading above "
            "is unreliable: rerun on an idle machine or with more --repeats"
        )
    if summary.max_useful is not None and not summary.still_doubling:
        if result.device.startswith("cpu"):
            lines.append(
                "note: CPU cores saturate at small batch sizes; measure on the accelerator you "
                "will train on before choosing a batch size"
            )
        else:
            lines.append(
                "note: if throughput stops doubling well before memory runs out, look for "
                "a bottleneck (input pipeline, host-device synchronization) before choosing "
                "a batch size"
            )
    return lines


# ----------------------------------------------------------------------------------------------
# Is a recorded probe still the study's? (playbook: repeat the probe whenever the model or the
# optimizer changes)

# The config sections a probe's throughput depends on, as the playbook names them; data.batch_size
# is what the probe varies, and the device is compared on its own.
PROBED_SECTIONS = ("model", "optimizer")
PROBE_KIND = "batch_size"


def probe_changes(measured: dict, current: dict) -> list[str]:
    """'path: old -> new' for each value of the PROBED_SECTIONS that differs between the config a
    probe measured and the study's. A float that stays nonzero is left out: jaxplay passes
    hyperparameter values into one compiled program as traced arrays (a learning rate of 1e-3 or
    3e-3 runs the same program at the same speed), while ints, strings, bools and a float turned
    on or off (dropout 0 -> 0.1) change the program."""
    out = []
    for section in PROBED_SECTIONS:
        out += _leaf_changes(measured.get(section), current.get(section), section)
    return out


def _leaf_changes(old, new, path: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            change
            for key in sorted(set(old) | set(new), key=str)
            for change in _leaf_changes(old.get(key), new.get(key), f"{path}.{key}")
        ]
    if old == new or (_on(old) and _on(new)):
        return []
    return [f"{path}: {_text(old)} -> {_text(new)}"]


def _on(value) -> bool:
    """A float that is not zero: a traced hyperparameter value that leaves the program as is."""
    return isinstance(value, float) and value != 0.0


def _text(value) -> str:
    return "(none)" if value is None else "{...}" if isinstance(value, dict) else repr(value)


@dataclasses.dataclass(frozen=True)
class ProbeChoice:
    """The batch-size probe a study's throughput is read from, and whether it is still valid."""

    probe: dict  # as Store.probes gives it
    changes: tuple[str, ...]  # what differs from the study: model/optimizer values, the device
    newer_stale: int = 0  # newer probes of this study that measured another setup

    @property
    def stale(self) -> bool:
        """True when the probe measured another model, optimizer or device."""
        return bool(self.changes)

    def describe(self, reprobe: str) -> str:
        """One line: reused (and from where), or stale with what changed and `reprobe`, the
        command that measures the study's setup again."""
        p = self.probe
        when = (p.get("created_at") or "")[:16].replace("T", " ")
        study = f" of study {p['study']!r}" if p.get("study") else ""
        source = f"the probe{study} from {when} UTC on {p.get('device_kind') or '?'}"
        if p.get("result", {}).get("reused_from"):
            first = p["result"]["reused_from"]
            source += f" (first measured for study {first.get('study')!r})"
        if self.stale:
            return (
                f"stale: {source} measured another setup ({'; '.join(self.changes)}); the "
                f"playbook repeats the probe whenever the model or optimizer changes: {reprobe}"
            )
        newer = (
            f"; {self.newer_stale} newer probe(s) measured another model or optimizer"
            if self.newer_stale
            else ""
        )
        return (
            f"reused: {source} measured this model and optimizer on this device, so it still "
            f"holds{newer}"
        )


def choose_probe(probes: list[dict], config: dict, device_kind: str | None) -> ProbeChoice | None:
    """Among batch-size probes (newest first), the newest that measured this `config`'s model and
    optimizer on `device_kind` (None: any device), reused; else the newest, marked stale; None
    without a probe."""
    found = [p for p in probes if p.get("kind", PROBE_KIND) == PROBE_KIND]
    if not found:
        return None
    judged = [(p, _changes(p, config, device_kind)) for p in found]
    for n, (p, changes) in enumerate(judged):
        if not changes:
            return ProbeChoice(p, (), newer_stale=n)
    p, changes = judged[0]
    return ProbeChoice(p, tuple(changes))


def _changes(probe: dict, config: dict, device_kind: str | None) -> list[str]:
    changes = probe_changes(probe.get("config") or {}, config or {})
    if device_kind and probe.get("device_kind") and probe["device_kind"] != device_kind:
        changes.append(f"device: {probe['device_kind']} -> {device_kind}")
    return changes


# The flags of a sweep's command line that the batch-size probe takes as they are.
_PROBE_FLAGS = ("--config", "--workdir", "--store")


def reprobe_command(record: dict) -> str:
    """The command that probes the study's setup again: its sweep's command line with the study
    file, its overrides and the store kept (python -m jaxplay.batch_size ...)."""
    import shlex

    command = record.get("command") or ""
    head, sep, tail = command.partition("python -m jaxplay.sweep ")
    if not sep:
        path = record.get("config_path") or "STUDY_FILE"
        return f"python -m jaxplay.batch_size --config {shlex.quote(path)} --workdir WORKDIR"
    try:
        words = shlex.split(tail)
    except ValueError:
        words = []
    kept, i = [], 0
    while i < len(words):
        word = words[i]
        name = word.split("=", 1)[0]
        if name in _PROBE_FLAGS or name.startswith("--config."):
            kept.append(word)
            if "=" not in word and i + 1 < len(words):
                kept.append(words[i + 1])
                i += 1
        i += 1
    return f"{head}python -m jaxplay.batch_size {shlex.join(kept)}"
