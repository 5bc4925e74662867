"""What the command-line tools share: the study file flag with its `--config.a.b=value`
overrides, errors that name the field, the recorded command line, the compilation cache."""

from __future__ import annotations

import os
import re
import shlex
import sys

from jaxplay import config as config_lib
from jaxplay import store as store_lib
from jaxplay.errors import ConfigError


def define_config(fl, help_text: str = "Study file: path/to/study.py[:arg].") -> None:
    """Defines --config (a study file whose fields `--config.a.b=value` overrides) on FlagValues `fl`."""
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, help_text, flag_values=fl, lock_config=False)


def define_study_flags(fl) -> None:
    """Defines --config, --workdir and --store on FlagValues `fl`: where a study comes from and lives."""
    from absl import flags

    define_config(fl)
    flags.DEFINE_string(
        "workdir", None, "Directory for the study's database and checkpoints.", flag_values=fl
    )
    flags.DEFINE_string(
        "store",
        None,
        "SQLAlchemy URL of the study store (default: $JAXPLAY_STORE, else a "
        "SQLite file in --workdir). The environment variable keeps a password off command "
        "lines; either way it is never printed or recorded.",
        flag_values=fl,
    )


def store_url(fl) -> str | None:
    """--store, else $JAXPLAY_STORE, else None (the workdir's SQLite file)."""
    return fl.store or os.environ.get("JAXPLAY_STORE") or None


def parse(fl, argv: list[str]) -> bool:
    """Parses argv into `fl` and loads the study file; prints `error: ...` naming the flag or the
    field and returns False when that fails."""
    from absl import flags

    saved_argv, sys.argv = sys.argv, argv  # config_flags looks for --config.* overrides in sys.argv
    try:
        fl(argv)
        if "config" in fl and fl.config is not None:
            fl.config.get("study")  # config_flags defers a load failure to the first access
    except (
        flags.Error,
        ConfigError,
        OSError,
        AttributeError,
        TypeError,
        ValueError,
        KeyError,
    ) as e:
        # config_flags wraps a missing file or a get_config error; its message names both. An
        # override of a field the study file does not define arrives as a KeyError of one key.
        cause = e if isinstance(e, KeyError) else (e.__cause__ or e.__context__)
        message = unknown_override(argv, cause) if isinstance(cause, KeyError) else e
        print(f"error: {message}", file=sys.stderr)
        return False
    finally:
        sys.argv = saved_argv
    return True


def unknown_override(argv: list[str], error: KeyError) -> str:
    """Names the --config.<path>=value override whose field the study file does not define."""
    # config_flags raises KeyError("'name'") (plus a "Did you mean" line); the key is the quoted word.
    found = re.search(r"'([^']+)'", str(error.args[0]) if error.args else "")
    key = found.group(1) if found else str(error.args[0] if error.args else "")
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None and "--config" in argv[:-1]:
        spec = argv[argv.index("--config") + 1]
    for arg in argv:
        if not arg.startswith("--config."):
            continue
        path = arg[len("--config.") :].split("=", 1)[0]
        if key not in path.split("."):
            continue
        try:  # the file as written: config.apply names the sections' fields and a close match
            config_lib.apply(config_lib.load(spec), {path: None})
        except ConfigError as e:
            return (
                f"--config.{path}: {str(e).split(': ', 1)[1]}; or add the field to the study file"
            )
        except Exception:
            pass
        return (
            f"--config.{path}: the study file has no such field; add it there or fix the spelling"
        )
    return f"--config: unknown field {key!r}; add it to the study file or fix the spelling"


def redacted_args(args: list[str]) -> list[str]:
    """Command-line arguments with the --store URL's password hidden (the command is recorded)."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg.startswith("--store="):
            out[i] = "--store=" + store_lib.redact(arg[len("--store=") :])
        elif arg == "--store" and i + 1 < len(out):
            out[i + 1] = store_lib.redact(out[i + 1])
    return out


def interrupted() -> int:
    """What a study command says and returns after Ctrl-C or SIGTERM (exit status 130)."""
    print(
        "\ninterrupted: finished trials are saved; run the same command again to continue.",
        file=sys.stderr,
    )
    return 130


def command_line(module: str, argv: list[str]) -> str:
    """The command that reproduces this run, as the study records it (no password)."""
    return (
        f"cd {shlex.quote(os.getcwd())} && python -m {module} {shlex.join(redacted_args(argv[1:]))}"
    )


def enable_compilation_cache():
    # Repeated CLI runs of a study reuse compiled programs from disk instead of recompiling.
    import jax

    cache = os.environ.get(
        "JAXPLAY_COMPILATION_CACHE",
        os.path.join(os.path.expanduser("~"), ".cache", "jaxplay", "xla"),
    )
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
