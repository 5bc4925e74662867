"""How deep should a small character-level Transformer LM be? Scientific: model.depth.

Trains on the Python standard library's own source (every machine has it; nothing is
downloaded), byte by byte, with files split into train and validation by a hash of their path.
Pre-norm residual blocks; AdamW with warmup and cosine decay; clipping at 1.0. Nuisance: the
learning rate and weight decay. About 20 minutes on 2 CPU cores (a 1 MB slice of the corpus; a
depth-2 trial took 2 min there: 20 steps/s, val/loss 1.52 nats per byte after 2000 steps);
drop data.max_bytes and raise model.dim on a GPU.

  python -m jaxplay.sweep --config experiments/pystdlib_transformer.py --workdir runs/pystdlib_lm
"""

import ml_collections

from jaxplay import spaces


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(
        name="pystdlib",
        seq_len=64,
        val_percent=5,
        max_bytes=1_000_000,
        batch_size=32,
        pipeline="device",
    )
    c.model = dict(
        name="transformer", dim=64, depth=2, heads=4, mlp_ratio=4, activation="gelu", dropout=0.0
    )
    c.optimizer = dict(
        name="adamw", learning_rate=3e-3, b1=0.9, b2=0.98, eps=1e-9, weight_decay=0.01
    )
    c.schedule = dict(name="cosine", warmup_steps=100)
    c.train = dict(
        steps=2000,
        eval_every=200,
        keep_best=3,
        grad_clip_norm=1.0,
        label_smoothing=0.0,
        train_eval_examples=1000,
        compute_dtype="float32",
    )
    c.study = dict(
        name="pystdlib-transformer-depth",
        notes="depth vs tuned AdamW",
        objective="val/loss",
        mode="min",
        algorithm="quasirandom",
        num_trials=8,
        seed=0,
    )
    c.search = dict(
        model=dict(depth=spaces.discrete([1, 2, 4], role="scientific")),
        optimizer=dict(
            learning_rate=spaces.log(3e-4, 1e-2, role="nuisance"),
            weight_decay=spaces.log(1e-4, 1e-1, role="nuisance"),
        ),
    )
    if arg == "smoke":
        c.data.update(seq_len=16, max_bytes=40_000, batch_size=8)
        c.model.update(dim=16, depth=1, heads=2)
        c.search.model.depth = spaces.discrete([1], role="scientific")
        c.train.update(steps=4, eval_every=2, train_eval_examples=64)
        c.schedule.warmup_steps = 1
        c.study.update(name="pystdlib-transformer-smoke", num_trials=2)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    return c
