"""Training trials: the compiled period (step), the train state (state), data on the device and
each period's inputs (feed), device meshes (mesh), one trial's bookkeeping (trial), a profiler
trace of a few periods (profile) and the one host loop that drives K trials sharing a program
(loop).

    from jaxplay import spec, train
    trial = spec.resolve(config).base                 # or spec.resolve(config).trial(params)
    result = train.train_and_evaluate(trial, 'runs/x/trial_0000')
    train.evaluate_checkpoint(trial, 'runs/x/trial_0000', split='test')
    train.export_model(trial, 'runs/x/trial_0000').serialize()   # a jax.export artifact
"""

from jaxplay.train.loop import (
    Hooks,
    evaluate_checkpoint,
    export_model,
    run_trials,
    train_and_evaluate,
)
from jaxplay.train.trial import TrialResult

__all__ = [
    "Hooks",
    "TrialResult",
    "evaluate_checkpoint",
    "export_model",
    "run_trials",
    "train_and_evaluate",
]
