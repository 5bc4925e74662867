"""Whole-study wall time of N MNIST-1D MLP trials that differ only in learning rate.

  python scripts/bench_batched.py                       # 16 and 64 trials
  python scripts/bench_batched.py --trials 16 --steps 600   # shorter trials

Variants, each in a fresh Python process so that none reuses another's compilations:
  batched     jaxplay.sweep.run_study(executor='batched'): all trials in one jit(vmap(period))
  sequential  jaxplay.sweep.run_study(executor='sequential'): one trial at a time, one compilation
  flax-docs   the way Flax's docs train a model: nnx.Optimizer and an nnx.jit train step, a new
              optimizer per trial, batches sliced on the host; every trial recompiles
              (run for the smallest --trials only: it is the slow one)
Both jaxplay variants are whole studies: validation, store writes, evaluation every
--eval_every steps on the full train and validation sets, checkpoints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

STUDY = "experiments/mnist1d_mlp.py"


def study_config(trials: int, steps: int, eval_every: int):
    """The quickstart study with only the learning rate searched (width fixed at 256)."""
    from jaxplay import config as config_lib
    from jaxplay import spaces

    c = config_lib.load(
        STUDY,
        {
            "train.steps": steps,
            "train.eval_every": eval_every,
            "schedule.warmup_steps": steps // 10,
            "study.num_trials": trials,
            "study.name": f"bench-{trials}",
        },
    )
    c.search = dict(optimizer=dict(learning_rate=spaces.log(1e-4, 3e-2, role="nuisance")))
    return c


def run_jaxplay(executor: str, trials: int, steps: int, eval_every: int) -> float:
    from jaxplay import spec, sweep

    config = study_config(trials, steps, eval_every)
    spec.resolve(config)  # generates/loads MNIST-1D outside the timed region
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        record = sweep.run_study(config, workdir, executor=executor, log=lambda line: None)
        seconds = time.perf_counter() - start
    assert record["status_counts"]["completed"] == trials, record["status_counts"]
    return seconds


def run_flax_docs(trials: int, steps: int, eval_every: int) -> float:
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


def one(variant: str, trials: int, steps: int, eval_every: int) -> float:
    if variant == "flax-docs":
        return run_flax_docs(trials, steps, eval_every)
    return run_jaxplay(variant, trials, steps, eval_every)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--steps", type=int, default=1500, help="the quickstart's trial length")
    parser.add_argument("--eval_every", type=int, default=150)
    parser.add_argument("--one", nargs=2, metavar=("VARIANT", "TRIALS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.steps, args.eval_every)))
        return 0

    import jax

    print("command: python " + " ".join(sys.argv))
    print(
        f"backend: {jax.default_backend()}  "
        f"device: {jax.devices()[0].device_kind} x{jax.device_count()}  "
        f"jax {jax.__version__}"
    )
    print(
        f"study: {STUDY}, width 256, batch 128, {args.steps} steps, eval every {args.eval_every}, "
        "only the learning rate searched\n"
    )
    print(f"{'trials':>6}  {'variant':<11}{'seconds':>9}{'trials/min':>12}")
    rows = {}
    for trials in args.trials:
        variants = ["batched", "sequential"] + (["flax-docs"] if trials == min(args.trials) else [])
        for variant in variants:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    variant,
                    str(trials),
                    "--steps",
                    str(args.steps),
                    "--eval_every",
                    str(args.eval_every),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            seconds = json.loads(out.stdout.strip().splitlines()[-1])
            rows[trials, variant] = seconds
            print(
                f"{trials:>6}  {variant:<11}{seconds:>9.1f}{60 * trials / seconds:>12.1f}",
                flush=True,
            )
    print()
    for trials in args.trials:
        ratio = rows[trials, "sequential"] / rows[trials, "batched"]
        line = f"{trials} trials: batched is {ratio:.2f}x the speed of sequential"
        if (trials, "flax-docs") in rows:
            base = rows[trials, "flax-docs"]
            line += (
                f"; vs flax-docs: batched {base / rows[trials, 'batched']:.1f}x, "
                f"sequential {base / rows[trials, 'sequential']:.1f}x faster"
            )
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
