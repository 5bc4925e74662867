"""Small study configs for tests: real data and models, shrunk so each trial takes ~1 s."""
import ml_collections

from jaxplay import spaces


def tiny_config(**overrides) -> ml_collections.ConfigDict:
    """A 100-step MNIST-1D MLP study with no search space; keyword args set dotted paths."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(name="mnist1d", batch_size=64, val_size=500)
    c.model = dict(name="mlp", width=32, depth=1, activation="relu", dropout=0.0)
    c.optimizer = dict(name="adam", learning_rate=3e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
    c.schedule = dict(name="cosine", warmup_steps=10)
    c.train = dict(steps=100, eval_every=50, keep_best=2, grad_clip_norm=0.0, label_smoothing=0.0)
    c.study = dict(name="tiny", notes="test", objective="val/error", mode="min",
                   algorithm="quasirandom", num_trials=2, seed=0)
    c.search = ml_collections.ConfigDict()
    for path, value in overrides.items():
        node = c
        *parents, leaf = path.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def float_only_study(num_trials=4, **overrides) -> ml_collections.ConfigDict:
    """A study that varies only float hyperparameters (learning rate, b1, warmup, smoothing, dropout)."""
    c = tiny_config(**overrides)
    c.study.num_trials = num_trials
    c.search = dict(
        optimizer=dict(learning_rate=spaces.log(1e-3, 1e-2), b1=spaces.linear(0.8, 0.95)),
        train=dict(label_smoothing=spaces.linear(0.0, 0.2)),
        model=dict(dropout=spaces.linear(0.0, 0.3)),
    )
    return c
