"""How a study derives from another: one `Derivation` per playbook procedure, and `derive`, which
applies one to a study file's config.

The child is the study file's config (so round 2 may change fixed settings, which the lineage
lists as caveats) with, for the procedures that read a parent's results, the parent's search space
and the procedure's changes. The derivation is deterministic given the parent's finished trials,
so rerunning the same command continues the same child study. The child records its link,
`study.parent = {study, action, <options>, changes}`: reports show it, `studies compare` weighs
reruns and reseeds as noise.

A child at another batch size than its parent's result says which inherited hyperparameters are
stale there (playbook: changing the batch size "typically requires starting the tuning process all
over again"; the optimizer's and the regularizers' hyperparameters interact most with it). A
child that adds gradient noise (a smaller batch size, more augmentation or dropout) at its
parent's train.steps says to revisit train.steps (playbook: such changes may need more steps).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import ml_collections

from jaxplay import config as config_lib
from jaxplay import spaces
from jaxplay.analysis.diagnostics.batch_size import batch_sensitive, is_regularizer, sensitive_text
from jaxplay.analysis.diagnostics.gradient_noise import TRAIN_STEPS, noisier, settings, steps_hint
from jaxplay.analysis.record import BATCH_SIZE, batch_size_of, config_path
from jaxplay.errors import ConfigError, StoreError
from jaxplay.spec.sections import check_study_name
from jaxplay.values import fmt, is_int, is_real


@dataclasses.dataclass(frozen=True)
class Option:
    """A setting of a derivation: a command-line flag `--<name>`, or a key of `study.parent`."""

    name: str
    kind: type  # int, float, bool, str or list (comma-separated on the command line)
    default: object
    help: str
    minimum: float | None = None  # numbers: the smallest value allowed (floats: always > 0)

    def check(self, value, where: str):
        """The value, checked; `where` names it in the error ('--top_k', 'study.parent.top_k')."""
        if value is None:
            return value
        low = self.minimum
        if self.kind is int and not (is_int(value) and (low is None or value >= low)):
            raise ConfigError(f"{where}: must be an int >= {low:g} (got {value!r})")
        if self.kind is float:
            if not (is_real(value) and value > 0 and (low is None or value >= low)):
                bound = f">= {low:g}" if low else "> 0"
                raise ConfigError(f"{where}: must be a number {bound} (got {value!r})")
            return float(value)
        return value


@dataclasses.dataclass(frozen=True)
class Derivation:
    """A playbook procedure that derives a study: its name (--lineage NAME), what it changes, its
    options, and how it edits the child config."""

    name: str
    changes: str  # what it does, in a line (the --help of --lineage)
    apply: Callable  # (child ConfigDict, parent StudyData or None, options) -> [change in words]
    summary: Callable  # (parent name, options, child) -> the child's notes
    child_name: Callable = None  # (parent name, child) -> name; default '<parent>-<name>'
    options: tuple[Option, ...] = ()
    reads_results: bool = True  # needs the parent's finished trials (and inherits its space)
    needs_feasible: bool = True  # ...and at least one feasible one
    same_objective: bool = True  # the child must optimize the parent's objective

    def resolve_options(self, given: dict, where: Callable[[str], str]) -> dict:
        """Every option of this derivation, given or default, checked; an option it does not take
        is refused with what it applies to."""
        known = {o.name: o for o in self.options}
        for key in given:
            if key not in known:
                takes = ", ".join(sorted(known)) or "no options"
                raise ConfigError(f"{where(key)}: --lineage {self.name} takes {takes}")
        return {o.name: o.check(given.get(o.name, o.default), where(o.name)) for o in self.options}


def derive(
    config,
    derivation: Derivation,
    options: dict,
    parent,
    *,
    parent_name: str,
    name: str | None = None,
    notes: str | None = None,
    name_field: str = "--config.study.name",
) -> dict:
    """The child study's config (a JSON tree) of `parent` (a StudyData, or None for a derivation
    that reads no results) by `derivation`. The child is named `name`, else '<parent>-<action>';
    its notes say what it is, plus `notes` when given. `name_field` names where a name comes from
    (the flag, or study.name of a study file) when it is not a valid study name."""
    action = derivation.name
    if derivation.reads_results:
        _check_parent(parent, derivation)
    child = copy.deepcopy(config)
    with child.unlocked():
        child.study.parent = None
    changes = []
    if parent is not None:
        parent_config = parent.record.get("config") or {}
        changes += _fixed_differences(parent_config, child)
        if derivation.same_objective and (
            child.study.objective != parent.objective or child.study.mode != parent.mode
        ):
            raise ConfigError(
                f"study.objective: the parent optimized {parent.objective} ({parent.mode}) but "
                f"this study {child.study.objective} ({child.study.mode}); use the same objective"
            )
        _inherit_search(child, parent_config)
    changes += derivation.apply(child, parent, options)
    if parent is not None:
        changes = _batch_size_caveat(changes, parent, child, action)
        changes = _steps_caveat(changes, parent, child)
    summary = derivation.summary(parent_name, options, child)
    with child.unlocked():
        child.study.notes = f"{summary}; {notes}" if notes else summary
        if name is None:
            name = (derivation.child_name or _default_name(action))(parent_name, child)
            # The parent's name plus a suffix can outgrow the rule the parent's name passed.
            check_study_name(
                name,
                name_field,
                fix=f"that is the name derived from the parent's; name the child with "
                f"{name_field}=NAME",
            )
        else:
            check_study_name(name, name_field)
        child.study.name = name
        link = {"study": parent_name, "action": action, **options, "changes": changes}
        child.study.parent = ml_collections.ConfigDict(link)
    return config_lib.to_tree(child)


def _check_parent(parent, derivation: Derivation) -> None:
    unfinished = [t.index for t in parent.trials if t.status in ("pending", "running")]
    if unfinished:
        raise ConfigError(
            f"--from_study {parent.name}: trials {unfinished} have not finished; finish the "
            "parent first (rerun its sweep command), since the derived study depends on every "
            "result"
        )
    if derivation.needs_feasible and not parent.feasible:
        raise ConfigError(
            f"--from_study {parent.name}: no feasible trial to start from; fix the parent's "
            "search space first (see its report)"
        )


def stored_params(parent, trial) -> dict:
    """A parent trial's values as the store holds them, checked before any reaches the child:
    each must set a path the parent declares (its searched hyperparameters, or the paths its
    manual trials list) and be a hyperparameter. The store is data, not code: a record that says
    otherwise (a `workload` import path above all) was not written by the parent's sweep, and a
    value read from it never picks the code to run."""
    study = (parent.record.get("config") or {}).get("study") or {}
    listed = study.get("trials") if isinstance(study.get("trials"), list) else []
    declared = set(parent.space.paths) | {p for t in listed if isinstance(t, dict) for p in t}
    declared |= {path for _, _, path, _ in parent.space.fixed}  # a branch's fixed values
    for path in trial.params:
        problem = config_lib.not_a_hyperparameter(path)
        if problem is None and path not in declared:
            problem = f"the study declares only {', '.join(sorted(declared)) or 'no values'}"
        if problem:
            raise StoreError(
                f"--from_study {parent.name}: trial {trial.index}'s stored values set {path!r} "
                f"({problem}); the record was not written by its sweep, so nothing is derived "
                "from it"
            )
    return dict(trial.params)


def _inherit_search(child, parent_config: dict) -> None:
    """The parent's search space and designer settings (the child explores the same question)."""
    study = parent_config.get("study") or {}
    with child.unlocked():
        child.search = ml_collections.ConfigDict(parent_config.get("search") or {})
        child.study.algorithm = study.get("algorithm", child.study.algorithm)
        child.study.seed = study.get("seed", child.study.seed)
        for key in ("trials", "acquisition", "initial_trials"):
            if key in study and key not in child.study:
                child.study[key] = copy.deepcopy(study[key])


def _default_name(action: str) -> Callable:
    return lambda parent_name, child: f"{parent_name}-{action}"


def _fixed_differences(parent_config: dict, child) -> list[str]:
    """Caveats: fixed values of the study file that differ from the parent's."""
    if not parent_config:
        return []
    # Every base-config leaf of each (nothing searched), both as JSON holds them.
    parent_fixed = config_lib.fixed_hyperparameters(parent_config, spaces.SearchSpace())
    child_fixed = config_lib.fixed_hyperparameters(config_lib.to_tree(child), spaces.SearchSpace())
    return [
        f"{path}: {fmt(parent_fixed.get(path))} -> {fmt(child_fixed.get(path))} (differs from "
        "the parent's config: a caveat when comparing the two)"
        for path in sorted(set(parent_fixed) | set(child_fixed))
        if parent_fixed.get(path) != child_fixed.get(path)
    ]


def _batch_size_caveat(changes: list[str], parent, child, action: str) -> list[str]:
    """The changes, with the data.batch_size line (added when missing) saying what is stale when
    the child trains at another batch size than the parent's result was tuned at."""
    if action == "batch_size":  # it re-tunes the parent's whole space at the new batch size
        return changes
    old = batch_size_of(parent.record)
    tree = config_lib.to_tree(child)
    space = spaces.parse(tree.get("search"))
    listed = (tree.get("study") or {}).get("trials") or []
    if BATCH_SIZE in space.config_paths or any(
        config_path(p) == BATCH_SIZE for t in listed for p in t
    ):
        return changes  # the child's trials set their own batch sizes
    new = (tree.get("data") or {}).get("batch_size")
    if old is None or not is_int(new) or new == old:
        return changes
    tuned = sorted({config_path(p) for p in parent.param_paths if batch_sensitive(p)})
    fixed = config_lib.fixed_hyperparameters(tree, space)
    regularizers = {p: v for p, v in fixed.items() if is_regularizer(p) and p not in tuned}
    inherited = (
        f"{sensitive_text(tuned)} (tuned by the parent)"
        if tuned
        else "the parent's fixed learning rate (it searched none of the optimizer's or "
        "regularizers' hyperparameters)"
    )
    if regularizers:
        inherited += " and the regularizers " + ", ".join(
            f"{p}={fmt(v)}" for p, v in sorted(regularizers.items())
        )
    text = (
        f"the parent's tuning is stale at batch size {new}: the playbook says changing the batch "
        'size "typically requires starting the tuning process all over again", and the '
        "optimizer's and the regularizers' hyperparameters interact most with it. "
    )
    if action == "reseed":
        text += (
            f"This reseed searches the parent's space afresh at {new}, but its ranges of "
            f"{sensitive_text(tuned) or 'the searched hyperparameters'} were set at {old} (watch "
            "the boundary diagnostic), and its spread mixes the batch size's effect with the "
            "search seed's, so it is not counted as study variance"
        )
    else:
        text += f"Inherited from the parent's results at {old}: {inherited}"
        if new > old:
            text += (
                '; larger batches "can be more prone to overfitting and may require stronger '
                'regularization"'
            )
        if action == "rerun":
            text += "; its spread is not counted as trial variance (it measures the batch size too)"
        text += (
            f". Re-tune them at {new}: run the study file as a new study (without --from_study) "
            "that searches optimizer.learning_rate and these as nuisance hyperparameters, or set "
            f"data.batch_size back to {old} to keep the parent's tuning"
        )
    prefix = f"{BATCH_SIZE}: "
    for i, line in enumerate(changes):
        if line.startswith(prefix):
            return [*changes[:i], f"{line}; {text}", *changes[i + 1 :]]
    return [*changes, f"{prefix}{old} (the parent's best trial) -> {new}; {text}"]


def _steps_caveat(changes: list[str], parent, child) -> list[str]:
    """The changes, plus a "revisit train.steps" line when the child keeps its parent's
    train.steps but trains with settings that add gradient noise (gradient_noise.noisier)."""
    tree = config_lib.to_tree(child)
    space = spaces.parse(tree.get("search"))
    listed = (tree.get("study") or {}).get("trials") or []
    searched = set(space.paths) | space.config_paths | {config_path(p) for t in listed for p in t}
    own, theirs = settings({"config": tree}, searched), settings(parent.record)
    steps = own.get(TRAIN_STEPS)
    if steps is None or steps != theirs.get(TRAIN_STEPS):
        return changes  # its trials set their own train.steps, or it already trains for others
    added = noisier(theirs, own)
    if not added:
        return changes
    return [
        *changes,
        f"{TRAIN_STEPS}: {fmt(steps)} as the parent's; revisit train.steps: this study adds "
        f"gradient noise ({'; '.join(added)}), and the playbook says a smaller batch size, data "
        "augmentation or dropout may need more steps. "
        + steps_hint(None)
        + "; or raise train.steps in the study file, or train the parent's best "
        f"configurations longer (--from_study {parent.name} --lineage promote --steps_factor 2)",
    ]
