"""The end of the tuning loop: the chosen trial scored once on the test set, and exported as a
study file of its own or as a model to load without jaxplay.

The playbook keeps the test set for the end: `evaluate` restores a trial's best checkpoint (by
default the study's best trial), scores a split (by default 'test'), and records the result in
the store as the study's final evaluation (a probe of kind 'final_evaluation': split, trial,
step, metrics, when), which `studies show`, its JSON and the report show as the final number.
Scoring the test set a second time is refused unless asked for (`again`): a number chosen after
looking at the test set twice is no longer a test number.

`export_study_file` writes the trial as a standalone study file (its values fixed, nothing
searched) that `python -m jaxplay.sweep --config FILE` trains as is, seed included.
`export_model` writes its best checkpoint's forward pass as a serialized `jax.export` artifact
(the playbook's "exportable artifacts" for ad-hoc inspection): jax alone loads and runs it.

The trial is rebuilt from the study's recorded config and its recorded values. The code it runs
comes from code: a registered workload by name, or, for a study that ran its own workload
('package.module:name'), the study file passed as `config`.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import pprint

import ml_collections

from jaxplay import analysis, paths, spec, train, workloads
from jaxplay import config as config_lib
from jaxplay import store as store_lib
from jaxplay.errors import ConfigError
from jaxplay.tuning import derivation

KIND = "final_evaluation"


def evaluate(
    url: str,
    study: str | None = None,
    trial: int | None = None,
    split: str = "test",
    *,
    again: bool = False,
    config=None,
    command: str = "",
) -> dict:
    """Scores trial `trial` (default: the study's best) of the study in store `url` on `split`
    from its best checkpoint and records it as the study's final evaluation; returns the record
    (split, trial, step, metrics, when)."""
    data = analysis.load(store=url, study=study)
    chosen = _trial(data, trial)
    trial_spec = _trial_spec(data, chosen, config)
    splits = sorted(workloads.bind(trial_spec).dataset.splits)
    if split not in splits:
        raise ConfigError(f"--split {split}: this study's dataset has {', '.join(splits)}")
    if split == "test" and not again:
        done = [p for p in data.probes if p["kind"] == KIND and p["result"]["split"] == "test"]
        if done:
            first = done[-1]["result"]
            raise ConfigError(
                f"--split test: study {data.name!r} was scored on the test set already (trial "
                f"{first['trial']}, {first['when']}); the playbook scores it once, at the end. "
                "Pass --again to score it again (both are recorded)"
            )
    folder = chosen_folder(data, chosen)
    metrics = train.evaluate_checkpoint(trial_spec, folder, split=split)
    result = {
        "split": split,
        "trial": chosen.index,
        "step": chosen.best_step,
        "metrics": metrics,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "again": bool(again),
    }
    store = store_lib.Store(url)
    try:
        store.add_probe(
            data.name, KIND, config={"trial": chosen.index, "split": split}, result=result,
            device_kind=data.record.get("device_kind") or "", command=command,
        )  # fmt: skip
    finally:
        store.close()
    return result


def export_study_file(
    url: str, path, study: str | None = None, trial: int | None = None, *, config=None
) -> pathlib.Path:
    """Writes trial `trial` (default: the study's best) as a study file at `path`: the study's
    recorded config with the trial's values fixed, nothing searched, one trial; returns the
    path."""
    data = analysis.load(store=url, study=study)
    chosen = _trial(data, trial)
    tree = _config_tree(data, config)
    tree = config_lib.apply({k: v for k, v in tree.items() if k != "search"}, chosen.params)
    name = f"{data.name}-trial{chosen.index}"
    spec.check_study_name(name, "the exported study's name")
    settings = tree.get("study") or {}
    tree["study"] = {
        key: settings[key] for key in ("objective", "mode", "seed") if key in settings
    } | {
        "name": name,
        "notes": f"trial {chosen.index} of {data.name}, exported with its values fixed",
        "algorithm": "quasirandom",
        "num_trials": 1,
    }
    tree["search"] = {}
    spec.resolve(ml_collections.ConfigDict(tree))  # what it writes runs as is
    values = ", ".join(f"{k}={v!r}" for k, v in chosen.params.items()) or "none searched"
    text = (
        f'"""Trial {chosen.index} of study {data.name!r}, its values fixed ({values}).\n\n'
        f"Its {data.objective} was {chosen.best_value!r} at step {chosen.best_step}. Train it "
        "again (same seed, same program):\n\n"
        f"  python -m jaxplay.sweep --config {pathlib.Path(path).name} --workdir runs/{name}\n"
        '"""\n\n'
        "import ml_collections\n\n"
        f"CONFIG = {pprint.pformat(tree, indent=1, width=96, sort_dicts=False)}\n\n\n"
        "def get_config(arg=None):\n"
        "    return ml_collections.ConfigDict(CONFIG)\n"
    )
    out = paths.folder(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def export_model(
    url: str, path, study: str | None = None, trial: int | None = None, *, config=None
) -> pathlib.Path:
    """Writes trial `trial`'s (default: the study's best) model at its best checkpoint to `path`
    as serialized `jax.export` bytes (the forward pass in evaluation mode, weights inside, any
    batch size); returns the path."""
    data = analysis.load(store=url, study=study)
    chosen = _trial(data, trial)
    exported = train.export_model(_trial_spec(data, chosen, config), chosen_folder(data, chosen))
    out = paths.folder(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")  # a crash leaves no half-written model
    partial.write_bytes(exported.serialize())
    partial.replace(out)
    return out


def _trial(data, index: int | None):
    """The trial to use: `index`, else the study's best; it must have a best checkpoint."""
    if index is None:
        index = data.record.get("best_trial")
        if index is None:
            raise ConfigError(
                f"--trial: study {data.name!r} has no completed trial with a finite "
                f"{data.objective} yet; finish it first or name a trial with --trial N"
            )
    by_index = {t.index: t for t in data.trials}
    if index not in by_index:
        raise ConfigError(
            f"--trial {index}: study {data.name!r} has trials 0..{len(data.trials) - 1}"
        )
    chosen = by_index[index]
    if chosen.best_step is None:
        raise ConfigError(
            f"--trial {index}: it is {chosen.status} with no best checkpoint; pick a completed "
            "trial (studies show lists them, best first)"
        )
    return chosen


def _trial_spec(data, chosen, config):
    """The chosen trial resolved from the study's recorded config and its recorded values."""
    tree = _config_tree(data, config)
    study_spec = spec.resolve(ml_collections.ConfigDict(tree))
    derivation.stored_params(data, chosen)  # the values set hyperparameters the study declares
    return study_spec.trial(chosen.params)


def _config_tree(data, config) -> dict:
    """The study's recorded config; its own workload's import path from the study file."""
    tree = json.loads(json.dumps(data.record.get("config") or {}))
    if not tree:
        raise ConfigError(f"study {data.name!r}: its record holds no config to rebuild it from")
    workload = tree.get("workload", workloads.DEFAULT)
    if workload in workloads.REGISTRY:
        return tree
    if config is None:
        raise ConfigError(
            f"study {data.name!r} ran its own workload {workload!r}: pass --config FILE, the "
            "study file, so the code to run comes from it (never from the store)"
        )
    given = config.get("workload", workloads.DEFAULT)
    if given != workload:
        raise ConfigError(
            f"--config: its workload is {given!r} but the study ran {workload!r}; pass the "
            "study file the study ran"
        )
    return tree


def chosen_folder(data, chosen) -> pathlib.Path:
    """The trial's folder (the one holding its checkpoints), from its record."""
    recorded = next(
        (t.get("checkpoint_dir") for t in data.record["trials"] if t["index"] == chosen.index),
        None,
    )
    if not recorded:
        raise ConfigError(
            f"--trial {chosen.index}: the store has no checkpoint folder for it; was it trained "
            "by this store's sweep?"
        )
    folder = paths.folder(recorded)
    return folder.parent if folder.name == "checkpoints" else folder
