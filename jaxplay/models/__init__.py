"""Flax NNX model families: `config.model.name` picks one, the other fields configure it."""

from __future__ import annotations

import inspect

from flax import nnx

from jaxplay.errors import ConfigError
from jaxplay.models.cnn import CNN1D
from jaxplay.models.gru import GRU
from jaxplay.models.layers import activation
from jaxplay.models.mlp import MLP
from jaxplay.models.resnet import ResNet
from jaxplay.models.transformer import TransformerLM
from jaxplay.values import is_int

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
# The smallest value of each size or count a family takes: the smallest that still builds a model
# (below it flax fails deep inside the trainer at run time). An MLP or a Transformer of depth 0 is
# a linear (bigram) model; a CNN needs a conv layer for its head's input size.
MINIMUMS = {
    "mlp": {"width": 1, "depth": 0},
    "cnn": {"channels": 1, "depth": 1, "kernel_size": 1},
    "gru": {"hidden": 1},
    "resnet": {"width": 1, "stage_sizes": 1},
    "transformer": {"dim": 1, "depth": 0, "heads": 1, "mlp_ratio": 1},
}
# Fields that are a list of ints (each at least its minimum): never searched, only fixed.
SEQUENCES = ("stage_sizes",)


def default(name: str, field: str):
    """The value a family's field takes when the config leaves it out."""
    cls, _ = FAMILIES[name]
    return inspect.signature(cls.__init__).parameters[field].default


def check(model) -> None:
    """Validates `config.model` (a jaxplay.spec.ModelSpec): a known family and only the fields it
    takes (the dropout rate is checked with the spec)."""
    name = model.name
    if name not in FAMILIES:
        raise ConfigError(f"model.name: unknown model {name!r}; use one of {sorted(FAMILIES)}")
    _, fields = FAMILIES[name]
    options = dict(model.options)
    unknown = set(options) - set(fields)
    if unknown:
        raise ConfigError(
            f"model: field(s) {sorted(unknown)} mean nothing to a {name!r} model; "
            f"it takes {sorted(fields) + ['dropout']}"
        )
    if "activation" in options:
        activation(options["activation"])
    for field, choices in _CHOICES.items():
        if field in options and options[field] not in choices:
            raise ConfigError(
                f"model.{field}: unknown {options[field]!r}; use one of {list(choices)}"
            )
    for field, minimum in MINIMUMS[name].items():
        if field not in options:
            continue
        value = options[field]
        values = list(value) if field in SEQUENCES and isinstance(value, (list, tuple)) else None
        if field in SEQUENCES and not (values and all(is_int(v) and v >= minimum for v in values)):
            raise ConfigError(
                f"model.{field}: must be a non-empty list of ints >= {minimum} (got {value!r}); "
                f"e.g. {field}={default(name, field)}"
            )
        if field not in SEQUENCES and not (is_int(value) and value >= minimum):
            raise ConfigError(
                f"model.{field}: must be an int >= {minimum} (got {value!r}); "
                f"e.g. {field}={default(name, field)}"
            )
    if name == "transformer":
        dim, heads = (options.get(f, default(name, f)) for f in ("dim", "heads"))
        if dim % heads:
            raise ConfigError(f"model.heads: must divide model.dim={dim} (got {heads})")
    vbs = options.get("virtual_batch_size")
    if vbs is not None and (not isinstance(vbs, int) or vbs < 1):
        raise ConfigError(
            "model.virtual_batch_size: a positive int or None for whole-batch statistics "
            f"(got {vbs!r})"
        )


def build(model, input_shape: tuple[int, ...], num_classes: int, rngs: nnx.Rngs) -> nnx.Module:
    """Builds the model that `config.model` (a jaxplay.spec.ModelSpec) describes."""
    check(model)
    cls, fields = FAMILIES[model.name]
    options = dict(model.options)
    return cls(
        input_shape, num_classes, rngs=rngs, **{k: options[k] for k in fields if k in options}
    )
