"""How long `python -m jaxplay.studies list|show|export` take on a 100-trial study: each command
a fresh Python process, timed from its start to its exit (what a researcher waits for).

  python scripts/bench_studies.py                 # 100 trials of 10 evaluations, 3 repeats
  python scripts/bench_studies.py --trials 1000

The study is written straight into a temporary SQLite store through jaxplay.store (the records a
sweep writes: trials with params, results and per-evaluation metrics), so no training is timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from jaxplay import store as store_lib

METRICS = ("train/loss", "train/error", "val/loss", "val/error", "train/batch_loss",
           "train/grad_norm", "train/grad_norm_max", "train/clip_fraction",
           "train/learning_rate")  # fmt: skip


def write_study(url: str, trials: int, evaluations: int) -> None:
    """A finished study of `trials` trials in the store at `url`."""
    store = store_lib.Store(url)
    try:
        study = store.open_study(
            "bench-studies", "-", config_path="experiments/mnist1d_mlp.py", config={},
            notes="bench", objective="val/error", mode="min", algorithm="quasirandom", seed=0,
            num_trials=trials, command="bench", git_commit=None, git_dirty=None, versions={},
            device_kind="cpu",
        )  # fmt: skip
        params = [{"optimizer.learning_rate": 10 ** (-4 + 3 * i / trials)} for i in range(trials)]
        store.add_trials(study, params)
        for i in range(trials):
            trial_id, _, _ = store.claim(study, "bench", indices=[i])
            for e in range(evaluations + 1):
                value = 0.5 / (1 + e) + i / (10 * trials)
                store.log_metrics(trial_id, 150 * e, {m: value for m in METRICS}, worker="bench")
            last = 150 * evaluations
            store.finish(trial_id, "completed", worker="bench", best_step=last,
                         best_value=value, steps_run=last, final_metrics={})  # fmt: skip
        store.update_best(study)
    finally:
        store.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--evaluations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        write_study(store_lib.default_url(workdir), args.trials, args.evaluations)
        print(f"command: python {' '.join(sys.argv)}")
        print(f"{args.trials} trials x {args.evaluations + 1} evaluations x {len(METRICS)} metrics")
        print(f"{'command':<28}{'seconds (each run)':>28}{'median':>10}")
        for command in (["list"], ["show"], ["show", "--json"], ["export"],
                        ["export", "--format", "json"]):  # fmt: skip
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "jaxplay.studies", *command, "--workdir", workdir],
                    check=True, stdout=subprocess.DEVNULL, env=dict(os.environ),
                )  # fmt: skip
                times.append(time.perf_counter() - started)
            shown = ", ".join(f"{t:.2f}" for t in times)
            print(f"{' '.join(command):<28}{shown:>28}{statistics.median(times):>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
