"""The playbook's rules of thumb for the roles of hyperparameters ("Identifying scientific,
nuisance, and fixed hyperparameters"), as lint findings on a study's search space:

  * the *choice* of optimizer is scientific or fixed, never a nuisance hyperparameter;
  * optimizer hyperparameters "must be tuned separately" for each scientific setting "and thus
    shouldn't be fixed": at least the learning rate is searched in every trial while scientific
    values are compared (check_adam_budget already says so for an Adam-family study that does
    not search it at all, and check_batch_size for a scientific batch size; this check covers
    every other optimizer and every other scientific hyperparameter);
  * for a regularizer, *whether to use it* is scientific, its rate a nuisance hyperparameter
    ("no dropout" vs "dropout" scientific, the dropout rate nuisance);
  * architectural hyperparameters are often scientific or fixed: they change the cost of a
    trial (speed, memory), which a nuisance hyperparameter should not.
"""

from __future__ import annotations

from jaxplay import spaces
from jaxplay.analysis.diagnostics.batch_size import (
    BATCH_SIZE,
    LEARNING_RATE,
    VALIDATION,
    is_regularizer,
    tunes_every_trial,
)
from jaxplay.analysis.diagnostics.common import Finding, is_number
from jaxplay.analysis.diagnostics.training_setup import ADAM_FAMILY
from jaxplay.analysis.study import StudyData
from jaxplay.values import fmt

OPTIMIZER = "optimizer"
OPTIMIZER_NAME = "optimizer.name"
MODEL = "model"
# Derived studies that fix the learning rate on purpose: they ask what lets it be that high.
FIXED_LEARNING_RATE_ACTIONS = ("warmup", "clip")


def check_roles(study: StudyData) -> list[Finding]:
    """Lint findings where a study's roles go against the playbook's rules of thumb: the optimizer
    choice searched as nuisance (warning); the learning rate not searched in every trial while
    scientific values are compared (warning); a regularizer's rate scientific (info); an
    architectural hyperparameter nuisance (info)."""
    if not len(study.space):
        return []
    return [
        *_optimizer_choice(study),
        *_fixed_learning_rate(study),
        *_regularizer_rates(study),
        *_architecture(study),
    ]


def optimizer_names(study: StudyData) -> list[str]:
    """The optimizers the study's trials train with: the searched choices (optimizer.name or the
    branches of the optimizer section), else the fixed optimizer.name."""
    choice = next((p for p in study.space if p.path in (OPTIMIZER_NAME, OPTIMIZER)), None)
    if choice is not None:
        return [str(v) for v in choice.values]
    name = ((study.record.get("config") or {}).get(OPTIMIZER) or {}).get("name")
    return [name] if name else []


def _optimizer_choice(study: StudyData) -> list[Finding]:
    """The optimizer's name (or the branch of the optimizer section) searched as nuisance."""
    choice = next((p for p in study.space if p.path in (OPTIMIZER_NAME, OPTIMIZER)), None)
    if choice is None or choice.role != "nuisance":
        return []
    how = (
        "spaces.branches(role='scientific', ...)"
        if choice.path == OPTIMIZER
        else "role='scientific'"
    )
    return [
        Finding(
            "roles",
            "warning",
            "The choice of optimizer is a nuisance hyperparameter",
            f"This study searches {choice.path} ({', '.join(map(str, choice.values))}) as a "
            "nuisance hyperparameter, so each trial's optimizer is picked by the search like a "
            "learning rate. The playbook: the choice of optimizer is scientific or fixed, and "
            "each optimizer has its own hyperparameters whose good ranges differ by orders of "
            "magnitude.",
            f"make {choice.path} scientific ({how}) with each optimizer's own hyperparameters "
            "searched as nuisance in its branch, or fix optimizer.name at one optimizer",
            param=choice.path,
        )
    ]


def _fixed_learning_rate(study: StudyData) -> list[Finding]:
    """The learning rate not searched in every trial while other scientific values are
    compared; left to check_adam_budget (an Adam-family study that does not search it) and
    check_batch_size (a scientific batch size alone)."""
    if (study.parent or {}).get("action") in FIXED_LEARNING_RATE_ACTIONS:
        return []
    compared = [
        p
        for p in study.space.by_role("scientific")
        if p.config_path != LEARNING_RATE
        and not (p.config_path == BATCH_SIZE and study.objective.startswith(VALIDATION))
    ]
    if not compared:
        return []
    space = study.space
    if tunes_every_trial(space, LEARNING_RATE) or tunes_every_trial(
        space, LEARNING_RATE, "scientific"
    ):
        return []
    searched = [p for p in space if p.config_path == LEARNING_RATE]
    names = optimizer_names(study)
    if not searched and names and all(n in ADAM_FAMILY for n in names):
        return []  # check_adam_budget warns about exactly this
    if searched:
        branches = ", ".join(sorted({str(p.when[1]) for p in searched if p.when}))
        how = f"searched only in the {branches} branch(es) of {searched[0].when[0]}"
    else:
        value = study.fixed.get(LEARNING_RATE)
        how = f"fixed at {fmt(value)}" if value is not None else "not searched"
    what = ", ".join(p.path for p in compared)
    return [
        Finding(
            "roles",
            "warning",
            "The learning rate is fixed while scientific values are compared",
            f"This study compares {what} (scientific) with optimizer.learning_rate {how} "
            f"(optimizer: {', '.join(names) or 'default'}). The playbook: optimizer "
            'hyperparameters "must be tuned separately for each of the scientific parameter '
            "settings\" and shouldn't be fixed; at one learning rate the comparison favours "
            "the setting that learning rate happens to suit.",
            "search optimizer.learning_rate (log scale) as a nuisance hyperparameter in every "
            "trial (in every branch of a switch), so that each scientific setting is compared at "
            "its own best learning rate",
            param=LEARNING_RATE,
        )
    ]


def _regularizer_rates(study: StudyData) -> list[Finding]:
    """A regularizer's rate searched as scientific: a continuous range, or more than one
    non-zero value (a presence question is 'off' against one rate)."""
    findings = []
    for p in study.space.by_role("scientific"):
        if not is_regularizer(p.path) or not _is_rate(p):
            continue
        findings.append(
            Finding(
                "roles",
                "info",
                f"{p.path} is scientific as a rate",
                f"This study compares values of the regularizer {p.path} ({_values(p)}) as "
                "scientific. The playbook: whether to use a regularizer is scientific, its rate "
                'a nuisance hyperparameter ("no dropout" vs "dropout" scientific, the dropout '
                "rate nuisance): a rate compared at fixed other values measures how well each "
                "rate suits them, not whether the technique helps.",
                f"ask the presence question instead: one study with {p.config_path} fixed at 0 "
                f"and one that searches {p.config_path} as a nuisance hyperparameter, compared "
                "with `python -m jaxplay.studies compare --study A --other B`; keep it "
                "scientific only if the best rate itself is the question",
                param=p.path,
            )
        )
    return findings


def _architecture(study: StudyData) -> list[Finding]:
    """Architectural hyperparameters (model.*, regularizers aside, or the model section's
    branch) searched as nuisance."""
    found = [
        p
        for p in study.space.by_role("nuisance")
        if (p.config_path == MODEL or p.config_path.startswith(f"{MODEL}."))
        and not is_regularizer(p.path)
    ]
    if not found:
        return []
    what = ", ".join(p.path for p in found)
    return [
        Finding(
            "roles",
            "info",
            f"Architectural hyperparameters are nuisance: {what}",
            f"This study searches {what} as nuisance hyperparameters. The playbook: "
            "architectural hyperparameters are often scientific or fixed, since they change "
            "what a trial costs (its speed and memory, e.g. the number of layers); as nuisance "
            "the search may favour the costlier models, and the study's trials differ in cost.",
            "make them scientific if the architecture is part of the question, else fix them for "
            "this round (the report lists fixed values as caveats)",
            param=found[0].path,
        )
    ]


def _is_rate(p: spaces.Hyperparameter) -> bool:
    """True for a range of rates (float/int) or a list with more than one non-zero number."""
    if p.space in ("float", "int"):
        return True
    if p.space != "discrete":
        return False
    return len({v for v in p.values if is_number(v) and v != 0}) > 1


def _values(p: spaces.Hyperparameter) -> str:
    if p.values is not None:
        return ", ".join(map(fmt, p.values))
    return f"{p.scale} [{fmt(p.min)}, {fmt(p.max)}]"
