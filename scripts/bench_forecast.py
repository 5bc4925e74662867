"""The dry run's estimate against the real study: both timed on this machine, each in a fresh
process with its own empty compilation cache (so neither reuses the other's compilations).

  python scripts/bench_forecast.py                                   # the README quickstart
  python scripts/bench_forecast.py --study experiments/mnist1d_mlp.py --trials 64 --executor batched

The real study is the sweep's `main(... --report=false)`, timed from its call to its return in a
fresh process (Python's start-up and imports excluded, as they are from the estimate); the
report, which the estimate leaves out, is timed apart (its process's start-up included).
The last line printed is one JSON object (scripts/accelerator_check.py reads it):
study, trials, executor, stack, estimate_s, real_s, report_s, predicted_peak_bytes,
measured_peak_bytes (`memory_stats()['peak_bytes_in_use']` of the real study; null on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

# Runs in a fresh Python: the dry run (sweep.forecast_study) or the real study (the sweep's
# main, timed from its call to its return: Python's start-up and imports excluded, as from the
# estimate).
CHILD = """
import json, sys, time
from jaxplay import cli, sweep
from jaxplay.train import cost
mode, argv = sys.argv[1], sys.argv[2:]
if mode == "dry":
    args = cli.parse(sweep._parser(), argv)
    f = sweep.forecast_study(args.config, args.workdir, executor=args.executor)
    print("\\n".join(f.lines()))
    result = {"estimate": f.seconds, "stack": max(g.stack for g in f.groups),
              "predicted": max(g.stack_bytes for g in f.groups)}
else:
    started = time.perf_counter()
    code = sweep.main(argv)
    result = {"code": code, "seconds": time.perf_counter() - started,
              "peak": cost.peak_bytes_in_use()}
print(json.dumps(result))
"""


def overrides(args) -> list[str]:
    """The study file's overrides for this benchmark."""
    out = [f"--config.study.name=bench-forecast-{args.trials}"]
    if args.trials is not None:
        out.append(f"--config.study.num_trials={args.trials}")
    if args.steps is not None:
        out += [f"--config.train.steps={args.steps}",
                f"--config.train.eval_every={max(args.steps // 10, 1)}",
                f"--config.schedule.warmup_steps={args.steps // 10}"]  # fmt: skip
    return out


def run(code: str, argv: list[str], cache: str) -> tuple[float, str]:
    """Runs `code` with `argv` in a fresh Python; (seconds, its stdout)."""
    env = dict(os.environ, JAXPLAY_COMPILATION_CACHE=cache, PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="experiments/mnist1d_mlp.py")
    parser.add_argument("--trials", type=int, help="study.num_trials (default: the file's)")
    parser.add_argument("--steps", type=int, help="train.steps (eval every tenth)")
    parser.add_argument("--executor", default="auto", choices=("auto", "sequential", "batched"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = f"{tmp}/work"
        common = ["--config", args.study, *overrides(args), "--executor", args.executor]
        common += ["--workdir", workdir]
        _, out = run(CHILD, ["dry", *common], f"{tmp}/cache-dry")
        print(out.rstrip().rsplit("\n", 1)[0])
        forecast = json.loads(out.strip().splitlines()[-1])
        _, out = run(CHILD, ["real", *common, "--report=false"], f"{tmp}/cache")
        real = json.loads(out.strip().splitlines()[-1])
        real_s = real["seconds"]
        report_s, _ = run(
            "import sys; from jaxplay import studies; sys.exit(studies.main(sys.argv[1:]))",
            ["report", "--workdir", workdir],
            f"{tmp}/cache",
        )
    ratio = forecast["estimate"] / real_s
    print(
        f"\nestimate {forecast['estimate']:.1f} s, real study {real_s:.1f} s "
        f"(estimate/real {ratio:.2f}); the report took {report_s:.1f} s more"
    )
    result = {
        "study": args.study,
        "trials": args.trials,
        "executor": args.executor,
        "stack": forecast["stack"],
        "estimate_s": round(forecast["estimate"], 2),
        "real_s": round(real_s, 2),
        "report_s": round(report_s, 2),
        "predicted_peak_bytes": forecast["predicted"],
        "measured_peak_bytes": real["peak"],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
