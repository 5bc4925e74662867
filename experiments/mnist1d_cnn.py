"""Does a 1-D CNN need weight decay on MNIST-1D? Scientific: optimizer.weight_decay.

Nuisance: optimizer.learning_rate and optimizer.momentum of SGD with Nesterov momentum; linear
decay with warmup. Fixed: architecture (3 conv layers of 32 channels), batch size, 3000 steps.
Read the isolation plot of val/error against weight decay: the best trial per weight-decay
bucket, with the learning rate and momentum optimized away. About 7 minutes on 2 CPU cores.

  python -m jaxplay.sweep --config experiments/mnist1d_cnn.py --workdir runs/mnist1d_cnn
"""

import ml_collections

from jaxplay import spaces


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(name="mnist1d", batch_size=128, val_size=500)
    c.model = dict(name="cnn", channels=32, depth=3, kernel_size=5, activation="relu", dropout=0.0)
    c.optimizer = dict(
        name="sgd", learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    c.schedule = dict(name="linear", warmup_steps=150)
    c.train = dict(steps=3000, eval_every=250, keep_best=3, grad_clip_norm=0.0, label_smoothing=0.0)
    c.study = dict(
        name="mnist1d-cnn-weight-decay",
        notes="does weight decay help the CNN?",
        objective="val/error",
        mode="min",
        algorithm="quasirandom",
        num_trials=16,
        seed=0,
    )
    c.search = dict(
        optimizer=dict(
            weight_decay=spaces.log(1e-6, 1e-2, role="scientific"),
            learning_rate=spaces.log(3e-3, 3e-1, role="nuisance"),
            momentum=spaces.linear(0.8, 0.99, role="nuisance"),
        )
    )
    if arg == "smoke":
        c.study.name = "mnist1d-cnn-smoke"
        c.study.num_trials = 2
        c.train.steps, c.train.eval_every = 100, 50
        c.schedule.warmup_steps = 10
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    return c
