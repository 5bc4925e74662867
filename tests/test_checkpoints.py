"""The resume point survives a crash between the checkpoints of one deferred write; a failing
storage is told from a damaged checkpoint."""

import errno
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxplay.checkpoints import TrialCheckpoints, storage_failure
from jaxplay.errors import EnvironmentFault

# After a restore fails, tensorstore completes the reads still in flight on the event loop orbax
# has closed, and says so as an unraisable exception in its own thread, during whichever test runs
# then: orbax's and tensorstore's affair (the restore's outcome is its error, which is tested).
pytestmark = pytest.mark.filterwarnings(
    "ignore:(?s).*Event loop is closed:pytest.PytestUnraisableExceptionWarning"
)


def _state(value):
    return {
        "params": {"w": np.full(3, value, np.float32)},
        "batch_stats": {},
        "opt_state": {"mu": np.zeros(3, np.float32)},
        "step": np.int32(value),
    }


def test_a_crash_after_a_model_only_checkpoint_resumes_from_the_whole_one_before(tmp_path):
    ckpt = TrialCheckpoints(tmp_path, keep_best=1, mode="min")
    ckpt.save(30, _state(30), 0.9, {"top": []})  # whole: the resume point
    # A deferred write saves the older best states model-only, then the newest one whole; the
    # process dies between the two.
    ckpt.save(40, _state(40), 0.5, {"top": []}, full=False)
    ckpt.close()

    reopened = TrialCheckpoints(tmp_path, keep_best=1, mode="min")
    try:
        # orbax's LatestN(1) + BestN(1) would have deleted step 30 and left nothing to resume.
        assert reopened.all_steps() == [30, 40]
        assert reopened.latest_step() == 30 and reopened.best_step() == 40
        state, _ = reopened.restore(30, jax.eval_shape(lambda: _state(0)))
        assert int(state["step"]) == 30
        assert reopened.restore_model(40, jax.eval_shape(lambda: _state(0)))["params"]["w"][0] == 40
        # The next whole checkpoint becomes the resume point and the older one may go.
        reopened.save(50, _state(50), 0.7, {"top": []})
        reopened.manager.wait_until_finished()
        assert reopened.latest_step() == 50 and reopened.all_steps() == [40, 50]
    finally:
        reopened.close()


def _save_two(folder):
    ckpt = TrialCheckpoints(folder, keep_best=2, mode="min")
    ckpt.save(30, _state(30), 0.9, {"top": [[0.9, 30]]})
    ckpt.save(40, _state(40), 0.5, {"top": [[0.5, 40], [0.9, 30]]})
    ckpt.close()


def test_a_step_whose_metrics_cannot_be_read_is_set_aside_on_opening(tmp_path):
    _save_two(tmp_path)
    # orbax reads every step's metrics as it opens a folder: one garbled file used to make the
    # trial's checkpoints unopenable for good.
    (tmp_path / "40" / "metrics" / "metrics").write_bytes(b'{"objective": 0.5, "resum')
    reopened = TrialCheckpoints(tmp_path, keep_best=2, mode="min")
    try:
        assert reopened.all_steps() == [30] and reopened.latest_step() == 30
        [note] = reopened.notes
        assert note.startswith(
            f"checkpoint step 40 in {tmp_path} cannot be read (JSONDecodeError: "
        )
        assert note.endswith("): moved it to 40.unrestorable-1")
        assert (tmp_path / "40.unrestorable-1" / "state").is_dir()
        # The best-N bookkeeping forgets the step that is gone.
        reopened.restore_top({"top": [[0.5, 40], [0.9, 30]]})
        assert reopened.top == [(0.9, 30)]
        state, _ = reopened.restore(30, jax.eval_shape(lambda: _state(0)))
        assert int(state["step"]) == 30
    finally:
        reopened.close()


def test_a_missing_data_file_is_damage_not_a_storage_failure(tmp_path):
    _save_two(tmp_path)
    for path in (tmp_path / "40" / "state" / "d").iterdir():
        path.unlink()
    reopened = TrialCheckpoints(tmp_path, keep_best=2, mode="min")
    try:
        # Not CheckpointReadError (which stops the run and leaves the checkpoint alone): what
        # orbax raises, which makes the trial set the checkpoint aside and resume before it.
        with pytest.raises(Exception) as failed:
            reopened.restore(40, jax.eval_shape(lambda: _state(0)))
        assert not isinstance(failed.value, EnvironmentFault)
        assert storage_failure(failed.value, reading=True) is None
        assert "NOT_FOUND" in str(failed.value)
    finally:
        reopened.close()


# The shapes tensorstore's errors take (a ValueError: status code, what, the OS's reason and its
# errno), and Python's own.
@pytest.mark.parametrize(
    "error, reading, code",
    [
        (OSError(errno.ENOSPC, "No space left on device"), False, errno.ENOSPC),
        (OSError(errno.EIO, "Input/output error"), True, errno.EIO),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), False, errno.ENOENT),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), True, None),
        (
            ValueError(
                'RESOURCE_EXHAUSTED: Error writing "params.w/0" in OCDBT database: Failed to '
                "write 28028 bytes to file 4: No space left on device [os_error_code='28']"
            ),
            False,
            errno.ENOSPC,
        ),
        (
            ValueError("NOT_FOUND: Error reading \"d/54f9\" [os_error_code='2']"),
            True,
            None,
        ),
        (
            ValueError("UNAVAILABLE: GET https://storage.googleapis.com/...: 503"),
            True,
            "UNAVAILABLE",
        ),
        (ValueError("DATA_LOSS: Error decoding b-tree node: CRC-32C checksum failed"), True, None),
        (ValueError("OUT_OF_RANGE: Requested byte range [0, 964) is not valid"), True, None),
        (ValueError("Structure mismatch: Target path ('params', 'b') not found"), True, None),
    ],
)
def test_storage_failures_are_told_from_damaged_content(error, reading, code):
    found = storage_failure(error, reading=reading)
    assert (found and found[1]) == code
    # Raised from another error (as orbax does when it wraps one), the cause is found.
    try:
        raise RuntimeError("orbax: the save failed") from error
    except RuntimeError as wrapped:
        assert (storage_failure(wrapped, reading=reading) or (None, None))[1] == code


# A real OS-level failure inside tensorstore's writes: RLIMIT_FSIZE makes a write that grows a
# file past 4 KiB fail with EFBIG (SIGXFSZ ignored, so the write returns the error rather than
# killing the process), as ENOSPC fails a write on a full disk, and root is not exempt. In a child
# process: the limit would also hit this process's own files (pytest's captured output).
WRITE_PAST_THE_LIMIT = r"""
import resource, signal, sys
import numpy as np
from jaxplay.checkpoints import TrialCheckpoints
from jaxplay.errors import CheckpointWriteError

def state(step, n):
    w = np.random.default_rng(step).standard_normal(n).astype(np.float32)  # incompressible
    return {"params": {"w": w}, "batch_stats": {}, "opt_state": {"mu": w}, "step": np.int32(step)}

ckpt = TrialCheckpoints(sys.argv[1], keep_best=1, mode="min")
ckpt.save(30, state(30, 10), 0.9, {"top": []})
ckpt.wait()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    ckpt.save(40, state(40, 100_000), 0.5, {"top": []})
    ckpt.close()
except CheckpointWriteError as e:
    print(e)
"""


def test_a_write_that_fails_inside_tensorstore_is_a_checkpoint_write_error(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [sys.executable, "-c", WRITE_PAST_THE_LIMIT, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    message = run.stdout.strip()
    # The write of step 40 fails in orbax's background thread and surfaces when it is waited for.
    assert message.startswith(f"cannot write checkpoint step 40 in {tmp_path} (ValueError: "), (
        message or run.stderr[-3000:]
    )
    assert "File too large [os_error_code='27']" in message
    assert message.endswith("the trial resumes from its last whole checkpoint (step 30)")
    reopened = TrialCheckpoints(tmp_path, keep_best=1, mode="min")
    try:
        # The unfinished step 40 is not a checkpoint (orbax removes its temporary folder).
        assert reopened.all_steps() == [30] and reopened.latest_step() == 30
        state, _ = reopened.restore(30, jax.eval_shape(lambda: _state(0)))
        assert int(state["step"]) == 30
    finally:
        reopened.close()
