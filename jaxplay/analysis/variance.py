"""Trial and study variance, and whether a difference between two studies exceeds them.

The playbook ("Determining whether to adopt a training pipeline change or hyperparameter
configuration") names two sources of noise in a comparison: the *trial variance* (the same
hyperparameters retrained with other seeds) and the *study variance* (the same study with another
search seed picks other trials). It asks to characterize the first by "running the best trial N
times" and to adopt a change only if it beats the baseline "taking into account the retrain
variance of both". `--lineage rerun` measures the first, `--lineage reseed` the second (see
jaxplay.tuning.actions); this module reads them from the studies' records and states whether a
difference exceeds them.

A difference of two noisy results has sqrt(2) times the noise of one, and about 95% of a normal
noise lies within 2 standard deviations: a difference is "beyond the noise" when it exceeds
2 * sqrt(2) * std. With only 2 or 3 samples the std is itself uncertain, which the text says.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

from jaxplay.analysis.record import parent_of

# 95% of a normal difference of two independent results lies within 2 * sqrt(2) * std.
DIFFERENCE_Z = 2.0 * math.sqrt(2.0)
# Below this many samples a std estimate is rough (the relative error of a sample std from n
# normal samples is about 1 / sqrt(2(n - 1)): 50% at n = 3).
FEW_SAMPLES = 4


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
    for r in records:
        parent = parent_of(r)
        if (
            parent
            and parent.get("action") == "rerun"
            and (parent.get("study") in names or r["name"] in names)
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
        if (p := parent_of(r)) and p.get("action") == "reseed" and p.get("study") == root
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
    names = {a["name"], b["name"]}
    for noise, missing in (
        (
            trial_noise(records, names),
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
            f"{DIFFERENCE_Z:.2f} x std = {noise.threshold:.4g}"
            + (", so it is unlikely to be noise" if beyond else ", so it may be noise")
        )
    return lines


def difference_text(a: dict, b: dict, records: list[dict]) -> str:
    """One cell for a table of related studies: how much better or worse b's best is than a's, and
    whether that exceeds the trial and study variance known for them (e.g. '0.012 better: beyond
    trial noise (0.0093)')."""
    if a["objective"] != b["objective"] or a["best_value"] is None or b["best_value"] is None:
        return "-"
    diff = b["best_value"] - a["best_value"]
    better = (diff < 0) == (a["mode"] == "min")
    verdicts = []
    for noise in (
        trial_noise(records, {a["name"], b["name"]}),
        _joint_study_noise(records, a["name"], b["name"]),
    ):
        if noise is not None:
            where = "beyond" if abs(diff) > noise.threshold else "within"
            verdicts.append(f"{where} {noise.kind} noise ({noise.threshold:.2g})")
    what = "the same" if diff == 0 else f"{abs(diff):.4g} {'better' if better else 'worse'}"
    return f"{what}: " + (
        ", ".join(verdicts) if verdicts else "noise not measured (--lineage rerun, reseed)"
    )


def _joint_study_noise(records: list[dict], a: str, b: str) -> Noise | None:
    """The study variance of a or of b, whichever rests on more studies."""
    found = [n for n in (study_noise(records, a), study_noise(records, b)) if n is not None]
    return max(found, key=lambda n: n.n, default=None)
