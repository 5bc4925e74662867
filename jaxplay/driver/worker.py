"""A worker of a study: its identity, the lease it holds on its trials, and how it stops (Ctrl-C or
SIGTERM: finish the period, checkpoint, stop)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import signal
import socket
import threading
from typing import NamedTuple


class _Id(NamedTuple):
    """A worker id's parts: 'host:pid:space:token'."""

    host: str
    pid: int
    space: str  # the process's PID space (its kernel's boot and PID namespace), '-' if unknown
    token: str  # drawn once per process: two processes never share an id

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.space}:{self.token}"


UNKNOWN_SPACE = "-"
_ID_FORM = re.compile(r"(.*):([0-9]+):([0-9a-f]{12}|-):([0-9a-f]{16})")
_own: _Id | None = None
_own_lock = threading.Lock()


def worker_id() -> str:
    """This process as the store names it: 'host:pid:space:token'. The pid alone repeats: each
    container on a host has its own PID namespace, where the first process is pid 1 or 7 again;
    the random token makes the id this process's alone, and the space (a digest of the kernel's
    boot id and the PID namespace) says which pids this process can see."""
    return str(_own_id())


def _own_id() -> _Id:
    global _own
    with _own_lock:  # two threads asking first must get one id, not two
        pid = os.getpid()
        if _own is None or _own.pid != pid:  # a forked child draws its own token
            token = secrets.token_hex(8)  # 64 random bits, 16 hex digits (as _ID_FORM reads)
            _own = _Id(socket.gethostname(), pid, _pid_space(), token)
        return _own


def _forget_after_fork() -> None:
    # A child forked into a new PID namespace may get its parent's pid number: draw anew anyway
    # (and a lock held by another thread at the fork would never be released in the child).
    global _own, _own_lock
    _own, _own_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_after_fork)


def _pid_space() -> str:
    """Which pids this process sees: a digest of the running kernel's boot id and this process's
    PID namespace ('-' where Linux's /proc does not say). Namespace numbers alone repeat across
    machines (every host's first namespace is pid:[4026531836]); with the boot id they name one
    namespace of one running kernel."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return UNKNOWN_SPACE
    return hashlib.blake2b(f"{boot} {namespace}".encode(), digest_size=6).hexdigest()


def _parse(worker: str) -> _Id | None:
    """The parts of an id of worker_id's form; None for any other string."""
    match = _ID_FORM.fullmatch(worker)
    if match is None:
        return None
    host, pid, space, token = match.groups()
    return _Id(host, int(pid), space, token)


def dead_on_this_host(worker: str) -> bool:
    """True only when the process of a worker id is provably gone (its trial may then resume at
    once): this very process (a trial it left running was interrupted before this call), or a
    process of this host and PID space whose pid no process holds, or holds for this process
    (whose token differs). Anything else, another host, another container's namespace, an
    unknown space, a live pid, is alive as far as this process can tell: the lease expires if
    it is not. An id 'host:pid' of an older jaxplay (no token, no space) keeps the old meaning,
    this host's pid: the trial of an older worker that died before an upgrade resumes at once."""
    own = _own_id()
    if worker == str(own):
        return True
    parsed = _parse(worker)
    if parsed is not None:
        if (
            parsed.host != socket.gethostname()
            or parsed.space == UNKNOWN_SPACE
            or parsed.space != own.space
        ):
            return False
        # Same pid space: this process holding that pid proves the other one ended.
        return parsed.pid == own.pid or _pid_gone(parsed.pid)
    host, _, pid = worker.rpartition(":")  # an older jaxplay's 'host:pid'
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return int(pid) == own.pid or _pid_gone(int(pid))


def _pid_gone(pid: int) -> bool:
    """Whether no process of this PID namespace holds `pid`."""
    if pid <= 0:
        return False  # 0 and below name process groups, not one process
    try:
        os.kill(pid, 0)  # signal 0: checks that the process exists, sends nothing
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False  # alive (another user's), or a number no pid can be: nothing proven
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
