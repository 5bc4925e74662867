"""Feasible batch sizes and training throughput: `python -m jaxplay.batch_size`.

Times the trainer's own compiled period at doubling batch sizes of a study's base config until
one runs out of memory (jaxplay.tuning.batch_size says what is measured and why), then says where
throughput stops (nearly) doubling and the largest batch size worth using. With --workdir (or
--store) the probe is recorded in that store, and the study's report shows it. A probe the store
already holds of the same model and optimizer on this device (any study's) is reused instead of
measured again (--again measures anyway); one of another model or optimizer is stale, and the
probe runs again (playbook: repeat it whenever the model or the optimizer changes).
"""

from __future__ import annotations

import sys
import time

import jax

from jaxplay import cli, paths, spec
from jaxplay import store as store_lib
from jaxplay.analysis import throughput
from jaxplay.errors import StoreError
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
    p.add_argument("--again", action="store_true", help="measure even when the store holds a "
                   "probe of the same model and optimizer on this device (by default that one is "
                   "reused and printed)")  # fmt: skip
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
    if url is not None and _reused(study, url, args.again):
        return 0
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
        if args.workdir and not cli.store_flag(args):  # a new workdir, as the sweep makes it
            paths.folder(args.workdir).mkdir(parents=True, exist_ok=True)
        _record(url, study.study.name, config=dict(study.tree), result=result.to_json(),
                device_kind=mesh.device_kind(),
                command=cli.command_line("jaxplay.batch_size", argv))  # fmt: skip
    print(f"probe took {time.perf_counter() - started:.1f} s")
    return 0


def _reused(study, url: str, again: bool) -> bool:
    """Prints and records (for this study) a probe the store holds of the same model and optimizer
    on this device, and returns True; otherwise says why it measures and returns False."""
    name, config, device = study.study.name, dict(study.tree), mesh.device_kind()
    try:
        reader = store_lib.Store(url, readonly=True)
    except StoreError:
        return False  # no store there yet: nothing to reuse (it is created to record the probe)
    try:
        probes = reader.probes(None, throughput.PROBE_KIND)
    finally:
        reader.close()
    choice = throughput.choose_probe(probes, config, device)
    if choice is not None and not choice.stale and not again:
        probe = choice.probe
        print(f"device: {device}")
        print(choice.describe("") + "; --again measures anew")
        print(throughput.report(throughput.Probe.from_json(probe["result"])))
        if probe.get("study") != name:  # this study's report shows it too, with its source
            result = dict(probe["result"], reused_from={"study": probe.get("study"),
                          "created_at": probe.get("created_at")})  # fmt: skip
            _record(url, name, config=config, result=result, device_kind=device,
                    command=probe.get("command") or "")  # fmt: skip
        return True
    own = throughput.choose_probe([p for p in probes if p.get("study") == name], config, device)
    if own is not None and own.stale:
        print(own.describe("measuring again"))
    elif choice is not None and not choice.stale:
        print("--again: measuring although the store holds a probe of this setup")
    return False


def _record(url: str, name: str, **fields) -> None:
    """Records a batch-size probe for study `name` in the store at `url`."""
    store = store_lib.Store(url)
    try:
        store.add_probe(name, throughput.PROBE_KIND, **fields)
    finally:
        store.close()
    print(f"recorded for study {name!r} in {store_lib.redact(url)}")


if __name__ == "__main__":
    sys.exit(main())
