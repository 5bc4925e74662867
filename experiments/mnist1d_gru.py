"""How wide must a GRU be on MNIST-1D? Scientific: model.hidden.

The GRU row of the MNIST-1D paper's table (Greydanus 2020). Nuisance: Adam's learning rate
and b1; gradient clipping at 1.0 is fixed, as usual for recurrent nets. About 20 minutes on 2
CPU cores (the recurrence is 40 sequential steps per example: ~34 steps/s at hidden=128 there).

  python -m jaxplay.sweep --config experiments/mnist1d_gru.py --workdir runs/mnist1d_gru
"""

import ml_collections

from jaxplay import spaces


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(name="mnist1d", batch_size=128, val_size=500)
    c.model = dict(name="gru", hidden=128, dropout=0.0)
    c.optimizer = dict(
        name="adam", learning_rate=3e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0
    )
    c.schedule = dict(name="cosine", warmup_steps=100)
    c.train = dict(steps=3000, eval_every=300, keep_best=3, grad_clip_norm=1.0, label_smoothing=0.0)
    c.study = dict(
        name="mnist1d-gru-hidden",
        notes="GRU width vs tuned Adam",
        objective="val/error",
        mode="min",
        algorithm="quasirandom",
        num_trials=12,
        seed=0,
    )
    c.search = dict(
        model=dict(hidden=spaces.discrete([32, 64, 128, 256], role="scientific")),
        optimizer=dict(
            learning_rate=spaces.log(3e-4, 3e-2, role="nuisance"),
            b1=spaces.linear(0.8, 0.95, role="nuisance"),
        ),
    )
    if arg == "smoke":
        c.study.name = "mnist1d-gru-smoke"
        c.study.num_trials = 2
        c.model.hidden = 16
        c.search.model.hidden = spaces.discrete([16], role="scientific")
        c.train.steps, c.train.eval_every = 20, 10
        c.schedule.warmup_steps = 5
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    return c
