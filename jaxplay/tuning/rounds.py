"""Rounds as decisions: each round's goal and its launch decision, recorded in the store.

The playbook's incremental strategy runs in rounds: pick a goal, run experiments, learn, then
decide whether to launch the round's best configuration, "based on strong evidence". `decide`
records that decision as a probe of kind 'decision' of the study (goal, trial, launched or
rejected, why, its value and the noise verdict against the incumbent). The store's *incumbent* is
its latest launched decision (`Store.incumbent`): the baseline the next launch must beat.

A launch is refused unless forced when the evidence is not strong: the trial is not better than
the incumbent, their objectives differ, the difference lies within a measured trial or study
variance, or no trial variance was measured at all (the playbook adopts a change only if it is
better "taking into account the retrain variance of both"; `--lineage rerun` measures it). An
unmeasured study variance is said but does not block: measuring it reruns whole studies.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from jaxplay import analysis
from jaxplay import store as store_lib
from jaxplay.analysis import variance
from jaxplay.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Decision:
    """What `decide` recorded: the decision and the lines it printed on the evidence."""

    study: str
    trial: int
    launched: bool
    goal: str
    why: str
    against: dict | None  # the incumbent it was weighed against: study, trial, value
    verdict: tuple[str, ...]

    def describe(self) -> str:
        """The decision and its evidence, for the terminal."""
        head = (
            f"launched trial {self.trial} of {self.study}: it is now the incumbent"
            if self.launched
            else f"rejected trial {self.trial} of {self.study} (not launched)"
        )
        lines = [head, f"  goal: {self.goal}"]
        if self.why:
            lines.append(f"  why: {self.why}")
        lines.extend(f"  {line}" for line in self.verdict)
        return "\n".join(lines)


def decide(
    url: str,
    study: str | None,
    goal: str,
    *,
    trial: int | None = None,
    reject: bool = False,
    why: str = "",
    force: bool = False,
    command: str = "",
) -> Decision:
    """Records the round's decision on trial `trial` (default: the study's best) of `study`:
    launched (it becomes the incumbent) or, with `reject`, not launched and why. A launch is
    weighed against the current incumbent and refused, unless `force`, without strong evidence."""
    if not goal.strip():
        raise ConfigError('--goal: say what the round set out to learn, e.g. --goal "tune Adam"')
    if reject and not why.strip():
        raise ConfigError('--why: say why the round\'s best is not launched, e.g. --why "noise"')
    data = analysis.load(store=url, study=study)
    chosen = _trial(data, trial)
    candidate = {**data.record, "best_value": chosen["best_value"]}
    store = store_lib.Store(url)
    try:
        incumbent = store.incumbent()
        verdict, doubt, against = _weigh(url, store, data, candidate, incumbent)
        if not reject and doubt and not force:
            raise ConfigError(
                "\n  ".join(
                    [
                        f"launch refused: {doubt}; pass --force to launch anyway, or --reject "
                        '--why "..." to record that it was not launched',
                        *verdict,
                    ]
                )  # fmt: skip
            )
        if not reject and doubt:
            verdict = [*verdict, f"forced: {doubt}"]
        decision = Decision(
            data.name, chosen["index"], not reject, goal.strip(), why.strip(), against,
            tuple(verdict),
        )  # fmt: skip
        store.add_probe(
            data.name,
            store_lib.DECISION,
            config={"goal": decision.goal, "trial": decision.trial,
                    "launched": decision.launched, "why": decision.why, "forced": bool(force)},
            result={"objective": data.objective, "mode": data.mode, "value": chosen["best_value"],
                    "against": against, "verdict": list(verdict),
                    "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")},
            device_kind=data.record.get("device_kind") or "",
            command=command,
        )  # fmt: skip
    finally:
        store.close()
    return decision


def _trial(data, index: int | None) -> dict:
    """The trial decided on: `index`, else the study's best; it must have a finite value."""
    index = data.record.get("best_trial") if index is None else index
    if index is None:
        raise ConfigError(
            f"--trial: study {data.name!r} has no completed trial with a finite {data.objective} "
            "yet; finish it first or name a trial with --trial N"
        )
    by_index = {t["index"]: t for t in data.record["trials"]}
    chosen = by_index.get(index)
    if chosen is None:
        raise ConfigError(f"--trial {index}: study {data.name!r} has trials 0..{len(by_index) - 1}")
    if chosen["status"] != "completed" or chosen["best_value"] is None:
        raise ConfigError(
            f"--trial {index}: it is {chosen['status']} with no finite {data.objective}; pick a "
            "completed trial (studies show lists them, best first)"
        )
    return chosen


def _weigh(url: str, store, data, candidate: dict, incumbent: dict | None):
    """(verdict lines, the reason the evidence is not strong or None, the incumbent weighed
    against) for launching `candidate` (the study's record, its best value the chosen trial's)."""
    if incumbent is None:
        return ["no incumbent yet: this is the first launch of the store"], None, None
    value = (incumbent.get("result") or {}).get("value")
    against = {"study": incumbent["study"], "trial": incumbent.get("trial"), "value": value}
    if incumbent["study"] == data.name:
        return [f"the incumbent is trial {against['trial']} of this study already"], None, against
    if not store.has_study(incumbent["study"]):
        return [f"the incumbent's study {incumbent['study']!r} is gone"], None, against
    other = analysis.load(store=url, study=incumbent["study"])
    base = {**other.record, "best_value": value}
    records = {r["name"]: r for r in [*data.family, *other.family, other.record, data.record]}
    records.update({candidate["name"]: candidate, base["name"]: base})
    head = f"against the incumbent: trial {against['trial']} of {base['name']}"
    if base["objective"] != candidate["objective"] or value is None:
        return [head], f"its objective is {base['objective']}, not {data.objective}", against
    lines = [head, *variance.verdict(candidate, base, list(records.values()))]
    diff = candidate["best_value"] - value
    if diff == 0 or (diff > 0) == (data.mode == "min"):
        worse = f"{candidate['best_value']:.4g} against {value:.4g}"
        return lines, f"it is not better than the incumbent ({worse})", against
    within = variance.within_noise(candidate, base, list(records.values()))
    if within:
        return lines, f"the difference is within the {' and '.join(within)} noise", against
    if variance.retrain_noise(list(records.values()), candidate["name"], base["name"]) is None:
        return lines, "the trial variance is not measured (--lineage rerun)", against
    return lines, None, against
