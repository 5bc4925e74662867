"""Many workers on one study: claims are atomic, leases expire, a dead worker's trial resumes."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from conftest import BACKENDS
from factories import float_only_study
from jaxplay import driver, sweep
from jaxplay import store as store_lib

REPO = pathlib.Path(__file__).resolve().parent.parent
STUDY = """
import ml_collections
from jaxplay import spaces

def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.data = dict(name="mnist1d", batch_size=64, val_size=500, pipeline="device")
    c.model = dict(name="mlp", width=32, depth=1, activation="relu", dropout=0.0)
    c.optimizer = dict(name="adam", learning_rate=3e-3, b1=0.9, b2=0.999, eps=1e-8,
                       weight_decay=0.0)
    c.schedule = dict(name="constant", warmup_steps=0)
    c.train = dict(steps=STEPS, eval_every=EVERY, keep_best=2, checkpoint_every_secs=0.0)
    c.study = dict(name="NAME", objective="val/error", mode="min", algorithm="quasirandom",
                   num_trials=TRIALS, seed=0)
    c.search = dict(optimizer=dict(learning_rate=spaces.log(1e-3, 1e-2)))
    return c
"""


def _study_file(folder, name, trials, steps, every):
    path = folder / "study.py"
    path.write_text(
        STUDY.replace("STEPS", str(steps))
        .replace("EVERY", str(every))
        .replace("TRIALS", str(trials))
        .replace("NAME", name)
    )
    return path


def _worker(path, workdir, *extra, **popen):
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAXPLAY_COMPILATION_CACHE=str(workdir / "xla"))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jaxplay.sweep",
            f"--config={path}",
            f"--workdir={workdir}",
            "--report=false",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workdir,
        env=env,
        **popen,
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_four_workers_finish_twelve_trials_exactly_once(backend, tmp_path):
    name = f"workers-{backend}-{os.getpid()}-{time.time_ns()}"
    extra = (
        [] if backend == "sqlite" else [f"--store={__import__('conftest').fresh_postgres_url()}"]
    )
    path = _study_file(tmp_path, name, trials=12, steps=40, every=20)
    workers = [_worker(path, tmp_path, *extra) for _ in range(4)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * 4, "\n".join(o[-2000:] for o in outputs)
    finished = [
        line.split()[1]
        for o in outputs
        for line in o.splitlines()
        if line.startswith("trial ") and " completed:" in line
    ]
    assert sorted(map(int, finished)) == list(range(12)), outputs  # each trial once, by one worker
    assert not any("resuming" in o for o in outputs)
    url = extra[0].split("=", 1)[1] if extra else store_lib.default_url(tmp_path)
    store = store_lib.Store(url)
    try:
        record = store.record(store.study_id(name))
        assert [t["status"] for t in record["trials"]] == ["completed"] * 12
        assert len({t["worker"] for t in record["trials"]}) >= 2  # the work was shared
        for t in record["trials"]:  # one evaluation per step: no trial ran twice
            steps = [s for s, _ in store.curves(store.study_id(name), t["index"])["val/error"]]
            assert steps == [0, 20, 40], (t["index"], steps)
    finally:
        store.close()


def test_two_workers_share_a_bayesian_optimization_study(tmp_path):
    # Adaptive trials are created as results arrive: each worker asks the GP with the other's
    # running trial as a pending point, and a worker that loses the race to create a trial asks
    # again.
    name = f"workers-gp-{os.getpid()}"
    path = _study_file(tmp_path, name, trials=8, steps=40, every=20)
    path.write_text(
        path.read_text().replace('algorithm="quasirandom"', 'algorithm="gp", initial_trials=3')
    )
    # Half the trials each: on a loaded machine one worker could otherwise finish all eight before
    # the other has compiled, and the test would show nothing shared.
    workers = [_worker(path, tmp_path, "--max_trials=4") for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0] * 2, "\n".join(o[-2000:] for o in outputs)
    store = store_lib.Store(store_lib.default_url(tmp_path))
    try:
        record = store.record(store.study_id(name))
    finally:
        store.close()
    trials = record["trials"]
    assert [t["index"] for t in trials] == list(range(8)) and all(
        t["status"] == "completed" for t in trials
    )
    rates = [t["params"]["optimizer.learning_rate"] for t in trials]
    assert len(set(rates)) == 8 and all(1e-3 <= r <= 1e-2 for r in rates)
    assert len({t["worker"] for t in trials}) == 2


def test_a_killed_workers_trial_resumes_from_its_checkpoint(tmp_path):
    path = _study_file(tmp_path, "killed", trials=1, steps=800, every=20)
    first = _worker(path, tmp_path, start_new_session=True)
    seen = []
    for line in first.stdout:
        seen.append(line)
        if line.split()[:2] == ["step", "100/800"]:
            break
    time.sleep(1.0)  # a few more periods, each checkpointed (step 100 is saved after its line)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert seen and seen[-1].split()[:2] == ["step", "100/800"], "".join(seen)[-2000:]
    rerun = _worker(path, tmp_path)
    output = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, output[-3000:]
    assert "resuming interrupted trial(s) [0]" in output
    resumed = [line for line in output.splitlines() if "resuming from step" in line]
    assert resumed and int(resumed[0].split("resuming from step")[1].split()[0]) >= 100, output[
        -3000:
    ]
    assert "trial 0 completed" in output


def test_an_expired_lease_is_reclaimed_and_resumed_from_its_checkpoint(tmp_path):
    c = float_only_study(
        num_trials=2,
        **{"train.steps": 200, "train.eval_every": 50, "train.checkpoint_every_secs": 0.0},
    )

    def stop_at_100(line):
        if line.split()[:2] == ["step", "100/200"]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_study(c, tmp_path, executor="sequential", log=stop_at_100, report=False)
    # Interrupted as step 100 was logged: the trial resumes from the newest finalized checkpoint
    # holding the whole train state that it wrote by then.
    checkpoints = driver.trial_dir(tmp_path, c.study.name, 0) / "checkpoints"
    saved = max(
        int(p.name)
        for p in checkpoints.iterdir()
        if p.name.isdigit() and (p / "state").exists() and (p / "_CHECKPOINT_METADATA").exists()
    )
    assert 50 <= saved <= 100
    store = store_lib.Store(store_lib.default_url(tmp_path))
    try:
        sid = store.study_id(c.study.name)
        ghost = store.claim(
            sid, "another-host:123", indices=[0]
        )  # a worker elsewhere, then silence
        assert ghost is not None
    finally:
        store.close()
    time.sleep(0.6)
    lines = []
    record = sweep.run_study(
        c, tmp_path, executor="sequential", log=lines.append, report=False, lease_s=0.5
    )
    text = "\n".join(lines)
    assert "reclaimed trial 0" in text and f"resuming from step {saved}" in text, text
    assert [t["status"] for t in record["trials"]] == ["completed", "completed"]
    assert record["trials"][0]["worker"] != "another-host:123"


def test_a_worker_whose_lease_was_taken_over_stops_and_writes_nothing_more(tmp_path):
    c = float_only_study(
        num_trials=2,
        **{"train.steps": 200, "train.eval_every": 50, "train.checkpoint_every_secs": 0.0},
    )
    url = store_lib.default_url(tmp_path)
    thief = {}

    def take_over_at_50(line):
        lines.append(line)
        if line.split()[:2] == ["step", "50/200"] and not thief:
            # This worker stalls past its lease; another worker reclaims its trial.
            other = store_lib.Store(url)
            try:
                thief["claim"] = other.claim(
                    other.study_id(c.study.name), "other-host:9", indices=[0], lease_s=0.0
                )
            finally:
                other.close()
        if line.startswith("waiting for trial 0 by other-host:9"):
            # Having run what it could, the worker waits for the trial the other one holds (a run
            # that returns leaves no trial running): stop it there.
            raise KeyboardInterrupt

    lines = []
    with pytest.raises(KeyboardInterrupt):
        sweep.run_study(c, tmp_path, executor="sequential", log=take_over_at_50, report=False)
    text = "\n".join(lines)
    assert thief["claim"] is not None and thief["claim"][1] == 0
    assert "trial 0 was taken over by another worker at step 100" in text, text
    assert "trial 0 completed" not in text and "trial 1 completed" in text
    store = store_lib.Store(url)
    try:
        record = store.record(store.study_id(c.study.name))
    finally:
        store.close()
    trial0, trial1 = record["trials"]
    # left to its new owner
    assert (trial0["status"], trial0["worker"]) == ("running", "other-host:9")
    assert trial1["status"] == "completed"
    store = store_lib.Store(url)
    try:  # nothing after the takeover: no step-100 metrics, no step-100 checkpoint
        assert [s for s, _ in store.curves(store.study_id(c.study.name), 0)["val/error"]] == [0, 50]
    finally:
        store.close()
    steps = sorted(
        int(p.name)
        for p in (tmp_path / c.study.name / "trial_0000" / "checkpoints").iterdir()
        if p.name.isdigit()
    )
    assert steps == [50]
