"""Adam or SGD with Nesterov momentum, each at its own tuned hyperparameters, on MNIST-1D?

The playbook's own example of conditional hyperparameters (items 27 and 97): the scientific
question is the optimizer; each optimizer's hyperparameters are nuisance, and they are different
hyperparameters even where their names agree, since good learning rates for Adam and for SGD lie
orders of magnitude apart. `spaces.branches` declares both branches: `optimizer[adam].*` exist in
Adam's trials only, `optimizer[sgd].*` in SGD's (with nesterov=True fixed in that branch). The
isolation plot of `optimizer` compares the best trial of each branch.

  python -m jaxplay.sweep --config experiments/mnist1d_optimizers.py --workdir runs/optimizers
  python -m jaxplay.sweep --config experiments/mnist1d_optimizers.py --workdir runs/optimizers \
      --from_study mnist1d-adam-or-nesterov --lineage exploit

`:smoke` shrinks it to a few short trials (used by the tests).
"""

import ml_collections

from jaxplay import spaces


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(name="mnist1d", batch_size=128, val_size=500)
    c.model = dict(name="mlp", width=256, depth=2, activation="relu", dropout=0.0)
    # The base config's optimizer is Adam's branch; SGD's branch starts from SGD's own defaults.
    c.optimizer = dict(
        name="adam", learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0
    )
    c.schedule = dict(name="cosine", warmup_steps=100)
    c.train = dict(steps=1500, eval_every=150, keep_best=3, grad_clip_norm=0.0, label_smoothing=0.0)
    c.study = dict(
        name="mnist1d-adam-or-nesterov",
        notes="round 1: Adam vs SGD with Nesterov momentum, each tuned",
        objective="val/error",
        mode="min",
        algorithm="quasirandom",
        num_trials=20,
        seed=0,
    )
    c.search = dict(
        optimizer=spaces.branches(
            role="scientific",
            adam=dict(
                learning_rate=spaces.log(1e-4, 3e-2, role="nuisance"),
                b1=spaces.linear(0.8, 0.99, role="nuisance"),
            ),
            sgd=dict(
                learning_rate=spaces.log(1e-3, 1.0, role="nuisance"),
                momentum=spaces.reverse_log(0.8, 0.99, role="nuisance"),
                nesterov=True,
            ),
        )
    )
    if arg == "smoke":
        c.study.name = "mnist1d-optimizers-smoke"
        c.study.num_trials = 6
        c.train.steps, c.train.eval_every = 100, 50
        c.schedule.warmup_steps = 10
    elif arg:
        raise ValueError(f"unknown config argument {arg!r}; use ':smoke' or nothing")
    return c
