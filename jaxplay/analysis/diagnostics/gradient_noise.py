"""More gradient noise may need more steps (playbook, "Determining the number of steps for each
training run"): anything that raises the variance of the gradient across batches, "smaller batch
size, adding data augmentation, or adding some types of regularization (e.g. dropout)", slows
training down and may raise the number of steps a configuration needs.

`noisier` compares two sets of settings the way the playbook lists them: a smaller
data.batch_size, an augmentation that adds to the one before (data.augment 'none' -> 'flip' ->
'crop_flip'), a larger dropout rate. Derived studies (jaxplay.tuning.derivation) use it to add a
"revisit train.steps" caveat when a child keeps its parent's train.steps; `check_gradient_noise`
uses it when the best trials are still improving at the end (check_not_converged) in a study
that is noisier than its parent, or that compares such settings as scientific.
"""

from __future__ import annotations

from jaxplay.analysis.diagnostics.common import Finding, is_number
from jaxplay.analysis.diagnostics.training_curves import check_not_converged
from jaxplay.analysis.record import BATCH_SIZE, config_path
from jaxplay.analysis.study import StudyData
from jaxplay.values import fmt

AUGMENT = "data.augment"
TRAIN_STEPS = "train.steps"
# What measures the steps a configuration needs: the playbook's learning-rate sweep. It runs at
# the study's batch size but without dropout or augmentation, so for those its estimate is a floor.
STEPS_COMMAND = "python -m jaxplay.steps"
# An augmentation's name lists its parts ('crop_flip' = crop, then flip); 'none' has none.
AUGMENT_NONE = "none"


def is_noise_source(path: str) -> bool:
    """True for a setting whose change can add gradient noise: the batch size, the data
    augmentation, a dropout rate."""
    path = config_path(path)
    return path in (BATCH_SIZE, AUGMENT) or "dropout" in path.split(".")[-1]


def noisier(old: dict, new: dict) -> list[str]:
    """'data.batch_size 128 -> 32 (smaller)' and the like: each setting of `new` (dotted path ->
    value) that adds gradient noise against the same setting of `old`."""
    changes = []
    for path in sorted(set(old) & set(new)):
        if not is_noise_source(path) or old[path] == new[path]:
            continue
        a, b = old[path], new[path]
        if path == AUGMENT:
            more = isinstance(a, str) and isinstance(b, str) and _parts(a) < _parts(b)
            how = "more augmentation"
        elif is_number(a) and is_number(b):
            more = b < a if path == BATCH_SIZE else b > a
            how = "smaller" if path == BATCH_SIZE else "more dropout"
        else:
            more = False
        if more:
            changes.append(f"{path} {fmt(a)} -> {fmt(b)} ({how})")
    return changes


def settings(record: dict, searched=()) -> dict:
    """A study's result's noise settings and train.steps (dotted path -> value): its best trial's
    own values where its trials set them, else its config's; none of `searched` (set per trial)."""
    config = record.get("config") or {}
    best = next(
        (t for t in record.get("trials") or [] if t["index"] == record.get("best_trial")), None
    )
    own = {config_path(p): v for p, v in ((best or {}).get("params") or {}).items()}
    found = {}
    for section, field in (("data", "batch_size"), ("data", "augment"), ("train", "steps")):
        found[f"{section}.{field}"] = (config.get(section) or {}).get(field)
    for section, values in config.items():
        if isinstance(values, dict) and section not in ("search", "study"):
            for field, value in values.items():
                if "dropout" in field:
                    found[f"{section}.{field}"] = value
    found.update({p: v for p, v in own.items() if p in found or is_noise_source(p)})
    found = {p: v for p, v in found.items() if v is not None and p not in searched}
    if AUGMENT not in found and AUGMENT not in searched and config.get("data"):
        found[AUGMENT] = AUGMENT_NONE  # the default
    return found


def check_gradient_noise(study: StudyData) -> list[Finding]:
    """Info when the best trials are still improving at the end (check_not_converged) and the
    study adds gradient noise: against its parent at the same train.steps (noisier settings), or
    by comparing a noise source (batch size, augmentation, dropout) as scientific."""
    not_converged = check_not_converged(study)
    if not not_converged:
        return []
    trials = not_converged[0].trials
    findings = []
    parent_changes = _against_parent(study)
    if parent_changes:
        parent = (study.parent or {}).get("study")
        findings.append(
            Finding(
                "gradient_noise",
                "info",
                "More gradient noise than the parent at the same train.steps, and the best trials "
                "are still improving",
                f"Against its parent study {parent}, this study trains with "
                f"{'; '.join(parent_changes)} but the same train.steps. The playbook: anything "
                "that increases gradient noise (a smaller batch size, data augmentation, dropout) "
                "slows training and may need more steps, which the still-improving best trials "
                "suggest.",
                _action(study),
                trials,
            )
        )
    scientific = [p for p in study.space.by_role("scientific") if is_noise_source(p.path)]
    if scientific:
        best = study.feasible[0]
        values = ", ".join(f"{p.path}={fmt(best.params.get(p.path))}" for p in scientific)
        findings.append(
            Finding(
                "gradient_noise",
                "info",
                "Settings that add gradient noise are compared at one train.steps while the best "
                "trials are still improving",
                f"This study compares {', '.join(p.path for p in scientific)} (scientific), and "
                f"its best trials, led by trial {best.index} ({values}), were still improving at "
                "the end. The playbook: a smaller batch size, data augmentation or more dropout "
                "may need more steps, so at a shared train.steps the noisier settings are cut "
                "shorter than the others and the comparison may favour the quieter ones.",
                _action(study) + "; then compare the scientific settings again",
                trials,
                param=scientific[0].path,
            )
        )
    return findings


def steps_hint(config_file: str | None) -> str:
    """The command that measures the steps a study file needs, with what it leaves out."""
    return (
        f"{STEPS_COMMAND} --config {config_file or 'STUDY_FILE'} --workdir WORKDIR measures the "
        "steps at its batch size (it runs without dropout and augmentation, so with them expect "
        "more)"
    )


def _against_parent(study: StudyData) -> list[str]:
    """How the study adds gradient noise against its parent at the same train.steps ([] when
    it has no parent in its store, or trains for another number of steps)."""
    name = (study.parent or {}).get("study")
    record = next((r for r in study.family if r["name"] == name), None)
    if record is None:
        return []
    searched = set(study.space.paths) | study.space.config_paths
    own = {p: v for p, v in settings(study.record).items() if p not in searched}
    theirs = settings(record)
    if own.get(TRAIN_STEPS) is None or own.get(TRAIN_STEPS) != theirs.get(TRAIN_STEPS):
        return []
    return noisier(theirs, own)


def _action(study: StudyData) -> str:
    """Raise train.steps: how far (jaxplay.steps), or the best configurations twice as long."""
    config_file = study.record.get("config_path") or "STUDY_FILE"
    return (
        "raise train.steps for every trial: "
        + steps_hint(config_file)
        + f"; or train the best configurations twice as long: python -m jaxplay.sweep --config "
        f"{config_file} --workdir WORKDIR --from_study {study.name} --lineage promote "
        "--steps_factor 2"
    )


def _parts(augment: str) -> set[str]:
    return set() if augment == AUGMENT_NONE else set(augment.split("_"))
