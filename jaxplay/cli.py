"""What every command shares: one way to parse (argparse), the study file with its
`--config.<field>=<value>` overrides, the store flags, errors that name the flag or field, Ctrl-C
and SIGTERM, the exit codes, the recorded command line and the compilation cache.

Exit codes, for every command: 0 done, 1 done but the result needs attention (a failed trial,
no estimate) or the machine failed (a store that cannot be reached, a full disk: fix it and run the
same command again), 2 bad input (nothing ran), 130 interrupted (run the same command again to go
on). Errors are one `error:` line; `--verbose` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Callable

from jaxplay import config as config_lib
from jaxplay import store as store_lib
from jaxplay.errors import ConfigError, EnvironmentFault, StoreError

ENVIRONMENT = 1
BAD_INPUT = 2
INTERRUPTED = 130
STORE_ENV = "JAXPLAY_STORE"
_OVERRIDES = (
    "--config.FIELD=VALUE overrides a field of the study file (repeatable), read as the type "
    "the file gives it, e.g. --config.study.num_trials=24 "
    "--config.search.optimizer.learning_rate.max=0.1"
)


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError on bad flags, so every command reports them one way."""

    def error(self, message):
        raise ConfigError(message)


def parser(module: str, description: str, examples: list[str]) -> argparse.ArgumentParser:
    """The parser of `python -m <module>`: --help shows the description, every flag and examples."""
    p = _Parser(
        prog=f"python -m {module}",
        description=description,
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("--verbose", action="store_true", help="on an error, print its traceback too")
    return p


def add_study_file(p: argparse.ArgumentParser, what: str = "the study") -> None:
    """--config FILE[:ARG], the study file (and its --config.FIELD=VALUE overrides)."""
    p.add_argument(
        "--config",
        required=True,
        metavar="FILE[:ARG]",
        help=f"study file declaring {what} (get_config(arg) gets ARG). {_OVERRIDES}",
    )


def add_store(p: argparse.ArgumentParser, *, workdir_required: bool, workdir_help: str) -> None:
    """--workdir (checkpoints and the default SQLite store) and --store (any SQLAlchemy URL)."""
    p.add_argument("--workdir", required=workdir_required, metavar="DIR", help=workdir_help)
    p.add_argument(
        "--store",
        metavar="URL",
        help=f"SQLAlchemy URL of the study store (default: ${STORE_ENV}, else DIR/jaxplay.db); "
        "the environment variable keeps a password off command lines; it is never printed",
    )


def add_study(p: argparse.ArgumentParser, help_text: str) -> None:
    """--study NAME: which study of the store."""
    p.add_argument("--study", metavar="NAME", help=help_text)


def boolean(text: str) -> bool:
    """A flag value: true/false, yes/no, 1/0."""
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a bool; give true or false")


def add_bool(p: argparse.ArgumentParser, name: str, default: bool, help_text: str) -> None:
    """--name (true), --name=false."""
    p.add_argument(
        f"--{name}", type=boolean, nargs="?", const=True, default=default, metavar="BOOL",
        help=f"{help_text} (default {str(default).lower()})",
    )  # fmt: skip


def parse(p: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parses the flags and, when the command takes a study file, loads it with its overrides:
    `args.config` is then the ConfigDict and `args.config_file` the file as given."""
    overrides, rest = _split_overrides(argv)
    args = p.parse_args(rest)
    if overrides and not hasattr(args, "config"):
        raise ConfigError(f"--config.{overrides[0][0]}: this command takes no study file")
    args.overrides = overrides
    if getattr(args, "config", None) is not None:
        args.config_file = args.config
        args.config = load_config(args.config, overrides)
    return args


def _split_overrides(argv: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(--config.FIELD overrides as (path, text), the other arguments)."""
    overrides, rest, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            path, eq, text = arg[len("--config.") :].partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError(f"--config.{path}: give a value, e.g. --config.{path}=VALUE")
                i, text = i + 1, argv[i + 1]
            overrides.append((path, text))
        else:
            rest.append(arg)
        i += 1
    return overrides, rest


def load_config(spec: str, overrides: list[tuple[str, str]]):
    """The study file with the command line's overrides applied."""
    try:
        config = config_lib.load(spec)
    except ConfigError as e:
        raise ConfigError(f"--config: {e}") from None
    for path, text in overrides:
        try:
            value = config_lib.parse_override(config, path, text)
            # A new search entry may be added from here (spaces are checked with the study).
            create = path.startswith("search.") and isinstance(value, dict) and "space" in value
            config_lib.set_path(config, path, value, create=create)
        except ConfigError as e:
            message = str(e)
            message = message if message.startswith("--config.") else f"--config.{message}"
            raise ConfigError(message) from None
    return config


def store_flag(args) -> str | None:
    """--store, else $JAXPLAY_STORE, else None (the workdir's SQLite file)."""
    return getattr(args, "store", None) or os.environ.get(STORE_ENV) or None


def store_url(args, *, must_exist: bool = False) -> str:
    """--store, else $JAXPLAY_STORE, else the SQLite file in --workdir (which must exist when
    reading)."""
    return store_lib.url_for(
        getattr(args, "workdir", None), store_flag(args), must_exist=must_exist
    )


def study_file_path(args) -> str:
    """The absolute path of the study file (without its :ARG), as the study records it."""
    return os.path.abspath(config_lib.split_spec(args.config_file)[0])


def run(command: Callable[[list[str]], int], argv: list[str] | None, *, resumable: bool) -> int:
    """Runs a command's body with the shared exit codes: bad input (ConfigError, StoreError) is one
    `error:` line and 2; a failing machine or service (EnvironmentFault, OSError) one line and 1;
    Ctrl-C or SIGTERM is 130 (`resumable`: with how to continue)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with _sigterm_interrupts():
            return command(argv)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except EnvironmentFault as e:
        return _error(str(e), ENVIRONMENT, argv)
    except (ConfigError, StoreError) as e:
        return _error(str(e), BAD_INPUT, argv)
    except OSError as e:  # the filesystem: a read-only or full disk, a missing folder
        where = f"{e.filename}: " if e.filename else ""
        return _error(
            f"{where}{e.strerror or e} ({type(e).__name__}); fix it and run the same command again",
            ENVIRONMENT,
            argv,
        )
    except KeyboardInterrupt:
        how = "finished trials are saved; run the same command again to continue."
        print(f"\ninterrupted{': ' + how if resumable else ''}", file=sys.stderr)
        return INTERRUPTED


def _error(message: str, code: int, argv: list[str]) -> int:
    """Prints `error: message` (and with --verbose the traceback being handled); returns code."""
    if "--verbose" in argv:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return code


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (a preempted machine, `kill`) stops a command as Ctrl-C does. A study's training
    replaces both handlers with its own graceful stop (jaxplay.driver.worker)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def redacted_args(args: list[str]) -> list[str]:
    """Command-line arguments with the --store URL's password hidden (the command is recorded)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg.startswith("--store="):
            out[i] = "--store=" + store_lib.redact(arg[len("--store=") :])
        elif arg == "--store" and i + 1 < len(out):
            out[i + 1] = store_lib.redact(out[i + 1])
    return out


def command_line(module: str, argv: list[str]) -> str:
    """The command that reproduces this run, as the study records it (no password)."""
    args = shlex.join(redacted_args(argv))
    return f"cd {shlex.quote(os.getcwd())} && python -m {module} {args}"


def quiet_libraries() -> None:
    """orbax logs every save at INFO through absl: keep a command's output to its own lines."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)


def enable_compilation_cache() -> None:
    """Repeated runs of a command reuse compiled programs from disk instead of recompiling
    (~/.cache/jaxplay/xla, or $JAXPLAY_COMPILATION_CACHE)."""
    import jax

    cache = os.environ.get(
        "JAXPLAY_COMPILATION_CACHE",
        os.path.join(os.path.expanduser("~"), ".cache", "jaxplay", "xla"),
    )
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
