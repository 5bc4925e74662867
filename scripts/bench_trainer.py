r"""Steps/s of the jaxplay trainer against a bare hand-written jax.jit + optax loop (MNIST-1D MLP).

  python scripts/bench_trainer.py
  python scripts/bench_trainer.py --steps 1500 --eval_every 150 --repeats 3 \
      --width 256 --batch_size 128

Both variants train the base config of experiments/mnist1d_mlp.py (no search applied) for
`--steps` steps with an evaluation on the full train and validation sets every `--eval_every`
steps, after untimed warm-ups that compile; the timed runs of the two alternate. The jaxplay
time is the wall clock of the whole `train_and_evaluate` call: its step-0 evaluation and its orbax
checkpoint saves are included, since that is what a trial costs.
Target (issue): jaxplay >= 0.95 x bare steps/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxplay.config
import jaxplay.data
import jaxplay.spec
import jaxplay.train
import jaxplay.workloads
from jaxplay.models.mlp import MLP
from jaxplay.train import state as state_lib
from jaxplay.train import step as step_lib

STUDY = "experiments/mnist1d_mlp.py"


def run_jaxplay(trial) -> float:
    """Seconds for one full trial in a fresh directory."""
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        result = jaxplay.train.train_and_evaluate(trial, workdir)
        seconds = time.perf_counter() - start
    assert result.status == "completed", result
    return seconds


def make_bare(config):
    """A hand-written loop over the same data, model, init, optimizer and schedule.

    Returns run(steps) -> final eval metrics, which builds a fresh model and trains it.
    """
    ds = jaxplay.data.load(jaxplay.spec.resolve(config).base.data)
    x_train, y_train = jax.device_put((ds.x_train, ds.y_train))
    x_val, y_val = jax.device_put((ds.x_val, ds.y_val))
    num, batch, total = len(ds.x_train), config.data.batch_size, config.train.steps
    m, opt = config.model, config.optimizer
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=opt.learning_rate,
        warmup_steps=config.schedule.warmup_steps,
        decay_steps=total,
        end_value=0.0,
    )
    tx = optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps)
    init_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0)  # jaxplay's init stream

    def build():
        model = MLP(
            ds.input_shape,
            ds.num_classes,
            width=m.width,
            depth=m.depth,
            activation=m.activation,
            rngs=nnx.Rngs(params=init_key),
        )
        return nnx.split(model, nnx.Param)

    graphdef, _ = build()

    def loss_fn(params, x, y):
        logits = nnx.merge(graphdef, params)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def evaluate(params):
        out = {}
        for split, x, y in (("train", x_train, y_train), ("val", x_val, y_val)):
            logits = nnx.merge(graphdef, params)(x)
            out[f"{split}/loss"] = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            out[f"{split}/error"] = jnp.mean(jnp.argmax(logits, -1) != y)
        return out

    @jax.jit(donate_argnums=(0, 1))
    def train_step(params, opt_state, idx):
        loss, grads = jax.value_and_grad(loss_fn)(params, x_train[idx], y_train[idx])
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def run(steps):
        _, params = build()
        opt_state = tx.init(params)
        per_epoch = (
            num // batch
        )  # last partial batch dropped; the trainer's order: rng([seed, epoch])
        metrics = None
        for step in range(steps):
            if step % per_epoch == 0:
                perm = (
                    np.random.default_rng([config.seed, step // per_epoch])
                    .permutation(num)
                    .astype(np.int32)
                )
            i = step % per_epoch
            params, opt_state, loss = train_step(
                params, opt_state, perm[i * batch : (i + 1) * batch]
            )
            if (step + 1) % config.train.eval_every == 0:
                metrics = jax.device_get(evaluate(params))  # host sync, as the trainer does
        jax.block_until_ready(params)
        return metrics

    return run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--eval_every", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=None, help="default: the study's model.width")
    parser.add_argument(
        "--batch_size", type=int, default=None, help="default: the study's data.batch_size"
    )
    args = parser.parse_args(argv)

    overrides = {"train.steps": args.steps, "train.eval_every": args.eval_every}
    if args.width is not None:
        overrides["model.width"] = args.width
    if args.batch_size is not None:
        overrides["data.batch_size"] = args.batch_size
    config = jaxplay.config.load(STUDY, overrides)
    steps = config.train.steps
    if steps % config.train.eval_every:
        parser.error("--steps must be a multiple of --eval_every (the trainer runs whole periods)")

    # Warm-ups compile: (a) one full jaxplay trial, (b) two periods of the bare loop.
    trial = jaxplay.spec.resolve(config).base
    run_jaxplay(trial)
    instance = jaxplay.workloads.bind(trial)
    graphdef = state_lib.initializer(trial, instance, trial.program)[0]
    period = step_lib.period_fn(graphdef, instance.task, trial.program)
    compiled = period._cache_size()
    bare = make_bare(config)
    bare(min(steps, 2 * config.train.eval_every))
    # Timed runs alternate (a) and (b) so drift in machine speed hits both alike.
    t_jaxplay, t_bare = [], []
    for _ in range(args.repeats):
        t_jaxplay.append(run_jaxplay(trial))  # (a) fresh temp dir each time
        start = time.perf_counter()
        bare(steps)  # (b) fresh model and optimizer state each time
        t_bare.append(time.perf_counter() - start)
    recompiled = period._cache_size() != compiled

    dev = jax.devices()[0]
    print("command: " + " ".join([sys.executable.rsplit("/", 1)[-1]] + sys.argv))
    print(
        f"backend: {jax.default_backend()}  device: {dev.device_kind} (x{jax.device_count()})  "
        f"jax {jax.__version__}"
    )
    print(
        f"config: {STUDY} base, model.width={config.model.width}, "
        f"data.batch_size={config.data.batch_size}, steps={steps}, "
        f"eval_every={config.train.eval_every}, repeats={args.repeats}"
    )
    print(
        "jaxplay time = whole train_and_evaluate call: "
        "step-0 eval + periods + orbax checkpoint saves"
    )
    print(f"\n{'variant':<10}{'median s':>10}{'steps/s':>10}   all runs (s)")
    rows = {}
    for name, times in (("jaxplay", t_jaxplay), ("bare", t_bare)):
        med = statistics.median(times)
        rows[name] = steps / med
        print(
            f"{name:<10}{med:>10.3f}{rows[name]:>10.1f}   " + ", ".join(f"{t:.3f}" for t in times)
        )
    ratio = rows["jaxplay"] / rows["bare"]
    print(
        f"\nratio jaxplay/bare (steps/s): {ratio:.3f}  "
        f"(target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})"
    )
    if recompiled:
        print("warning: the jaxplay trainer recompiled during the timed runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
