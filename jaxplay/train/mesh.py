"""Where a trial's arrays live when there are several devices.

One trial alone (K = 1) splits each batch over every device: `jax.jit` with a NamedSharding on a
1-D 'data' mesh, params and optimizer state replicated, XLA adding the gradient all-reduce. A
stack of trials (K > 1) splits the trial axis over the devices instead.
"""

from __future__ import annotations

import functools

import jax
from jax.sharding import NamedSharding, PartitionSpec

from jaxplay.errors import ConfigError


def data_mesh(program):
    """A 1-D 'data' mesh over all devices when there are several (None with one); a batch that
    does not split evenly over them is refused."""
    n = jax.device_count()
    if n == 1:
        return None
    for field, value in (
        ("data.batch_size", program.batch_size),
        ("train.eval_batch_size", program.eval_batch_size),
    ):
        if value % n:
            raise ConfigError(
                f"{field}: {value} does not split evenly over {n} devices; use a multiple of {n}"
            )
    return make_mesh(n)


@functools.lru_cache(maxsize=4)
def make_mesh(n: int, axis: str = "data"):
    """A 1-D mesh of `n` devices. Auto axes: XLA propagates the batch (or trial) sharding through
    the step; jax's default Explicit axes make the on-device batch gather an error that asks for
    hand-written shardings."""
    return jax.make_mesh((n,), (axis,), axis_types=(jax.sharding.AxisType.Auto,))


def sharding(mesh, axis: int | None = None) -> NamedSharding:
    """Replicated (axis None), or split over the mesh along `axis`."""
    spec = PartitionSpec() if axis is None else PartitionSpec(*([None] * axis), mesh.axis_names[0])
    return NamedSharding(mesh, spec)


def trial_sharding(count: int) -> NamedSharding | None:
    """Spreads a stack's trial axis over the devices when there are several and it divides."""
    n = jax.device_count()
    if n == 1 or count % n:
        return None
    return NamedSharding(make_mesh(n, "trials"), PartitionSpec("trials"))


def device_kind() -> str:
    """This process's devices as a study or a probe records them, e.g. 'gpu: NVIDIA H200 x1'."""
    return f"{jax.default_backend()}: {jax.devices()[0].device_kind} x{jax.device_count()}"
