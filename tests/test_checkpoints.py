"""The resume point survives a crash between the checkpoints of one deferred write."""

import jax
import numpy as np

from jaxplay.checkpoints import TrialCheckpoints


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
