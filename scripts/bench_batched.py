"""Whole-study wall time of N MNIST-1D trials that differ only in learning rate.

  python scripts/bench_batched.py                       # 16 and 64 quickstart (MLP) trials
  python scripts/bench_batched.py --trials 16 --steps 600   # shorter trials
  python scripts/bench_batched.py --study experiments/mnist1d_cnn.py --trials 16   # the CNN study
  python scripts/bench_batched.py --json /tmp/batched.json  # also write the figures as JSON

--study is any study file whose search has optimizer.learning_rate: the benchmark keeps that
space and drops the others (the CNN study's weight decay stays at its base value). --steps and
--eval_every default to the study file's own.

Variants, each in a fresh Python process so that none reuses another's compilations:
  batched     jaxplay.sweep.run_study(executor='batched'): all trials in one jit(vmap(period))
  sequential  jaxplay.sweep.run_study(executor='sequential'): one trial at a time, one compilation
  flax-docs   the way Flax's docs train a model: nnx.Optimizer and an nnx.jit train step, a new
              optimizer per trial, batches sliced on the host; every trial recompiles
              (run for the smallest --trials only: it is the slow one; the MLP study only)
Both jaxplay variants are whole studies: validation, store writes, evaluation every
--eval_every steps on the full train and validation sets, checkpoints.

--json PATH is rewritten after every variant (and before each starts, naming the one running with
its start time), so a run stopped by a time limit still leaves the figures it had and how long the
unfinished variant ran.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

STUDY = "experiments/mnist1d_mlp.py"
VARIANTS = ("batched", "sequential", "flax-docs")


def study_config(trials: int, steps: int, eval_every: int, study: str = STUDY):
    """The study file's config with only the learning rate searched, in the study's own range
    (the quickstart's width stays at 256, the CNN's weight decay at 1e-4)."""
    from jaxplay import config as config_lib

    c = config_lib.load(
        study,
        {
            "train.steps": steps,
            "train.eval_every": eval_every,
            "schedule.warmup_steps": steps // 10,
            "study.num_trials": trials,
            "study.name": f"bench-{os.path.splitext(os.path.basename(study))[0]}-{trials}",
        },
    )
    learning_rate = c.get("search", {}).get("optimizer", {}).get("learning_rate")
    if learning_rate is None:
        raise SystemExit(f"{study}: its search has no optimizer.learning_rate to benchmark")
    c.search = dict(optimizer=dict(learning_rate=learning_rate.to_dict()))
    return c


def study_length(study: str) -> tuple[int, int]:
    """The study file's own (train.steps, train.eval_every)."""
    from jaxplay import config as config_lib

    c = config_lib.load(study)
    return c.train.steps, c.train.eval_every


def run_jaxplay(
    executor: str, trials: int, steps: int, eval_every: int, study: str, started=lambda: None
) -> float:
    from jaxplay import spec, sweep

    config = study_config(trials, steps, eval_every, study)
    spec.resolve(config)  # generates/loads MNIST-1D outside the timed region
    with tempfile.TemporaryDirectory() as workdir:
        started()
        start = time.perf_counter()
        record = sweep.run_study(config, workdir, executor=executor, log=lambda line: None)
        seconds = time.perf_counter() - start
    assert record["status_counts"]["completed"] == trials, record["status_counts"]
    return seconds


def run_flax_docs(trials: int, steps: int, eval_every: int, started=lambda: None) -> float:
    import numpy as np
    import optax
    from flax import nnx

    from jaxplay import data as data_lib
    from jaxplay import driver, spec
    from jaxplay.models.mlp import MLP

    config = study_config(trials, steps, eval_every)
    study = spec.resolve(config)
    ds = data_lib.load(study.base.data)
    learning_rates = [p["optimizer.learning_rate"] for p in driver.plan(study).params]
    batch, m, opt = config.data.batch_size, config.model, config.optimizer

    @nnx.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    @nnx.jit
    def eval_step(model, x, y):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (
            logits.argmax(-1) != y
        ).mean()

    started()
    start = time.perf_counter()
    for lr in learning_rates:
        model = MLP(
            ds.input_shape,
            ds.num_classes,
            width=m.width,
            depth=m.depth,
            activation=m.activation,
            rngs=nnx.Rngs(0),
        )
        schedule = optax.warmup_cosine_decay_schedule(0.0, lr, config.schedule.warmup_steps, steps)
        optimizer = nnx.Optimizer(
            model, optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps), wrt=nnx.Param
        )
        rng = np.random.default_rng(0)
        per_epoch = len(ds.x_train) // batch
        for step in range(steps):
            if step % per_epoch == 0:
                order = rng.permutation(len(ds.x_train))
            idx = order[(step % per_epoch) * batch : (step % per_epoch + 1) * batch]
            train_step(model, optimizer, ds.x_train[idx], ds.y_train[idx])
            if (step + 1) % eval_every == 0:
                [
                    float(v)
                    for v in eval_step(model, ds.x_train, ds.y_train)
                    + eval_step(model, ds.x_val, ds.y_val)
                ]
    return time.perf_counter() - start


def one(
    variant: str, trials: int, steps: int, eval_every: int, study: str, json_path: str | None
) -> float:
    def started():
        """Notes in the parent's --json when the timed part begins (the parent waits meanwhile),
        so a reader of a run stopped by a time limit knows how long it had been timing."""
        if json_path and os.path.exists(json_path):
            with open(json_path) as f:
                figures = json.load(f)
            if figures.get("running"):
                figures["running"]["timed_from_unix"] = time.time()
                write_json(json_path, figures)

    if variant == "flax-docs":
        if study != STUDY:
            raise SystemExit(f"flax-docs trains the quickstart's MLP only, not {study}")
        return run_flax_docs(trials, steps, eval_every, started)
    return run_jaxplay(variant, trials, steps, eval_every, study, started)


def write_json(path: str | None, figures: dict) -> None:
    """Writes the figures so far, whole (a reader never sees half a file)."""
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(figures, f, indent=1)
        os.replace(path + ".tmp", path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=STUDY, help="study file (default: the quickstart)")
    parser.add_argument("--trials", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--steps", type=int, help="trial length (default: the study file's)")
    parser.add_argument("--eval_every", type=int, help="default: the study file's")
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="flax-docs runs for the smallest --trials of the MLP study only",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures here as JSON")
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "TRIALS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps is None or args.eval_every is None:
        from jaxplay import config as config_lib

        steps, eval_every = study_length(args.study)
        args.steps = args.steps or steps
        # the study's own period, or the divisor of --steps nearest it
        args.eval_every = args.eval_every or config_lib.divisor_near(args.steps, eval_every)
    if args.one:
        variant, trials = args.one[0], int(args.one[1])
        seconds = one(variant, trials, args.steps, args.eval_every, args.study, args.json)
        print(json.dumps(seconds))
        return 0

    # This process only names the device; its children train, each in a fresh process. Without
    # this its JAX client would hold 75% of a GPU's memory (preallocation) while they run.
    child_env = dict(os.environ)
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    import jax

    print("command: python " + " ".join(sys.argv))
    print(
        f"backend: {jax.default_backend()}  "
        f"device: {jax.devices()[0].device_kind} x{jax.device_count()}  "
        f"jax {jax.__version__}"
    )
    config = study_config(1, args.steps, args.eval_every, args.study)
    model = ", ".join(
        f"{k} {v}" for k, v in config.model.items() if k in ("name", "width", "channels", "depth")
    )
    print(
        f"study: {args.study} ({model}), batch {config.data.batch_size}, {args.steps} steps, "
        f"eval every {args.eval_every}, only the learning rate searched\n"
    )
    figures = {
        "study": args.study,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "trials": args.trials,
        "runs": [],  # {"trials", "variant", "seconds"} or {"trials", "variant", "error"}
        # while one runs: {"trials", "variant", "started_unix" (its process's start), and from
        # the start of its timed part (after imports and data), "timed_from_unix"}
        "running": None,
        "speedup": {},  # trials -> sequential seconds / batched seconds
    }
    write_json(args.json, figures)
    print(f"{'trials':>6}  {'variant':<11}{'seconds':>9}{'trials/min':>12}")
    rows = {}
    for trials in args.trials:
        variants = [
            v
            for v in args.variants
            if v != "flax-docs" or (trials == min(args.trials) and args.study == STUDY)
        ]
        for variant in variants:
            figures["running"] = {"trials": trials, "variant": variant, "started_unix": time.time()}
            write_json(args.json, figures)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    variant,
                    str(trials),
                    "--study",
                    args.study,
                    "--steps",
                    str(args.steps),
                    "--eval_every",
                    str(args.eval_every),
                    *(["--json", args.json] if args.json else []),
                ],
                stdout=subprocess.PIPE,  # its errors go to this process's stderr, the log
                text=True,
                env=child_env,
            )
            figures["running"] = None
            if out.returncode != 0:
                figures["runs"].append(
                    {"trials": trials, "variant": variant, "error": f"exit {out.returncode}"}
                )
                write_json(args.json, figures)
                print(f"{trials:>6}  {variant:<11}  failed (exit {out.returncode})", flush=True)
                continue
            seconds = json.loads(out.stdout.strip().splitlines()[-1])
            rows[trials, variant] = seconds
            figures["runs"].append({"trials": trials, "variant": variant, "seconds": seconds})
            if (trials, "batched") in rows and (trials, "sequential") in rows:
                figures["speedup"][str(trials)] = (
                    rows[trials, "sequential"] / rows[trials, "batched"]
                )
            write_json(args.json, figures)
            print(
                f"{trials:>6}  {variant:<11}{seconds:>9.1f}{60 * trials / seconds:>12.1f}",
                flush=True,
            )
    print()
    for trials in args.trials:
        if (trials, "batched") not in rows or (trials, "sequential") not in rows:
            continue
        ratio = rows[trials, "sequential"] / rows[trials, "batched"]
        line = f"{trials} trials: batched is {ratio:.2f}x the speed of sequential"
        if (trials, "flax-docs") in rows:
            base = rows[trials, "flax-docs"]
            line += (
                f"; vs flax-docs: batched {base / rows[trials, 'batched']:.1f}x, "
                f"sequential {base / rows[trials, 'sequential']:.1f}x faster"
            )
        print(line)
    failed = [r for r in figures["runs"] if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
