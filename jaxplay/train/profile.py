"""A `jax.profiler` trace of a few evaluation periods (`python -m jaxplay.sweep ... --profile DIR`).

The playbook's first step for a slow input pipeline is a profiler (item 57). The trace starts at
the second period of the first stack of trials that has one (the first period compiles, which
would fill the trace with XLA's passes), covers PERIODS periods with everything the host does
between them (input feeding, the evaluation's fetch, checkpoint and store writes), then stops;
training goes on untraced. Each period is one step of the trace (`StepTraceAnnotation`), so
TensorBoard's profile plugin shows them as steps, and the host loop names its phases in it
(input, dispatch steps, evaluate (streamed), fetch metrics, record: jaxplay.train.loop): a long
"input" is an input-bound period, a long "fetch metrics" the device at work. The file
`perfetto_trace.json.gz` opens in https://ui.perfetto.dev. Tracing changes no result.
"""

from __future__ import annotations

import contextlib

import jax

from jaxplay import paths

# Periods traced: enough to tell a steady state from one slow period, while a trace of a long
# period on an accelerator (every kernel of every step is an event) stays small enough to open.
PERIODS = 3


class PeriodTrace:
    """Traces periods 1 .. PERIODS of the first stack that reaches period 1, once per process."""

    def __init__(self, directory=None, periods: int = PERIODS, log=None):
        self.directory = None if directory is None else paths.folder(directory)
        self.periods = periods
        self.log = log
        self.traced = 0  # periods recorded so far
        self.active = False
        self.done = directory is None  # without a folder it traces nothing

    @contextlib.contextmanager
    def stack(self):
        """One stack's training: a trace still running when the stack ends stops with it."""
        try:
            yield self
        finally:
            self.stop()

    @contextlib.contextmanager
    def period(self, index: int, step: int):
        """The host loop's iteration for a stack's period `index` (0: the one that compiles),
        which ends at `step`."""
        if not self.done and not self.active and index >= 1:
            self.directory.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(self.directory), create_perfetto_trace=True)
            self.active = True
        if not self.active:
            yield
            return
        with jax.profiler.StepTraceAnnotation("period", step_num=step):
            yield
        self.traced += 1
        if self.traced >= self.periods:
            self.stop()

    def stop(self) -> None:
        """Stops a running trace and says where it went."""
        if not self.active:
            return
        jax.profiler.stop_trace()
        self.active, self.done = False, True
        if self.log is not None:
            self.log(
                f"profile: {self.traced} period(s) traced into {self.directory} (tensorboard "
                "--logdir there, Profile tab; or open perfetto_trace.json.gz in "
                "https://ui.perfetto.dev)"
            )
