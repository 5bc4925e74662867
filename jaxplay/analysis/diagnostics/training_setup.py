"""Checks of how the trials were set up and run: the trial budget for the Adam hyperparameters
searched (adam_budget), waiting for the input pipeline (input_bound) and gradient clipping that cuts
most updates (clipping)."""

from __future__ import annotations

import numpy as np

from jaxplay import spaces
from jaxplay.analysis.diagnostics.common import Finding, finite, trial_list
from jaxplay.analysis.study import StudyData, TrialData
from jaxplay.config import WARMUP_WARNING_FRACTION, warmup_warning
from jaxplay.values import fmt

ADAM_FAMILY = ("adam", "nadam", "adamw")
# The playbook's Adam table (<10 trials: learning rate; 10-25: + b1; 25+: + eps; "substantially
# more than 25", read as 100: + b2) lives once, in jaxplay.spaces, whose adam() builds the search
# it allows.
ADAM_BUDGET = spaces.ADAM_BUDGET
# Input-bound: a trial's median period spent more than 10% of its time waiting for the streamed
# input pipeline (train/input_wait_fraction; the device pipeline has nothing to wait for).
INPUT_WAIT_WARNING = 0.1
# The playbook's gradient clipping rule: a threshold at the 90th percentile of the gradient norm,
# and ">50% of the updates getting clipped" counts as extremely aggressive clipping.
CLIP_PERCENTILE = 90
CLIP_AGGRESSIVE_FRACTION = 0.5


def check_adam_budget(study: StudyData) -> list[Finding]:
    """For adam/nadam/adamw studies with a search space: warning when the learning rate is not
    searched, and for each nuisance Adam hyperparameter the trial budget (`num_trials`) does not
    support (ADAM_BUDGET: <10 trials: learning rate; 10+: + b1; 25+: + eps; 100+: + b2)."""
    if not len(study.space) or not _is_adam_study(study):
        return []
    if (study.parent or {}).get("action") in ("warmup", "clip"):
        return []  # the learning rate is fixed on purpose: the study asks what lets it be that high
    budget = study.record.get("num_trials") or len(study.trials)
    parent = study.parent or {}
    if parent.get("action") == "exploit":  # the parent's trials are part of the search too
        budget += sum(len(r["trials"]) for r in study.family if r["name"] == parent.get("study"))
    supported = [path for minimum, path in ADAM_BUDGET if budget >= minimum]
    table = ", ".join(_short(path) for path in supported)
    findings = []
    if "optimizer.learning_rate" not in study.space.config_paths:
        findings.append(
            Finding(
                "adam_budget",
                "warning",
                "The learning rate is not searched",
                f"This {_optimizer(study)} study searches {', '.join(study.space.paths)} but keeps "
                "optimizer.learning_rate fixed; the playbook tunes the learning rate in every "
                f"study, and with {budget} trials its Adam table tunes {table}.",
                "search optimizer.learning_rate (log scale) as a nuisance hyperparameter, so that "
                "each setting is compared at its own best learning rate: "
                f"c.search.optimizer = spaces.adam({budget}, learning_rate=(min, max)) searches "
                "what the table allows",
                param="optimizer.learning_rate",
            )
        )
    for minimum, path in ADAM_BUDGET:
        p = next((p for p in study.space if p.path == path), None)
        if p is None or p.role != "nuisance" or budget >= minimum:
            continue  # a scientific Adam hyperparameter is the question itself, not a budget choice
        findings.append(
            Finding(
                "adam_budget",
                "warning",
                f"{path} is searched with too few trials ({budget}) for it to pay off",
                "The playbook's Adam table: fewer than 10 trials tune the learning rate only, "
                "10-25 add b1, 25 or more add eps, and substantially more (here: 100 or more) add "
                f"b2. With {budget} trials it tunes {table}; {path} needs {minimum} or more.",
                f"fix {path} at its default and spend the trials on {table} "
                f"(c.search.optimizer = spaces.adam({budget}, learning_rate=(min, max)) searches "
                f"exactly those), or raise study.num_trials to {minimum} or more",
                param=path,
            )
        )
    return findings


def check_input_bound(study: StudyData) -> list[Finding]:
    """Input-bound trials: the median over a trial's periods of train/input_wait_fraction exceeds
    INPUT_WAIT_WARNING -> make the pipeline keep up before reading anything into step times
    (playbook "Optimizing the input pipeline")."""
    slow = _trials_above(study, "train/input_wait_fraction", np.median, INPUT_WAIT_WARNING)
    if not slow:
        return []
    worst, trial = max(slow, key=lambda p: p[0])
    detail = (
        f"{len(slow)} trial(s) ({trial_list([t for _, t in slow])}) spent more than "
        f"{INPUT_WAIT_WARNING:.0%} of their median evaluation period waiting for input "
        f"(train/input_wait_fraction); trial {trial.index}: {worst:.0%}."
    )
    return [
        Finding(
            "input_bound",
            "warning",
            f"Input-bound: training waited for data {worst:.0%} of the time",
            detail,
            "profile the input pipeline: rerun the study's command with --profile DIR (a "
            "jax.profiler trace of a few evaluation periods; in DIR's perfetto_trace.json.gz, "
            "opened in ui.perfetto.dev, a long 'input' span is the wait) and make it keep up: "
            "raise data.read_threads or data.prefetch, do expensive preprocessing once offline, "
            "or use data.pipeline='device' when the dataset fits on the device; until then step "
            "times measure the pipeline, not the model",
            tuple(t.index for _, t in slow),
        )
    ]


def check_clipping(study: StudyData) -> list[Finding]:
    """Gradient clipping so aggressive that it replaces the learning rate: over a trial's training,
    more than CLIP_AGGRESSIVE_FRACTION (half) of the updates were clipped (playbook "Gradient
    clipping": ">50% of the updates getting clipped" -> reduce the learning rate instead)."""
    heavy = _trials_above(study, "train/clip_fraction", np.mean, CLIP_AGGRESSIVE_FRACTION)
    if not heavy:
        return []
    worst, trial = max(heavy, key=lambda p: p[0])
    detail = (
        f"{len(heavy)} trial(s) ({trial_list([t for _, t in heavy])}) clipped more than "
        f"{CLIP_AGGRESSIVE_FRACTION:.0%} of their updates (train/clip_fraction); trial "
        f'{trial.index}: {worst:.0%}. The playbook calls this extremely aggressive clipping: "in '
        'essence a strange way of reducing the learning rate", and it slows training down.'
    )
    return [
        Finding(
            "clipping",
            "warning",
            f"Gradient clipping cuts {worst:.0%} of the updates",
            detail,
            "lower the learning rate instead, or raise train.grad_clip_norm "
            + _raise_clip(study, trial),
            tuple(t.index for _, t in heavy),
        )
    ]


def _raise_clip(study: StudyData, t: TrialData) -> str:
    """How far to raise the clip of trial `t`, the one that clipped most: to its own
    CLIP_PERCENTILE gradient norm, which lies above its clip when most updates were cut."""
    threshold, current = clip_threshold(t), clip_norm(study, t)
    if threshold is None or current is None or not threshold > current:
        return "to just above the typical gradient norm"
    return (
        f"from {fmt(current)} to about {fmt(threshold)} (the {CLIP_PERCENTILE}th percentile of "
        f"trial {t.index}'s gradient norm)"
    )


def clip_norm(study: StudyData, t: TrialData) -> float | None:
    """The trial's train.grad_clip_norm: its own value when searched, else the study's."""
    value = t.params.get("train.grad_clip_norm")
    if value is None:
        value = ((study.record.get("config") or {}).get("train") or {}).get("grad_clip_norm")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def clip_threshold(t: TrialData) -> float | None:
    """The playbook's gradient-clipping threshold for a trial: the CLIP_PERCENTILE (90th) percentile
    of its per-step gradient norms; None when it logged none. Exact where every step's norm was
    kept (train.log_every_step); otherwise the median of the periods' own 90th percentiles
    (train/grad_norm_p90: exact when the periods share one distribution of norms), and for a
    store written before those were logged, the percentile of the periods' mean norms."""
    for metric, summarize in (
        ("train/step_grad_norm", lambda v: np.percentile(v, CLIP_PERCENTILE)),
        ("train/grad_norm_p90", np.median),
        ("train/grad_norm", lambda v: np.percentile(v, CLIP_PERCENTILE)),
    ):
        norms = finite(t, metric)[1]
        if len(norms):
            return float(summarize(norms))
    return None


def clip_hint(study: StudyData) -> str:
    """' (e.g. train.grad_clip_norm=1.2, ...)': the playbook's clip threshold from the best trial's
    logged gradient norms, or '' when it logged none."""
    threshold = clip_threshold(study.feasible[0]) if study.feasible else None
    if threshold is None:
        return ""
    return (
        f" (e.g. train.grad_clip_norm={fmt(threshold)}, the "
        f"{CLIP_PERCENTILE}th percentile of the best trial's gradient norm)"
    )


def _trials_above(
    study: StudyData, metric: str, summary, limit: float
) -> list[tuple[float, TrialData]]:
    """(summary of the metric's logged values, trial) for each trial whose summary exceeds limit."""
    found = []
    for t in study.trials:
        values = finite(t, metric)[1]
        if len(values) and float(summary(values)) > limit:
            found.append((float(summary(values)), t))
    return found


def _is_adam_study(study: StudyData) -> bool:
    """True when every trial trains with Adam, NAdam or AdamW (fixed, or all searched choices)."""
    # The optimizer searched by name, or chosen among branches (spaces.branches at "optimizer").
    name = next((p for p in study.space if p.path in ("optimizer.name", "optimizer")), None)
    names = name.values if name is not None else [_optimizer(study)]
    return bool(names) and all(n in ADAM_FAMILY for n in names)


def _optimizer(study: StudyData) -> str | None:
    return ((study.record.get("config") or {}).get("optimizer") or {}).get("name")


def _short(path: str) -> str:
    return path.split(".")[-1].replace("learning_rate", "learning rate")


def check_warmup_length(study: StudyData) -> list[Finding]:
    """A warning when the warmup a study would keep is over WARMUP_WARNING_FRACTION (5%) of its
    max_train_steps (playbook "How to apply learning rate warmup": "If long warmup is required
    (>5% of max_train_steps), max_train_steps may need increasing"). A warmup study (--lineage
    warmup) is judged by its shortest warmup that trained without diverging, against its parent's
    train.steps (the steps that warmup is for); any other study by its best trial's warmup against
    its own train.steps, as information when the study file fixes that warmup."""
    if not study.feasible:
        return []
    config = study.record.get("config") or {}
    parent = study.parent or {}
    if parent.get("action") == "warmup":
        trial = min(
            study.feasible, key=lambda t: (t.params.get("schedule.warmup_steps", 0), t.index)
        )
        record = next((r for r in study.family if r["name"] == parent.get("study")), None)
        steps = ((record or {}).get("config") or {}).get("train", {}).get("steps")
        what = f"The shortest warmup that trained (trial {trial.index})"
    else:
        trial = study.feasible[0]
        steps = trial.params.get("train.steps", (config.get("train") or {}).get("steps"))
        what = f"The best trial's warmup (trial {trial.index})"
    warmup = trial.params.get(
        "schedule.warmup_steps", (config.get("schedule") or {}).get("warmup_steps", 0)
    )
    message = steps and warmup_warning(warmup or 0, steps)
    if not message:
        return []
    # The playbook's rule is about a warmup the runs were found to need: one a warmup study
    # chose, or one the search tuned. A warmup the study file fixes is a choice, so it is noted.
    found = parent.get("action") == "warmup" or "schedule.warmup_steps" in trial.params
    fixed = "" if found else " The study file fixes it, so nothing showed the runs need it."
    return [
        Finding(
            "warmup_length",
            "warning" if found else "info",
            f"Warmup over {WARMUP_WARNING_FRACTION:.0%} of train.steps",
            f"{what}: {message}.{fixed}",
            "raise train.steps for the next round (e.g. --lineage promote --steps_factor 2 keeps "
            "the warmup and lengthens what follows it), or find a shorter warmup that trains",
            trials=(trial.index,),
            param="schedule.warmup_steps",
        )
    ]
