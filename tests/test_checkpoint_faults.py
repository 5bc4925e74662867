"""The machine failing under a trial's checkpoints: a write that fails (a full disk) stops the run
with CheckpointWriteError and leaves the trial resumable; a read that fails leaves the checkpoint
alone; a checkpoint whose bytes are damaged is set aside and the trial resumes from the whole one
before it, or from step 0. Every resumed trial ends with the numbers of an uninterrupted run.

Resuming is exact, not approximate: the rerun executes the same computation (jit compiles it once
more for the restored arrays, and XLA compiles one computation to the same code) on the same
batches (their order is a function of the seed and the step) from a state restored bit for bit, so
its evaluations equal the uninterrupted run's exactly."""

import errno
import os

import orbax.checkpoint as ocp
import pytest

from factories import tiny_config
from jaxplay import spec, sweep, train
from jaxplay import store as store_lib
from jaxplay.checkpoints import TrialCheckpoints
from jaxplay.errors import CheckpointReadError, CheckpointWriteError, EnvironmentFault
from test_workers import _study_file

# After a restore fails, tensorstore completes the reads still in flight on the event loop orbax
# has closed, and says so as an unraisable exception in its own thread, during whichever test runs
# then: orbax's and tensorstore's affair (the restore's outcome is its error, which is tested).
pytestmark = pytest.mark.filterwarnings(
    "ignore:(?s).*Event loop is closed:pytest.PytestUnraisableExceptionWarning"
)


def _trial():
    """Four periods of 50 steps, a checkpoint written at every one; dropout, so a resume that
    lost the random state would show."""
    c = tiny_config(
        **{
            "train.steps": 200,
            "train.eval_every": 50,
            "schedule.name": "constant",
            "model.dropout": 0.1,
            "train.checkpoint_every_secs": 0.0,
        }
    )
    return spec.resolve(c).base


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(result, curve, folder) of a run that was never interrupted."""
    folder = tmp_path_factory.mktemp("reference")
    curve = {}
    result = train.train_and_evaluate(
        _trial(), folder, on_eval=lambda s, m: curve.__setitem__(s, m)
    )
    assert result.status == "completed"
    return result, curve, folder


def _assert_same_as(reference, result, curve, after: int):
    """The result, and every evaluation after step `after`, equal the uninterrupted run's."""
    expected, expected_curve, _ = reference
    assert result.status == "completed"
    assert (result.best_step, result.best_value) == (expected.best_step, expected.best_value)
    assert result.final_metrics == expected.final_metrics
    assert sorted(curve) == [s for s in sorted(expected_curve) if s > after]
    for step, metrics in curve.items():
        assert metrics == expected_curve[step], step


def _whole_steps(folder) -> list[int]:
    ckpt = TrialCheckpoints(folder / "checkpoints", keep_best=2, mode="min")
    try:
        return ckpt.whole_steps()
    finally:
        ckpt.close()


def _disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class _FailedWrite:
    """An orbax commit future (ocp.Future) whose write fails as on a full disk: orbax waits on it
    in its background thread, as it waits on tensorstore's writes."""

    def result(self, timeout=None):
        raise _disk_full()

    def cancel(self):
        return None


def _fail_writes(monkeypatch, where: str, failing) -> None:
    """The checkpoint writes whose number (1, 2, ...) is in `failing` fail as on a full disk:
    `where` 'save' in orbax's save call (its blocking part: folders, the start of the writes),
    'background' in the asynchronous commit that follows it."""
    writes = []
    if where == "save":
        original = ocp.CheckpointManager.save

        def save(self, step, *args, **kwargs):
            writes.append(step)
            if len(writes) in failing:
                raise _disk_full()
            return original(self, step, *args, **kwargs)

        monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    else:
        original_async = ocp.StandardCheckpointHandler.async_save

        async def async_save(self, *args, **kwargs):
            futures = await original_async(self, *args, **kwargs)
            writes.append(None)
            return [*(futures or []), _FailedWrite()] if len(writes) in failing else futures

        monkeypatch.setattr(ocp.StandardCheckpointHandler, "async_save", async_save)


# One write per period (checkpoint_every_secs=0): write 2 is step 100's, write 4 the final one.
# A failed background write surfaces when the next write waits for it or, for the final one, when
# the run closes the trial's checkpoints; either way it is reported as the failed step's.
@pytest.mark.parametrize(
    "where, failing, failed_step, resume_point",
    [
        ("save", range(2, 5), 100, 50),
        ("background", range(2, 5), 100, 50),
        ("background", [4], 200, 150),
    ],
    ids=["at-save", "in-background", "final-write-at-close"],
)
def test_a_full_disk_stops_the_run_and_the_trial_resumes_to_the_same_result(
    where, failing, failed_step, resume_point, reference, tmp_path, monkeypatch
):
    trial = _trial()
    folder = tmp_path / "checkpoints"
    _fail_writes(monkeypatch, where, failing)
    with pytest.raises(CheckpointWriteError) as failed:
        train.train_and_evaluate(trial, tmp_path)
    monkeypatch.undo()
    # The driver stops the sweep on an EnvironmentFault and leaves the trial pending, not failed.
    assert isinstance(failed.value, EnvironmentFault)
    message = str(failed.value)
    assert message.startswith(f"cannot write checkpoint step {failed_step} in {folder} (")
    assert "(OSError: [Errno 28] No space left on device)" in message
    assert f"Free space under {folder}, then rerun the same command" in message
    assert message.endswith(
        f"the trial resumes from its last whole checkpoint (step {resume_point})"
    )
    assert _whole_steps(tmp_path)[-1] == resume_point

    resumed, curve = [], {}
    again = train.train_and_evaluate(
        trial, tmp_path, on_resume=resumed.append, on_eval=lambda s, m: curve.__setitem__(s, m)
    )
    assert resumed == [resume_point]
    _assert_same_as(reference, again, curve, after=resume_point)


def test_a_full_disk_stops_the_sweep_and_leaves_the_trial_pending(tmp_path, monkeypatch, capsys):
    study = _study_file(tmp_path, "full-disk", trials=1, steps=60, every=20)
    args = [f"--config={study}", f"--workdir={tmp_path}", "--report=false"]
    _fail_writes(monkeypatch, "save", range(2, 4))
    assert sweep.main(args) == 1  # the machine failed: exit 1, one error line
    monkeypatch.undo()
    folder = tmp_path / "full-disk" / "trial_0000" / "checkpoints"
    assert (
        f"error: cannot write checkpoint step 40 in {folder} (OSError: [Errno 28] No space left "
        f"on device): the machine, not the trial, failed. Free space under {folder}"
    ) in capsys.readouterr().err

    def trial_status():
        store = store_lib.Store(store_lib.default_url(tmp_path))
        try:
            [trial] = store.record(store.study_id("full-disk"))["trials"]
            return trial["status"]
        finally:
            store.close()

    assert trial_status() == "pending"  # not 'failed': the same command continues it
    assert sweep.main(args) == 0
    assert "resuming from step 20" in capsys.readouterr().out
    assert trial_status() == "completed"
    # Equal to a run the full disk never touched.
    reference = tmp_path / "reference"
    assert sweep.main([*args[:1], f"--workdir={reference}", *args[2:]]) == 0

    def result(workdir):
        store = store_lib.Store(store_lib.default_url(workdir))
        try:
            [trial] = store.record(store.study_id("full-disk"))["trials"]
            return trial["best_value"], trial["best_step"], trial["final_metrics"]
        finally:
            store.close()

    assert result(tmp_path) == result(reference)


def _overwrite_data_files(step_folder) -> int:
    """Overwrites every data file of a checkpoint's train state (tensorstore's OCDBT 'd/' files:
    b-tree nodes and array chunks) with garbage of the same size, as a failing disk might."""
    files = [p for p in (step_folder / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    for path in files:
        path.write_bytes(b"\xa5" * path.stat().st_size)
    return len(files)


@pytest.mark.parametrize("damaged", ["newest", "all"])
def test_an_unrestorable_checkpoint_is_set_aside_and_the_trial_resumes_before_it(
    damaged, reference, tmp_path
):
    trial = _trial()
    folder = tmp_path / "checkpoints"

    def run_until(last: int | None):
        """(result or None, resumed from, warnings, curve) of a run stopped after step `last`."""
        resumed, warned, curve = [], [], {}
        hooks = dict(
            on_resume=resumed.append,
            on_warning=warned.append,
            on_eval=lambda s, m: curve.__setitem__(s, m),
        )
        if last is None:
            return train.train_and_evaluate(trial, tmp_path, **hooks), resumed, warned, curve
        with pytest.raises(KeyboardInterrupt):
            train.train_and_evaluate(
                trial, tmp_path, should_stop=lambda: max(curve) >= last, **hooks
            )
        return None, resumed, warned, curve

    run_until(150)
    # Every period wrote a whole checkpoint (checkpoint_every_secs=0); orbax kept the best 2 and
    # the newest, so at least two whole ones are on disk.
    whole = _whole_steps(tmp_path)
    assert whole[-1] == 150 and len(whole) >= 2, whole
    targets = [150] if damaged == "newest" else whole
    for step in targets:
        assert _overwrite_data_files(folder / str(step)) > 0

    _, resumed, warned, curve = run_until(150)
    # Newest first, each damaged one is set aside with the reason; the last message says what the
    # trial does instead.
    assert len(warned) == len(targets)
    for message, step in zip(warned, sorted(targets, reverse=True)):
        assert message.startswith(f"checkpoint step {step} in {folder} cannot be restored (")
        assert f"): moved it to {step}.unrestorable-1" in message
        # The damaged folder is kept as evidence, out of orbax's sight.
        assert (folder / f"{step}.unrestorable-1" / "state").is_dir()
    if damaged == "newest":
        start = whole[-2]
        assert warned[-1].endswith(f"; resuming from step {start}") and resumed == [start]
    else:
        start = -1
        assert warned[-1].endswith(
            "; no whole checkpoint is left: the trial starts again from step 0"
        )
        assert resumed == []
    # Step 150 was written again: the new resume point (orbax, had it not been told the damaged
    # step is gone, would have skipped a step not newer than the newest it knows).
    assert _whole_steps(tmp_path)[-1] == 150

    again, resumed, warned, rest = run_until(None)
    assert resumed == [150] and warned == []  # nothing left to set aside
    _assert_same_as(reference, again, {**curve, **rest}, after=start)


def test_a_failing_read_leaves_the_checkpoint_alone(reference, monkeypatch):
    expected, _, folder = reference
    before = sorted(p.name for p in (folder / "checkpoints").iterdir())

    def restore(self, step, *args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(ocp.CheckpointManager, "restore", restore)
    with pytest.raises(CheckpointReadError) as failed:
        train.train_and_evaluate(_trial(), folder)
    monkeypatch.undo()
    message = str(failed.value)
    assert message.startswith(f"cannot read checkpoint step 200 in {folder / 'checkpoints'} (")
    assert "(OSError: [Errno 5] Input/output error)" in message
    assert message.endswith("then rerun the same command: its checkpoints were left as they are")
    # An I/O error says nothing about the checkpoint's content: nothing was set aside.
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == before
    # The final checkpoint restores once the storage reads again: the finished result.
    assert train.train_and_evaluate(_trial(), folder) == expected
