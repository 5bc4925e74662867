"""Several sweep workers on one host: each takes its own GPU, knows who shares its device, and
leaves the others memory to run in.

Call order in a worker, all before anything starts a jax backend (the GPU selection and the
memory policy are read once, when it starts):

    devices.select(args.device)
    with devices.register() as worker:
        devices.prepare_memory(sharing=bool(worker.sharers()))
        ...  # start the backend, then print sharing_warning(...) if it says something

The registry is a folder of small files, one per live worker, each held under an exclusive
`flock` by its owner: the kernel drops the lock when the owner dies, however it dies, so a file
nobody holds belongs to a dead worker. The folder is per user under the temporary directory, or
$JAXPLAY_WORKERS_DIR.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
import time

from jaxplay.errors import ConfigError, EnvironmentFault

try:
    import fcntl
except ImportError:  # Windows: no flock, so no registry (see register)
    fcntl = None

DIR_ENV = "JAXPLAY_WORKERS_DIR"
# Any of these means the user chose jax's GPU memory policy; prepare_memory leaves it alone.
# (XLA_CLIENT_MEM_FRACTION is the newer name jaxlib reads for XLA_PYTHON_CLIENT_MEM_FRACTION.)
MEMORY_VARIABLES = (
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
    "XLA_CLIENT_MEM_FRACTION",
    "XLA_PYTHON_CLIENT_ALLOCATOR",
)
ALL = "all"


def select(device: int | None) -> str | None:
    """Makes only GPU `device` (an index among the GPUs this process sees) visible; None: no-op."""
    if device is None:
        return None
    if _backend_started():
        raise ConfigError(
            f"--device {device}: a jax backend already started in this process; set "
            "CUDA_VISIBLE_DEVICES before starting Python (or restart the notebook's runtime)"
        )
    name, current = _visible_variable()
    if current is None:
        # Nothing narrows the list, so the index is the driver's own; past the last GPU jax finds
        # none, which only starting CUDA could tell us.
        if device < 0:
            raise ConfigError(
                f"--device {device}: GPUs are numbered from 0; pass --device 0 or more"
            )
        chosen = str(device)
    else:
        listed = [d for d in current.split(",") if d]
        if not 0 <= device < len(listed):
            if not listed:
                sees = f"no GPU ({name} is empty), so no --device"
            elif len(listed) == 1:
                sees = f"1 GPU ({name}={current}), so pass --device 0"
            else:
                last = len(listed) - 1
                sees = f"{len(listed)} GPUs ({name}={current}), so pass --device 0 to {last}"
            raise ConfigError(
                f"--device {device}: counts the GPUs this process sees, and it sees {sees}; or "
                f"change or unset {name}"
            )
        chosen = listed[device]
    # CUDA_VISIBLE_DEVICES for NVIDIA, HIP_VISIBLE_DEVICES for ROCm: setting both is harmless.
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    os.environ["HIP_VISIBLE_DEVICES"] = chosen
    return chosen


def visible() -> str:
    """This process's GPU selection as a key ('2', '0,1'), or 'all' when nothing narrows it."""
    _, current = _visible_variable()
    return ALL if current is None else current


def prepare_memory(sharing: bool) -> str | None:
    """Turns off jax's GPU preallocation unless the user set its memory variables; says what it
    set, or None."""
    if any(os.environ.get(name) for name in MEMORY_VARIABLES):
        return None
    # Always, not only when `sharing`: a worker cannot know whether another will join its GPU
    # later, and the first one's default 75% preallocation would starve every later one. jaxplay
    # sizes its own stacks of trials against the device's memory, so allocating on demand costs it
    # nothing but lets workers share. `sharing` only changes what the description says.
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    why = (
        "the workers sharing this GPU do not starve each other"
        if sharing
        else "a worker that joins this GPU later is not starved"
    )
    return f"XLA_PYTHON_CLIENT_PREALLOCATE=false: GPU memory is allocated on demand, so {why}"


class Registration:
    """One live worker's entry in the host's registry; close() (or leaving `with`) removes it."""

    def __init__(self, selection: str, path: str | None, fd: int | None):
        self.selection = selection
        self.path = path
        self._fd = fd

    def sharers(self) -> list[dict]:
        """The other live workers on this host whose devices overlap this one's: pid and devices."""
        if self.path is None:
            return []
        folder = os.path.dirname(self.path)
        found = []
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.startswith(".") or not name.endswith(".json") or path == self.path:
                continue
            entry = _read_live(path)
            if entry is not None and _overlap(self.selection, entry["devices"]):
                found.append({"pid": entry["pid"], "devices": entry["devices"]})
        return found

    def close(self) -> None:
        """Leaves the registry: removes this worker's file and releases its lock."""
        if self._fd is None:
            return
        # Removed while still locked: nobody can mistake it for a dead worker's file meanwhile.
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)  # releases the flock
        self._fd = None

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def register(selection: str | None = None) -> Registration:
    """Enters this worker, using `selection` (default: visible()), in the host's registry."""
    selection = visible() if selection is None else selection
    if fcntl is None:
        # Without flock a dead worker's file cannot be told from a live one's: this platform
        # (Windows) has no registry, and sharers() is always [].
        return Registration(selection, None, None)
    folder = _directory()
    stem = f"{os.getpid()}-{secrets.token_hex(4)}"
    partial = os.path.join(folder, f".{stem}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        entry = {"pid": os.getpid(), "devices": selection, "started": time.time()}
        os.write(fd, json.dumps(entry).encode())
        # Renamed only once locked and written (the lock stays with the file): others list only
        # finished *.json files, so an unlocked one there is always a dead worker's.
        path = os.path.join(folder, f"{stem}.json")
        os.rename(partial, path)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(partial)
        except FileNotFoundError:
            pass
        raise
    return Registration(selection, path, fd)


def sharing_warning(sharers: list[dict], backend: str, selection: str) -> str | None:
    """One line telling the user that other workers share this worker's device, or None."""
    # CPU workers share cores, not a memory pool: nothing to warn about.
    if not sharers or backend == "cpu":
        return None
    n = len(sharers)
    many, one = ("s", "") if n > 1 else ("", "s")  # "2 workers use", "1 worker uses"
    pids = ", ".join(str(s["pid"]) for s in sharers)
    who = f"{n} other jaxplay worker{many} on this host (pid{many} {pids})"
    if backend == "tpu":
        return (
            f"{who} run{one} as well: a TPU host's chips serve one process, so run one worker per "
            "TPU host"
        )
    gpus = (
        "the same GPUs" if selection == ALL else f"GPU{'s' if ',' in selection else ''} {selection}"
    )
    return (
        f"{who} use{one} {gpus} as well: each sizes its stacks of trials to "
        f"{_fraction(n + 1)} of its memory and allocates it on demand; for full speed give each "
        "worker its own GPU: --device N (or CUDA_VISIBLE_DEVICES)"
    )


def memory_share(sharers: list[dict]) -> float:
    """The fraction of its device's memory this worker plans its stacks of trials against."""
    return 1 / (1 + len(sharers))


def _backend_started() -> bool:
    """True once this process started a jax backend (its device list is fixed from then on)."""
    from jax._src import xla_bridge

    return bool(getattr(xla_bridge, "_backends", None))


def _visible_variable() -> tuple[str, str | None]:
    """The variable narrowing this process's GPUs and its value without spaces (None: unset)."""
    for name in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"):
        value = os.environ.get(name)
        if value is not None:
            return name, value.replace(" ", "")
    return "CUDA_VISIBLE_DEVICES", None


def _overlap(a: str, b: str) -> bool:
    """Whether two selections share a device. Names are compared as written: the same GPU named
    by index in one and by UUID in the other is not recognised."""
    if ALL in (a, b):
        return True
    return bool(set(a.split(",")) & set(b.split(",")) - {""})


def _read_live(path: str) -> dict | None:
    """A registry file's entry if its owner is alive and the file is whole; a dead owner's file
    is removed. Never raises for a file that vanishes or cannot be read."""
    try:
        with open(path, "rb") as f:
            try:
                # Shared, so two workers probing the same dead file at once both see it dead.
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                entry = json.loads(f.read())
                if not isinstance(entry, dict) or not isinstance(entry.get("devices"), str):
                    return None
                return entry
            os.unlink(path)
            return None
    except (OSError, ValueError):
        # Gone meanwhile, not ours to read, or not JSON: skipped, it is not a worker we can use.
        return None


def _directory() -> str:
    """The registry folder ($JAXPLAY_WORKERS_DIR, or one per user in the temporary directory),
    created if missing."""
    folder = os.environ.get(DIR_ENV)
    if folder:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        return folder
    folder = os.path.join(tempfile.gettempdir(), f"jaxplay-workers-{os.getuid()}")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    # A shared /tmp lets anyone create this name first (or as a link elsewhere): use only our own.
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise EnvironmentFault(
            f"{folder}: not a folder of this user's, so jaxplay cannot record its workers there; "
            f"remove it or set {DIR_ENV} to a folder of yours"
        )
    return folder


def _fraction(n: int) -> str:
    """1/n in words for the warning."""
    return {2: "half", 3: "a third", 4: "a quarter"}.get(n, f"1/{n}")
