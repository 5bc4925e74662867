"""Search-space and infeasible-trial checks: best trials at an edge of a range (boundary), the share
of trials that failed (infeasible_fraction) and where along a hyperparameter they fail
(infeasible_at_edge)."""

from __future__ import annotations

import numpy as np

from jaxplay import spaces
from jaxplay.analysis.diagnostics.common import (
    TOP_K,
    Finding,
    position,
    trial_list,
    value_at,
)
from jaxplay.analysis.diagnostics.training_setup import clip_hint
from jaxplay.analysis.record import error_summary
from jaxplay.analysis.study import NO_PROGRESS_FRACTION, StudyData, TrialData
from jaxplay.values import fmt

# "Near a boundary" = in the outer 10% of the range on the hyperparameter's own scale (log scale for
# log params). Uniform sampling puts 10% of trials at each edge, so the best trial and one more of
# the top 3 landing at the same edge by chance is unlikely (about 4% for an irrelevant
# hyperparameter).
EDGE_FRACTION = 0.1
# Diverged trials are "concentrated at an end" when at least 80% of them lie beyond the 80th (or
# below the 20th) percentile of the feasible trials' values: if divergence did not depend on the
# hyperparameter, each would land there with probability 0.2, so two out of two happens 4% of the
# time and the chance falls fast with more diverged trials.
CONCENTRATION_QUANTILE = 0.8
CONCENTRATION_SHARE = 0.8
MIN_DIVERGED = 2
# The best trial "borders" the diverged region when no feasible trial lies between them and the gap
# is at most a fifth of the range on its scale: across a wider unsampled gap nobody can tell where
# divergence starts.
ADJACENT_MAX_GAP = 0.2
# A wide learning-rate range routinely loses a third of its trials to divergence (the playbook's
# "good" search space in Fig 1 does), so only "a very large fraction" (more than half) is a warning.
INFEASIBLE_WARNING_FRACTION = 0.5


def check_boundary(study: StudyData) -> list[Finding]:
    """Best trials near an edge of a float/int range: the best trial and a majority of the top 3
    feasible trials (3 needed) lie in the outer EDGE_FRACTION (10%) of the range on its scale ->
    widen it that way (a warning). The best trial there alone is said too, as information: by
    chance it lands at a given edge one time in ten. When diverged trials concentrate at that same
    end, the finding says so (item 35)."""
    findings = []
    for p in study.space:
        if p.space not in ("float", "int"):
            continue  # a discrete or categorical list has no "beyond" to widen into
        # A branch's hyperparameter is judged on that branch's best trials (spaces.branches).
        top = [t for t in study.feasible if p.path in t.params][:TOP_K]
        if len(top) < TOP_K:
            continue
        placed = [(t, position(p, t.params.get(p.path))) for t in top]
        placed = [(t, u) for t, u in placed if u is not None]
        if len(placed) < TOP_K or placed[0][0] is not top[0]:
            continue
        for end in ("lower", "upper"):
            at_edge = [t for t, u in placed if _beyond(u, end, EDGE_FRACTION)]
            if not _beyond(placed[0][1], end, EDGE_FRACTION):
                continue
            if len(at_edge) <= len(placed) / 2:
                findings.append(_best_alone_at_edge(study, p, top[0], end))
                continue
            values = ", ".join(f"trial {t.index} ({fmt(t.params[p.path])})" for t in at_edge)
            bound, verb = (p.min, "lower min") if end == "lower" else (p.max, "raise max")
            detail = (
                f"{len(at_edge)} of the top {len(placed)} feasible trials by {study.objective}, "
                f"the best included, lie in the {end} {EDGE_FRACTION:.0%} of {p.path}'s range "
                f"[{fmt(p.min)}, {fmt(p.max)}] on its {p.scale} scale: {values}. The playbook "
                "calls a search space suspicious when its best point is close to its boundary."
            )
            action = (
                f"widen the range {'downward' if end == 'lower' else 'upward'} ({verb}, now "
                f"{fmt(bound)}) and rerun until the best trials are no longer near the edge"
            )
            cluster = _diverged_cluster(study, p)
            if cluster and cluster[0] == end:
                detail += (
                    f" Diverged trials ({trial_list(cluster[1])}) also sit at this end, so the "
                    "model may be unstable there, which may keep it from better values of "
                    f"{p.path}."
                )
                action = (
                    "the model may be unstable beyond this edge: try learning-rate warmup or "
                    f"gradient clipping{clip_hint(study)} first, then {verb} and rerun"
                )
            findings.append(
                Finding(
                    "boundary",
                    "warning",
                    f"The best trials sit at the {end} edge of {p.path}",
                    detail,
                    action,
                    tuple(t.index for t in at_edge),
                    p.path,
                )
            )
    return findings


def _best_alone_at_edge(study: StudyData, p, best: TrialData, end: str) -> Finding:
    """The best trial in the outer EDGE_FRACTION at `end`, the next best not: worth a look."""
    bound, verb = (p.min, "lower min") if end == "lower" else (p.max, "raise max")
    return Finding(
        "boundary",
        "info",
        f"The best trial sits at the {end} edge of {p.path}",
        f"Trial {best.index}, the best by {study.objective}, has {p.path}="
        f"{fmt(best.params[p.path])}, in the {end} {EDGE_FRACTION:.0%} of the range "
        f"[{fmt(p.min)}, {fmt(p.max)}] on its {p.scale} scale; the next best trials are not "
        "there, so it may be chance (a best trial lands at a given edge one time in ten).",
        f"consider widening the range {'downward' if end == 'lower' else 'upward'} ({verb}, now "
        f"{fmt(bound)}); if more of the best trials gather there, the playbook says to",
        (best.index,),
        p.path,
    )


def check_infeasible_fraction(study: StudyData) -> list[Finding]:
    """Share of finished trials that are infeasible (diverged, crashed, or completed without
    training: NO_PROGRESS_FRACTION): info when any, warning when more than
    INFEASIBLE_WARNING_FRACTION (half) -> adjust the search space, look for bugs."""
    finished, bad = study.finished, study.infeasible
    if not finished or not bad:
        return []
    untrained = [t for t in bad if never_trained(t)]
    fraction = len(bad) / len(finished)
    diverged = [t for t in bad if t.status == "infeasible" and not never_trained(t)]
    crashed = [t for t in bad if t.status == "failed"]
    parts = []
    if diverged:
        parts.append(f"{len(diverged)} diverged ({trial_list(diverged)})")
    if untrained:
        parts.append(
            f"{len(untrained)} never trained ({trial_list(untrained)}: the training loss stayed "
            f"above {NO_PROGRESS_FRACTION:.0%} of its initial value)"
        )
    if crashed:
        reason = error_summary(crashed[0].error)
        if reason:
            reason = f": {reason}" if len(crashed) == 1 else f"; trial {crashed[0].index}: {reason}"
        parts.append(f"{len(crashed)} crashed ({trial_list(crashed)}{reason})")
    detail = (
        f"{len(bad)} of {len(finished)} finished trials ({fraction:.0%}) are infeasible: "
        f"{' and '.join(parts)}. More than {INFEASIBLE_WARNING_FRACTION:.0%} is a warning."
    )
    if fraction > INFEASIBLE_WARNING_FRACTION:
        return [
            Finding(
                "infeasible_fraction",
                "warning",
                f"Most trials ({fraction:.0%}) are infeasible",
                detail,
                "adjust the search space (narrow it away from where trials fail, or reparameterize "
                "it) and check the training code for bugs before drawing conclusions from this "
                "study",
                tuple(t.index for t in bad),
            )
        ]
    return [
        Finding(
            "infeasible_fraction",
            "info",
            f"{fraction:.0%} of the finished trials are infeasible",
            detail,
            "look at where they sit on the axis plots; a few diverged trials at the high end of a "
            "wide learning-rate range are normal"
            + ("; read the crashed trials' errors" if crashed else ""),
            tuple(t.index for t in bad),
        )
    ]


def check_infeasible_at_edge(study: StudyData) -> list[Finding]:
    """Diverged trials concentrated at one end of a numeric hyperparameter (at least
    CONCENTRATION_SHARE of them beyond the feasible trials' 80th/20th percentile, MIN_DIVERGED of
    them at least): a warning when the best trial borders that region (no feasible trial between
    them, a gap of at most ADJACENT_MAX_GAP of the range; instability may hold it back, item 35),
    else info."""
    findings = []
    best = study.feasible[0] if study.feasible else None
    for p in study.space:
        cluster = _diverged_cluster(study, p)
        if cluster is None:
            continue
        end, diverged, threshold = cluster
        sign = 1 if end == "upper" else -1
        frontier = min(diverged, key=lambda t: sign * position(p, t.params[p.path]))
        percentile = 100 * (
            CONCENTRATION_QUANTILE if end == "upper" else 1 - CONCENTRATION_QUANTILE
        )
        detail = (
            f"{len(diverged)} of {sum(_is_diverged(t, p) for t in study.trials)} infeasible trials "
            "(diverged or never trained) "
            f"({trial_list(diverged)}) have {p.path} {'above' if end == 'upper' else 'below'} "
            f"{fmt(threshold)}, the {percentile:.0f}th percentile of the feasible trials' values; "
            "the nearest infeasible value is "
            f"{fmt(frontier.params[p.path])} (trial {frontier.index})."
        )
        adjacent = best is not None and _adjacent(study, p, best, frontier, sign)
        remedy = (
            "learning-rate warmup (best for early instability) or gradient "
            f"clipping{clip_hint(study)}, then rerun; lowering the learning rate is the "
            "playbook's last resort"
        )
        if adjacent:
            detail += (
                f" The best trial ({best.index}, {p.path}={fmt(best.params[p.path])}) borders "
                "that region: no feasible trial lies between them."
            )
            findings.append(
                Finding(
                    "infeasible_at_edge",
                    "warning",
                    f"The best trial borders the region where {p.path} makes training fail",
                    detail,
                    "instability may be keeping the model from better values: try " + remedy,
                    tuple(t.index for t in diverged),
                    p.path,
                )
            )
        else:
            findings.append(
                Finding(
                    "infeasible_at_edge",
                    "info",
                    f"Training fails at the {end} end of {p.path}",
                    detail,
                    "nothing needed while the best trials stay clear of it (every model diverges "
                    "at a high enough learning rate); to reach further that way, try " + remedy,
                    tuple(t.index for t in diverged),
                    p.path,
                )
            )
    return findings


def never_trained(t: TrialData) -> bool:
    """Completed without training: its training loss never fell below NO_PROGRESS_FRACTION of its
    step-0 value, so every view shows it as infeasible (jaxplay.analysis.study)."""
    return t.untrained


def _beyond(u: float, end: str, fraction: float) -> bool:
    """True when position u lies in the outer `fraction` of the range at `end`."""
    return u <= fraction if end == "lower" else u >= 1 - fraction


def _is_diverged(t: TrialData, p: spaces.Hyperparameter) -> bool:
    # Divergence and no training at all speak of instability; a crash is a bug or a resource limit.
    return (t.status == "infeasible" or never_trained(t)) and position(
        p, t.params.get(p.path)
    ) is not None


def _trained(study: StudyData) -> list[TrialData]:
    """Feasible trials that did train, best first."""
    return [t for t in study.feasible if not never_trained(t)]


def _diverged_cluster(
    study: StudyData, p: spaces.Hyperparameter
) -> tuple[str, list[TrialData], float] | None:
    """(end, diverged trials beyond the feasible percentile, that percentile's value) when diverged
    trials concentrate at one end of p, else None."""
    diverged = [t for t in study.trials if _is_diverged(t, p)]
    feasible = [position(p, t.params.get(p.path)) for t in _trained(study)]
    feasible = [u for u in feasible if u is not None]
    if len(diverged) < MIN_DIVERGED or not feasible:
        return None
    for end, q in (("upper", CONCENTRATION_QUANTILE), ("lower", 1 - CONCENTRATION_QUANTILE)):
        threshold = float(np.quantile(feasible, q))
        sign = 1 if end == "upper" else -1
        beyond = [t for t in diverged if sign * (position(p, t.params[p.path]) - threshold) > 0]
        if len(beyond) >= CONCENTRATION_SHARE * len(diverged):
            return end, beyond, value_at(p, threshold)
    return None


def _adjacent(study: StudyData, p, best: TrialData, frontier: TrialData, sign: int) -> bool:
    """True when the best trial is within ADJACENT_MAX_GAP of the nearest diverged trial (or past
    it) and no feasible trial lies between them."""
    u_best = position(p, best.params.get(p.path))
    u_front = position(p, frontier.params[p.path])
    if u_best is None or sign * (u_front - u_best) > ADJACENT_MAX_GAP:
        return False
    between = [
        u
        for t in _trained(study)
        if (u := position(p, t.params.get(p.path))) is not None
        and sign * u_best < sign * u < sign * u_front
    ]
    return not between
