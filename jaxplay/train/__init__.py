"""Training trials: the compiled period (step), the train state (state), data on the device and
each period's inputs (feed), device meshes (mesh), one trial's bookkeeping (trial) and the one
host loop that drives K trials sharing a program (loop).

    from jaxplay import spec, train
    trial = spec.resolve(config).base                 # or spec.resolve(config).trial(params)
    result = train.train_and_evaluate(trial, 'runs/x/trial_0000')
    train.evaluate_checkpoint(trial, 'runs/x/trial_0000', split='test')
"""

from jaxplay.train.loop import Hooks, evaluate_checkpoint, run_trials, train_and_evaluate
from jaxplay.train.trial import TrialResult

__all__ = ["Hooks", "TrialResult", "evaluate_checkpoint", "run_trials", "train_and_evaluate"]
