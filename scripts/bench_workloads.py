"""Training throughput of the model families, float32 against bf16 compute, device-resident
data against the streamed grain pipeline (with the share of time spent waiting for input).

  python scripts/bench_workloads.py            # accelerator sizes (ResNet-18 at batch 256, ...)
  python scripts/bench_workloads.py --small    # the same, shrunk to run on a CPU in a minute
  python scripts/bench_workloads.py --only resnet18-cifar --pipelines device --no-input \
      --json /tmp/resnet.json                  # ResNet-18 f32 and bf16 only, figures as JSON

Each row is one real trial (`train.train_and_evaluate`): the rate is measured over the periods
after the first (so compilation is excluded) and includes each period's evaluation.
--json PATH is rewritten after every row, so a run stopped by a time limit keeps the rows it had.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from jaxplay import config as config_lib
from jaxplay import spec, train

BASE = {
    "resnet18-cifar": ("experiments/cifar10_resnet.py:synthetic", {}),
    "resnet50-imagenet": (
        "experiments/imagenet_resnet.py:smoke",
        {
            "data.image_size": 224,
            "data.num_train": 2048,
            "data.num_val": 256,
            "data.batch_size": 128,
            "model.stage_sizes": (3, 4, 6, 3),
            "model.width": 64,
            "model.virtual_batch_size": 64,
        },
    ),
    "transformer-lm": (
        "experiments/pystdlib_transformer.py",
        {
            "data.seq_len": 256,
            "data.max_bytes": None,
            "data.batch_size": 64,
            "model.dim": 256,
            "model.depth": 4,
            "model.heads": 4,
            "train.train_eval_examples": 512,
        },
    ),
    "gru-mnist1d": ("experiments/mnist1d_gru.py", {}),
}
SMALL = {
    "resnet18-cifar": {
        "data.num_train": 512,
        "data.num_val": 128,
        "data.batch_size": 32,
        "model.width": 8,
        "model.virtual_batch_size": 16,
        "model.stage_sizes": (1, 1),
    },
    "resnet50-imagenet": {
        "data.image_size": 64,
        "data.num_train": 128,
        "data.num_val": 32,
        "data.batch_size": 16,
        "model.stage_sizes": (1, 1),
        "model.width": 8,
        "model.virtual_batch_size": 8,
    },
    "transformer-lm": {
        "data.seq_len": 64,
        "data.max_bytes": 1_000_000,
        "data.batch_size": 16,
        "model.dim": 64,
        "model.depth": 2,
        "train.train_eval_examples": 128,
    },
    "gru-mnist1d": {"model.hidden": 64},
}
VARIANTS = [  # (family, pipeline, compute dtype)
    ("resnet18-cifar", "device", "float32"),
    ("resnet18-cifar", "device", "bfloat16"),
    ("resnet18-cifar", "grain", "bfloat16"),
    ("transformer-lm", "device", "float32"),
    ("transformer-lm", "device", "bfloat16"),
    ("gru-mnist1d", "device", "float32"),
    ("resnet50-imagenet", "grain", "bfloat16"),
]


def measure(family: str, pipeline: str, dtype: str, small: bool, periods: int, every: int) -> dict:
    path, overrides = BASE[family]
    overrides = {**overrides, **(SMALL[family] if small else {})}
    c = config_lib.load(path)
    for key, value in overrides.items():
        section, field = key.split(".")
        with c[section].unlocked():
            c[section][field] = value
    c.data.pipeline = pipeline
    c.train.steps, c.train.eval_every = periods * every, every
    c.schedule.warmup_steps = every
    with c.train.unlocked():
        c.train.compute_dtype = dtype
        c.train.checkpoint_every_secs = 1e9
        c.train.keep_best = 1
    stamps, waits = {}, []

    def on_eval(step, metrics):
        stamps[step] = time.perf_counter()
        if "train/input_wait_fraction" in metrics and step > every:
            waits.append(metrics["train/input_wait_fraction"])

    trial = spec.resolve(c).base
    with tempfile.TemporaryDirectory() as workdir:
        result = train.train_and_evaluate(trial, workdir, on_eval=on_eval)
    steps = sorted(stamps)
    seconds = stamps[steps[-1]] - stamps[steps[1]]  # after the first period: no compilation
    rate = (steps[-1] - steps[1]) / seconds
    examples = rate * c.data.batch_size
    row = {
        "family": family,
        "pipeline": pipeline,
        "dtype": dtype,
        "batch": c.data.batch_size,
        "steps_per_s": round(rate, 2),
        "examples_per_s": round(examples, 1),
        "input_wait": round(sum(waits) / len(waits), 3) if waits else None,
        "status": result.status,
        "final_train_loss": round(result.final_metrics.get("train/loss", float("nan")), 4),
    }
    if family == "transformer-lm":
        row["tokens_per_s"] = round(examples * c.data.seq_len)
    return row


def measure_input(periods: int, every: int, small: bool) -> dict:
    """The grain pipeline alone: examples/s it delivers to the device for the CIFAR ResNet study
    (reading, batching, stacking a period, device_put), with nothing training. Compare it with a
    training row's examples/s: the pipeline must be the faster of the two."""
    from jaxplay import workloads
    from jaxplay.data import pipeline

    c = config_lib.load(BASE["resnet18-cifar"][0])
    if small:
        c.data.num_train, c.data.batch_size = SMALL["resnet18-cifar"]["data.num_train"], 32
    trial = spec.resolve(c).base
    dataset = workloads.bind(trial).dataset
    threads = trial.data.read_threads
    it = pipeline.train_batches(
        dataset.x_train, dataset.y_train, batch_size=c.data.batch_size, seed=0, read_threads=threads
    )
    feed = pipeline.PeriodFeed([it], every, stacked=False, depth=2)
    try:
        feed.next()[0].block_until_ready()  # warm up the reader threads
        start = time.perf_counter()
        for _ in range(periods):
            feed.next()[0].block_until_ready()
        seconds = time.perf_counter() - start
    finally:
        feed.close()
    examples = periods * every * c.data.batch_size
    return {
        "family": "input-only (grain, CIFAR-shape uint8)",
        "batch": c.data.batch_size,
        "read_threads": threads,
        "examples_per_s": round(examples / seconds, 1),
    }


def write_json(path: str | None, figures: dict) -> None:
    """Writes the figures so far, whole (a reader never sees half a file)."""
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(figures, f, indent=1)
        os.replace(path + ".tmp", path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized models and data")
    parser.add_argument("--periods", type=int, default=4, help="at least 3 (the first is skipped)")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--only", nargs="*", default=None, help="families to run")
    parser.add_argument("--pipelines", nargs="+", choices=("device", "grain"), help="default: all")
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "bfloat16"), help="default: all")
    parser.add_argument(
        "--input",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the grain pipeline alone first (default: yes)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows here as JSON")
    args = parser.parse_args()
    import jax

    print(
        f"# {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}",
        flush=True,
    )
    figures = {
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "small": args.small,
        "periods": args.periods,
        "every": args.every,
        "rows": [],
    }
    write_json(args.json, figures)
    if args.input:
        figures["rows"].append(measure_input(args.periods, args.every, args.small))
        print(json.dumps(figures["rows"][-1]), flush=True)
        write_json(args.json, figures)
    for family, pipeline, dtype in VARIANTS:
        if (
            (args.only and family not in args.only)
            or (args.pipelines and pipeline not in args.pipelines)
            or (args.dtypes and dtype not in args.dtypes)
        ):
            continue
        start = time.perf_counter()
        row = measure(family, pipeline, dtype, args.small, args.periods, args.every)
        row["wall_s"] = round(time.perf_counter() - start, 1)
        print(json.dumps(row), flush=True)
        figures["rows"].append(row)
        write_json(args.json, figures)


if __name__ == "__main__":
    main()
