"""A worker of a study: its identity, the lease it holds on its trials, and how it stops (Ctrl-C or
SIGTERM: finish the period, checkpoint, stop)."""

from __future__ import annotations

import os
import signal
import socket
import threading


def worker_id() -> str:
    """This process as the store names it: 'host:pid'."""
    return f"{socket.gethostname()}:{os.getpid()}"


def dead_on_this_host(worker: str) -> bool:
    """True for a worker id 'host:pid' of this host whose process is gone (or is this process:
    a trial it left running was interrupted before this call)."""
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


class Lease:
    """Renews this worker's lease on the trials it holds, from a background thread, every third of
    the lease (a long compile or evaluation period does not make the trial look abandoned)."""

    def __init__(self, store, worker: str, lease_s: float):
        self.store, self.worker, self.every = store, worker, max(lease_s / 3, 0.05)
        self.ids: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._renew, daemon=True, name="jaxplay-lease")

    def hold(self, ids: list[int]) -> None:
        self.ids = list(ids)

    def _renew(self):
        while not self.stop.wait(self.every):
            try:
                self.store.heartbeat(self.worker, self.ids)
            except Exception:  # a store hiccup must not stop training: the next renewal retries
                pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


class GracefulInterrupt:
    """First Ctrl-C or SIGTERM (a preempted TPU VM or cloud node, `kill`): finish the current
    evaluation period, checkpoint it, then stop. A second one: stop at once (the trial resumes
    from its last checkpoint)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, log):
        self.log, self.flag, self.previous = log, False, {}

    def requested(self) -> bool:
        return self.flag

    def _handle(self, signum, frame):
        if self.flag:
            raise KeyboardInterrupt
        self.flag = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.log(
            f"\n{name}: stopping after this evaluation period and saving a checkpoint "
            f"(press Ctrl-C again to stop now)"
        )

    def __enter__(self):
        # Signal handlers can only be set from the main thread (not, e.g., in a notebook worker).
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        return False


class LeaseLost(Exception):
    """Another worker took over a trial of this one: this worker stopped renewing its lease (it
    stalled or lost the store for longer than the lease) and the trial was reclaimed."""
