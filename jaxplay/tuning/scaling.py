"""`--lineage batch_size --batch_size N`: the parent's study re-tuned from scratch at batch size N.

The playbook ("Choosing the batch size to minimize training time") finds the batch size that
trains fastest experimentally: the steps needed to reach a result fall with the batch size up to
a critical batch size, then less, then not at all. Comparing batch sizes is fair only with each
"fully tuned on its own" (its FAQ on tuning the batch size): changing it "typically requires
starting the tuning process all over again", the optimizer's and the regularizers' hyperparameters
above all (analysis.diagnostics.batch_size.batch_sensitive). So the child keeps the parent's whole
search space and trial budget, searched again at N, with data.batch_size fixed at N (taken out of
the search if the parent searched it) and the study file's step budget (train.steps, the parent's
when run from the same study file; `--config.train.steps=S` gives another).

`python -m jaxplay.studies scaling --study PARENT` (jaxplay.analysis.scaling) then reads, for each
batch size of the family, the steps its best trial needed to reach a common target.
"""

from __future__ import annotations

from jaxplay import config as config_lib
from jaxplay import spaces
from jaxplay.analysis.diagnostics.batch_size import (
    LEARNING_RATE,
    batch_sensitive,
    sensitive_text,
    tunes_every_trial,
)
from jaxplay.analysis.record import BATCH_SIZE, batch_size_of, config_path
from jaxplay.errors import ConfigError
from jaxplay.tuning.derivation import Derivation, Option

ACTION = "batch_size"


def retune_at_batch_size(child, parent, opts) -> list[str]:
    """Edits the child (the parent's search space inherited) to re-tune the parent's study at
    batch size opts['batch_size']; returns the changes in words."""
    size = opts["batch_size"]
    if size is None:
        raise ConfigError(
            "--batch_size: give the batch size to re-tune the parent's study at, e.g. "
            "--lineage batch_size --batch_size 256"
        )
    old = batch_size_of(parent.record)
    if size == old:
        raise ConfigError(
            f"--batch_size: {size} is the batch size {parent.name} was tuned at; pass another "
            f"one (e.g. {2 * size}) to compare batch sizes"
        )
    unsearched = _take_out_of_search(child)
    budget = (parent.record.get("config") or {}).get("study", {}).get("num_trials")
    with child.unlocked():
        child.data.batch_size = size
        if budget is not None:  # the same search budget as the parent's: a fair comparison
            child.study.num_trials = budget
    space = spaces.parse(config_lib.to_tree(child).get("search"))
    sensitive = sorted({p.config_path for p in space if batch_sensitive(p.path)})
    changes = [
        f"{BATCH_SIZE}: {old if old is not None else '?'} -> {size}, fixed"
        + (f" (taken out of the search: {unsearched})" if unsearched else "")
    ]
    changes.append(
        f"search: the parent's space and budget ({child.study.num_trials} trials) searched again "
        f"from scratch at batch size {size}"
        + (f", its batch-sensitive {sensitive_text(sensitive)} included" if sensitive else "")
        + " (the playbook compares batch sizes only with each fully tuned on its own)"
    )
    if not tunes_every_trial(space, LEARNING_RATE):
        changes.append(
            f"caution: the parent does not search {LEARNING_RATE} as a nuisance hyperparameter, "
            f"so batch size {size} runs at the learning rate tuned for {old}: search it in the "
            "study file for a fair comparison"
        )
    changes.append(_budget_line(child, parent, old, size))
    return changes


def _take_out_of_search(child) -> str:
    """Removes data.batch_size from the child's search space (and from manual trials' values);
    returns what was removed in words ('' for nothing). A batch size searched inside a branch of
    a conditional space is refused: the branch's other values would be tuned at several sizes."""
    tree = config_lib.to_tree(child)
    space = spaces.parse(tree.get("search"))
    nested = [p.path for p in space if p.config_path == BATCH_SIZE and p.path != BATCH_SIZE]
    nested += [switch for switch, _, path, _ in space.fixed if config_path(path) == BATCH_SIZE]
    if nested:
        raise ConfigError(
            f"search.{nested[0]}: the parent sets data.batch_size per branch; derive the "
            "batch-size study from a study of one branch (e.g. exported with studies export "
            "--format study)"
        )
    removed = []
    with child.unlocked():
        data = (child.get("search") or {}).get("data")
        if data is not None and BATCH_SIZE.split(".")[1] in data:
            removed.append(f"search.{BATCH_SIZE}")
            del data[BATCH_SIZE.split(".")[1]]
            if not data:
                del child.search["data"]
        listed = child.study.get("trials")
        if listed:
            kept = [{k: v for k, v in t.items() if config_path(k) != BATCH_SIZE} for t in listed]
            if kept != [dict(t) for t in listed]:
                removed.append(f"the {BATCH_SIZE} of study.trials")
                child.study.trials = kept
    return " and ".join(removed)


def _budget_line(child, parent, old: int | None, size: int) -> str:
    """The child's step budget beside the parent's, with both examples budgets (playbook: the
    kind of budget decides what a batch-size comparison can show)."""
    steps, theirs = int(child.train.steps), parent.train_steps
    examples = f"examples budget {steps * size}"
    if old is not None and theirs is not None:
        examples += f" against the parent's {theirs * old}"
    if theirs is None or steps == theirs:
        return f"train.steps: {steps}, the parent's step budget kept ({examples})"
    return (
        f"train.steps: {theirs} -> {steps} (the study file or --config.train.steps sets another "
        f"step budget than the parent's; {examples})"
    )


def _child_name(parent: str, child) -> str:
    return f"{parent}-bs{child.data.batch_size}"


# The registry entry: jaxplay.tuning.actions.ACTIONS["batch_size"].
BATCH_SIZE_STUDY = Derivation(
    ACTION,
    "the parent's study re-tuned from scratch at --batch_size N (its search space and budget, "
    "data.batch_size fixed at N): one fully tuned study per batch size",
    retune_at_batch_size,
    lambda parent, o, child: f"{parent} re-tuned at batch size {o['batch_size']}",
    child_name=_child_name,
    options=(
        Option(
            "batch_size", int, None, "N: the batch size to re-tune the parent's study at", minimum=1
        ),
    ),  # fmt: skip
)
