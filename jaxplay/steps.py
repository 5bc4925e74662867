"""An initial max_train_steps from a learning-rate sweep: `python -m jaxplay.steps`.

Runs the playbook's constant-learning-rate sweep derived from a study file (without
regularization, N steps per trial; jaxplay.tuning.steps says what and why), then prints the first
step at which each learning rate fits the training set and the fastest one: the estimate.
The sweep is a study of its own, `<study.name>-steps` (or --config.study.name), recorded with its
parent; rerunning the same command continues it and prints the estimate again.
"""

from __future__ import annotations

import argparse
import sys

from jaxplay import cli, driver
from jaxplay.errors import ConfigError, StoreError
from jaxplay.tuning import steps

EXAMPLES = [
    "python -m jaxplay.steps --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp",
    "python -m jaxplay.steps --config experiments/mnist1d_mlp.py --workdir runs/mnist1d_mlp "
    "--steps 3000 --learning_rates 1e-4,1e-3,1e-2 --fit_metric train/loss --fit_threshold 0.01",
]


def _parser():
    p = cli.parser("jaxplay.steps", __doc__.split("\n\n")[0], EXAMPLES)
    cli.add_study_file(p, "the study whose max_train_steps to estimate")
    cli.add_store(p, workdir_required=True, workdir_help="the study's workdir (the sweep is "
                  "recorded in its store, its checkpoints under it)")  # fmt: skip
    for option in steps.STEPS.options:
        kind = _comma_list if option.kind is list else option.kind
        if option.kind is bool:
            cli.add_bool(p, option.name, option.default, option.help)
        else:
            p.add_argument(f"--{option.name}", type=kind, metavar=option.name.upper(),
                           help=f"{option.help} (default {option.default})")  # fmt: skip
    p.add_argument("--fit_metric", default=steps.DEFAULT_FIT_METRIC, metavar="METRIC",
                   help="training-set metric of the 'perfect fit' criterion (default "
                   f"{steps.DEFAULT_FIT_METRIC})")  # fmt: skip
    p.add_argument(
        "--fit_threshold",
        type=float,
        default=0.0,
        metavar="X",
        help="the training set counts as fit once fit_metric <= X (default 0)",
    )
    p.add_argument(
        "--executor",
        choices=driver.EXECUTORS,
        default="auto",
        help="as for jaxplay.sweep (the learning rates share one compiled program)",
    )
    return p


def _comma_list(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers, e.g. 1e-4,1e-3,1e-2") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m jaxplay.steps`; argv without the program name."""
    return cli.run(_main, argv, resumable=True)


def _main(argv: list[str]) -> int:
    args = cli.parse(_parser(), argv)
    options = {o.name: getattr(args, o.name) for o in steps.STEPS.options}
    if options["learning_rates"] is not None and options["num_learning_rates"] is not None:
        raise ConfigError(
            "--learning_rates and --num_learning_rates: give one (a list, or a count log-spaced "
            "over the study's learning-rate range)"
        )
    options = {k: v for k, v in options.items() if v is not None}
    cli.quiet_libraries()
    cli.enable_compilation_cache()
    name = args.config.study.name if "study.name" in dict(args.overrides) else None
    try:
        result = steps.run(
            args.config,
            args.workdir,
            name=name,
            fit_metric=args.fit_metric,
            fit_threshold=args.fit_threshold,
            store_url=cli.store_flag(args),
            executor=args.executor,
            config_path=cli.study_file_path(args),
            command=cli.command_line("jaxplay.steps", argv),
            **options,
        )
    except StoreError as e:
        if "different config" not in str(e):
            raise
        # Another N, grid or criterion on an existing sweep: a study's config never changes.
        raise StoreError(
            f"{e}; to run this sweep next to it, pass --config.study.name="
            f"{name or args.config.study.name + '-steps'}-2"
        ) from None
    failed = any(t.status == "failed" for t in result.trials)  # bugs, as in jaxplay.sweep
    return 1 if result.fastest is None or failed else 0


if __name__ == "__main__":
    sys.exit(main())
