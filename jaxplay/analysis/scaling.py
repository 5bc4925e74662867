"""Steps to a result per batch size: the largest batch size that still reduces them.

The playbook ("Choosing the batch size to minimize training time"): training time = time per step
x the number of steps; doubling the batch size halves the steps needed to reach a result up to a
critical batch size ("perfect scaling"), then gives diminishing returns, and eventually no
reduction (but never an increase). The batch size that minimizes training time is "the largest
batch size that still provides a reduction in the number of training steps required", found
experimentally, with each batch size tuned on its own (`--lineage batch_size`,
jaxplay.tuning.scaling).

A family here is a study and its `--lineage batch_size` children (found through study.parent
links). For each batch size: the best trial, the first evaluation step whose objective reaches a
common target (default: the least good of the studies' best values, which every study reaches),
the trial's measured time per step, hence the wall-clock time to the target. A step to the target
is only known to within the study's train.eval_every (the crossing happened after the previous
evaluation), so each ratio of steps between neighbouring batch sizes is an interval, and each
doubling is classified from it.

The kind of budget matters too (same section): "Comparing batch sizes with an epoch budget only
probes the perfect scaling regime". Every jaxplay study has a step budget (train.steps); studies
whose steps were scaled inversely with the batch size share an examples budget, which the text
warns about.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxplay import store as store_lib
from jaxplay.analysis.record import batch_size_of, parent_of
from jaxplay.errors import ConfigError
from jaxplay.values import cell, fmt

ACTION = "batch_size"  # the lineage action whose children form a family (jaxplay.tuning.scaling)
# The key of a family record that carries its best trial's objective curve [(step, value), ...]
# (`attach_family_curves`, when analysis.study.read reads the study): the family is records.
CURVE_KEY = "best_curve"
# Steps to the target fall by a factor of the batch-size ratio under perfect scaling (a doubling
# halves them); a ratio of steps of 1 or more is no reduction ("but never increases it").
NO_REDUCTION = 1.0
# Studies "share an examples budget" when steps x batch size agree to within one step's examples
# of the larger batch size: rounding train.steps to an integer moves a budget by at most that.
BUDGET_SLACK_STEPS = 1
NOT_READ = "its best trial's curve was not read"  # a record built without the store
EPOCH_WARNING = "an epoch budget only probes the perfect-scaling regime"

PERFECT = "perfect scaling"
DIMINISHING = "diminishing returns"
NONE = "no reduction"
UNRESOLVED = "unresolved"
UNREACHED = "not comparable"


@dataclasses.dataclass(frozen=True)
class Point:
    """One batch size's study: its budget, best trial, steps and time to the target."""

    study: str
    batch_size: int
    train_steps: int | None
    eval_every: int | None
    trial: int | None  # the best trial
    best_value: float | None
    steps_to_target: int | None  # its first evaluation at the target; None: never reached
    seconds_per_step: float | None
    speed_from: str  # where seconds_per_step comes from ('steps/s of the last period', ...)
    why_missing: str = ""  # why steps_to_target is None

    @property
    def examples_budget(self) -> int | None:
        """train.steps x batch size: the examples each trial sees."""
        return None if self.train_steps is None else self.train_steps * self.batch_size

    @property
    def time_to_target(self) -> float | None:
        """Seconds of training to the target: steps x time per step."""
        if self.steps_to_target is None or self.seconds_per_step is None:
            return None
        return self.steps_to_target * self.seconds_per_step

    @property
    def earliest(self) -> int | None:
        """The earliest step the target may have been reached at (after the previous
        evaluation)."""
        if self.steps_to_target is None:
            return None
        return max(self.steps_to_target - (self.eval_every or 0), 0)


@dataclasses.dataclass(frozen=True)
class Doubling:
    """Two neighbouring batch sizes: the ratio of their steps to the target (measured and the
    interval the evaluation spacing allows), against perfect scaling's, and its class."""

    small: Point
    large: Point
    ratio: float | None
    low: float | None
    high: float | None
    kind: str

    @property
    def perfect(self) -> float:
        """The ratio of steps perfect scaling gives: small batch size / large batch size."""
        return self.small.batch_size / self.large.batch_size

    def describe(self) -> str:
        """'64 -> 128: steps x0.50 (perfect scaling x0.50; x0.45-0.56 within the evaluation
        spacing): perfect scaling'."""
        head = f"{self.small.batch_size} -> {self.large.batch_size}"
        if self.ratio is None:
            missing = [p for p in (self.small, self.large) if p.steps_to_target is None]
            return f"{head}: {UNREACHED} ({missing[0].study}: {missing[0].why_missing})"
        high = "inf" if math.isinf(self.high) else f"{self.high:.2f}"
        return (
            f"{head}: steps x{self.ratio:.2f} (perfect scaling x{self.perfect:.2f}; "
            f"x{self.low:.2f}-{high} within the evaluation spacing): {self.kind}"
        )


@dataclasses.dataclass(frozen=True)
class Scaling:
    """The family's analysis: its points by batch size, the doublings, the target and verdict."""

    root: str
    objective: str
    mode: str
    target: float | None
    target_from: str
    points: tuple[Point, ...]
    doublings: tuple[Doubling, ...]
    largest_reducing: Point | None  # the playbook's batch size: the largest that reduces steps
    critical: Point | None  # the largest batch size still in perfect scaling
    fastest: Point | None  # the least wall-clock time to the target
    shared_examples_budget: bool

    def lines(self) -> list[str]:
        """The table and the verdict as text (`studies scaling`)."""
        out = [
            f"batch-size scaling of {self.root}: {self.objective} ({self.mode}), target "
            f"{cell(self.target)} ({self.target_from})",
            "",
        ]
        header = ["batch size", "study", "train.steps", "examples budget", "best trial",
                  "best", "steps to target", "s/step", "time to target"]  # fmt: skip
        rows = [
            [str(p.batch_size), p.study, cell(p.train_steps), cell(p.examples_budget),
             cell(p.trial), cell(p.best_value), _steps_cell(p), cell(p.seconds_per_step, 3),
             _seconds(p.time_to_target)]
            for p in self.points
        ]  # fmt: skip
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
        for p in self.points:
            if p.steps_to_target is None:
                out.append(f"{p.study}: {p.why_missing}")
        if self.doublings:
            out += ["", "each step up (steps to the target are known to within train.eval_every):"]
            out += [f"  {d.describe()}" for d in self.doublings]
        out += ["", *self.verdict()]
        return out

    def verdict(self) -> list[str]:
        """The recommendation, the wall-clock one, and the budget's warning."""
        out = []
        if self.largest_reducing is not None:
            p = self.largest_reducing
            out.append(
                f"largest batch size that still reduces the steps: {p.batch_size} ({p.study}, "
                f"{p.steps_to_target} steps to the target)"
            )
        elif len([p for p in self.points if p.steps_to_target is not None]) >= 2:
            smallest = next(p for p in self.points if p.steps_to_target is not None)
            out.append(
                f"no larger batch size reduces the steps measurably: keep {smallest.batch_size}"
            )
        else:
            out.append("too few batch sizes reach the target to compare them")
        if self.critical is not None:
            size = self.critical.batch_size
            out.append(f"perfect scaling up to {size} (the critical batch size)")
        if self.fastest is not None:
            out.append(
                f"least wall-clock time to the target: {self.fastest.batch_size} "
                f"({_seconds(self.fastest.time_to_target)}, {self.fastest.speed_from})"
            )
        budgets = ", ".join(
            f"{p.batch_size}: {p.train_steps} x {p.batch_size} = {p.examples_budget}"
            for p in self.points
            if p.examples_budget is not None
        )
        if budgets:
            out.append(f"step budgets (examples budget = train.steps x batch size): {budgets}")
        if self.shared_examples_budget:
            out.append(
                f"warning: the studies share an examples budget (train.steps scaled inversely "
                f"with the batch size): {EPOCH_WARNING}; compare them at one step budget"
            )
        return out


def _steps_cell(p: Point) -> str:
    """'120 (±10)': steps to the target and the evaluation spacing it is known within."""
    if p.steps_to_target is not None:
        return f"{p.steps_to_target} (±{p.eval_every})"
    return "never" if p.why_missing.startswith("never") else "-"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g} s"


# ---------------------------------------------------------------------------------------------
# The family.


def family(records: list[dict], name: str) -> list[dict]:
    """The batch-size family of study `name` among `records`: its root (the study itself, or its
    parent when it is a `--lineage batch_size` child) and the root's batch_size children."""
    by_name = {r["name"]: r for r in records}
    if name not in by_name:
        raise ConfigError(f"--study: no study {name!r}; use one of {', '.join(sorted(by_name))}")
    link = parent_of(by_name[name]) or {}
    root = link["study"] if link.get("action") == ACTION and link.get("study") in by_name else name
    children = [
        r
        for r in records
        if (parent_of(r) or {}).get("action") == ACTION
        and (parent_of(r) or {}).get("study") == root
    ]
    return [by_name[root], *children]


def of_study(study, target: float | None = None) -> Scaling | None:
    """The analysis of a loaded study's (jaxplay.analysis.StudyData) batch-size family, its own
    best curve from its trials and its relatives' from their records (CURVE_KEY, where
    `attach_family_curves` put them when the study was read); None when it has no batch-size
    relative."""
    members = _members(study)
    return analyze(members, target) if len(members) > 1 else None


def text(study, target: float | None = None) -> str:
    """What `python -m jaxplay.studies scaling` prints for a loaded study: the table and the
    verdict (a study without batch-size relatives gets the table of its own batch size)."""
    return "\n".join(analyze(_members(study), target).lines())


def _members(study) -> list[dict]:
    """The study's batch-size family, root first; the study's record with its best curve."""
    own = dict(study.record)
    best = next((t for t in study.trials if t.index == own.get("best_trial")), None)
    if best is not None:
        steps, values = best.curve(study.objective)
        own[CURVE_KEY] = [(int(s), float(v)) for s, v in zip(steps, values)]
    records = [r for r in study.family if r["name"] != study.name]
    return family([*records, own], study.name)


def attach_family_curves(db: store_lib.Store, study) -> None:
    """Puts the best curve of each batch-size relative of a study being read from `db`
    (analysis.study.read) in its family record, so its scaling view reads every batch size;
    other relatives are not read."""
    relatives = [r for r in study.family if r["name"] != study.name]
    members = family([*relatives, study.record], study.name)
    # The study's own curve comes from its trials (_members): its record stays as the store has it.
    for r in members:
        if r is study.record or r.get("best_trial") is None or CURVE_KEY in r:
            continue
        curves = db.curves(db.study_id(r["name"]), r["best_trial"])
        r[CURVE_KEY] = curves.get(r["objective"], [])


# ---------------------------------------------------------------------------------------------
# The analysis.


def analyze(records: list[dict], target: float | None = None) -> Scaling:
    """The scaling analysis of a batch-size family's records (root first, each with CURVE_KEY):
    steps to `target` (default: the least good of their best values) per batch size."""
    root = records[0]
    objective, mode = root["objective"], root["mode"]
    others = [r["name"] for r in records if (r["objective"], r["mode"]) != (objective, mode)]
    if others:
        raise ConfigError(
            f"{others[0]}: optimizes another objective than {root['name']}'s {objective} "
            f"({mode}); a batch-size family compares one objective"
        )
    bests = [r["best_value"] for r in records if r.get("best_value") is not None]
    if target is not None:
        target_from = "--target"
    elif bests:
        target = max(bests) if mode == "min" else min(bests)
        target_from = "the least good of the studies' best values, so every study reaches it"
    else:
        target_from = "no study has a result yet"
    points = sorted(
        (_point(r, target, mode) for r in records if batch_size_of(r) is not None),
        key=lambda p: (p.batch_size, p.study),
    )
    doublings = tuple(_doubling(a, b) for a, b in zip(points, points[1:]))
    return Scaling(
        root=root["name"],
        objective=objective,
        mode=mode,
        target=target,
        target_from=target_from,
        points=tuple(points),
        doublings=doublings,
        largest_reducing=_largest_reducing(points, doublings),
        critical=_critical(points, doublings),
        fastest=_fastest(points),
        shared_examples_budget=_shared_examples_budget(points),
    )


def _point(record: dict, target: float | None, mode: str) -> Point:
    """A study's point: its best trial's first evaluation at the target and its time per step."""
    config = record.get("config") or {}
    train = config.get("train") or {}
    best = next(
        (t for t in record.get("trials") or [] if t["index"] == record.get("best_trial")), None
    )
    seconds, speed_from = _seconds_per_step(best)
    steps, why = None, ""
    if best is None:
        why = "no feasible trial"
    elif target is None:
        why = "no target"
    elif CURVE_KEY not in record:
        why = NOT_READ
    else:
        steps = first_reaching(record[CURVE_KEY], target, mode)
        if steps is None:
            why = (
                f"never reaches {fmt(target)} within its budget (best {cell(record['best_value'])}"
                f" at trial {best['index']})"
            )
    eval_every = train.get("eval_every")
    return Point(
        study=record["name"],
        batch_size=batch_size_of(record),
        train_steps=train.get("steps"),
        eval_every=eval_every,
        trial=None if best is None else best["index"],
        best_value=record.get("best_value"),
        steps_to_target=steps,
        seconds_per_step=seconds,
        speed_from=speed_from,
        why_missing=why,
    )


def first_reaching(curve: list, target: float, mode: str) -> int | None:
    """The first step of a curve [(step, value), ...] whose value reaches `target` (at or below
    it for 'min', at or above for 'max'); None when none does. Missing values never reach it."""
    points = np.array([(s, np.nan if v is None else v) for s, v in curve], dtype=float)
    if not len(points):
        return None
    steps, values = points[:, 0], points[:, 1]
    with np.errstate(invalid="ignore"):
        reached = values <= target if mode == "min" else values >= target
    hits = np.flatnonzero(reached)
    return int(steps[hits[0]]) if len(hits) else None


def _seconds_per_step(trial: dict | None) -> tuple[float | None, str]:
    """The trial's measured time per step and its source: the trainer's steps/s over its last
    period (compilation excluded), else its duration over its steps (compilation included)."""
    if trial is None:
        return None, "-"
    if trial.get("steps_per_second"):
        return 1.0 / trial["steps_per_second"], "steps/s of its last evaluation period"
    if trial.get("duration_s") and trial.get("steps_run"):
        return (
            trial["duration_s"] / trial["steps_run"],
            "its duration over its steps, compilation included",
        )
    return None, "no time per step recorded"


def _doubling(a: Point, b: Point) -> Doubling:
    """The step from batch size a to b: steps-to-target ratio b/a, its interval given each
    crossing lies after the previous evaluation, and the class perfect scaling, diminishing
    returns or no reduction (unresolved when the interval spans both ends)."""
    if a.steps_to_target is None or b.steps_to_target is None:
        return Doubling(a, b, None, None, None, UNREACHED)
    ratio = b.steps_to_target / a.steps_to_target
    low = b.earliest / a.steps_to_target
    high = b.steps_to_target / a.earliest if a.earliest else math.inf
    perfect = a.batch_size / b.batch_size
    may_be_perfect, may_be_none = low <= perfect, high >= NO_REDUCTION
    if may_be_perfect and may_be_none:
        kind = UNRESOLVED
    elif may_be_perfect:
        kind = PERFECT
    elif may_be_none:
        kind = NONE
    else:
        kind = DIMINISHING
    return Doubling(a, b, ratio, low, high, kind)


def _fastest(points: list[Point]) -> Point | None:
    """The batch size with the least wall-clock time to the target; None unless two or more
    have one to compare."""
    timed = [p for p in points if p.time_to_target is not None]
    return min(timed, key=lambda p: p.time_to_target) if len(timed) >= 2 else None


def _largest_reducing(points: list[Point], doublings) -> Point | None:
    """The last batch size of the chain of step-ups that each reduce the steps measurably (the
    playbook's batch size that minimizes training time); None when the first does not."""
    found = None
    for d in doublings:
        if d.kind not in (PERFECT, DIMINISHING):
            break
        found = d.large
    return found


def _critical(points: list[Point], doublings) -> Point | None:
    """The last batch size of the chain of step-ups in perfect scaling (the critical batch
    size, as far as the measured sizes show); None when the first is not."""
    found = None
    for d in doublings:
        if d.kind != PERFECT:
            break
        found = d.large
    return found


def _shared_examples_budget(points: list[Point]) -> bool:
    """True when two or more batch sizes share an examples budget (within BUDGET_SLACK_STEPS
    steps of the larger batch size): their steps were scaled inversely with the batch size."""
    known = [p for p in points if p.examples_budget is not None]
    if len({p.batch_size for p in known}) < 2:
        return False
    reference = known[0]
    return all(
        abs(p.examples_budget - reference.examples_budget)
        <= BUDGET_SLACK_STEPS * max(p.batch_size, reference.batch_size)
        for p in known[1:]
    )
