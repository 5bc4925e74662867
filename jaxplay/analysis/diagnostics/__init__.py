"""The playbook's automatic study diagnostics: each check reads a StudyData and returns Findings.

These answer the questions the playbook asks before any conclusion is drawn from a study
("Extracting insight from experimental results"): is the search space large enough, how many
trials are infeasible and where, what do the training curves of the best trials show (overfitting,
late noise, still improving, saturated early, training loss rising), and for Adam, does the trial
budget support the hyperparameters searched. The playbook gives few numbers, so each threshold is
a named constant next to the check that uses it, with the reason for its value. Checks look only at
finished trials, so a study that is still running can be diagnosed at any time.

The checks live in modules by what they look at: `search_space` (boundary, infeasible trials),
`training_curves` (the best trials' curves), `instability` (the early-instability probe's
per-step losses), `training_setup` (Adam's trial budget, the input pipeline, gradient clipping),
`batch_size` (a batch size searched for a validation objective), `chance` (the best trial against
the majority-class guess), `roles` (the playbook's rules of thumb for scientific, nuisance and fixed
hyperparameters), `gradient_noise` (more gradient noise may need more steps), `periodicity`
(periodic validation curves) and `sample_skew` (the training sample against the whole split);
`common` holds what they share.
Every public name is re-exported here, and `REGISTRY` lists the checks in the order `diagnose`
runs them.
"""

from __future__ import annotations

from collections.abc import Callable

from jaxplay.analysis.diagnostics.batch_size import check_batch_size
from jaxplay.analysis.diagnostics.chance import (
    CHANCE_DATASETS,
    CHANCE_ERROR_FRACTION,
    CHANCE_METRICS,
    chance_level,
    check_chance_level,
)
from jaxplay.analysis.diagnostics.common import TOP_K, Finding
from jaxplay.analysis.diagnostics.gradient_noise import (
    STEPS_COMMAND,
    check_gradient_noise,
    is_noise_source,
    noisier,
)
from jaxplay.analysis.diagnostics.instability import (
    LIMITING_FACTOR,
    SPIKE_FACTOR,
    SPIKE_WINDOW,
    STEP_LOSS,
    check_early_instability,
)
from jaxplay.analysis.diagnostics.periodicity import (
    MIN_CYCLES,
    MIN_EVALS,
    MIN_FREQUENCIES,
    PERIOD_SIGNIFICANCE,
    PERIOD_SKIP,
    TREND_DEGREE,
    Period,
    check_periodicity,
    dominant_period,
    fisher_p_value,
)
from jaxplay.analysis.diagnostics.roles import check_roles, optimizer_names
from jaxplay.analysis.diagnostics.sample_skew import SKEW_FALSE_ALARM, check_sample_skew
from jaxplay.analysis.diagnostics.search_space import (
    ADJACENT_MAX_GAP,
    CONCENTRATION_QUANTILE,
    CONCENTRATION_SHARE,
    EDGE_FRACTION,
    INFEASIBLE_WARNING_FRACTION,
    MIN_DIVERGED,
    NO_PROGRESS_FRACTION,
    check_boundary,
    check_infeasible_at_edge,
    check_infeasible_fraction,
    never_trained,
)
from jaxplay.analysis.diagnostics.training_curves import (
    LATE_FRACTION,
    LATE_MIN_POINTS,
    LATE_NOISE_RELATIVE,
    NOT_CONVERGED_FRACTION,
    OVERFIT_MIN_AFTER,
    OVERFIT_NOISE_MULTIPLE,
    OVERFIT_RELATIVE,
    REGULARIZERS,
    SATURATED_FRACTION,
    SCIENTIFIC_BUCKETS,
    TRAIN_RISE_OF_DECREASE,
    TRAIN_RISE_RELATIVE,
    check_late_variance,
    check_not_converged,
    check_overfitting,
    check_saturated_early,
    check_train_loss_rising,
)
from jaxplay.analysis.diagnostics.training_setup import (
    ADAM_BUDGET,
    ADAM_FAMILY,
    CLIP_AGGRESSIVE_FRACTION,
    CLIP_PERCENTILE,
    INPUT_WAIT_WARNING,
    check_adam_budget,
    check_clipping,
    check_input_bound,
    check_warmup_length,
    clip_threshold,
)
from jaxplay.analysis.study import TRAIN_LOSS_METRICS, StudyData

# Every check, by name, in the order diagnose() runs them (and lists findings of equal severity).
REGISTRY: dict[str, Callable[[StudyData], list[Finding]]] = {
    "boundary": check_boundary,
    "infeasible_fraction": check_infeasible_fraction,
    "infeasible_at_edge": check_infeasible_at_edge,
    "overfitting": check_overfitting,
    "late_variance": check_late_variance,
    "not_converged": check_not_converged,
    "gradient_noise": check_gradient_noise,
    "saturated_early": check_saturated_early,
    "train_loss_rising": check_train_loss_rising,
    "periodicity": check_periodicity,
    "chance_level": check_chance_level,
    "sample_skew": check_sample_skew,
    "early_instability": check_early_instability,
    "adam_budget": check_adam_budget,
    "input_bound": check_input_bound,
    "clipping": check_clipping,
    "warmup_length": check_warmup_length,
    "batch_size": check_batch_size,
    "roles": check_roles,
}
CHECKS = tuple(REGISTRY)
SEVERITIES = ("warning", "info")


def diagnose(study: StudyData) -> list[Finding]:
    """All findings, warnings first."""
    findings = [f for check in REGISTRY.values() for f in check(study)]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


__all__ = [
    "ADAM_BUDGET",
    "ADAM_FAMILY",
    "ADJACENT_MAX_GAP",
    "CHANCE_DATASETS",
    "CHANCE_ERROR_FRACTION",
    "CHANCE_METRICS",
    "CHECKS",
    "SKEW_FALSE_ALARM",
    "CLIP_AGGRESSIVE_FRACTION",
    "CLIP_PERCENTILE",
    "CONCENTRATION_QUANTILE",
    "CONCENTRATION_SHARE",
    "EDGE_FRACTION",
    "INFEASIBLE_WARNING_FRACTION",
    "INPUT_WAIT_WARNING",
    "LATE_FRACTION",
    "LATE_MIN_POINTS",
    "LATE_NOISE_RELATIVE",
    "LIMITING_FACTOR",
    "MIN_CYCLES",
    "MIN_DIVERGED",
    "MIN_EVALS",
    "MIN_FREQUENCIES",
    "NOT_CONVERGED_FRACTION",
    "NO_PROGRESS_FRACTION",
    "OVERFIT_MIN_AFTER",
    "OVERFIT_NOISE_MULTIPLE",
    "OVERFIT_RELATIVE",
    "PERIOD_SIGNIFICANCE",
    "PERIOD_SKIP",
    "REGISTRY",
    "REGULARIZERS",
    "SATURATED_FRACTION",
    "SCIENTIFIC_BUCKETS",
    "SEVERITIES",
    "SPIKE_FACTOR",
    "SPIKE_WINDOW",
    "STEPS_COMMAND",
    "STEP_LOSS",
    "TOP_K",
    "TRAIN_LOSS_METRICS",
    "TRAIN_RISE_OF_DECREASE",
    "TRAIN_RISE_RELATIVE",
    "TREND_DEGREE",
    "Finding",
    "Period",
    "chance_level",
    "check_adam_budget",
    "check_batch_size",
    "check_boundary",
    "check_chance_level",
    "check_clipping",
    "check_early_instability",
    "check_gradient_noise",
    "check_infeasible_at_edge",
    "check_infeasible_fraction",
    "check_input_bound",
    "check_late_variance",
    "check_not_converged",
    "check_overfitting",
    "check_periodicity",
    "check_roles",
    "check_sample_skew",
    "check_saturated_early",
    "check_train_loss_rising",
    "check_warmup_length",
    "clip_threshold",
    "diagnose",
    "dominant_period",
    "fisher_p_value",
    "is_noise_source",
    "never_trained",
    "noisier",
    "optimizer_names",
]
