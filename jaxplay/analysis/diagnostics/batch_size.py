"""The batch size: a setting for training speed, not a hyperparameter to tune for validation
performance, and a tag of every tuning result.

The playbook ("Choosing the batch size" and its FAQ "Why shouldn't the batch size be tuned to
directly improve validation set performance?"): the batch size "governs the training speed and
shouldn't be used to directly tune the validation set performance"; changing only the batch size
often changes validation performance, but the difference "typically goes away if the training
pipeline is optimized independently for each batch size". And "Changing the batch size requires
re-tuning most hyperparameters": it "typically requires starting the tuning process all over
again", the optimizer's hyperparameters (learning rate, momentum) and the regularizers' above all.

`check_batch_size` flags a study that searches data.batch_size for a validation objective.
`batch_sensitive`, with `analysis.record.batch_size_of` (the batch size a result was tuned at), lets
`studies compare`, the lineage (analysis.variance) and derived studies (tuning.derivation) say when
tuning done at one batch size is stale at another.
"""

from __future__ import annotations

from collections import Counter

from jaxplay import spaces
from jaxplay.analysis.diagnostics.common import Finding
from jaxplay.analysis.diagnostics.training_curves import REGULARIZERS
from jaxplay.analysis.record import BATCH_SIZE, config_path
from jaxplay.analysis.study import StudyData
from jaxplay.values import cell, fmt, is_int

LEARNING_RATE = "optimizer.learning_rate"
# Objectives measured on the validation set: the ones the playbook says the batch size must not be
# chosen for (a training-set objective, e.g. the steps sweep's train/error, is another question).
VALIDATION = "val/"
# What measures the batch size the playbook asks for: the largest that still speeds training up.
PROBE_COMMAND = "python -m jaxplay.batch_size"
SEARCH_OPTIMIZER_FIRST = (
    "search optimizer.learning_rate (log scale) as a nuisance hyperparameter, with as many of the "
    "other optimizer and regularization hyperparameters as the budget allows"
)


def is_regularizer(path: str) -> bool:
    """True for a regularization hyperparameter (dropout, weight decay, label smoothing, ...)."""
    return any(r in config_path(path).split(".")[-1] for r in REGULARIZERS)


def batch_sensitive(path: str) -> bool:
    """True for the hyperparameters whose best value moves most with the batch size (the
    playbook's "optimizer hyperparameters (e.g. learning rate, momentum) and regularization
    hyperparameters"): every optimizer field but its name, and every regularizer."""
    path = config_path(path)
    return (path.startswith("optimizer.") and path != "optimizer.name") or is_regularizer(path)


def sensitive_text(paths) -> str:
    """'optimizer.b1, optimizer.learning_rate and the regularizer model.dropout' for
    batch-sensitive config paths ('' for none)."""
    paths = sorted({config_path(p) for p in paths})
    regularizers = [p for p in paths if is_regularizer(p)]
    parts = [", ".join(p for p in paths if p not in regularizers)]
    if regularizers:
        noun = "regularizer" if len(regularizers) == 1 else "regularizers"
        parts.append(f"the {noun} {', '.join(regularizers)}")
    return " and ".join(part for part in parts if part)


def tunes_every_trial(space: spaces.SearchSpace, path: str, role: str = "nuisance") -> bool:
    """True when every trial searches the config path `path` with `role`: a hyperparameter of the
    whole study, or one in every branch of its section's switch."""
    found = [p for p in space if p.config_path == path and p.role == role]
    if any(p.when is None for p in found):
        return True
    switches = {p.path: p for p in space if p.path in space.switches}
    covered: dict[str, set] = {}
    for p in found:
        covered.setdefault(p.when[0], set()).add(p.when[1])
    return any(set(switches[s].values) <= branches for s, branches in covered.items())


def check_batch_size(study: StudyData) -> list[Finding]:
    """A validation objective with data.batch_size searched: a nuisance batch size is a warning
    (the search picks the batch size by validation performance, which the playbook rules out); a
    scientific one is a warning when the learning rate is not a nuisance hyperparameter of every
    trial (each batch size runs at the same, untuned, values), and information when it is (the
    playbook's fair comparison, as far as the searched nuisance hyperparameters go)."""
    if not study.objective.startswith(VALIDATION):
        return []
    return [_finding(study, path, role, values) for path, role, values in _searches(study.space)]


def _searches(space: spaces.SearchSpace) -> list[tuple[str, str, str]]:
    """(path, role, values as text) of what makes data.batch_size vary between trials: a searched
    batch size (a branch's too), or a switch whose branches fix different batch sizes."""
    found = []
    for p in space:
        if p.config_path == BATCH_SIZE:
            values = (
                ", ".join(map(fmt, p.values))
                if p.values is not None
                else f"{p.scale} [{cell(p.min)}, {cell(p.max)}]"
            )
            found.append((p.path, p.role, values))
    by_switch: dict[str, set] = {}
    for switch, _, path, value in space.fixed:
        if config_path(path) == BATCH_SIZE:
            by_switch.setdefault(switch, set()).add(value)
    for switch, values in by_switch.items():
        role = next(p.role for p in space if p.path == switch)
        if len(values) > 1:
            found.append((switch, role, "fixed per branch: " + ", ".join(map(fmt, sorted(values)))))
    return found


def _finding(study: StudyData, path: str, role: str, values: str) -> Finding:
    """The finding for a batch size searched at `path` with `role`."""
    what = f"{path} ({values})"
    goes_away = (
        "Changing only the batch size often changes validation performance, but the "
        'difference "typically goes away if the training pipeline is optimized independently for '
        "each batch size\"; the optimizer's hyperparameters (learning rate, momentum) and the "
        "regularization hyperparameters interact most with it."
    )
    probe = f"{PROBE_COMMAND} --config {study.record.get('config_path') or 'STUDY_FILE'}"
    if role == "nuisance":
        return Finding(
            "batch_size",
            "warning",
            f"The batch size is tuned for {study.objective}",
            f"This study searches {what} as a nuisance hyperparameter, so its best trial picks "
            f"the batch size that gives the best {study.objective}. The playbook: the batch size "
            "\"governs the training speed and shouldn't be used to directly tune the validation "
            f'set performance". {goes_away}',
            "fix data.batch_size at the largest batch size the hardware supports that still "
            f"speeds training up ({probe} measures it) and tune the other hyperparameters at it; "
            "if which batch size is better is the question, make data.batch_size scientific and "
            f"{SEARCH_OPTIMIZER_FIRST}, so that each batch size is compared at its own best values",
            param=path,
        )
    fixed = {p: v for p, v in study.fixed.items() if batch_sensitive(p)}
    fixed_text = ", ".join(f"{p}={fmt(v)}" for p, v in sorted(fixed.items()))
    if not tunes_every_trial(study.space, LEARNING_RATE):
        searched = [p for p in study.space if p.config_path == LEARNING_RATE]
        if not searched:
            lr = study.fixed.get(LEARNING_RATE)
            how = f"fixed at {fmt(lr)}" if lr is not None else "not searched"
        elif all(p.role != "nuisance" for p in searched):
            how = "scientific, not a nuisance hyperparameter"
        else:
            how = "a nuisance hyperparameter of only some branches"
        return Finding(
            "batch_size",
            "warning",
            "Batch sizes are compared at one learning rate",
            f"{what} is scientific, but optimizer.learning_rate is {how}: "
            "every batch size trains with the same optimizer and regularization values, so the "
            f"comparison favours the batch size those values suit. The playbook: {goes_away}",
            f"{SEARCH_OPTIMIZER_FIRST}, so that each batch size is compared at its own best "
            "values; or run one study per batch size, each tuned on its own",
            param=path,
        )
    tuned = sorted(
        {p.config_path for p in study.space.by_role("nuisance") if batch_sensitive(p.path)}
    )
    counts = Counter(t.params.get(path) for t in study.finished if t.params.get(path) is not None)
    per_size = ", ".join(f"{fmt(k)}: {n}" for k, n in sorted(counts.items(), key=_order))
    return Finding(
        "batch_size",
        "info",
        "Batch sizes are compared, each at its own tuned "
        + ", ".join(p.split(".")[-1].replace("_", " ") for p in tuned),
        f"{what} is scientific, and the search tunes {sensitive_text(tuned)} (nuisance) for every "
        "batch size: the playbook's fair comparison, as far as that goes"
        + (
            f'. Fixed for every batch size: {fixed_text} (larger batches "can be more prone to '
            'overfitting and may require stronger regularization")'
            if fixed_text
            else ""
        )
        + (f". Finished trials per batch size: {per_size}" if per_size else "")
        + ". Whatever the result, the playbook picks the batch size by training speed: it "
        '"shouldn\'t be used to directly tune the validation set performance".',
        "read data.batch_size's isolation plot, each batch size at its best nuisance values; "
        "search a fixed optimizer or regularization hyperparameter as nuisance too if it may "
        "matter (or run one study per batch size, each fully tuned); then fix data.batch_size "
        f"at the fastest that reaches the same {study.objective} ({probe})",
        param=path,
    )


def _order(item) -> tuple:
    """Sort key of (value, count) pairs: numbers by value, anything else after them by text."""
    value = item[0]
    return (0, value, "") if is_int(value) else (1, 0, str(value))
