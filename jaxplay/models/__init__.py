"""Flax NNX model families; `config.model.name` picks one, the other fields are its hyperparameters."""
from __future__ import annotations

from flax import nnx

from jaxplay.models.cnn import CNN1D
from jaxplay.models.mlp import MLP
from jaxplay.spaces import ConfigError

# name -> (class, the config fields it takes besides `name` and `dropout`)
FAMILIES = {
    "mlp": (MLP, ("width", "depth", "activation")),
    "cnn": (CNN1D, ("channels", "depth", "kernel_size", "activation")),
}


def build(model_config, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs) -> nnx.Module:
    """Builds the model that `config.model` describes."""
    name = model_config.get("name")
    if name not in FAMILIES:
        raise ConfigError(f"model.name: unknown model {name!r}; use one of {sorted(FAMILIES)}")
    cls, fields = FAMILIES[name]
    unknown = set(model_config.keys()) - set(fields) - {"name", "dropout"}
    if unknown:
        raise ConfigError(f"model: field(s) {sorted(unknown)} mean nothing to a {name!r} model; "
                          f"it takes {sorted(fields) + ['dropout']}")
    kwargs = {k: model_config[k] for k in fields if k in model_config}
    return cls(input_shape, num_classes, rngs=rngs, **kwargs)
