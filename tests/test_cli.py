"""One command-line family: every command's --help, its flags, its exit codes for bad input."""

import argparse
import os
import pathlib
import subprocess
import sys

import pytest

from jaxplay import batch_size, cli, steps, studies, sweep
from jaxplay.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parent.parent
COMMANDS = {"sweep": sweep, "studies": studies, "steps": steps, "batch_size": batch_size}


def _helps():
    """(command, arguments before --help, the parser that answers) for every parser."""
    for name, module in sorted(COMMANDS.items()):
        parser = module._parser()
        yield name, [], parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    yield name, [sub], subparser


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_exits_0_and_lists_every_flag(name, capsys):
    run = subprocess.run([sys.executable, "-m", f"jaxplay.{name}", "--help"], capture_output=True,
                         text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "examples:\n  python -m jaxplay." in run.stdout
    # Every parser of the command (a subcommand's too) prints each of its flags.
    for command, prefix, parser in _helps():
        if command != name:
            continue
        out = run.stdout
        if prefix:
            assert COMMANDS[name].main([*prefix, "--help"]) == 0
            out = capsys.readouterr().out
        assert out.startswith(f"usage: python -m jaxplay.{name}")
        flags = {o for a in parser._actions for o in a.option_strings if o.startswith("--")}
        assert all(flag in out for flag in flags), sorted(f for f in flags if f not in out)


def test_short_h_is_help_too(capsys):
    assert sweep.main(["-h"]) == 0
    assert "--from_study" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, args, field",
    [
        ("sweep", ["--workdir=w"], "--config"),
        ("sweep", ["--config=experiments/mnist1d_mlp.py", "--workdir=w", "--bogus=1"], "--bogus"),
        ("steps", ["--config=experiments/mnist1d_mlp.py", "--workdir=w", "--steps=x"], "--steps"),
        ("batch_size", ["--config=experiments/mnist1d_mlp.py", "--repeats=many"], "--repeats"),
        ("studies", ["frobnicate", "--workdir=w"], "frobnicate"),
        ("studies", ["show"], "--workdir"),
    ],
)
def test_bad_flags_are_one_error_line_and_exit_2(name, args, field, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv(cli.STORE_ENV, raising=False)
    assert COMMANDS[name].main(args) == cli.BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: ") and field in err and "Traceback" not in err


def test_lineage_options_that_do_not_apply_are_refused_with_the_reason(tmp_path, capsys):
    base = ["--config=experiments/mnist1d_mlp.py", f"--workdir={tmp_path}"]
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        assert sweep.main([*base, "--top_k=2"]) == 2
        assert "--top_k: only with --from_study PARENT" in capsys.readouterr().err
        assert sweep.main([*base, "--from_study=p", "--lineage=refine", "--top_k=2"]) == 2
        err = capsys.readouterr().err
        assert "--top_k: --lineage refine takes no options" in err
        assert sweep.main([*base, "--from_study=p", "--lineage=rerun", "--top_k=2"]) == 2
        assert "--top_k: --lineage rerun takes seeds" in capsys.readouterr().err
        assert sweep.main([*base, "--executor=sequential", "--batch_trials=4"]) == 2
        assert "--batch_trials: sizes the stacks of --executor batched" in capsys.readouterr().err
    finally:
        os.chdir(cwd)


def test_overrides_are_read_as_the_type_of_their_field():
    config = cli.load_config(
        str(REPO / "experiments/mnist1d_mlp.py"),
        [("study.num_trials", "24"), ("optimizer.learning_rate", "1"), ("study.name", "x"),
         ("search.model.width.values", "(64, 128)"), ("train.grad_clip_norm", "0.5")],
    )  # fmt: skip
    assert config.study.num_trials == 24 and config.study.name == "x"
    assert isinstance(config.optimizer.learning_rate, float) and config.optimizer.learning_rate == 1
    assert tuple(config.search.model.width["values"]) == (64, 128)
    with pytest.raises(ConfigError, match=r"--config.study.num_trials: 'many' is not a number"):
        cli.load_config(str(REPO / "experiments/mnist1d_mlp.py"), [("study.num_trials", "many")])
    with pytest.raises(ConfigError, match=r"--config.model.widht: no such field .*'width'"):
        cli.load_config(str(REPO / "experiments/mnist1d_mlp.py"), [("model.widht", "3")])
