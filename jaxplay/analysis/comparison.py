"""Studies weighed against each other beyond a side-by-side table: a group of studies by their best
trials, whether two sides were tuned with the same care, and the history of the rounds' launch
decisions.

The playbook runs "one study per scientific value" when a joint study cannot hold them (each value
fixed in its own study file) and compares the studies "by their best trials": `group` prints one
row per study keyed by the fixed settings that set them apart (each study's config differences,
as a lineage lists a child's against its parent) with each best value, its trial count and the
verdict of its difference from the best study against the measured noise (analysis.variance).

It also asks to compare a change "against a baseline tuned with the same care": a baseline whose
learning rate was fixed, or searched with a quarter of the trials, loses for want of tuning, not
for want of the change. `parity` names what differs in how two sides were tuned: their trial
budgets, a nuisance hyperparameter searched on one side and fixed on the other, and the ranges
of a nuisance hyperparameter both searched.
"""

from __future__ import annotations

from jaxplay.analysis import variance
from jaxplay.analysis.study import StudyData
from jaxplay.errors import ConfigError
from jaxplay.spaces import Hyperparameter
from jaxplay.values import cell

# The quantile (among the outcomes a search space holds) of the best of n exchangeable trials
# follows Beta(1, n): its mean and its std are both about 1 / (n + 1), so one study's luck moves
# its best by about that much. A budget r times larger moves the expected best by
# (1 - 1/r) / (n + 1): at r = 2, half of that luck, and always in the larger search's favour.
# Beyond this ratio of feasible trials the budget alone can explain a difference.
PARITY_BUDGET_RATIO = 2.0

PARITY_HEADING = (
    "Was each side tuned with the same care? (playbook: compare against a baseline tuned as "
    "well as the change)"
)


def records_of(studies: list[StudyData]) -> list[dict]:
    """The records analysis.variance weighs them with: each study's and its lineage family's
    (reruns and reseeds measure the noise), each name once."""
    by_name = {}
    for s in studies:
        by_name.update({r["name"]: r for r in s.family})
    by_name.update({s.name: s.record for s in studies})
    return list(by_name.values())


# ----------------------------------------------------------------------------------------------
# Tuning parity: the same care on both sides.


def parity(a: StudyData, b: StudyData) -> list[str]:
    """Cautions where a and b were not tuned with the same care, each naming what differs and
    the fix; [] when their budgets and nuisance searches agree."""
    nuisance_a = {p.path: p for p in a.space.by_role("nuisance")}
    nuisance_b = {p.path: p for p in b.space.by_role("nuisance")}
    lines = []
    # A study of fixed configurations (a rerun, a promotion) has no tuning budget to weigh.
    if nuisance_a or nuisance_b:
        lines += _budget(a, b)
    for path in sorted(set(nuisance_a) | set(nuisance_b)):
        pa, pb = nuisance_a.get(path), nuisance_b.get(path)
        if pa is not None and pb is not None:
            if _bounds(pa) != _bounds(pb):
                lines.append(
                    f"{path}: searched over {range_text(pa)} in {a.name} but {range_text(pb)} in "
                    f"{b.name}: one side may miss the other's best values; search both over the "
                    "same range (the union of the two) or say why one range is narrower"
                )
            continue
        tuned, other, p = (a, b, pa) if pa is not None else (b, a, pb)
        if any(q.path == path for q in other.space):
            continue  # scientific there: searched, only compared rather than optimized away
        value = other.fixed.get(p.config_path)
        lines.append(
            f"{path}: a nuisance hyperparameter searched by {tuned.name} ({range_text(p)}) but "
            f"fixed at {cell(value)} in {other.name}: {other.name} was not tuned with the same "
            f"care, so its result is not its best; search {path} in {other.name} too, over the "
            "same range"
        )
    return lines


def parity_text(a: StudyData, b: StudyData) -> str:
    """The parity cautions under their heading, '' when there is none (`studies compare`)."""
    lines = parity(a, b)
    return "\n".join([PARITY_HEADING, *(f"  caution: {line}" for line in lines)]) if lines else ""


def range_text(p: Hyperparameter) -> str:
    """A searched hyperparameter's range: 'log [0.0001, 0.1]', 'discrete [16, 32]'."""
    if p.space in ("float", "int"):
        return f"{p.scale} [{cell(p.min)}, {cell(p.max)}]"
    return f"{p.space} {list(p.values)}"


def _bounds(p: Hyperparameter) -> tuple:
    return (p.space, p.scale, p.min, p.max, p.values)


def _budget(a: StudyData, b: StudyData) -> list[str]:
    """A caution when one side has more than PARITY_BUDGET_RATIO times the other's feasible
    trials."""
    (few, n_few), (many, n_many) = sorted(((a, len(a.feasible)), (b, len(b.feasible))),
                                          key=lambda sn: sn[1])  # fmt: skip
    if n_many <= PARITY_BUDGET_RATIO * n_few:
        return []
    ratio = "no feasible trial" if n_few == 0 else f"{n_many / n_few:.3g}x its"
    return [
        f"trial budgets differ: {many.name} has {n_many} feasible trials, {few.name} {n_few} "
        f"({ratio} budget, more than the {PARITY_BUDGET_RATIO:g}x a comparison tolerates): the "
        "larger search expects a better best from its budget alone; give "
        f"{few.name} as many feasible trials (raise its study.num_trials and rerun its sweep)"
    ]


# ----------------------------------------------------------------------------------------------
# A group of studies, one per scientific value, by their best trials.


def setting_differences(studies: list[StudyData]) -> dict[str, list]:
    """{path: each study's value} of the fixed settings that differ between the studies: base
    config values none of them searches (searched ones are told apart by `parity`), outside the
    study section (names, notes, budgets); None where a study does not set the path."""
    searched = set()
    for s in studies:
        searched |= set(s.space.paths) | s.space.config_paths
    paths = sorted({p for s in studies for p in s.fixed})
    found = {}
    for path in paths:
        if path in searched or path.startswith("study."):
            continue
        values = [s.fixed.get(path) for s in studies]
        if any(v != values[0] for v in values[1:]):
            found[path] = values
    return found


def group(studies: list[StudyData]) -> str:
    """Several studies (e.g. one per scientific value) by their best trials: one row per study
    keyed by the fixed settings that differ between them, its best value and trial, its feasible
    trial count, and its difference from the best study against the measured noise; then the
    parity cautions of each study against the best one."""
    first = studies[0]
    for s in studies[1:]:
        if (s.objective, s.mode) != (first.objective, first.mode):
            raise ConfigError(
                f"--study/--other {s.name}: it optimizes {s.objective} ({s.mode}) but {first.name} "
                f"{first.objective} ({first.mode}); compare studies of one objective"
            )
    records = records_of(studies)
    keyed = setting_differences(studies)
    done = [s for s in studies if s.record["best_value"] is not None]
    sign = 1 if first.mode == "min" else -1
    best = min(done, key=lambda s: sign * s.record["best_value"]) if done else None
    header = ["study", *keyed, f"best {first.objective}", "trial", "feasible",
              f"against {best.name}" if best else "against the best"]  # fmt: skip
    rows = []
    for i, s in enumerate(studies):
        verdict = (
            "-" if best is None
            else "the best" if s is best
            else variance.difference_text(best.record, s.record, records)
        )  # fmt: skip
        rows.append(
            [s.name + (" *" if s is best else ""), *(cell(v[i]) for v in keyed.values()),
             cell(s.record["best_value"]), cell(s.record["best_trial"]),
             f"{len(s.feasible)} of {len(s.trials)}", verdict]
        )  # fmt: skip
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header) - 1)]
    lines = [
        "One best trial per study (playbook: one study per scientific value, compared by their "
        "best trials), keyed by "
        + (
            "the fixed settings that differ between them; * marks the best."
            if keyed
            else "name: no fixed setting differs between them (only their searches or trials "
            "do); * marks the best."
        )
    ]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1]
        for r in [header, *rows]
    ]
    cautions = []
    for s in studies:
        if best is not None and s is not best:
            cautions += [c for c in parity(best, s) if c not in cautions]
    if cautions:
        lines += ["", PARITY_HEADING, *(f"  caution: {c}" for c in cautions)]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# The rounds' decisions (jaxplay.tuning.rounds), oldest first.


def format_decisions(decisions: list[dict]) -> str:
    """The history of rounds (`studies decisions`): each decision, oldest first, with its time,
    study, trial, value, whether it launched, the incumbent it replaced or kept, its goal and
    why; then the current incumbent. `decisions` as Store.decisions gives them (newest first)."""
    if not decisions:
        return (
            "no decisions in this store yet: python -m jaxplay.studies launch --study S "
            '--goal "..." records a round\'s decision'
        )
    lines = []
    for n, d in enumerate(reversed(decisions), start=1):
        result = d.get("result") or {}
        when = (d.get("created_at") or result.get("when") or "")[:19].replace("T", " ")
        value = f"{result.get('objective', 'value')} {cell(result.get('value'))}"
        chosen = f"trial {d.get('trial')} of {d['study']} ({value})"
        against = result.get("against")
        before = (
            f"trial {against.get('trial')} of {against.get('study')} ({cell(against.get('value'))})"
            if against
            else None
        )
        if d.get("launched"):
            forced = ", forced" if d.get("forced") else ""
            what = f"launched {chosen}{forced}, " + (
                f"replacing {before}" if before else "the store's first incumbent"
            )
        else:
            what = f"rejected {chosen}; " + (
                f"the incumbent stays {before}" if before else "no incumbent yet"
            )
        lines.append(f"round {n}, {when}: {what}")
        lines.append(f"  goal: {d.get('goal') or '-'}")
        if d.get("why"):
            lines.append(f"  why: {d['why']}")
    incumbent = next((d for d in decisions if d.get("launched")), None)
    lines.append(
        f"incumbent now: trial {incumbent.get('trial')} of {incumbent['study']}"
        if incumbent
        else "incumbent now: none (no round was launched)"
    )
    return "\n".join(lines)


def incumbent_line(incumbent: dict) -> str:
    """'against the incumbent: trial 1 of r2, launched 2026-01-02 10:00:00 (goal: ...)'."""
    when = (incumbent.get("created_at") or "")[:19].replace("T", " ")
    value = (incumbent.get("result") or {}).get("value")
    return (
        f"against the incumbent: trial {incumbent.get('trial')} of {incumbent['study']} "
        f"({cell(value)}), launched {when} (goal: "
        f"{incumbent.get('goal')})"
    )
