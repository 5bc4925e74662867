"""Trial and study variance, and whether a difference between two studies exceeds them.

The playbook ("Determining whether to adopt a training pipeline change or hyperparameter
configuration") names two sources of noise in a comparison: the *trial variance* (the same
hyperparameters retrained with other seeds) and the *study variance* (the same study with another
search seed picks other trials). It asks to characterize the first by "running the best trial N
times" and to adopt a change only if it beats the baseline "taking into account the retrain
variance of both". `--lineage rerun` measures the first, `--lineage reseed` the second (see
jaxplay.tuning.actions); this module reads them from the studies' records and states whether a
difference exceeds them.

A difference is also only fair between studies tuned at the same batch size: "changing the batch
size requires re-tuning most hyperparameters" (it "typically requires starting the tuning process
all over again"). Every study is tagged with the batch size its result was tuned at
(`record.batch_size_of`); `batch_size_lines` and `difference_text` say when two
differ and which study's tuning is stale, and a rerun or reseed at another batch size than its
parent's is not counted as noise (it measures the batch size too).

A difference of two independent noisy results has std sqrt(s_a^2 + s_b^2), and about 95% of a
normal noise lies within 2 standard deviations: a difference is "beyond the noise" when it exceeds
2 * sqrt(s_a^2 + s_b^2). Each side's trial variance is its own where a rerun of each measured it
(`RetrainNoise`); where only one was measured it stands for both (2 * sqrt(2) * std), as the study
variance always does. With only 2 or 3 samples the std is itself uncertain, which the text says.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

from jaxplay import spaces
from jaxplay.analysis.diagnostics.batch_size import (
    LEARNING_RATE,
    batch_sensitive,
    sensitive_text,
    tunes_every_trial,
)
from jaxplay.analysis.record import batch_size_of, config_path, parent_of
from jaxplay.errors import ConfigError

# 95% of a normal difference of two independent results lies within 2 * sqrt(2) * std.
DIFFERENCE_Z = 2.0 * math.sqrt(2.0)
# Below this many samples a std estimate is rough (the relative error of a sample std from n
# normal samples is about 1 / sqrt(2(n - 1)): 50% at n = 3).
FEW_SAMPLES = 4
# Derivations that search the parent's space afresh instead of reusing its results (best trials,
# narrowed ranges, GP observations): a study derived by one at another batch size is re-tuned.
FRESH_ACTIONS = ("reseed", "steps", "batch_size")


@dataclasses.dataclass(frozen=True)
class Noise:
    """The spread of a result: std (ddof=1) and mean of n samples, and the studies it comes from."""

    kind: str  # 'trial' or 'study'
    std: float
    mean: float
    n: int
    sources: tuple[str, ...]

    @property
    def threshold(self) -> float:
        """The smallest difference of two results that this noise makes unlikely by chance."""
        return DIFFERENCE_Z * self.std

    def describe(self) -> str:
        """E.g. 'trial variance: std 0.0041 over 5 seeds of trial 3 (study x-rerun)'."""
        what = "seeds of the best trial" if self.kind == "trial" else "search seeds of the study"
        rough = " (few samples: a rough estimate)" if self.n < FEW_SAMPLES else ""
        return (
            f"{self.kind} variance: std {self.std:.4g} around {self.mean:.4g} over {self.n} {what} "
            f"({', '.join(self.sources)}){rough}"
        )


@dataclasses.dataclass(frozen=True)
class RetrainNoise:
    """The trial variance of both sides of a difference: each side's own where a rerun of each
    measured it (the playbook weighs "the retrain variance of both the new point and the
    baseline"), else the one measured, assumed for both."""

    a: str
    b: str
    noise_a: Noise | None
    noise_b: Noise | None
    kind = "trial"

    @property
    def own(self) -> bool:
        """Each side has a measurement of its own (not one rerun standing for both)."""
        return (
            self.noise_a is not None
            and self.noise_b is not None
            and self.noise_a.sources != self.noise_b.sources
        )

    @property
    def pooled(self) -> Noise:
        """The one estimate used for both sides when not each has its own: the most seeds."""
        found = [n for n in (self.noise_a, self.noise_b) if n is not None]
        return max(found, key=lambda n: n.n)

    @property
    def threshold(self) -> float:
        """2 x the std of the difference: sqrt(s_a^2 + s_b^2) of independent results."""
        if self.own:
            return 2.0 * math.hypot(self.noise_a.std, self.noise_b.std)
        return self.pooled.threshold

    @property
    def rule(self) -> str:
        """How the threshold is made, for the verdict's text."""
        return "2 x sqrt(std_a^2 + std_b^2)" if self.own else f"{DIFFERENCE_Z:.2f} x std"

    def describe(self) -> str:
        """Each side's own trial variance, or the pooled one and the side it stands in for."""
        if self.own:
            few = any(n.n < FEW_SAMPLES for n in (self.noise_a, self.noise_b))
            return (
                "trial variance of each side: "
                + "; ".join(
                    f"{name} std {n.std:.4g} over {n.n} seeds ({', '.join(n.sources)})"
                    for name, n in ((self.a, self.noise_a), (self.b, self.noise_b))
                )
                + (" (few samples: a rough estimate)" if few else "")
            )
        missing = [
            name for name, n in ((self.a, self.noise_a), (self.b, self.noise_b)) if n is None
        ]
        note = (
            f" (pooled: {missing[0]}'s own not measured, assumed the same; rerun its best with "
            f"--from_study {missing[0]} --lineage rerun)"
            if missing
            else ""
        )
        return self.pooled.describe() + note


def retrain_noise(records: list[dict], a: str, b: str) -> RetrainNoise | None:
    """The trial variance of studies a and b, each its own rerun's where measured; None when
    neither was."""
    found = RetrainNoise(a, b, trial_noise(records, {a}), trial_noise(records, {b}))
    return None if found.noise_a is None and found.noise_b is None else found


def within_noise(a: dict, b: dict, records: list[dict]) -> list[str]:
    """The kinds of measured noise ('trial', 'study') that the difference of a's and b's best
    values does not exceed; [] when it exceeds every measured one (or none was measured)."""
    if a["objective"] != b["objective"] or a["best_value"] is None or b["best_value"] is None:
        return []
    diff = abs(a["best_value"] - b["best_value"])
    return [
        n.kind
        for n in (
            retrain_noise(records, a["name"], b["name"]),
            _joint_study_noise(records, a["name"], b["name"]),
        )
        if n is not None and diff <= n.threshold
    ]


def best_values(record: dict) -> list[float]:
    """The best objective value of each completed trial of a study."""
    return [
        t["best_value"]
        for t in record["trials"]
        if t["status"] == "completed"
        and t["best_value"] is not None
        and math.isfinite(t["best_value"])
    ]


def trial_noise(records: list[dict], names: set[str]) -> Noise | None:
    """The spread of a rerun study (--lineage rerun) of one of `names`, or of a rerun among them;
    the one with the most seeds."""
    found = []
    by_name = {r["name"]: r for r in records}
    for r in records:
        parent = parent_of(r)
        if (
            parent
            and parent.get("action") == "rerun"
            and (parent.get("study") in names or r["name"] in names)
            and not _other_batch_size(r, by_name.get(parent.get("study")))
        ):
            values = best_values(r)
            if len(values) >= 2:
                found.append(
                    Noise(
                        "trial",
                        statistics.stdev(values),
                        statistics.fmean(values),
                        len(values),
                        (r["name"],),
                    )
                )
    return max(found, key=lambda n: n.n, default=None)


def study_noise(records: list[dict], name: str) -> Noise | None:
    """The spread of the best values of a study and the studies that reseed it (--lineage reseed),
    or that it reseeds, with the same objective."""
    by_name = {r["name"]: r for r in records}
    root = name
    parent = parent_of(by_name[name]) if name in by_name else None
    if parent and parent.get("action") == "reseed" and parent.get("study") in by_name:
        root = parent["study"]
    group = [root] + [
        r["name"]
        for r in records
        if (p := parent_of(r))
        and p.get("action") == "reseed"
        and p.get("study") == root
        and not _other_batch_size(r, by_name.get(root))
    ]
    bests = []
    for n in group:
        values = best_values(by_name[n]) if n in by_name else []
        if values:
            bests.append((n, min(values) if by_name[n]["mode"] == "min" else max(values)))
    if len(bests) < 2:
        return None
    values = [v for _, v in bests]
    return Noise(
        "study",
        statistics.stdev(values),
        statistics.fmean(values),
        len(values),
        tuple(n for n, _ in bests),
    )


def verdict(a: dict, b: dict, records: list[dict]) -> list[str]:
    """Lines saying whether the difference of two studies' best values exceeds the trial and the
    study variance found in `records` (the studies of their store), and what to run when unknown."""
    if a["objective"] != b["objective"] or a["best_value"] is None or b["best_value"] is None:
        return []
    diff = abs(a["best_value"] - b["best_value"])
    better = a if (a["best_value"] < b["best_value"]) == (a["mode"] == "min") else b
    lines = [f"{better['name']} is better by {diff:.4g} in best {a['objective']}."]
    for noise, missing in (
        (
            retrain_noise(records, a["name"], b["name"]),
            "trial variance unknown: rerun the best trial with several seeds "
            f"(python -m jaxplay.sweep ... --from_study {better['name']} --lineage rerun)",
        ),
        (
            _joint_study_noise(records, a["name"], b["name"]),
            "study variance unknown: rerun a study with another search seed "
            f"(--from_study {a['name']} --lineage reseed)",
        ),
    ):
        if noise is None:
            lines.append(missing)
            continue
        beyond = diff > noise.threshold
        lines.append(
            f"{noise.describe()}: the difference {'exceeds' if beyond else 'is within'} "
            f"{_rule(noise)} = {noise.threshold:.4g}"
            + (", so it is unlikely to be noise" if beyond else ", so it may be noise")
        )
    return lines


def difference_text(a: dict, b: dict, records: list[dict]) -> str:
    """One cell for a table of related studies: how much better or worse b's best is than a's, and
    whether that exceeds the trial and study variance known for them (e.g. '0.012 better: beyond
    trial noise (0.0093)'), after a word on their batch sizes when they were tuned at different
    ones."""
    note = _batch_size_note(a, b, records)
    if a["objective"] != b["objective"] or a["best_value"] is None or b["best_value"] is None:
        return note or "-"
    diff = b["best_value"] - a["best_value"]
    better = (diff < 0) == (a["mode"] == "min")
    verdicts = []
    for noise in (
        retrain_noise(records, a["name"], b["name"]),
        _joint_study_noise(records, a["name"], b["name"]),
    ):
        if noise is not None:
            where = "beyond" if abs(diff) > noise.threshold else "within"
            verdicts.append(f"{where} {noise.kind} noise ({noise.threshold:.2g})")
    what = "the same" if diff == 0 else f"{abs(diff):.4g} {'better' if better else 'worse'}"
    return (
        (f"{note}; " if note else "")
        + f"{what}: "
        + (", ".join(verdicts) if verdicts else "noise not measured (--lineage rerun, reseed)")
    )


def _rule(noise: Noise | RetrainNoise) -> str:
    """'2.83 x std' (one estimate for both sides) or '2 x sqrt(std_a^2 + std_b^2)'."""
    return noise.rule if isinstance(noise, RetrainNoise) else f"{DIFFERENCE_Z:.2f} x std"


def _joint_study_noise(records: list[dict], a: str, b: str) -> Noise | None:
    """The study variance of a or of b, whichever rests on more studies."""
    found = [n for n in (study_noise(records, a), study_noise(records, b)) if n is not None]
    return max(found, key=lambda n: n.n, default=None)


# ---------------------------------------------------------------------------------------------
# Batch sizes: tuning done at one is stale at another.


@dataclasses.dataclass(frozen=True)
class Retuning:
    """How a study's result relates to the batch size it was tuned at."""

    name: str
    batch_size: int
    searched: tuple[str, ...]  # the batch-sensitive config paths it searched itself
    learning_rate: bool  # optimizer.learning_rate is a nuisance hyperparameter of every trial
    # The nearest ancestor at another batch size whose results it reuses through its lineage
    # (best trials, narrowed ranges, GP observations), the actions between, and what it reuses.
    stale_from: str | None = None
    stale_batch_size: int | None = None
    via: tuple[str, ...] = ()
    inherited: tuple[str, ...] = ()

    @property
    def retuned(self) -> bool:
        """Tuned at its own batch size: it searched the learning rate and reuses nothing stale."""
        return self.learning_rate and self.stale_from is None

    def describe(self) -> str:
        """One line on how far its tuning holds at its batch size."""
        if self.stale_from is not None:
            what = sensitive_text(self.inherited) or "its optimizer and regularization values"
            return (
                f"{self.name} reuses what {self.stale_from} tuned at batch size "
                f"{self.stale_batch_size} (--lineage {', then '.join(self.via)}): {what} are "
                f"stale at {self.batch_size}."
            )
        if self.learning_rate:
            return (
                f"{self.name} searched {sensitive_text(self.searched)} at its own batch size "
                f"{self.batch_size}."
            )
        searched = f" (it searched {sensitive_text(self.searched)})" if self.searched else ""
        return (
            f"{self.name} does not search optimizer.learning_rate as a nuisance hyperparameter: "
            f"its optimizer and regularization values were not tuned at {self.batch_size}"
            f"{searched}."
        )


def retuning(record: dict, records: list[dict]) -> Retuning | None:
    """How the study's tuning relates to its batch size; None when its batch size is unknown."""
    own = batch_size_of(record)
    if own is None:
        return None
    space = _space(record)
    searched = tuple(sorted({p.config_path for p in space if batch_sensitive(p.path)}))
    found = Retuning(record["name"], own, searched, tunes_every_trial(space, LEARNING_RATE))
    by_name, seen, node, via = {r["name"]: r for r in records}, {record["name"]}, record, []
    while (link := parent_of(node)) and link.get("action") not in FRESH_ACTIONS:
        parent = by_name.get(link.get("study"))
        if parent is None or parent["name"] in seen:
            break
        seen.add(parent["name"])
        via.insert(0, str(link.get("action")))
        other = batch_size_of(parent)
        if other is not None and other != own:
            inherited = {
                config_path(path)
                for t in parent.get("trials") or []
                for path in t.get("params") or {}
                if batch_sensitive(path)
            }
            return dataclasses.replace(
                found,
                stale_from=parent["name"],
                stale_batch_size=other,
                via=tuple(via),
                inherited=tuple(sorted(inherited)),
            )
        node = parent
    return found


def batch_size_lines(a: dict, b: dict, records: list[dict]) -> list[str]:
    """Lines for `studies compare` when a and b were tuned at different batch sizes: which tuning
    is stale at which batch size, how each study was tuned, and whether their difference is a fair
    comparison; [] when the batch sizes agree or one is unknown."""
    ra, rb = retuning(a, records), retuning(b, records)
    if ra is None or rb is None or ra.batch_size == rb.batch_size:
        return []
    earlier, later = _in_order(ra, rb, records)
    lines = [
        f"Tuned at different batch sizes: {ra.name} at {ra.batch_size}, {rb.name} at "
        f"{rb.batch_size}. The tuning of {earlier.name} (at {earlier.batch_size}) is stale at "
        f"{later.name}'s batch size {later.batch_size}: the playbook says changing the batch size "
        '"typically requires starting the tuning process all over again", the optimizer\'s and '
        "the regularizers' hyperparameters above all.",
        ra.describe(),
        rb.describe(),
    ]
    if ra.retuned and rb.retuned:
        lines.append(
            "Each searched its own learning rate at its own batch size: a fair comparison of the "
            "batch sizes as far as each search went (the playbook compares batch sizes only with "
            "each fully tuned on its own)."
        )
    else:
        todo = " and ".join(f"{r.name} at {r.batch_size}" for r in (ra, rb) if not r.retuned)
        lines.append(
            "So their difference is not a fair comparison unless each is re-tuned at its own "
            f"batch size: re-tune {todo} (a study of its own that searches optimizer.learning_rate "
            "and the regularizers as nuisance hyperparameters, not derived from a study at "
            "another batch size), or compare them at one batch size."
        )
    return lines


def _batch_size_note(a: dict, b: dict, records: list[dict]) -> str | None:
    """A table cell's word on batch sizes: None when a and b share one (or one is unknown)."""
    ra, rb = retuning(a, records), retuning(b, records)
    if ra is None or rb is None or ra.batch_size == rb.batch_size:
        return None
    sizes = f"batch size {rb.batch_size} (this study {ra.batch_size})"
    if ra.retuned and rb.retuned:
        return f"{sizes}, each tuned at its own"
    earlier, later = _in_order(ra, rb, records)
    return (
        f"{sizes}: {earlier.name}'s tuning is stale at {later.batch_size}, not a fair comparison "
        "unless each is re-tuned at its own batch size"
    )


def _in_order(a: Retuning, b: Retuning, records: list[dict]) -> tuple[Retuning, Retuning]:
    """(earlier, later): an ancestor before its descendant, else by creation time, else as given."""
    by_name = {r["name"]: r for r in records}
    if _descends(b.name, a.name, by_name):
        return a, b
    if _descends(a.name, b.name, by_name):
        return b, a
    times = [by_name.get(r.name, {}).get("created_at") for r in (a, b)]
    if all(isinstance(t, str) for t in times) and times[1] < times[0]:
        return b, a
    return a, b


def _descends(name: str, ancestor: str, by_name: dict) -> bool:
    """True when `ancestor` is reached from `name` through parent links."""
    seen = {name}
    while (link := parent_of(by_name.get(name) or {})) and link.get("study") not in seen:
        name = link.get("study")
        if name == ancestor:
            return True
        seen.add(name)
    return False


def _other_batch_size(record: dict, parent: dict | None) -> bool:
    """True when a derived study ran at another batch size than its parent's result."""
    if parent is None:
        return False
    own, theirs = batch_size_of(record), batch_size_of(parent)
    return own is not None and theirs is not None and own != theirs


def _space(record: dict) -> spaces.SearchSpace:
    """The study's search space from its recorded config (empty when it cannot be read)."""
    try:
        return spaces.parse((record.get("config") or {}).get("search"))
    except ConfigError:
        return spaces.SearchSpace()
