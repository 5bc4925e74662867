"""Small study configs for tests: real data and models, shrunk so each trial takes ~1 s."""

import ml_collections

from jaxplay import spaces


def tiny_config(**overrides) -> ml_collections.ConfigDict:
    """A 100-step MNIST-1D MLP study with no search space; keyword args set dotted paths."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(name="mnist1d", batch_size=64, val_size=500)
    c.model = dict(name="mlp", width=32, depth=1, activation="relu", dropout=0.0)
    c.optimizer = dict(
        name="adam", learning_rate=3e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0
    )
    c.schedule = dict(name="cosine", warmup_steps=10)
    c.train = dict(steps=100, eval_every=50, keep_best=2, grad_clip_norm=0.0, label_smoothing=0.0)
    c.study = dict(
        name="tiny",
        notes="test",
        objective="val/error",
        mode="min",
        algorithm="quasirandom",
        num_trials=2,
        seed=0,
    )
    c.search = ml_collections.ConfigDict()
    for path, value in overrides.items():
        node = c
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def float_only_study(num_trials=4, **overrides) -> ml_collections.ConfigDict:
    """A study that varies only float hyperparameters (learning rate, b1, smoothing, dropout)."""
    c = tiny_config(**overrides)
    c.study.num_trials = num_trials
    c.search = dict(
        optimizer=dict(learning_rate=spaces.log(1e-3, 1e-2), b1=spaces.linear(0.8, 0.95)),
        train=dict(label_smoothing=spaces.linear(0.0, 0.2)),
        model=dict(dropout=spaces.linear(0.0, 0.3)),
    )
    return c


def constructed_study(
    search: dict,
    trials: list[dict],
    *,
    objective="val/error",
    mode="min",
    steps=1000,
    name="constructed",
    notes="",
    fixed=None,
):
    """A StudyData built by hand, no training: `trials` are dicts with 'params', optional 'status'
    (default 'completed'), 'curves' ({metric: [(step, value), ...]}) and 'error'. best_value and
    best_step come from the objective curve, as the trainer computes them."""
    import math

    from jaxplay.analysis.study import StudyData

    config = {
        "seed": 0,
        "train": {"steps": steps, "eval_every": 100},
        "search": search,
        "optimizer": {"name": "adam", "learning_rate": 1e-3},
        **(fixed or {}),
    }
    records, curves = [], {}
    for i, t in enumerate(trials):
        status = t.get("status", "completed")
        points = [
            (s, v)
            for s, v in t.get("curves", {}).get(objective, [])
            if v is not None and math.isfinite(v)
        ]
        best_step = best_value = None
        if status == "completed" and points:
            pick = min if mode == "min" else max
            best_step, best_value = pick(
                points, key=lambda p: (p[1], p[0]) if mode == "min" else (p[1], -p[0])
            )
        records.append(
            {
                "index": i,
                "status": status,
                "params": t["params"],
                "best_value": best_value,
                "best_step": best_step,
                "steps_run": t.get("steps_run", steps if status == "completed" else None),
                "error": t.get("error"),
                "checkpoint_dir": None,
                "worker": None,
                "final_metrics": {},
                "duration_s": None,
                "started_at": None,
                "finished_at": None,
            }
        )
        curves[i] = t.get("curves", {})
    counts = {
        s: sum(r["status"] == s for r in records)
        for s in ("pending", "running", "completed", "infeasible", "failed")
    }
    feasible = [r for r in records if r["best_value"] is not None]
    best = (
        (min if mode == "min" else max)(feasible, key=lambda r: r["best_value"])
        if feasible
        else None
    )
    record = {
        "name": name,
        "config_path": "experiments/constructed.py",
        "notes": notes,
        "objective": objective,
        "mode": mode,
        "algorithm": "quasirandom",
        "seed": 0,
        "num_trials": len(trials),
        "status_counts": counts,
        "best_value": best and best["best_value"],
        "best_trial": best and best["index"],
        "command": "python -m jaxplay.sweep --config x.py",
        "git_commit": "0" * 40,
        "git_dirty": False,
        "versions": {"jax": "0.10.2", "flax": "0.12.8"},
        "device_kind": "cpu: cpu x1",
        "executor": "sequential",
        "executor_reason": "test",
        "created_at": "2026-01-01T00:00:00",
        "updated_at": "2026-01-01T00:00:00",
        "config": config,
        "trials": records,
    }
    return StudyData.from_record(record, curves)


def write_study_file(path, config) -> str:
    """Writes `config` (a ConfigDict) as a study file at `path`; returns the path as a string,
    for `--config`."""
    import pathlib

    path = pathlib.Path(path)
    path.write_text(
        "import ml_collections\n"
        f"def get_config(arg=None):\n    return ml_collections.ConfigDict({config.to_dict()!r})\n"
    )
    return str(path)


def claimed_trial(store) -> tuple[int, int]:
    """(study id, trial id) of a one-trial study opened in `store`, its trial claimed by worker
    'w': what a store test writes a running trial's rows into."""
    study_id = store.open_study(
        "s", "h", config_path="", config={}, notes="", objective="val/error", mode="min",
        algorithm="manual", seed=0, num_trials=1, command="", versions={}, device_kind="cpu",
    )  # fmt: skip
    store.add_trials(study_id, [{}])
    return study_id, store.claim(study_id, "w", indices=[0])[0]


def stored_curves(workdir, index: int = 0) -> dict:
    """Trial `index`'s curves in the store of `workdir` (its only study), read read-only."""
    from jaxplay import store as store_lib

    store = store_lib.Store(store_lib.default_url(workdir), readonly=True)
    try:
        return store.curves(store.study_id(), index)
    finally:
        store.close()
