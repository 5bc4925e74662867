"""Does MLP width matter on MNIST-1D once Adam's learning rate and b1 are tuned?

Scientific: model.width. Nuisance: optimizer.learning_rate, optimizer.b1 (the playbook tunes
the learning rate and b1 for Adam studies of 10-25 trials: spaces.adam). Everything else is fixed.
This is the README quickstart: 12 trials of 1500 steps, about 1 minute on 2 CPU cores.

A new project starts simpler than this tuned study: leave c.schedule out (a constant learning
rate, no warmup) and take a small model; add the decay schedule and the size once they pay.

  python -m jaxplay.sweep --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp

`:smoke` shrinks it to a few short trials (used by the tests):

  python -m jaxplay.sweep --config experiments/mnist1d_mlp.py:smoke --workdir /tmp/smoke
"""

import ml_collections

from jaxplay import spaces


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(name="mnist1d", batch_size=128, val_size=500)
    c.model = dict(name="mlp", width=256, depth=2, activation="relu", dropout=0.0)
    c.optimizer = dict(
        name="adam", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0
    )
    c.schedule = dict(name="cosine", warmup_steps=100)
    c.train = dict(steps=1500, eval_every=150, keep_best=3, grad_clip_norm=0.0, label_smoothing=0.0)
    c.study = dict(
        name="mnist1d-mlp-width",
        notes="round 1: width vs tuned Adam",
        objective="val/error",
        mode="min",
        algorithm="quasirandom",
        num_trials=12,
        seed=0,
    )
    c.search = dict(
        model=dict(width=spaces.discrete([64, 128, 256, 512], role="scientific")),
        # The playbook's Adam table at 12 trials: the learning rate and b1 (b1 linear, as this
        # study has always searched it; spaces.adam's own b1 range is reverse_log).
        optimizer=spaces.adam(
            c.study.num_trials, learning_rate=(1e-4, 3e-2), b1=spaces.linear(0.8, 0.99)
        ),
    )
    if arg == "smoke":
        c.study.name = "mnist1d-mlp-smoke"
        c.study.num_trials = 3
        c.train.steps, c.train.eval_every = 200, 50
        c.schedule.warmup_steps = 20
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    return c
