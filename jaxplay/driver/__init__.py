"""The sweep driver: a resolved study's plan (plan), how it runs trial by trial or in stacks, this
worker's claims, leases and stops (worker), how many trials a stack holds (batching), what it
prints (progress), the TensorBoard event files it writes (events), `run`, which records the study,
claims its trials and trains them (run), and `forecast`, the dry run that says what a study would
cost here (forecast).

    from jaxplay import config, driver, spec
    record = driver.run(spec.resolve(config.load('experiments/mnist1d_mlp.py')), 'runs/mlp')
"""

from jaxplay.driver.batching import Batching
from jaxplay.driver.forecast import Forecast, forecast
from jaxplay.driver.plan import (
    CPU_BATCH_TRIALS,
    EXECUTORS,
    Plan,
    choose_executor,
    default_batch_trials,
    plan,
    work_units,
)
from jaxplay.driver.run import provenance, run, trial_dir

__all__ = [
    "Batching",
    "CPU_BATCH_TRIALS",
    "EXECUTORS",
    "Forecast",
    "Plan",
    "choose_executor",
    "default_batch_trials",
    "forecast",
    "plan",
    "provenance",
    "run",
    "trial_dir",
    "work_units",
]
