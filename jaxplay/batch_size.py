"""Feasible batch sizes and training throughput: `python -m jaxplay.batch_size`.

Times the trainer's own compiled period at doubling batch sizes of a study's base config until
one runs out of memory (jaxplay.tuning.batch_size says what is measured and why), then says where
throughput stops (nearly) doubling and the largest batch size worth using. With --workdir (or
--store) the probe is recorded in that store, and the study's report shows it.
"""

from __future__ import annotations

import sys
import time

import jax

from jaxplay import cli, spec
from jaxplay import store as store_lib
from jaxplay.analysis import throughput
from jaxplay.train import mesh
from jaxplay.tuning import batch_size

EXAMPLES = [
    "python -m jaxplay.batch_size --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp",
    "python -m jaxplay.batch_size --config experiments/mnist1d_mlp.py --config.model.width=512 "
    "--min_batch_size 32 --max_batch_size 1024 --repeats 3",
]


def _parser():
    p = cli.parser("jaxplay.batch_size", __doc__.split("\n\n")[0], EXAMPLES)
    cli.add_study_file(p, "the study whose base training config is probed (no search applied)")
    cli.add_store(p, workdir_required=False, workdir_help="the study's workdir: the probe is "
                  "recorded in its store (without --workdir or --store it is only "
                  "printed)")  # fmt: skip
    p.add_argument("--min_batch_size", type=int, metavar="B", help="smallest batch size (default "
                   "8, rounded up to a multiple of the device count); each next one "
                   "doubles it")  # fmt: skip
    p.add_argument("--max_batch_size", type=int, metavar="B", help="largest batch size to try "
                   f"(default {batch_size.CPU_MAX_BATCH_SIZE} on a CPU; none on accelerators, "
                   "where running out of memory ends the probe)")  # fmt: skip
    p.add_argument("--steps_per_period", type=int, metavar="N", help="training steps per timed "
                   "call (default: the study's train.eval_every, as in a trial)")  # fmt: skip
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        metavar="N",
        help="untimed periods per batch size; the first compiles (default 1)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=5,
        metavar="N",
        help="timed periods per batch size; the median is reported (default 5)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m jaxplay.batch_size`; argv without the program name."""
    return cli.run(_main, argv, resumable=False)


def _main(argv: list[str]) -> int:
    args = cli.parse(_parser(), argv)
    study = spec.resolve(args.config)  # before the header: a bad config prints only its error
    url = cli.store_url(args) if args.workdir or cli.store_flag(args) else None
    cli.quiet_libraries()
    started = time.perf_counter()
    trial = study.base
    model = ", ".join(f"{k}={v}" for k, v in trial.model.options.items())
    steps = args.steps_per_period or trial.train.eval_every
    print(f"device: {mesh.device_kind()}  jax {jax.__version__}")
    print(f"config: {cli.study_file_path(args)} (base config), model: {trial.model.name} {model}")
    print(
        f"each batch size: {args.warmup} untimed warm-up period(s) (compile), then the median of "
        f"{args.repeats} timed periods of {steps} steps; evaluation excluded"
    )
    result = batch_size.probe(
        study,
        min_batch_size=args.min_batch_size,
        max_batch_size=args.max_batch_size,
        steps_per_period=args.steps_per_period,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    summary = throughput.analyze(result.rows)
    if summary.max_useful is not None:
        print(f"max useful batch size: {summary.max_useful}")
    for text in throughput.conclusion(result, summary):
        print(text)
    if url is not None:
        store = store_lib.Store(url)
        try:
            store.add_probe(
                study.study.name, "batch_size", config=dict(study.tree), result=result.to_json(),
                device_kind=mesh.device_kind(),
                command=cli.command_line("jaxplay.batch_size", argv),
            )  # fmt: skip
        finally:
            store.close()
        print(f"recorded for study {study.study.name!r} in {store_lib.redact(url)}")
    print(f"probe took {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
