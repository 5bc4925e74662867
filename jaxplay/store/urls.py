"""Where a store is: a workdir's SQLite file or any SQLAlchemy URL, and the URL as it may be shown
(its password hidden, in every form a URL can carry it)."""

from __future__ import annotations

import pathlib

import sqlalchemy as sa

from jaxplay import paths
from jaxplay.errors import ConfigError

DB_NAME = "jaxplay.db"


def redact(url: str) -> str:
    """The URL with its password replaced by ***: what logs, records and reports may show."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        # not a URL SQLAlchemy can parse: create_engine will say so, and it holds no password field
        return url


def default_url(workdir: str | pathlib.Path) -> str:
    """The SQLite file a workdir's study lives in."""
    return f"sqlite:///{pathlib.Path(workdir).absolute() / DB_NAME}"


def url_for(workdir=None, url: str | None = None, *, must_exist: bool = False) -> str:
    """The store of `--store URL`, else of `--workdir DIR` (its SQLite file, which must exist
    when reading: a ConfigError says where it looked; a bucket holds no SQLite file)."""
    if url:
        return url
    if workdir is None:
        raise ConfigError("--workdir: pass --workdir DIR (the sweep's) or --store URL")
    if paths.is_remote(workdir):
        raise ConfigError(
            f"--workdir {workdir}: a bucket can hold the checkpoints but not the SQLite store; "
            "pass --store postgresql://user:password@host/db (or a SQLite file on a local disk: "
            "--store sqlite:////path/jaxplay.db)"
        )
    path = pathlib.Path(workdir).absolute() / DB_NAME
    if must_exist and not path.exists():
        raise ConfigError(
            f"--workdir: no study store in {workdir} (looked for {DB_NAME}); run `python -m "
            "jaxplay.sweep --workdir` there first, or pass --store URL"
        )
    return default_url(workdir)
