"""scripts/tpu_vm.sh drives gcloud as a TPU VM slice needs it (a stand-in gcloud records the calls):
every worker gets the code and runs the sweep as one jax.distributed job, the store's password
never reaches a command line or the output nor stays behind in a file, the sweep's arguments
reach the workers as given, and the slice is deleted even when the sweep fails."""

import json
import os
import pathlib
import shlex
import subprocess
import tarfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "tpu_vm.sh"
STORE = "postgresql+psycopg://jaxplay:S3cret-pw@db.example:5432/studies"
FAKE_GCLOUD = """#!/usr/bin/env python3
import json, os, shutil, sys
log = os.environ["FAKE_GCLOUD_LOG"]
args = sys.argv[1:]
with open(log, "a") as f:
    f.write(json.dumps(args) + "\\n")
if "scp" in args and os.environ.get("FAKE_SECRET_SCP_FAILS") and any(
    a.endswith(":.jaxplay_store") for a in args
):
    sys.exit(1)
if "scp" in args:  # keep what was copied to the workers
    words = ("compute", "tpus", "tpu-vm", "scp")
    source, target = [a for a in args if not a.startswith("-") and a not in words][:2]
    shutil.copy(source, os.path.join(os.path.dirname(log), target.split(":", 1)[1]))
if "ssh" in args and any("jaxplay.sweep" in a for a in args) and os.environ.get("FAKE_SWEEP_FAILS"):
    sys.exit(1)
"""


def _launch(tmp_path, *args, env_extra=None):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD)
    gcloud.chmod(0o755)
    scratch = tmp_path / "tmp"  # the script's temporary files go here, and must not stay
    scratch.mkdir(exist_ok=True)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        FAKE_GCLOUD_LOG=str(tmp_path / "calls.jsonl"),
        JAXPLAY_STORE=STORE,
        TMPDIR=str(scratch),
    )
    env.update(env_extra or {})
    run = subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120
    )
    log = tmp_path / "calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return run, calls


FLAGS = [
    "--name",
    "study-slice",
    "--zone",
    "us-central2-b",
    "--type",
    "v4-16",
    "--config",
    "experiments/mnist1d_mlp.py",
    "--workdir",
    "gs://my-bucket/studies",
    "--",
    "--max_trials=4",
]


def test_all_creates_installs_runs_on_every_worker_and_deletes(tmp_path):
    run, calls = _launch(tmp_path, "all", *FLAGS)
    assert run.returncode == 0, run.stderr
    verbs = [c[3] for c in calls]
    assert verbs == ["create", "scp", "ssh", "scp", "ssh", "delete"], calls
    assert "--accelerator-type=v4-16" in calls[0] and "--zone=us-central2-b" in calls[0]
    for c in calls[1:5]:
        assert "--worker=all" in c, c  # every host of the slice
    install, sweep = calls[2][-1], calls[4][-1]
    assert "pip install" in install and "jax[tpu]" in install
    assert "python -m jaxplay.sweep" in sweep and "--distributed" in sweep
    assert "--workdir=gs://my-bucket/studies" in sweep and "--max_trials=4" in sweep
    # The code that reached the workers is this checkout.
    with tarfile.open(tmp_path / "jaxplay.tar.gz") as archive:
        assert {"jaxplay/sweep.py", "pyproject.toml"} <= set(archive.getnames())
    # The store URL went to the workers in a file, never on a command line or in the output.
    assert (tmp_path / ".jaxplay_store").read_text() == STORE
    assert "S3cret-pw" not in json.dumps(calls) and "S3cret-pw" not in run.stdout + run.stderr


def test_a_failed_sweep_still_deletes_the_slice(tmp_path):
    run, calls = _launch(tmp_path, "all", *FLAGS, env_extra={"FAKE_SWEEP_FAILS": "1"})
    assert run.returncode == 1  # the sweep's failure, not the successful delete's 0
    assert [c[3] for c in calls] == ["create", "scp", "ssh", "scp", "ssh", "delete"], calls
    assert not list((tmp_path / "tmp").iterdir())  # nor left the archive or the store URL


@pytest.mark.parametrize("step", ["run", "all"])
def test_the_store_url_file_is_removed_when_copying_it_fails(tmp_path, step):
    run, calls = _launch(tmp_path, step, *FLAGS, env_extra={"FAKE_SECRET_SCP_FAILS": "1"})
    assert run.returncode == 1
    sources = [c[4] for c in calls if c[3] == "scp" and c[5].endswith(":.jaxplay_store")]
    assert len(sources) == 1 and sources[0].startswith(str(tmp_path / "tmp")), calls
    assert not list((tmp_path / "tmp").iterdir())
    assert not [c for c in calls if c[3] == "ssh" and "jaxplay.sweep" in c[-1]]
    if step == "all":
        assert calls[-1][3] == "delete"


def test_sweep_arguments_reach_the_workers_as_given(tmp_path):
    config = "experiments/my study;touch INJECTED.py"
    extra = ["--config.study.notes=a b; c", "--max_trials=4"]
    flags = list(FLAGS[: FLAGS.index("--")])
    flags[flags.index("--config") + 1] = config
    run, calls = _launch(tmp_path, "run", *flags, "--", *extra)
    assert run.returncode == 0, run.stderr
    command = calls[-1][-1]
    prefix = "chmod 600 ~/.jaxplay_store && cd jaxplay && JAXPLAY_STORE=$(cat ~/.jaxplay_store) "
    assert command.startswith(prefix), command
    argv = [
        "python",
        "-m",
        "jaxplay.sweep",
        f"--config={config}",
        "--workdir=gs://my-bucket/studies",
        "--distributed",
        *extra,
    ]
    assert shlex.split(command[len(prefix) :]) == argv
    # As a worker's shell runs it: one python process with those arguments and the store URL,
    # and nothing else (the ';' ran no command).
    home = tmp_path / "worker"
    (home / "jaxplay").mkdir(parents=True)
    (home / ".jaxplay_store").write_text(STORE)
    (home / "bin").mkdir()
    python = home / "bin" / "python"
    python.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        "json.dump([sys.argv[1:], os.environ['JAXPLAY_STORE']], open(os.environ['SEEN'], 'w'))\n"
    )
    python.chmod(0o755)
    env = dict(os.environ, HOME=str(home), PATH=f"{home / 'bin'}:{os.environ['PATH']}")
    env["SEEN"] = str(tmp_path / "seen.json")
    worker = subprocess.run(["bash", "-c", command], env=env, cwd=home, capture_output=True)
    assert worker.returncode == 0, worker.stderr
    assert json.loads((tmp_path / "seen.json").read_text()) == [argv[1:], STORE]
    assert not list(home.rglob("INJECTED*"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"JAXPLAY_STORE": ""}, "export JAXPLAY_STORE"),
        ({"--workdir": "/local/dir"}, "--workdir must be a gs:// bucket path"),
        ({"--name": ""}, "--name is required"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(tmp_path, change, message):
    flags = list(FLAGS)
    for key, value in change.items():
        if key.startswith("--"):
            flags[flags.index(key) + 1] = value
    env = {k: v for k, v in change.items() if not k.startswith("--")}
    run, calls = _launch(tmp_path, "run", *flags, env_extra=env)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert not [c for c in calls if c[3] == "ssh"]
