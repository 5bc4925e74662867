"""The prepared accelerator check: every figure a lent GPU/TPU should give, as one table.

  python scripts/accelerator_check.py            # accelerator sizes: about 6 minutes, at most 7.5
  python scripts/accelerator_check.py --small    # every step shrunk: a few minutes on 2 CPU cores
  OUT=/tmp/check python scripts/accelerator_check.py   # (or --out DIR) where logs and figures go

Steps, each a subprocess with its own time limit (--<step>_s); a step that fails or runs out of
time is a row saying so, with its log, and the steps after it still run:
  device    nvidia-smi's name, memory and driver; jax's version, backend and devices
  mlp       bench_batched.py: 16 and 64 quickstart trials (experiments/mnist1d_mlp.py, 1500 steps),
            batched vs sequential whole studies
  cnn       bench_batched.py --study experiments/mnist1d_cnn.py: 16 trials, batched vs sequential
  forecast  bench_forecast.py (when the file exists): the dry run's time estimate vs the real
            study's wall time, the predicted peak device memory vs the measured one
  resnet    bench_workloads.py: ResNet-18 CIFAR training throughput, float32 and bf16

Every step's output goes to the console and to OUT/<step>.log; the benchmarks' figures to
OUT/<step>.json, the table to OUT/table.md, everything to OUT/summary.json. The table's verdict
column judges the promise "batched >= 10x sequential for 64 small trials" on an accelerator (on a
CPU it does not apply), the dry run's estimate (within 30% of the real time) and the predicted
peak (within 1.5x of the measured one).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")
MLP_STUDY = "experiments/mnist1d_mlp.py"
CNN_STUDY = "experiments/mnist1d_cnn.py"
FORECAST_SCRIPT = "scripts/bench_forecast.py"

PROMISE_TRIALS, PROMISE_SPEEDUP = 64, 10.0  # batched >= 10x sequential for 64 small trials
ESTIMATE_TOLERANCE = 0.30  # the dry run's estimate within 30% of the real study's wall time
PEAK_FACTOR = 1.5  # the predicted peak device memory within 1.5x (either way) of the measured

# Time limits in seconds on an H100/H200-class GPU, reasoned from the CPU figures (no GPU figures
# yet). Each step runs in fresh processes: Python, jax and the CUDA client start in ~5-10 s per
# process, and a study compiles its programs once per process (~10-20 s for the MNIST-1D models).
# A training step of these small models is dispatch-bound on a GPU (~0.3-0.5 ms a step inside the
# period's lax.scan, whether 1 or 64 trials are stacked), so a sequential trial of 1500 steps
# costs ~0.5 s of steps plus ~0.5 s of evaluation, store and checkpoint writes; a batch of 64
# trials costs about one trial's steps.
TIMEOUTS = {
    # nvidia-smi and one jax start (~5-10 s; a fresh machine's first CUDA start can be slower)
    "device": 20,
    # 4 processes: batched 16 (~30 s), sequential 16 (~35 s), batched 64 (~35 s), sequential 64
    # (~20 s start + 64 x ~1 s = ~85 s): ~185 s expected, so 64 sequential may be cut short (the
    # table then gives a lower bound on the ratio); the Flax-docs loop is left out here (16
    # recompiles, ~65 s). On 2 CPU cores the same study takes ~20 s per 16 trials per variant.
    "mlp": 175,
    # 2 processes of 16 CNN trials of 1500 steps (the study's own 3000 would not fit): batched
    # ~25 s, sequential ~20 s start + 16 x ~1.5 s = ~45 s
    "cnn": 70,
    # three fresh processes: the dry run (~15 s), the real study of 64 trials of 1500 steps,
    # batched (~35 s), its report (~15 s): ~65 s
    "forecast": 85,
    # one process, 2 trials (f32, bf16) of 4 periods of 50 steps at batch 256: ResNet-18 compiles
    # in ~30-40 s each on a GPU, its steps take a few ms: ~90 s expected
    "resnet": 100,
}
TOTAL_S = 450  # the sum above: the whole check, whatever happens, ends within 7.5 minutes
MIN_STEP_S = 5  # a step that would get less than this of the total is not started

# (full, --small) sizes
SIZES = {
    "trials": ([16, PROMISE_TRIALS], [4, 8]),
    "steps": (1500, 100),
    "cnn_trials": (16, 4),
    "cnn_steps": (1500, 100),
    "forecast_trials": (PROMISE_TRIALS, 8),
    "forecast_steps": (1500, 100),
    "resnet_periods": (4, 3),  # bench_workloads skips the first period (compilation): >= 3
    "resnet_every": (50, 5),
}


@dataclasses.dataclass
class Step:
    name: str
    argv: list[str] | None  # None: not run, for `skip`
    timeout: float
    what: str  # what it measures, for summary.json
    json_path: str | None = None
    skip: str | None = None


@dataclasses.dataclass
class Outcome:
    status: str  # ok | failed | timeout | not run
    log: str
    seconds: float = 0.0
    timeout: float = 0.0
    rc: int | None = None
    ended_unix: float = 0.0
    stdout: list[str] = dataclasses.field(default_factory=list)
    note: str = ""

    def describe(self) -> str:
        if self.status == "ok":
            return f"ok in {self.seconds:.0f} s (log {self.log})"
        if self.status == "timeout":
            return f"TIMED OUT after {self.timeout:.0f} s (log {self.log})"
        if self.status == "failed":
            return f"FAILED: exit {self.rc} after {self.seconds:.0f} s (log {self.log})"
        return f"not run ({self.note})"


def run_step(step: Step, out: str, env: dict, deadline: float) -> Outcome:
    """Runs one step in its own process group, its output teed to the console and its log; kills
    the group at its time limit."""
    log_name = f"{step.name}.log"
    if step.argv is None:
        with open(os.path.join(out, log_name), "w") as f:
            f.write(f"not run: {step.skip}\n")
        return Outcome("not run", log_name, note=step.skip or "")
    left = deadline - time.monotonic()
    timeout = min(step.timeout, left)
    if left < MIN_STEP_S:
        note = "the check's --total_s was spent before it"
        with open(os.path.join(out, log_name), "w") as f:
            f.write(f"not run: {note}\n")
        return Outcome("not run", log_name, note=note)
    print(f"\n=== {step.name}: {' '.join(step.argv)}  (limit {timeout:.0f} s)", flush=True)
    outcome = Outcome("ok", log_name, timeout=timeout)
    lock = threading.Lock()
    with open(os.path.join(out, log_name), "w") as log:
        log.write(f"$ {' '.join(step.argv)}\n")
        log.flush()
        start = time.monotonic()
        proc = subprocess.Popen(
            step.argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,  # its own process group: a time limit ends its children too
        )

        def tee(stream, keep):
            for line in stream:
                with lock:
                    log.write(line)
                    log.flush()
                    if keep is not None:
                        keep.append(line.rstrip("\n"))
                    if "absl" not in line:  # grain's logging noise stays in the log only
                        sys.stdout.write(f"[{step.name}] {line}")
                        sys.stdout.flush()

        readers = [
            threading.Thread(target=tee, args=(proc.stdout, outcome.stdout), daemon=True),
            threading.Thread(target=tee, args=(proc.stderr, None), daemon=True),
        ]
        for reader in readers:
            reader.start()
        try:
            outcome.rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            outcome.status = "timeout"
            _kill_group(proc)
        outcome.ended_unix = time.time()
        outcome.seconds = time.monotonic() - start
        for reader in readers:
            reader.join(timeout=10)
        with lock:
            if outcome.status == "timeout":
                log.write(f"\n=== killed at its time limit, {timeout:.0f} s\n")
            elif outcome.rc != 0:
                outcome.status = "failed"
    print(f"=== {step.name}: {outcome.describe()}", flush=True)
    return outcome


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the step's process group, SIGKILL after 5 s."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def device_info() -> int:
    """The device step (a fresh process): nvidia-smi's table, then one JSON line."""
    info = {"nvidia_smi": None}
    smi = shutil.which("nvidia-smi")
    if smi:
        query = [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv"]
        try:
            result = subprocess.run(query, capture_output=True, text=True, timeout=20)
            print(result.stdout + result.stderr, flush=True)
            info["nvidia_smi"] = [
                line.strip() for line in result.stdout.splitlines()[1:] if line.strip()
            ]
        except subprocess.TimeoutExpired:
            info["nvidia_smi"] = ["nvidia-smi did not answer within 20 s"]
    else:
        print("no nvidia-smi on PATH", flush=True)
    import jax

    devices = jax.devices()
    info.update(
        jax=jax.__version__,
        backend=jax.default_backend(),
        device_kind=devices[0].device_kind,
        devices=[str(d) for d in devices],
    )
    print(json.dumps(info), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The table


def last_json(lines: list[str]):
    """The last non-empty stdout line as JSON, or None."""
    for line in reversed(lines):
        if line.strip():
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def read_json(path: str | None):
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except ValueError:
        return None


def seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 100 else f"{s:.0f} s"


def device_rows(outcome: Outcome) -> tuple[list[list[str]], str | None]:
    info = last_json(outcome.stdout) if outcome.status == "ok" else None
    if not isinstance(info, dict):
        return [], None
    smi = info.get("nvidia_smi")
    rows = [["accelerator (nvidia-smi)", "; ".join(smi) if smi else "no nvidia-smi", ""]]
    devices = ", ".join(info.get("devices", []))
    verdict = ""
    if smi and info.get("backend") == "cpu":
        verdict = "jax sees no GPU: every figure below is a CPU figure"
    rows.append(
        [f"jax {info.get('jax')}", f"{info.get('backend')}: {info.get('device_kind')} ({devices})",
         verdict]
    )  # fmt: skip
    return rows, info.get("backend")


def batched_rows(outcome: Outcome, figures, backend: str | None, promise: bool) -> list[list[str]]:
    """Rows of one bench_batched.py run: per trial count, batched / sequential and their ratio;
    with `promise`, the verdict on batched >= 10x sequential for 64 trials."""
    if not isinstance(figures, dict):
        return []
    backend = figures.get("backend") or backend
    done = {(r["trials"], r["variant"]): r for r in figures.get("runs", [])}
    running = figures.get("running") if outcome.status != "ok" else None
    cut = None  # (trials, variant, seconds of its timed part before the limit, or None)
    if running:
        timed_from = running.get("timed_from_unix")
        ran = outcome.ended_unix - timed_from if timed_from else None
        cut = (running["trials"], running["variant"], ran)
    requested = figures.get("trials") or []
    counts = sorted({t for t, _ in done} | ({cut[0]} if cut else set()))
    # the promise is for 64 trials; a smaller check (--small, --trials) is judged on its largest
    judged = PROMISE_TRIALS if PROMISE_TRIALS in requested or not requested else max(requested)
    rows = []
    for trials in counts:
        values, known = {}, {}
        for variant in ("batched", "sequential", "flax-docs"):
            run = done.get((trials, variant))
            if run and "seconds" in run:
                values[variant] = seconds(run["seconds"])
                known[variant] = run["seconds"]
            elif run:
                values[variant] = f"failed ({run['error']})"
            elif cut and cut[:2] == (trials, variant) and cut[2] is None:
                values[variant] = "cut at the time limit before its timing began"
            elif cut and cut[:2] == (trials, variant):
                values[variant] = f"> {seconds(cut[2])} (cut at the time limit)"
        value = f"{values.get('batched', 'not run')} / {values.get('sequential', 'not run')}"
        ratio = None
        if "batched" in known and "sequential" in known:
            ratio = known["sequential"] / known["batched"]
            value += f" = {ratio:.2f}x"
        elif "batched" in known and cut and cut[:2] == (trials, "sequential") and cut[2]:
            ratio = cut[2] / known["batched"]
            value += f" = at least {ratio:.2f}x"
        verdict = ""
        if promise and trials == judged:
            verdict = promise_verdict(ratio, backend, exact="sequential" in known)
            if trials != PROMISE_TRIALS:
                verdict += f" [{trials} trials, not {PROMISE_TRIALS}]"
        rows.append([f"{trials} trials: batched / sequential", value, verdict])
        if "flax-docs" in values:
            rows.append([f"{trials} trials: Flax-docs loop", values["flax-docs"], ""])
    if promise and judged not in counts:
        verdict = promise_verdict(None, backend, exact=False)
        rows.append([f"{judged} trials: batched / sequential", "not run", verdict])
    return rows


def promise_verdict(ratio: float | None, backend: str | None, exact: bool) -> str:
    name = f"batched >= {PROMISE_SPEEDUP:g}x sequential"
    if backend in (None, "cpu"):
        return f"{name}: does not apply on {backend or 'an unknown backend'} (accelerators only)"
    if ratio is None:
        return f"{name}: UNKNOWN (no figure)"
    if ratio >= PROMISE_SPEEDUP:
        return f"{name}: PASS" + ("" if exact else " (sequential cut short, ratio a lower bound)")
    if not exact:
        return f"{name}: UNKNOWN (sequential cut short; the ratio is at least {ratio:.1f}x)"
    return f"{name}: FAIL"


FORECAST_KEYS = (
    "study",
    "trials",
    "executor",
    "stack",
    "estimate_s",
    "real_s",
    "predicted_peak_bytes",
    "measured_peak_bytes",
)


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def forecast_rows(outcome: Outcome) -> list[list[str]]:
    if outcome.status != "ok":
        return []
    figures = last_json(outcome.stdout)
    if not isinstance(figures, dict) or not set(FORECAST_KEYS) <= set(figures):
        note = f"none: the last stdout line is not the JSON object (log {outcome.log})"
        return [["figures", note, ""]]
    rows = [
        [
            "study",
            f"{figures['study']}, {figures['trials']} trials, {figures['executor']}, "
            f"{figures['stack']} per batch",
            "",
        ]
    ]
    estimate, real = figures["estimate_s"], figures["real_s"]
    if estimate is not None and real:
        ratio = estimate / real
        good = abs(ratio - 1) <= ESTIMATE_TOLERANCE
        verdict = f"within {ESTIMATE_TOLERANCE:.0%}: " + ("PASS" if good else "FAIL")
        rows.append(
            ["time: estimate / real", f"{seconds(estimate)} / {seconds(real)} = {ratio:.2f}x",
             verdict]
        )  # fmt: skip
    else:
        rows.append(["time: estimate / real", f"{estimate} / {real}", ""])
    predicted, measured = figures["predicted_peak_bytes"], figures["measured_peak_bytes"]
    if predicted is not None and measured:
        ratio = predicted / measured
        good = 1 / PEAK_FACTOR <= ratio <= PEAK_FACTOR
        verdict = f"within {PEAK_FACTOR:g}x: " + ("PASS" if good else "FAIL")
        value = f"{gib(predicted)} / {gib(measured)} = {ratio:.2f}x"
    else:
        verdict = "no measured peak on this backend" if measured is None else ""
        value = (
            f"{gib(predicted) if predicted is not None else 'none'} / "
            f"{gib(measured) if measured is not None else 'none'}"
        )
    rows.append(["peak memory: predicted / measured", value, verdict])
    return rows


def resnet_rows(figures) -> list[list[str]]:
    if not isinstance(figures, dict):
        return []
    rows, f32 = [], None
    for row in figures.get("rows", []):
        if row.get("family") != "resnet18-cifar":
            continue
        value = f"{row['examples_per_s']:.0f} examples/s ({row['steps_per_s']:.1f} steps/s)"
        if row["dtype"] == "float32":
            f32 = row["examples_per_s"]
        elif f32:
            value += f" = {row['examples_per_s'] / f32:.2f}x float32"
        name = f"ResNet-18 {row['dtype']}, batch {row['batch']}, {row['pipeline']} data"
        rows.append([name, value, "" if row["status"] == "completed" else row["status"]])
    return rows


def table(results: list[tuple[Step, Outcome]]) -> tuple[str, list[dict]]:
    """The markdown table (a status row per step, then its figures) and its rows as dicts."""
    rows, backend = [], None
    for step, outcome in results:
        step_rows = []
        if step.name == "device":
            step_rows, backend = device_rows(outcome)
        elif step.name in ("mlp", "cnn"):
            figures = read_json(step.json_path)
            step_rows = batched_rows(outcome, figures, backend, promise=step.name == "mlp")
        elif step.name == "forecast":
            step_rows = forecast_rows(outcome)
        elif step.name == "resnet":
            step_rows = resnet_rows(read_json(step.json_path))
        rows.append([step.name, "status", outcome.describe(), ""])
        rows.extend([step.name, *row] for row in step_rows)
    lines = ["| step | figure | value | verdict |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n", [
        dict(zip(("step", "figure", "value", "verdict"), row)) for row in rows
    ]


# ---------------------------------------------------------------------------------------------


def steps(args, out: str) -> list[Step]:
    py = sys.executable
    forecast = os.path.join(ROOT, args.forecast_script)
    forecast_argv = [py, forecast, "--study", MLP_STUDY, "--trials", str(args.forecast_trials),
                     "--executor", "batched", "--steps", str(args.forecast_steps)]  # fmt: skip
    small = ["--small"] if args.small else []
    mlp_json, cnn_json = os.path.join(out, "mlp.json"), os.path.join(out, "cnn.json")
    resnet_json = os.path.join(out, "resnet.json")
    trials = [str(t) for t in args.trials]
    return [
        Step("device", [py, os.path.abspath(__file__), "--device_info"], args.device_s,
             "nvidia-smi, jax devices"),
        Step("mlp", [py, os.path.join(SCRIPTS, "bench_batched.py"), "--study", MLP_STUDY,
                     "--trials", *trials, "--steps", str(args.steps),
                     "--variants", "batched", "sequential", "--json", mlp_json],
             args.mlp_s, "MLP batched vs sequential", mlp_json),
        Step("cnn", [py, os.path.join(SCRIPTS, "bench_batched.py"), "--study", CNN_STUDY,
                     "--trials", str(args.cnn_trials), "--steps", str(args.cnn_steps),
                     "--variants", "batched", "sequential", "--json", cnn_json],
             args.cnn_s, "CNN batched vs sequential", cnn_json),
        Step("forecast", forecast_argv if os.path.exists(forecast) else None,
             args.forecast_s, "estimate vs real, predicted vs measured peak",
             skip=f"{args.forecast_script} missing"),
        Step("resnet", [py, os.path.join(SCRIPTS, "bench_workloads.py"), *small,
                        "--only", "resnet18-cifar", "--pipelines", "device", "--no-input",
                        "--periods", str(args.resnet_periods), "--every", str(args.resnet_every),
                        "--json", resnet_json],
             args.resnet_s, "ResNet-18 f32 / bf16 throughput", resnet_json),
    ]  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("--out", help="folder for logs, figures and table.md (default: $OUT, "
                        "else a new temporary folder)")  # fmt: skip
    parser.add_argument("--small", action="store_true",
                        help="shrink every step to run on a CPU in a few minutes")  # fmt: skip
    parser.add_argument(
        "--trials", type=int, nargs="+", help="MLP trial counts (16 64; small: 4 8)"
    )
    parser.add_argument("--steps", type=int, help="steps per MLP trial (1500; small: 100)")
    parser.add_argument("--cnn_trials", type=int, help="CNN trials (16; small: 4)")
    parser.add_argument("--cnn_steps", type=int, help="steps per CNN trial (1500; small: 100)")
    parser.add_argument("--forecast_trials", type=int, help="forecast's trials (64; small: 8)")
    parser.add_argument("--forecast_steps", type=int, help="forecast's steps (1500; small: 100)")
    parser.add_argument("--forecast_script", default=FORECAST_SCRIPT,
                        help="relative to the repository (default: %(default)s)")  # fmt: skip
    parser.add_argument("--resnet_periods", type=int, help="ResNet periods (4; small: 3)")
    parser.add_argument("--resnet_every", type=int, help="ResNet steps a period (50; small: 5)")
    for name, limit in TIMEOUTS.items():
        parser.add_argument(
            f"--{name}_s",
            type=float,
            default=limit,
            metavar="S",
            help=f"time limit of the {name} step (default: %(default)s)",
        )
    parser.add_argument("--total_s", type=float, default=TOTAL_S, metavar="S",
                        help="time limit of the whole check: a step gets at most what is left "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument("--device_info", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, (full, small) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, small if args.small else full)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device_info:
        return device_info()
    deadline = time.monotonic() + args.total_s
    out = args.out or os.environ.get("OUT") or tempfile.mkdtemp(prefix="accelerator-check-")
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, os.path.join(ROOT, "tests"), env.get("PYTHONPATH")) if p
    )
    print(f"accelerator check{' (--small)' if args.small else ''}: results in {out}", flush=True)
    results = []
    for step in steps(args, out):
        results.append((step, run_step(step, out, env, deadline)))
    forecast = next(o for s, o in results if s.name == "forecast")
    if isinstance(last_json(forecast.stdout), dict):
        with open(os.path.join(out, "forecast.json"), "w") as f:
            json.dump(last_json(forecast.stdout), f, indent=1)
    text, rows = table(results)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text)
    summary = {
        "small": args.small,
        "args": {k: v for k, v in vars(args).items() if k != "device_info"},
        "steps": {
            step.name: {
                "measures": step.what,
                "status": o.status,
                "seconds": round(o.seconds, 1),
                "limit_s": round(o.timeout, 1),
                "rc": o.rc,
                "log": o.log,
                "note": o.note,
                "figures": os.path.basename(step.json_path) if step.json_path else None,
            }
            for step, o in results
        },
        "rows": rows,
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"\n## Accelerator check ({out}/table.md)\n\n{text}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
