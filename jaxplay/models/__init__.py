"""Flax NNX model families; `config.model.name` picks one, the other fields are its hyperparameters."""

from __future__ import annotations

from flax import nnx

from jaxplay.errors import ConfigError
from jaxplay.models.cnn import CNN1D
from jaxplay.models.gru import GRU
from jaxplay.models.layers import activation
from jaxplay.models.mlp import MLP
from jaxplay.models.resnet import ResNet
from jaxplay.models.transformer import TransformerLM

# name -> (class, the config fields it takes besides `name` and `dropout`). Every model is
# called as model(x, train=bool, dropout_rate=traced float, key=dropout key or None).
FAMILIES = {
    "mlp": (MLP, ("width", "depth", "activation")),
    "cnn": (CNN1D, ("channels", "depth", "kernel_size", "activation")),
    "gru": (GRU, ("hidden",)),
    "resnet": (
        ResNet,
        ("stage_sizes", "width", "block", "stem", "virtual_batch_size", "activation"),
    ),
    "transformer": (TransformerLM, ("dim", "depth", "heads", "mlp_ratio", "activation")),
}
_CHOICES = {"block": ("basic", "bottleneck"), "stem": ("cifar", "imagenet")}


def check(model_config) -> None:
    """Validates `config.model`: a known family and only the fields it takes."""
    name = model_config.get("name")
    if name not in FAMILIES:
        raise ConfigError(f"model.name: unknown model {name!r}; use one of {sorted(FAMILIES)}")
    _, fields = FAMILIES[name]
    unknown = set(model_config.keys()) - set(fields) - {"name", "dropout"}
    if unknown:
        raise ConfigError(
            f"model: field(s) {sorted(unknown)} mean nothing to a {name!r} model; "
            f"it takes {sorted(fields) + ['dropout']}"
        )
    if "activation" in model_config:
        activation(model_config.activation)
    for field, choices in _CHOICES.items():
        if field in model_config and model_config[field] not in choices:
            raise ConfigError(
                f"model.{field}: unknown {model_config[field]!r}; use one of {list(choices)}"
            )
    vbs = model_config.get("virtual_batch_size", None)
    if vbs is not None and (not isinstance(vbs, int) or vbs < 1):
        raise ConfigError(
            f"model.virtual_batch_size: a positive int or None for whole-batch statistics (got {vbs!r})"
        )
    dropout = model_config.get("dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout: a rate in [0, 1) (got {dropout})")


def build(
    model_config, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs
) -> nnx.Module:
    """Builds the model that `config.model` describes."""
    check(model_config)
    cls, fields = FAMILIES[model_config.name]
    kwargs = {k: model_config[k] for k in fields if k in model_config}
    if "stage_sizes" in kwargs:
        kwargs["stage_sizes"] = tuple(kwargs["stage_sizes"])
    return cls(input_shape, num_classes, rngs=rngs, **kwargs)
