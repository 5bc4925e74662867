"""The playbook's procedures that derive a study from a parent's results (`--lineage NAME`):

  refine   the parent's search space, widened where its best trials sit at an edge (the boundary
           diagnostic) and narrowed around its best trials elsewhere; nuisance hyperparameters only
  exploit  the parent's search space searched by Bayesian optimization ('gp'), the parent's
           trials seeding the model ("After exploration concludes")
  promote  round 2: the parent's top_k configurations, train.steps x steps_factor, the schedule
           rescaled the playbook's way, `seeds` training seeds each ("Round 2"); with `retune`
           transfer classes (jaxplay.tuning.transfer, "Round 1"; default: the schedule, unlikely
           to transfer) whose hyperparameters round 1 searched, a quasirandom search of those
           around the best trials instead, the rest fixed at the best trial's values
  rerun    the best trial with `seeds` training seeds: the trial variance ("Determining whether to
           adopt a training pipeline change")
  reseed   the same study with the next search seed: the study variance (same section)
  warmup   the best trial at lr_factor x the learning rate where the parent diverged, one trial
           per warmup length of a log grid up to 10% of train.steps, the warmup prepended and
           followed by post_warmup_factor x as many constant steps ("How to apply learning rate
           warmup")
  clip     the best trial at that unstable learning rate, over gradient-clipping thresholds around
           the 90th percentile of the best trial's gradient norms ("Gradient clipping")
  probe    the best trial at 1x, 2x, 5x and 10x its learning rate for the first `steps` steps,
           every step's training loss kept: early instability that sparse evaluations miss
           ("Identifying unstable workloads")
  batch_size  the parent's whole search space searched afresh at another data.batch_size, one
           study per batch size, so `studies scaling` reads the steps each needs to a common
           result ("Choosing the batch size to minimize training time"; jaxplay.tuning.scaling)

Each edits the child config in place and returns its changes in words (jaxplay.tuning.derivation).
"""

from __future__ import annotations

import math

import ml_collections
import numpy as np

from jaxplay import config as config_lib
from jaxplay import spaces, workloads
from jaxplay.analysis import diagnostics
from jaxplay.config import WARMUP_WARNING_FRACTION, run_steps, warmup_warning
from jaxplay.errors import ConfigError
from jaxplay.spec.sections import field_range
from jaxplay.tuning import transfer
from jaxplay.tuning.derivation import Derivation, Option, stored_params
from jaxplay.tuning.scaling import BATCH_SIZE_STUDY
from jaxplay.values import fmt

# Narrowing keeps the span of the best quarter of the trials (at least 3), padded on each side by
# a quarter of that span plus 5% of the old range, so the best region stays "comfortably" inside.
NARROW_TOP_FRACTION = 0.25
NARROW_MIN_TOP = 3
NARROW_PAD = 0.25
NARROW_MIN_PAD = 0.05
# Narrowing that would keep more than 80% of a range is not worth a caveat: the range is kept.
NARROW_MAX_KEPT = 0.8
# Widening extends the range by half its width on its own scale (a log range by half its decades).
WIDEN = 0.5
# The clip study brackets the playbook's threshold (diagnostics.clip_threshold) from below, where
# "if instability remains, clip harder" points, and once above.
CLIP_MULTIPLES = (0.25, 0.5, 1.0, 2.0)
# "The largest feasible [warmup] shouldn't be more than 10% of max_train_steps".
WARMUP_MAX_FRACTION = 0.1
# The warmup study's post_warmup_steps: "usually fine to set post_warmup_steps to be
# 2*warmup_steps".
POST_WARMUP_FACTOR = 2.0
# Evaluations per warmup-study trial (as many as the probe's): enough to see where it diverges.
WARMUP_EVALS = 10
# The probe's learning rates as multiples of the best trial's: 1x is the reference, 2x the
# playbook's early-instability check, 5x and 10x its check for whether warmup is needed.
PROBE_FACTORS = (1.0, 2.0, 5.0, 10.0)


def _refine(child, parent, opts) -> list[str]:
    edges = {
        (f.param, "lower" if "lower" in f.title else "upper")
        for f in diagnostics.check_boundary(parent)
        if f.param and f.severity == "warning"  # a best trial alone at an edge may be chance
    }
    changes = []
    feasible = parent.feasible
    for p in parent.space:
        if p.space not in ("float", "int"):
            continue
        if p.role == "scientific":
            changes.append(
                f"{p.path}: kept (scientific: its range is the question, not a nuisance to narrow)"
            )
            continue
        widen = [end for end in ("lower", "upper") if (p.path, end) in edges]
        if widen:
            bounds = field_range(
                p.path,
                child.get("workload", workloads.DEFAULT),
                (child.get("model") or {}).get("name"),
            )
            lo, hi = _widened(p, widen[0], bounds)
            why = f"the best trials sit at its {widen[0]} edge"
        elif len(top := _top_with(p, feasible)) >= NARROW_MIN_TOP:
            lo, hi = _narrowed(p, [t.params[p.path] for t in top])
            kept = (
                p.to_unit(hi) - p.to_unit(lo)
                if p.space == "float"
                else (hi - lo + 1) / (p.max - p.min + 1)
            )
            if kept > NARROW_MAX_KEPT:
                changes.append(
                    f"{p.path}: kept [{fmt(p.min)}, {fmt(p.max)}] (the best {len(top)} trials span "
                    f"{kept:.0%} of it)"
                )
                continue
            why = f"narrowed around the best {len(top)} trials"
        else:
            continue
        if (lo, hi) == (p.min, p.max):
            changes.append(
                f"{p.path}: kept [{fmt(p.min)}, {fmt(p.max)}] ({why}, but it cannot widen further)"
            )
            continue
        node = child.search
        for key in p.declared_at:
            node = node[key]
        node["min"], node["max"] = lo, hi
        changes.append(f"{p.path}: [{fmt(p.min)}, {fmt(p.max)}] -> [{fmt(lo)}, {fmt(hi)}] ({why})")
    if not any("->" in c for c in changes):
        raise ConfigError(
            f"--lineage refine: {parent.name}'s search space needs no change by the playbook's "
            "rules (no best trial at an edge, the best trials spread over the ranges); run more "
            "trials or continue with --lineage exploit"
        )
    return changes


def _top_with(p: spaces.Hyperparameter, feasible: list) -> list:
    """The best trials that set p (all of them, or those of its branch: spaces.branches), as many
    as refine narrows around."""
    mine = [t for t in feasible if p.path in t.params]
    return mine[: max(NARROW_MIN_TOP, math.ceil(NARROW_TOP_FRACTION * len(mine)))]


def _widened(p: spaces.Hyperparameter, end: str, bounds=None):
    """(min, max) extended by WIDEN of the range at `end`, within what the hyperparameter allows:
    a log range stays positive; a linear range that lies in [0, 1] (a momentum, a dropout rate)
    stays in [0, 1], and approaches 1 by halving the distance to it; and the field's own range
    (`bounds`, a jaxplay.spec.sections.Range) holds: an end it excludes is approached the same
    way, one it includes is reached."""
    if p.scale in ("log", "reverse_log"):
        # WIDEN of the range on the axis its scale is uniform on (log(value), log(1 - value)):
        # a log range stays positive, a reverse_log one below 1.
        lo, hi = p.warp(p.min), p.warp(p.max)
        width = WIDEN * (hi - lo)
        lo, hi = (lo - width, hi) if end == "lower" else (lo, hi + width)
        lo, hi = p.unwarp(lo), p.unwarp(hi)
    else:
        width = WIDEN * (p.max - p.min)
        lo, hi = (p.min - width, p.max) if end == "lower" else (p.min, p.max + width)
        if p.min >= 0:
            lo = max(lo, 0.0)
        if 0 <= p.min and p.max <= 1:
            hi = min(hi, p.max + 0.5 * (1 - p.max))
    if bounds is not None:
        if lo <= bounds.low if bounds.low_open else lo < bounds.low:
            lo = (p.min + bounds.low) / 2 if bounds.low_open else bounds.low
        if hi >= bounds.high if bounds.high_open else hi > bounds.high:
            hi = (p.max + bounds.high) / 2 if bounds.high_open else bounds.high
    if p.space == "int":
        lo, hi = max(math.floor(lo), 1 if p.scale == "log" else -math.inf), math.ceil(hi)
        return int(lo), int(hi)
    return float(lo), float(hi)


def _narrowed(p: spaces.Hyperparameter, values: list):
    """(min, max) spanning `values` on p's scale, padded, within p's range."""
    u = [p.to_unit(v) for v in values]
    a, b = min(u), max(u)
    pad = NARROW_PAD * (b - a) + NARROW_MIN_PAD
    lo, hi = p.from_unit(max(a - pad, 0.0)), p.from_unit(min(b + pad, 1.0 - 1e-12))
    if p.space == "int":
        hi = max(hi, lo + 1)
    return lo, hi


def _exploit(child, parent, opts) -> list[str]:
    before = child.study.algorithm
    with child.unlocked():
        child.study.algorithm = "gp"
        child.study.acquisition = child.study.get("acquisition", "ei")
    return [
        f"algorithm: {before} -> gp (Bayesian optimization, {child.study.acquisition}), "
        f"seeded with the parent's {len(parent.finished)} finished trials"
    ]


def _promote(child, parent, opts) -> list[str]:
    top = parent.feasible[: opts["top_k"]]
    factor, seeds = float(opts["steps_factor"]), opts["seeds"]
    round1 = int(
        (parent.record.get("config") or {}).get("train", {}).get("steps") or child.train.steps
    )
    steps = int(round(round1 * factor))
    # A study file may leave the schedule out: it trains with the default one.
    schedule = (child.get("schedule") or {}).get("name", config_lib.DEFAULT_SCHEDULE)
    wanted_every = child.train.eval_every
    trials, changes, per_top = [], [], []
    with child.unlocked():
        child.train.steps = steps
        if schedule == "linear" and steps != round1:
            child.schedule.decay_steps = 0
    # Evaluations divide the whole run: train.steps, plus a prepended warmup (spec.run_steps).
    base_every = config_lib.divisor_near(run_steps(config_lib.to_tree(child)), wanted_every)
    with child.unlocked():
        child.train.eval_every = base_every
    child_tree = config_lib.to_tree(child)
    base_seed = int(child.get("seed", 0))
    parent_config = parent.record.get("config") or child_tree
    own_every = prepended = False
    for t in top:
        params = stored_params(parent, t)
        params.pop("train.eval_every", None)  # set again below, for the new length
        as_run = config_lib.apply(parent_config, params)  # the trial as round 1 ran it
        trial_round1 = int((as_run.get("train") or {}).get("steps") or round1)
        trial_steps = int(round(trial_round1 * factor))
        if "train.steps" in params:  # a trial of its own length (a warmup study's)
            params["train.steps"] = trial_steps
        if schedule == "linear" and trial_steps != trial_round1:
            ran = as_run["schedule"]
            warmup = 0 if ran.get("prepend_warmup") else int(ran.get("warmup_steps", 0))
            decay = int(ran.get("decay_steps", 0) or 0) or trial_round1 - warmup
            # Round 1's decay length, kept: the extra steps go to the constant phase before it.
            params["schedule.decay_steps"] = decay
        # A prepended warmup keeps its length: only the steps after it grow.
        as_child = config_lib.apply(child_tree, params)
        prepended = prepended or bool(as_child["schedule"].get("prepend_warmup"))
        every = config_lib.divisor_near(run_steps(as_child), wanted_every)
        if every != base_every:
            params["train.eval_every"] = every
            own_every = True
        per_top.append(params)
        for j in range(seeds):
            trials.append({**params, **({"seed": base_seed + j} if seeds > 1 else {})})
    # rerun passes no retune: the same length, so nothing has to transfer.
    retune = opts.get("retune")
    retuned = _retuned(parent, retune)
    if retuned:
        budget = opts["retune_trials"] or len(trials)
        changes += _retune_search(child, parent, per_top[0], retuned, budget, steps, retune)
    else:
        with child.unlocked():
            child.search = ml_collections.ConfigDict()
            child.study.algorithm = "manual"
            child.study.trials = trials
            child.study.num_trials = len(trials)
        ranks = ", ".join(f"trial {t.index} ({parent.objective} {t.best_value:.4g})" for t in top)
        changes.append(
            f"trials: the parent's top {len(top)} ({ranks})"
            + (f", each with seeds {base_seed}..{base_seed + seeds - 1}" if seeds > 1 else "")
        )
    if steps != round1:
        changes.append(f"train.steps: {round1} -> {steps} (x{factor:g})")
        changes.append(
            {
                "linear": (
                    "schedule (linear): decay length kept from round 1, the constant phase at "
                    "the peak learning rate extended (schedule.decay_steps)"
                ),
                "cosine": (
                    "schedule (cosine): base learning rate kept, "
                    "the horizon extended to train.steps"
                ),
                "constant": "schedule (constant): unchanged",
            }[schedule]
        )
    if prepended:
        changes.append(
            "schedule.warmup_steps: kept, prepended (schedule.prepend_warmup): each trial ramps "
            f"over its round-1 warmup, then runs train.steps={steps} steps of the schedule, "
            f"{steps} + warmup_steps in all"
        )
    if own_every:
        changes.append(
            "train.eval_every: set per trial where its warmup changes the run's length, so that "
            "evaluations divide it"
        )
    if retune is not None:
        changes += _transfer_lines(parent, retune, retuned)
    return changes


def _retuned(parent, retune: str | None) -> list[spaces.Hyperparameter]:
    """The parent's searched hyperparameters of the --retune classes that round 2 searches again:
    plain ones (a branch's hyperparameters and switches stay at the trials' values)."""
    if retune is None:
        return []
    classes = transfer.retuned_classes(retune)
    return [
        p
        for p in parent.space
        if transfer.class_of(p.config_path) in classes
        and p.when is None
        and p.path not in parent.space.switches
    ]


def _retune_search(child, parent, best: dict, retuned, budget, steps, retune) -> list[str]:
    """Round 2 as a quasirandom search of `budget` trials over `retuned` at the long run: each
    nuisance number narrowed around the parent's best trials the way refine narrows (_top_with,
    _narrowed), every other hyperparameter fixed at the best trial's value (`best`, its round-2
    values: the schedule rescaled, eval_every set)."""
    paths = {p.path for p in retuned}
    settled = config_lib.apply(child, {k: v for k, v in best.items() if k not in paths})
    search = ml_collections.ConfigDict()
    ranges = {}
    for p in retuned:
        node = child.search  # the parent's search space (derivation._inherit_search)
        for key in p.declared_at:
            node = node[key]
        declaration = dict(node)
        top = _top_with(p, parent.feasible)
        narrow = p.space in ("float", "int") and p.role == "nuisance"
        if narrow and len(top) >= NARROW_MIN_TOP:
            lo, hi = _narrowed(p, [t.params[p.path] for t in top])
            # As refine: a range the best trials span most of is kept whole.
            kept = (
                p.to_unit(hi) - p.to_unit(lo) if p.is_float else (hi - lo + 1) / (p.max - p.min + 1)
            )
            if kept > NARROW_MAX_KEPT:
                ranges[p.path] = (
                    f"[{fmt(p.min)}, {fmt(p.max)}] kept (the best {len(top)} trials span "
                    f"{kept:.0%} of it)"
                )
            else:
                declaration["min"], declaration["max"] = lo, hi
                ranges[p.path] = (
                    f"[{fmt(p.min)}, {fmt(p.max)}] -> [{fmt(lo)}, {fmt(hi)}] (narrowed around "
                    f"the best {len(top)} trials)"
                )
        elif p.space in ("float", "int"):
            why = (
                "scientific: its range is the question"
                if p.role == "scientific"
                else f"fewer than {NARROW_MIN_TOP} trials to narrow around"
            )
            ranges[p.path] = f"[{fmt(p.min)}, {fmt(p.max)}] kept ({why})"
        else:
            ranges[p.path] = f"{list(p.values)} kept (a list: every value again)"
        config_lib.set_path(search, p.path, declaration, create=True)
    best_trial = parent.feasible[0]
    with child.unlocked():
        for key, value in settled.items():
            if key not in config_lib.STUDY_SECTIONS:
                child[key] = value
        child.search = search
        child.study.algorithm = "quasirandom"
        child.study.num_trials = int(budget)
        for key in ("trials", "acquisition", "initial_trials"):  # another designer's settings
            if key in child.study:
                del child.study[key]
    return [
        f"trials: a quasirandom search of {budget} at train.steps={steps} over the "
        f"hyperparameters of --retune {retune} that round 1 searched ({', '.join(sorted(paths))})"
        f", every other one fixed at the parent's best trial {best_trial.index} "
        f"({parent.objective} {best_trial.best_value:.4g}); --retune_trials sets the budget "
        "(default: top_k x seeds, the long runs --retune none would list)",
        *(f"{path}: re-searched over {text}" for path, text in ranges.items()),
    ]


def _transfer_lines(parent, retune: str, retuned) -> list[str]:
    """Per hyperparameter the parent searched: its transfer class (playbook "Round 1") and
    whether round 2 keeps its value or searches it again."""
    again = {p.path for p in retuned}
    classes = transfer.retuned_classes(retune)
    kept = "fixed at the best trial's value" if again else "kept at each top trial's value"
    lines = []
    for p in parent.space:
        if p.path in again:
            fate = f"re-searched (--retune {retune})"
        elif transfer.class_of(p.config_path) in classes:
            fate = f"{kept} (conditional: --retune re-searches plain hyperparameters only)"
        else:
            fate = kept
        lines.append(f"transfer: {p.path}: {transfer.describe(p.config_path)}; {fate}")
    return lines


def _rerun(child, parent, opts) -> list[str]:
    return _promote(child, parent, {**opts, "top_k": 1, "steps_factor": 1.0})


def _reseed(child, parent, opts) -> list[str]:
    before = child.study.seed
    study = (parent.record.get("config") or {}).get("study") or {}
    with child.unlocked():
        child.study.seed = int(before) + 1
        # The study variance compares equal budgets.
        child.study.num_trials = study.get("num_trials", child.study.num_trials)
    return [
        f"study.seed: {before} -> {child.study.seed} (same search space and budget, other trials: "
        "the study variance)"
    ]


def _warmup(child, parent, opts) -> list[str]:
    """The playbook's warmup experiment ("How to apply learning rate warmup"): the parent's best
    trial at base_learning_rate = lr_factor x the smallest learning rate that diverged, one trial
    per warmup length of warmup_grid(train.steps): 0 -> base_learning_rate over warmup_steps,
    prepended, then constant for post_warmup_steps = post_warmup_factor x warmup_steps."""
    unstable, changes = _unstable_learning_rate(parent)
    changes += _fix_at_best(child, parent)
    max_steps = int(child.train.steps)  # the max_train_steps the warmup will be prepended to
    lr = float(opts["lr_factor"]) * unstable
    post_factor = float(opts["post_warmup_factor"])
    grid = warmup_grid(max_steps)
    trials = []
    for warmup in grid:
        post = max(1, int(round(post_factor * warmup)))
        # About WARMUP_EVALS evaluations, one at the end of the warmup.
        every = config_lib.divisor_near(math.gcd(warmup, post), (warmup + post) / WARMUP_EVALS)
        trials.append(
            {"schedule.warmup_steps": warmup, "train.steps": post, "train.eval_every": every}
        )
    before = child.schedule.name
    with child.unlocked():
        child.optimizer.learning_rate = lr
        child.schedule.name = "constant"
        child.schedule.decay_steps = 0
        child.schedule.prepend_warmup = True
        # The base is the first trial (every trial sets all three).
        child.schedule.warmup_steps = trials[0]["schedule.warmup_steps"]
        child.train.steps = trials[0]["train.steps"]
        child.train.eval_every = trials[0]["train.eval_every"]
        child.search = ml_collections.ConfigDict()
        child.study.algorithm = "manual"
        child.study.trials = trials
        child.study.num_trials = len(trials)
    changes += [
        f"optimizer.learning_rate: {fmt(lr)} ({fmt(opts['lr_factor'])} x {fmt(unstable)}, the "
        "smallest learning rate that diverged in the parent): the base learning rate the warmup "
        "has to make stable",
        f"schedule: {before} -> constant with the warmup prepended (schedule.prepend_warmup): "
        f"each trial ramps 0 -> {fmt(lr)} over its warmup_steps, then stays at {fmt(lr)} for "
        f"post_warmup_steps = {post_factor:g} x warmup_steps (its train.steps)",
        f"trials: schedule.warmup_steps in {grid} (log grid, at most "
        f"{WARMUP_MAX_FRACTION:.0%} of train.steps={max_steps}), each "
        f"{1 + post_factor:g} x its warmup long; the shortest warmup that trains without "
        "diverging is the one to keep",
        f"then: prepend it to the study's schedule (schedule.prepend_warmup=True, "
        f"schedule.warmup_steps=W: the run becomes train.steps + W = {max_steps} + W steps) and "
        "compare with the baseline at their best checkpoints",
    ]
    long = [w for w in grid if warmup_warning(w, max_steps)]
    if long:
        changes.append(
            f"caution: {long} {'is' if len(long) == 1 else 'are'} over "
            f"{WARMUP_WARNING_FRACTION:.0%} of train.steps={max_steps}; if only such a warmup "
            "trains, raise train.steps (the playbook: a long warmup may need more "
            "max_train_steps)"
        )
    return changes


def _probe(child, parent, opts) -> list[str]:
    """The early-instability probe (playbook "Identifying unstable workloads"): the parent's best
    trial at PROBE_FACTORS x its learning rate, for the first `steps` steps, every step's training
    loss kept; analysis.diagnostics.check_early_instability reads them."""
    best = parent.feasible[0]
    key = _learning_rate_key(parent, best)
    steps = int(opts["steps"])
    warmup = int(child.schedule.get("warmup_steps", 0))
    prepended = bool(child.schedule.get("prepend_warmup", False))
    if warmup >= steps and not prepended:
        raise ConfigError(
            f"--steps: the probe's {steps} steps would end inside the parent's warmup "
            f"(schedule.warmup_steps={warmup}); pass --steps above {warmup}"
        )
    lr = float(best.params.get(key, child.optimizer.get("learning_rate")))
    trials = [{**best.params, key: lr * factor} for factor in PROBE_FACTORS]
    with child.unlocked():
        child.train.steps = steps
        run = steps + warmup if prepended else steps  # a prepended warmup runs before them
        child.train.eval_every = config_lib.divisor_near(run, run / 10)
        child.train.log_every_step = True
        # The first steps of a long decay run at the peak rate: the probe holds it there.
        child.schedule.name = "constant"
        child.schedule.decay_steps = 0
        child.search = ml_collections.ConfigDict()
        child.study.algorithm = "manual"
        child.study.trials = trials
        child.study.num_trials = len(trials)
    factors = ", ".join(f"{f:g}x" for f in PROBE_FACTORS)
    return [
        f"trials: the parent's best trial {best.index} at {factors} its {key}={fmt(lr)}",
        f"train.steps: {steps}, every step's training loss and gradient norm kept "
        "(train.log_every_step)",
        "schedule: constant at the peak after the parent's warmup (the first steps of a long "
        "decay run at the peak anyway)",
    ]


def _learning_rate_key(parent, best) -> str:
    """The path of the best trial's learning rate: its branch's own (spaces.branches), else
    optimizer.learning_rate."""
    own = [path for path in best.params if path.endswith("].learning_rate")]
    return own[0] if own else "optimizer.learning_rate"


def _clip(child, parent, opts) -> list[str]:
    unstable, changes = _unstable_learning_rate(parent)
    best = parent.feasible[0]
    p90 = diagnostics.clip_threshold(best)
    if p90 is None:
        raise ConfigError(
            f"--lineage clip: {parent.name}'s best trial logged no train/grad_norm "
            "to set a threshold"
        )
    thresholds = [float(f"{m * p90:.3g}") for m in CLIP_MULTIPLES]
    changes += _fix_at_best(child, parent)
    with child.unlocked():
        child.optimizer.learning_rate = unstable
        if "grad_clip_norm" not in child.train:
            child.train.grad_clip_norm = 0.0
        child.search = ml_collections.ConfigDict(
            {"train": {"grad_clip_norm": spaces.discrete(thresholds, role="scientific")}}
        )
        child.study.algorithm, child.study.num_trials = "grid", None
    return changes + [
        f"optimizer.learning_rate: {fmt(unstable)} (the smallest that diverged in the parent)",
        f"train.grad_clip_norm: grid {thresholds} around {fmt(p90)}, "
        f"the {diagnostics.CLIP_PERCENTILE}th percentile of trial {best.index}'s gradient norm; "
        "more than half the updates clipped means: lower the learning rate instead",
    ]


# ---------------------------------------------------------------------------------------------
# Schedules and grids.


def warmup_grid(steps: int) -> list[int]:
    """Warmup lengths over orders of magnitude up to WARMUP_MAX_FRACTION of the steps (the
    playbook's [10, 10^3, 10^4, 10^5]), at least 3 of them."""
    top = WARMUP_MAX_FRACTION * steps
    grid = [10**k for k in range(1, 8) if 10**k <= top]
    if len(grid) < 3:
        grid = sorted(
            {max(1, int(round(v))) for v in np.geomspace(max(top / 100, 1), max(top, 3), 3)}
        )
    return grid


def _unstable_learning_rate(parent) -> tuple[float, list[str]]:
    """The smallest learning rate at which a parent trial diverged, and the words for it."""
    per_branch = [p.path for p in parent.space if p.when and p.target == "optimizer.learning_rate"]
    if per_branch:
        raise ConfigError(
            f"--from_study {parent.name}: its learning rate is a different hyperparameter in each "
            f"branch ({', '.join(per_branch)}), so no one rate is unstable; derive from a study "
            "of one optimizer (e.g. --lineage promote, or a study file exported with studies "
            "export --format study)"
        )
    if "optimizer.learning_rate" not in parent.space.paths:
        raise ConfigError(
            f"--from_study {parent.name}: it does not search optimizer.learning_rate, so it shows "
            "no unstable learning rate; start from a learning-rate study"
        )
    diverged = [
        t.params["optimizer.learning_rate"] for t in parent.trials if t.status == "infeasible"
    ]
    if not diverged:
        raise ConfigError(
            f"--from_study {parent.name}: no trial diverged, so there is no unstable region to "
            "study; instability matters only when it limits the learning rate. Widen the "
            "learning-rate range upward first (--lineage refine)"
        )
    unstable = float(min(diverged))
    return unstable, [
        f"unstable learning rate: {fmt(unstable)} (the smallest of {len(diverged)} that diverged)"
    ]


def _fix_at_best(child, parent) -> list[str]:
    """Sets the parent's best trial's values in the child's base config (they become fixed)."""
    best = parent.feasible[0]
    params = stored_params(parent, best)
    with child.unlocked():
        for path, value in params.items():
            config_lib.set_path(child, path, value)
    shown = ", ".join(f"{k}={fmt(v)}" for k, v in best.params.items())
    return [f"fixed at the parent's best trial {best.index}: {shown}"]


def _round_name(name: str) -> str:
    """'x-round3' for 'x-round2', else 'x-round2'."""
    head, _, tail = name.rpartition("-round")
    if head and tail.isdigit():
        return f"{head}-round{int(tail) + 1}"
    return f"{name}-round2"


# ---------------------------------------------------------------------------------------------
# The registry: one entry per procedure.

_SEEDS = "training seeds per trial"
ACTIONS = {
    d.name: d
    for d in (
        Derivation(
            "refine",
            "search space from the parent's diagnostics (widen at an edge, narrow elsewhere)",
            _refine,
            lambda parent, o, child: f"search space refined from {parent}'s results",
        ),
        Derivation(
            "exploit",
            "Bayesian optimization on the parent's space, seeded by its trials",
            _exploit,
            lambda parent, o, child: f"Bayesian optimization seeded by {parent}",
        ),
        Derivation(
            "promote",
            "round 2: the parent's top_k trials, train.steps x steps_factor, seeds each; the "
            "hyperparameters of the --retune transfer classes searched again around the best "
            "trials",
            _promote,
            lambda parent, o, child: (
                f"round 2: top {o['top_k']} of {parent}, x{o['steps_factor']:g} steps"
                if child.study.algorithm == "manual"
                else f"round 2 of {parent}: x{o['steps_factor']:g} steps, the hyperparameters "
                f"of --retune {o['retune']} searched again"
            ),
            child_name=lambda parent, child: _round_name(parent),
            options=(
                Option("top_k", int, 3, "how many of the parent's best trials", minimum=1),
                Option("steps_factor", float, 2.0, "train.steps multiplier", minimum=1),
                Option("seeds", int, 1, _SEEDS, minimum=1),
                transfer.RetuneOption(
                    "retune", str, transfer.DEFAULT_RETUNE,
                    "transfer classes whose hyperparameters round 1 searched and round 2 "
                    f"searches again, around the best trials: {', '.join(transfer.CLASSES)}, "
                    f"comma-separated, or {transfer.NONE} (keep every round-1 value: the "
                    "top_k trials as they ran); in that search the rest stay at the best "
                    "trial's values",
                ),
                Option(
                    "retune_trials", int, 0,
                    "trials of the --retune search (0: top_k x seeds, as many long runs as "
                    "--retune none trains)",
                    minimum=0,
                ),
            ),
            same_objective=False,
        ),
        Derivation(
            "rerun",
            "the parent's best trial with several training seeds: the trial variance",
            _rerun,
            lambda parent, o, child: (
                f"trial variance: the best trial of {parent} with {o['seeds']} seeds"
            ),
            options=(Option("seeds", int, 5, _SEEDS, minimum=1),),
            same_objective=False,
        ),
        Derivation(
            "reseed",
            "the parent with the next search seed and its budget: the study variance",
            _reseed,
            lambda parent, o, child: (
                f"study variance: {parent} with search seed {child.study.seed}"
            ),
            child_name=lambda parent, child: f"{parent}-seed{child.study.seed}",
            needs_feasible=False,
        ),
        Derivation(
            "probe",
            "the best trial at 1x, 2x, 5x, 10x its learning rate for the first steps, every "
            "step's loss kept: early instability",
            _probe,
            lambda parent, o, child: f"early-instability probe of {parent}'s best trial",
            options=(Option("steps", int, 500, "training steps of each probe trial",
                            minimum=10),),  # fmt: skip
        ),
        Derivation(
            "warmup",
            "warmup lengths at lr_factor x the smallest learning rate that diverged, each "
            "prepended and followed by post_warmup_factor x as many constant steps",
            _warmup,
            lambda parent, o, child: f"warmup lengths at {parent}'s unstable learning rate",
            options=(
                Option(
                    "lr_factor", float, 10.0,
                    "the learning rate as a multiple of the smallest that diverged",
                ),
                Option(
                    "post_warmup_factor", float, POST_WARMUP_FACTOR,
                    "constant steps after the warmup, as a multiple of warmup_steps",
                ),
            ),
        ),
        Derivation(
            "clip",
            "gradient-clipping thresholds at the smallest learning rate that diverged",
            _clip,
            lambda parent, o, child: f"gradient clipping at {parent}'s unstable learning rate",
        ),
        BATCH_SIZE_STUDY,  # jaxplay.tuning.scaling
    )
}  # fmt: skip
