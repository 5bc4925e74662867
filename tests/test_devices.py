"""jaxplay.devices: picking a worker's GPU, the host's registry of workers, the memory policy."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from jaxplay import devices
from jaxplay.errors import ConfigError

GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


@pytest.fixture
def no_backend(monkeypatch):
    """select() as in a process whose jax backend has not started yet (this one's usually has)."""
    monkeypatch.setattr(devices, "_backend_started", lambda: False)
    for name in GPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry folder of this test's own: parallel tests never see each other's workers."""
    folder = tmp_path / "workers"
    monkeypatch.setenv(devices.DIR_ENV, str(folder))
    return folder


def test_select_none_changes_nothing(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert devices.select(None) is None
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_select_indexes_the_gpus_this_process_sees(no_backend, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert devices.select(1) == "3"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert os.environ["HIP_VISIBLE_DEVICES"] == "3"
    assert devices.visible() == "3"


def test_select_without_a_list_takes_the_index(no_backend):
    assert devices.visible() == "all"
    assert devices.select(2) == "2"
    assert devices.visible() == "2"


@pytest.mark.parametrize("device", [2, -1])
def test_select_refuses_an_index_outside_the_list(no_backend, monkeypatch, device):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with pytest.raises(ConfigError) as e:
        devices.select(device)
    message = str(e.value)
    assert f"--device {device}" in message and "CUDA_VISIBLE_DEVICES=2,3" in message
    assert "--device 0 to 1" in message and "\n" not in message
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_select_refuses_a_negative_index_without_a_list(no_backend):
    with pytest.raises(ConfigError, match="--device -1"):
        devices.select(-1)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_select_refuses_once_a_backend_started(monkeypatch):
    import jax

    jax.devices()  # starts this process's (CPU) backend if nothing did yet
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with pytest.raises(ConfigError, match="a jax backend already started") as e:
        devices.select(0)
    assert "--device" in str(e.value) and "CUDA_VISIBLE_DEVICES" in str(e.value)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_select_in_a_fresh_process_before_any_backend(tmp_path):
    # The real backend check, in a process where nothing started jax yet.
    env = {k: v for k, v in os.environ.items() if k not in GPU_VARIABLES}
    env["CUDA_VISIBLE_DEVICES"] = "2,3"
    code = (
        "import os; from jaxplay import devices; "
        "print(devices.select(1), os.environ['CUDA_VISIBLE_DEVICES'], "
        "os.environ['HIP_VISIBLE_DEVICES'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "3", "3"]


@pytest.fixture
def no_memory_policy(monkeypatch):
    for name in devices.MEMORY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("sharing", [True, False])
def test_prepare_memory_turns_preallocation_off(no_memory_policy, sharing):
    said = devices.prepare_memory(sharing)
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert "XLA_PYTHON_CLIENT_PREALLOCATE=false" in said


@pytest.mark.parametrize(
    "name, value",
    [
        ("XLA_PYTHON_CLIENT_PREALLOCATE", "true"),
        ("XLA_PYTHON_CLIENT_MEM_FRACTION", ".5"),
        ("XLA_PYTHON_CLIENT_ALLOCATOR", "platform"),
    ],
)
def test_prepare_memory_leaves_the_users_choice(no_memory_policy, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert devices.prepare_memory(True) is None
    assert os.environ[name] == value
    assert {n: os.environ.get(n) for n in devices.MEMORY_VARIABLES} == {
        n: (value if n == name else None) for n in devices.MEMORY_VARIABLES
    }


def start_worker(selection: str) -> subprocess.Popen:
    """Another worker process (same registry folder, through the environment), registered."""
    code = textwrap.dedent(f"""
        import time
        from jaxplay import devices
        registration = devices.register({selection!r})
        print("ready", flush=True)
        time.sleep(600)
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = child.stdout.readline()
    if line.strip() != "ready":
        child.kill()
        _, err = child.communicate()
        pytest.fail(f"worker did not start: {line!r} {err}")
    return child


def stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
    child.communicate()


def test_another_worker_shares_overlapping_devices_until_it_dies(registry):
    child = start_worker("0,1")
    try:
        with devices.register("1") as same, devices.register("2") as other:
            assert same.sharers() == [{"pid": child.pid, "devices": "0,1"}]
            assert other.sharers() == []
            (child_file,) = [
                p for p in registry.glob("*.json") if p.name.startswith(f"{child.pid}-")
            ]
            stop(child)  # SIGKILL: it never closes its registration
            assert same.sharers() == []
            assert not child_file.exists()
    finally:
        stop(child)
    assert list(registry.iterdir()) == []  # closed registrations removed their files


def test_all_overlaps_every_selection(registry):
    child = start_worker("3")
    try:
        with devices.register("all") as everything:
            assert [s["pid"] for s in everything.sharers()] == [child.pid]
    finally:
        stop(child)


def test_registrations_in_one_process_see_each_other(registry):
    with devices.register("all") as first, devices.register("0") as second:
        assert first.sharers() == [{"pid": os.getpid(), "devices": "0"}]
        assert second.sharers() == [{"pid": os.getpid(), "devices": "all"}]
    assert first.sharers() == [] and list(registry.iterdir()) == []


def test_register_defaults_to_the_visible_selection(registry, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with devices.register() as registration:
        assert registration.selection == "1"
        (path,) = registry.glob("*.json")
        entry = json.loads(path.read_text())
        assert entry["pid"] == os.getpid() and entry["devices"] == "1"
        assert isinstance(entry["started"], float)


def test_half_written_files_are_skipped(registry):
    with devices.register("all") as registration:
        dead = registry / "999999-dead.json"
        dead.write_text("")
        # A live worker whose file is not whole (held, unreadable as JSON): skipped, kept.
        live = registry / "999998-busy.json"
        live.write_text('{"pid": 99')
        with open(live) as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            assert registration.sharers() == []
            assert live.exists()
        assert not dead.exists()  # nobody held it: a dead worker's


def test_default_folder_is_per_user_under_the_temporary_directory(tmp_path, monkeypatch):
    monkeypatch.delenv(devices.DIR_ENV, raising=False)
    monkeypatch.setattr(devices.tempfile, "gettempdir", lambda: str(tmp_path))
    with devices.register("0") as registration:
        folder = tmp_path / f"jaxplay-workers-{os.getuid()}"
        assert os.path.dirname(registration.path) == str(folder)
        assert folder.stat().st_mode & 0o777 == 0o700


def test_sharing_warning():
    two = [{"pid": 123, "devices": "0"}, {"pid": 456, "devices": "0,1"}]
    assert devices.sharing_warning([], "gpu", "0") is None
    assert devices.sharing_warning(two, "cpu", "0") is None
    gpu = devices.sharing_warning(two, "gpu", "0")
    assert "2 other jaxplay workers" in gpu and "pids 123, 456" in gpu and "GPU 0" in gpu
    assert "a third" in gpu and "--device N" in gpu and "\n" not in gpu
    everything = devices.sharing_warning(two[:1], "gpu", "all")
    assert "(pid 123)" in everything and "the same GPUs" in everything and "half" in everything
    tpu = devices.sharing_warning(two, "tpu", "all")
    assert "one worker per TPU host" in tpu and "--device" not in tpu


def test_memory_share():
    assert devices.memory_share([]) == 1
    assert devices.memory_share([{"pid": 1, "devices": "0"}] * 3) == 0.25


def test_the_sweep_plans_against_its_share_of_a_device_another_worker_uses(
    registry, tmp_path, monkeypatch, capsys
):
    """The sweep's wiring: it registers, sets the memory policy before jax starts (here jax has
    started, so only the variable is checked), and sizes stacks against its share."""
    from jaxplay import sweep

    for name in devices.MEMORY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    argv = ["--config", "experiments/mnist1d_mlp.py:smoke", "--workdir", str(tmp_path / "w"),
            "--dry_run", "--executor", "batched", "--device_memory", "100MB"]  # fmt: skip
    assert sweep.main(argv) == 0
    alone = capsys.readouterr().out
    assert "a stack may fill 76.3 MiB (80% of 95.4 MiB, --device_memory)" in alone
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert list(registry.iterdir()) == []  # the sweep's registration ends with it
    child = start_worker(devices.ALL)
    try:
        assert sweep.main(argv) == 0
    finally:
        stop(child)
    shared = capsys.readouterr()
    assert "80% of this worker's share, 1/2, of 95.4 MiB" in shared.out
    assert "warning" not in shared.err  # CPU workers share cores, not a memory pool
