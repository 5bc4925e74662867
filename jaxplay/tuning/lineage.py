"""Study lineage: a study that starts from another one (the playbook's rounds and procedures).

The playbook's tuning loop is a chain of studies: explore with quasi-random search in short
round-1 runs, refine the search space, exploit with Bayesian optimization, then a few long round-2
runs on the best points; reruns and reseeds measure the noise. `python -m jaxplay.sweep --config X
--from_study PARENT --lineage ACTION` (or `c.study.parent = dict(study=PARENT, action=ACTION, ...)`
in a study file) derives the new study from the parent's record in the same store. `REGISTRY`
holds every derivation: the actions that read a parent's results (jaxplay.tuning.actions) and the
max_train_steps sweep (jaxplay.tuning.steps), which reads only the study file.
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections

from jaxplay import store as store_lib
from jaxplay.analysis.study import StudyData
from jaxplay.errors import ConfigError, StoreError, StoreUnavailable
from jaxplay.tuning.actions import ACTIONS
from jaxplay.tuning.derivation import Derivation, derive
from jaxplay.tuning.steps import STEPS

REGISTRY: dict[str, Derivation] = {**ACTIONS, STEPS.name: STEPS}


def from_parent(
    config,
    store_url: str,
    parent: str,
    action: str,
    options: Mapping,
    *,
    where=lambda key: f"--{key}",
    name: str | None = None,
    notes: str | None = None,
) -> dict:
    """The child of study `parent` (in the store at `store_url`) by `action`, as a config tree.
    `options` are the action's settings as given (`where` names one in an error); the child is
    named `name`, else '<parent>-<action>', and its notes say what it is, plus `notes`."""
    derivation, resolved = check(action, options, where)
    store = store_lib.Store(store_url, readonly=True)  # the parent is only read
    try:
        try:
            parent_id = store.study_id(parent)
        except StoreUnavailable:
            raise  # the store failed, not the flag
        except StoreError as e:  # it names the studies there are
            raise ConfigError(f"--from_study: {e}") from None
        data = StudyData.from_record(store.record(parent_id), store.study_curves(parent_id))
    finally:
        store.close()
    if notes and notes == data.record.get("notes"):
        notes = None  # the study file describes its parent's question, not the child's
    # The child's name comes from the command line (or name=), or from a study file that
    # declares its parent.
    name_field = "--config.study.name" if where("name").startswith("--") else "study.name"
    return derive(
        config, derivation, resolved, data, parent_name=parent, name=name, notes=notes,
        name_field=name_field,
    )  # fmt: skip


def check(action: str, options: Mapping, where=lambda key: f"--{key}") -> tuple:
    """(the Derivation, its options checked and filled in) for a lineage action and the options
    given for it; an unknown action or an option it does not take is refused."""
    if action not in ACTIONS:
        field = "--lineage" if where("action").startswith("--") else where("action")
        raise ConfigError(f"{field}: unknown action {action!r}; use one of {', '.join(ACTIONS)}")
    derivation = ACTIONS[action]
    return derivation, derivation.resolve_options(dict(options), where)


def declared_parent(config, store_url: str) -> dict:
    """The child a study file declares with `c.study.parent = dict(study=..., action=..., ...)`:
    named and described by the file unless its name or notes are the parent's."""
    link = config.study.parent
    if not isinstance(link, (Mapping, ml_collections.ConfigDict)):
        raise ConfigError(f"study.parent: give a dict, e.g. dict(study={link!r}, action='promote')")
    link = dict(link.items())
    parent = link.pop("study", None)
    action = link.pop("action", None)
    if not isinstance(parent, str) or not parent:
        raise ConfigError(
            "study.parent.study: name the parent study, e.g. dict(study='mnist1d-mlp-width', "
            "action='promote')"
        )
    with config.unlocked():
        config.study.parent = None
    return from_parent(
        config,
        store_url,
        parent,
        action,
        link,
        where=lambda key: f"study.parent.{key}",
        name=config.study.name if config.study.name != parent else None,
        notes=config.study.get("notes") or None,
    )
