"""SIGKILL the sweep at random points (mid-step, mid-checkpoint, mid-store-write, at start-up),
rerun it, and check after every run that nothing finished was lost or duplicated and that every
interrupted trial continued from its checkpoint; at the end every result equals an uninterrupted
run's.

Each run is forked from a server process that imported jaxplay and generated the dataset once
(it never starts a jax backend, so forking it is safe): a run then starts in ~0.2 s instead of
~6 s, which is what makes 20+ kills affordable in CI.
"""

import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from jaxplay import store as store_lib
from test_workers import _study_file

KILLS, TRIALS, STEPS, EVERY = 20, 4, 300, 20
SERVER = r"""
import json, os, sys
from jax._src import xla_bridge
from jaxplay import config as config_lib, spec, sweep, workloads
workloads.bind(spec.resolve(config_lib.load(sys.argv[1])).base)  # the dataset, once before forks
assert not xla_bridge._backends, "a jax backend started before fork"
print("ready", flush=True)
for line in sys.stdin:
    args, out = json.loads(line)
    pid = os.fork()
    if pid == 0:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 1
        try:
            code = sweep.main(args)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
"""


class Runs:
    """Starts sweep runs through the fork server; kills one after a delay."""

    def __init__(self, tmp_path, study_file):
        env = dict(
            os.environ, PYTHONUNBUFFERED="1", JAXPLAY_COMPILATION_CACHE=str(tmp_path / "xla")
        )
        self.tmp, self.study_file, self.count = tmp_path, study_file, 0
        self.server = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(study_file)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        assert self.server.stdout.readline().strip() == "ready"

    def run(self, workdir, study, kill: tuple[str, float] | None = None) -> tuple[int, str]:
        """(exit code, output) of one run; -9 if it was killed. `kill`: ('start', t) kills it t
        seconds after it started, ('training', t) t seconds after its first training step."""
        out = self.tmp / f"run{self.count}.txt"
        out.write_text("")  # exists before the run starts: the child may open it late, or never
        self.count += 1
        args = [
            f"--config={self.study_file}",
            f"--workdir={workdir}",
            "--report=false",
            f"--config.study.name={study}",
            "--config.train.checkpoint_every_secs=0.05",
        ]
        self.server.stdin.write(json.dumps([args, str(out)]) + "\n")
        self.server.stdin.flush()
        pid = int(self.server.stdout.readline())
        if kill is not None:
            when, delay = kill
            deadline = time.monotonic() + 120
            while when == "training" and time.monotonic() < deadline and not self._exited(0.01):
                if re.search(r"^  (step|resuming from step) ", out.read_text(), re.M):
                    break
            if not self._exited(delay):
                os.kill(pid, signal.SIGKILL)
        return int(self.server.stdout.readline()), out.read_text()

    def _exited(self, wait: float) -> bool:
        return bool(select.select([self.server.stdout], [], [], wait)[0])

    def close(self):
        self.server.stdin.close()
        self.server.wait(timeout=60)


def _finalized_steps(workdir, study, index, *, whole: bool = False) -> list[int]:
    """Steps whose checkpoint orbax finalized (it writes a step's metadata file, then renames the
    step's temporary folder); `whole`: only those holding the whole train state."""
    folder = workdir / study / f"trial_{index:04d}" / "checkpoints"
    if not folder.exists():
        return []
    return sorted(
        int(p.name)
        for p in folder.iterdir()
        if p.name.isdigit()
        and (p / "_CHECKPOINT_METADATA").exists()
        and (not whole or (p / "state").exists())
    )


def _snapshot(workdir) -> dict:
    """{(study, index): trial record + on-disk checkpoints}, after checking the store's
    invariants."""
    db = workdir / store_lib.DB_NAME
    if not db.exists():
        return {}
    store = store_lib.Store(store_lib.default_url(workdir))
    try:
        out = {}
        for name in store.study_names():
            sid = store.study_id(name)
            record, curves = store.record(sid), store.study_curves(sid)
            # No duplicate rows: one trial per index, one value per (trial, metric, step).
            assert sorted(t["index"] for t in record["trials"]) == list(range(TRIALS)), record[
                "trials"
            ]
            for t in record["trials"]:
                steps = [s for s, _ in curves.get(t["index"], {}).get("val/error", [])]
                # Evaluations form an unbroken prefix of 0, EVERY, 2*EVERY, ...: nothing twice, no
                # gap.
                assert steps == list(range(0, EVERY * len(steps), EVERY)), (name, t["index"], steps)
                t["whole"] = _finalized_steps(workdir, name, t["index"], whole=True)
                t["steps"] = steps
                out[name, t["index"]] = t
        with store.engine.connect() as c:
            dupes = c.execute(
                sa.text(
                    "SELECT trial_id, name, step FROM metrics GROUP BY trial_id, name, step "
                    "HAVING COUNT(*) > 1"
                )
            ).all()
        assert not dupes, dupes
        return out
    finally:
        store.close()


def _check_run(before: dict, after: dict, output: str, study: str, workdir) -> int:
    """Checks one run against the state before it; returns how many trials it resumed."""
    for key, t in before.items():
        if t["status"] == "completed":  # finished trials are kept exactly
            kept = after[key]
            assert kept["status"] == "completed", (key, kept)
            for field in ("best_value", "best_step", "steps_run", "final_metrics"):
                assert kept[field] == t[field], (key, field)
    for key, t in after.items():
        if t["status"] == "completed":  # its best checkpoint is a finished one, on disk
            assert t["best_step"] in _finalized_steps(workdir, *key), (key, t["best_step"])
            assert t["steps"][-1] == STEPS
    # Every trial this run started continued from its newest whole checkpoint, if it had one.
    resumed, lines = (
        0,
        [line for line in output.splitlines() if not line.startswith("WARNING:absl")],
    )
    for i, line in enumerate(lines):
        found = re.match(r"trial (\d+) \(", line)
        if not found or i + 1 >= len(lines):
            continue
        index, following = int(found.group(1)), lines[i + 1]
        whole = before.get((study, index), {}).get("whole", [])
        if whole:
            assert following.strip() == f"resuming from step {whole[-1]}", (
                index,
                whole,
                lines[i : i + 2],
            )
            resumed += 1
        else:
            assert "resuming" not in following, (index, following)
    return resumed


def test_sigkill_at_random_points_loses_and_duplicates_nothing(tmp_path):
    rng = random.Random(20261128)
    study_file = _study_file(tmp_path, "faults", trials=TRIALS, steps=STEPS, every=EVERY)
    workdir, reference = tmp_path / "killed", tmp_path / "reference"
    runs = Runs(tmp_path, study_file)
    try:
        code, output = runs.run(reference, "faults")
        assert code == 0, output[-3000:]
        expected = {k[1]: t for k, t in _snapshot(reference).items()}

        kills = resumed = study = 0
        while kills < KILLS:
            before = _snapshot(workdir)
            # A quarter of the kills land in start-up (store writes, compiling, restoring), the rest
            # mid-training (steps, evaluations, store writes, asynchronous checkpoint writes).
            kill = (
                ("start", rng.uniform(0.05, 2.5))
                if rng.random() < 0.25
                else ("training", rng.uniform(0.0, 1.2))
            )
            code, output = runs.run(workdir, f"faults{study}", kill)
            assert code in (0, -signal.SIGKILL), output[-3000:]
            kills += code == -signal.SIGKILL
            resumed += _check_run(before, _snapshot(workdir), output, f"faults{study}", workdir)
            if code == 0:  # finished before the kill: the next runs work on a fresh study
                study += 1
        for name in {k[0] for k in _snapshot(workdir)}:  # let every study finish
            before = _snapshot(workdir)
            code, output = runs.run(workdir, name)
            assert code == 0, output[-3000:]
            resumed += _check_run(before, _snapshot(workdir), output, name, workdir)
    finally:
        runs.close()
    assert resumed >= 5  # the kills did land mid-trial, and those trials resumed
    final = _snapshot(workdir)
    for (name, index), t in final.items():
        assert t["status"] == "completed", (name, index)
        # Resuming is exact: the same numbers as the run that was never interrupted.
        assert t["best_value"] == pytest.approx(expected[index]["best_value"], abs=1e-6), (
            name,
            index,
        )
        assert t["best_step"] == expected[index]["best_step"]
        assert t["final_metrics"]["val/loss"] == pytest.approx(
            expected[index]["final_metrics"]["val/loss"], rel=1e-5
        )
