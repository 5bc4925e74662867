"""Several hosts training one trial together (a TPU VM slice, multi-node GPU) under JAX's
multi-controller runtime: every process runs the same program on its own devices, and one global
device mesh spans them all.

The sweep's rules for that case:
- process 0 alone talks to the store, prints progress and writes the report; the other processes
  get its answers (which trial to run next, the study record) broadcast (`agree_json`);
- decisions that differ by host (a Ctrl-C or SIGTERM reaching one host, a checkpoint falling due
  on one host's clock) are agreed before anyone acts on them (`any_process`, `agree`), because a
  process that skips a collective (a training step, an orbax save) hangs all the others;
- orbax saves checkpoints collectively (each process calls save; the primary writes the shared
  files), so the workdir must be a path every host sees: a `gs://` bucket or a shared mount.
"""

from __future__ import annotations

import json

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxplay.errors import ConfigError, StoreError, StoreUnavailable


def initialize(
    *,
    auto: bool = False,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins the processes of one job. `auto`: let jax find the cluster (TPU VM slice, Slurm,
    Open MPI, Kubernetes); otherwise `coordinator` ('host:port' of process 0), `num_processes` and
    `process_id` name it (multi-node GPU, or several CPU processes on one machine)."""
    explicit = (coordinator, num_processes, process_id)
    if not auto and all(v is None for v in explicit):
        return
    if not auto and any(v is None for v in explicit):
        raise ConfigError(
            "--coordinator, --num_processes and --process_id go together (process 0's "
            "host:port, the number of processes, this process's index); or pass "
            "--distributed to let jax detect a TPU VM slice or a Slurm job"
        )
    # CPU processes exchange gradients through gloo (jax's CPU backend has no cross-process
    # collectives of its own); accelerator jobs ignore the setting.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if auto:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)


def is_primary() -> bool:
    """True in the process that writes the store, the logs and the report."""
    return jax.process_index() == 0


def multiprocess() -> bool:
    """True when several processes train each trial together."""
    return jax.process_count() > 1


def process_count() -> int:
    return jax.process_count()


def agree(value: bool) -> bool:
    """Process 0's value of a flag, on every process."""
    if not multiprocess():
        return value
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(value, np.bool_)))


def any_process(value: bool) -> bool:
    """True on every process if it is true on any (a signal that reached one host)."""
    if not multiprocess():
        return value
    return bool(np.any(multihost_utils.process_allgather(np.asarray(value, np.bool_))))


def agree_json(value=None):
    """Process 0's `value` (anything JSON can carry), on every process; the others pass nothing."""
    if not multiprocess():
        return value
    data = (
        np.frombuffer(json.dumps(value, default=str).encode(), np.uint8) if is_primary() else None
    )
    size = int(multihost_utils.broadcast_one_to_all(np.int64(0 if data is None else data.size)))
    data = multihost_utils.broadcast_one_to_all(np.zeros(size, np.uint8) if data is None else data)
    return json.loads(np.asarray(data, np.uint8).tobytes().decode())


def on_primary(fn, *, share: bool = True):
    """Runs `fn` on process 0 only. Every process gets its result (as JSON carries it;
    `share=False`: None elsewhere) or raises its error, so no process waits for an answer that
    never comes."""
    if not multiprocess():
        return fn()
    payload, error, result = None, None, None
    if is_primary():
        try:
            result = fn()
            payload = {"ok": result if share else None}
        except Exception as e:
            error, payload = e, {"error": str(e), "type": type(e).__name__}
    payload = agree_json(payload)
    if "error" in payload:
        if error is not None:
            raise error
        known = (StoreError, ConfigError, StoreUnavailable)
        kind = {k.__name__: k for k in known}.get(payload["type"], RuntimeError)
        raise kind(f"process 0: {payload['error']}")
    return payload["ok"] if share else result


class PrimaryStore:
    """The store as every process of a multi-host job sees it: process 0 reads and writes the real
    one, the others skip the writes and receive the answers to reads. Each read is a collective,
    so all processes make the same reads in the same order (they run the same code)."""

    # Reads, and writes whose answer decides what every process does next (log_metrics: is the
    # trial's lease still held?).
    SHARED = (
        "open_study",
        "add_trials",
        "append_trials",
        "reset_running",
        "record",
        "study_id",
        "claim",
        "log_metrics",
        "has_study",
        "check_study",
        "pending",
        "requeue_failed",
        "held_elsewhere",
    )

    def __init__(self, store):
        self._store = store  # None on processes other than 0

    def __getattr__(self, name):
        real = getattr(self._store, name) if self._store is not None else None
        if name in self.SHARED:
            return lambda *args, **kwargs: on_primary(lambda: real(*args, **kwargs))
        return real if real is not None else (lambda *args, **kwargs: None)

    def close(self):
        if self._store is not None:
            self._store.close()
