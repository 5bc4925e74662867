"""A worker's id names one process, even where pids repeat (each container's PID namespace counts
from 1), and a trial's worker is called dead only when that is proven: two live workers never
take each other's trials."""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys

import pytest

from jaxplay.driver import worker as worker_lib
from jaxplay.driver.worker import dead_on_this_host, worker_id

# worker.py needs only the standard library: loaded alone, without the package's JAX, a child
# process starts in a fraction of a second (and forks with no JAX threads running).
LOAD = """
import importlib.util, json, os, sys
spec = importlib.util.spec_from_file_location("worker", sys.argv[1])
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)
"""
# A process that prints its worker id, then answers, for each id it reads, whether that worker is
# dead as it sees it.
CHILD = (
    LOAD
    + """
print(worker.worker_id(), flush=True)
for line in sys.stdin:
    print(worker.dead_on_this_host(line.strip()), flush=True)
"""
)
# A process that draws its id, then forks: prints both ids and the forked child's pid.
FORKS = (
    LOAD
    + """
parent = worker.worker_id()
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, worker.worker_id().encode())
    os._exit(0)
os.close(write)
with os.fdopen(read) as pipe:
    forked = pipe.read()
os.waitpid(pid, 0)
print(json.dumps([parent, forked, pid]))
"""
)


class Child:
    """A live worker process (optionally behind a launcher such as unshare) until closed."""

    def __init__(self, *launcher):
        self.process = subprocess.Popen(
            [*launcher, sys.executable, "-c", CHILD, worker_lib.__file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.id = self.process.stdout.readline().strip()
        assert self.id, "the child printed no worker id"

    def dead(self, worker: str) -> bool:
        self.process.stdin.write(worker + "\n")
        self.process.stdin.flush()
        return {"True": True, "False": False}[self.process.stdout.readline().strip()]

    def close(self) -> None:
        """Ends the process and reaps it: from then on no process holds its pid (Linux hands pids
        out in increasing order, so none reuses it before the pid counter wraps)."""
        self.process.stdin.close()
        self.process.wait()
        self.process.stdout.close()


def _parts(worker: str):
    host, pid, space, token = worker.rsplit(":", 3)
    return host, int(pid), space, token


def _forged(pid: int, *, space: str | None = None, token: str | None = None) -> str:
    """An id of this host's form for `pid`, in this process's PID space unless `space` is given."""
    own_space = _parts(worker_id())[2]
    return (
        f"{socket.gethostname()}:{pid}:{own_space if space is None else space}:"
        f"{token or secrets.token_hex(8)}"
    )


# Where /proc does not say which PID namespace this is (not Linux), no pid is provably gone.
needs_pid_space = pytest.mark.skipif(
    _parts(worker_id())[2] == worker_lib.UNKNOWN_SPACE, reason="needs Linux's /proc"
)


def _dead_pid() -> int:
    """The pid of a process of this namespace that ended and was reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_the_id_names_this_host_and_process_and_stays_the_same():
    host, pid, space, token = _parts(worker_id())
    assert (host, pid) == (socket.gethostname(), os.getpid())
    assert len(token) == 16 and space
    assert worker_id() == worker_id()


def test_every_process_gets_its_own_id():
    # The forking process drew its id first: its child must not inherit it.
    out = subprocess.run(
        [sys.executable, "-c", FORKS, worker_lib.__file__], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    parent, forked, forked_pid = json.loads(out.stdout)
    assert _parts(forked)[1] == forked_pid and _parts(forked)[3] != _parts(parent)[3]
    child = Child()
    child.close()
    assert len({worker_id(), parent, forked, child.id}) == 4


def test_this_process_s_own_id_is_dead():
    # A trial it left running was interrupted before it asked (Ctrl-C, then a rerun in-process).
    assert dead_on_this_host(worker_id())


@needs_pid_space
def test_another_token_with_this_process_s_pid_is_dead():
    # That process's pid is held by this one now (same host, same PID space): it ended.
    assert dead_on_this_host(_forged(os.getpid()))


@needs_pid_space
def test_a_live_worker_of_this_namespace_is_alive_until_it_ends():
    child = Child()
    try:
        assert not dead_on_this_host(child.id)
        assert not child.dead(worker_id())  # and it sees this process alive too
    finally:
        child.close()
    assert dead_on_this_host(child.id)  # its pid is gone from this namespace


@pytest.mark.parametrize("space", ["0123456789ab", worker_lib.UNKNOWN_SPACE])
def test_a_gone_pid_of_another_or_an_unknown_namespace_is_not_provably_dead(space):
    # That pid may be a live process of another container on this host: its lease decides.
    if space == _parts(worker_id())[2]:
        pytest.skip("the forged space is this process's own")
    assert not dead_on_this_host(_forged(_dead_pid(), space=space))
    assert not dead_on_this_host(_forged(os.getpid(), space=space))


def test_ids_of_other_hosts_and_other_forms_are_alive():
    dead = _dead_pid()
    assert not dead_on_this_host(_forged(dead).replace(socket.gethostname(), "another-host", 1))
    for other in ["w1", "", "another-host:123", f"{socket.gethostname()}:abc"]:
        assert not dead_on_this_host(other), other


def test_an_older_jaxplay_s_host_pid_id_keeps_its_meaning():
    host = socket.gethostname()
    child = Child()
    try:
        assert not dead_on_this_host(f"{host}:{child.process.pid}")
    finally:
        child.close()
    assert dead_on_this_host(f"{host}:{child.process.pid}")
    assert dead_on_this_host(f"{host}:{os.getpid()}")
    assert not dead_on_this_host(f"another-host:{_dead_pid()}")


def _pid_namespaces_available() -> bool:
    if sys.platform != "linux" or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-Urpf", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(
    not _pid_namespaces_available(), reason="needs unshare into a new user and PID namespace"
)
def test_two_containers_whose_workers_share_a_pid_leave_each_other_s_trials_alone():
    # Two containers on one host: each worker is pid 1 of its own PID namespace, with this host's
    # name. With ids 'host:pid' the second took the first one's live trial for its own dead one.
    first, second = Child("unshare", "-Urpf"), Child("unshare", "-Urpf")
    try:
        assert _parts(first.id)[:2] == _parts(second.id)[:2] == (socket.gethostname(), 1)
        assert first.id != second.id
        assert not second.dead(first.id) and not first.dead(second.id)
        assert not dead_on_this_host(first.id)  # nor from the host's namespace
    finally:
        first.close()
        second.close()
