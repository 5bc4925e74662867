"""Where a store is: a workdir's SQLite file or any SQLAlchemy URL, and the URL as it may be shown
(its password hidden, in every form a URL can carry it)."""

from __future__ import annotations

import pathlib

import sqlalchemy as sa

from jaxplay import paths
from jaxplay.errors import ConfigError

DB_NAME = "jaxplay.db"

# Query keys whose value is a password, by libpq's connection parameter names (psycopg hands a
# URL's query to libpq as keyword parameters). Matched in any case: libpq refuses 'PASSWORD', but
# its value is still a secret someone typed. 'passfile' names a file and stays visible.
PASSWORD_KEYS = frozenset({"password", "sslpassword"})
HIDDEN = "***"


def redact(url: str) -> str:
    """The URL with every password in it replaced by ***, in its user info and in its query: what
    logs, records and reports may show. A URL without one is returned exactly as given."""
    parsed, why = _parse(url)
    if parsed is None:
        return _hidden(url, why)
    secret_keys = [key for key in parsed.query if key.lower() in PASSWORD_KEYS]
    if parsed.password is None and not secret_keys:
        return url  # nothing to hide: shown as given (rendering would re-quote a SQLite path)
    return parsed.update_query_dict({key: HIDDEN for key in secret_keys}).render_as_string(
        hide_password=True
    )


def check_url(url: str) -> str:
    """The URL, if SQLAlchemy reads it as written; else a ConfigError that shows no part of it
    (create_engine's own error would quote part of it, perhaps of the password)."""
    if _parse(url)[0] is None:
        raise ConfigError(
            f"--store {redact(url)}: pass dialect+driver://user:password@host:port/db, with the "
            "user and password percent-encoded (an '@' as %40)"
        )
    return url


def _parse(url: str) -> tuple[sa.engine.URL | None, str]:
    """The URL as SQLAlchemy reads it, or None and why none of its parts may be shown."""
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        # SQLAlchemy cannot parse it (create_engine refuses it too), but it may still hold a
        # password: 'postgresql://u:pw@h:bad-port/db' fails on its port (and the ValueError quotes
        # that part), a libpq string 'host=h password=pw' has no scheme. No part of it can be told
        # apart from the password.
        return None, "not a URL SQLAlchemy can parse"
    if parsed.password is not None and "@" in _after_password(url):
        # SQLAlchemy ends the password at its first '@': with another '@' after it, the password
        # may have held an unencoded '@', and its tail would show as the host, the database or
        # the query (and in the error of a connection to that host).
        return None, "an '@' after its password (write an '@' in a password as %40)"
    return parsed, ""


def _after_password(url: str) -> str:
    """What follows the '@' that ends the user info's password, as SQLAlchemy reads a URL: a
    username holds no ':' and a password no '@'."""
    authority = url.partition("://")[2]
    return authority.partition(":")[2].partition("@")[2]


def _hidden(url: str, why: str) -> str:
    """A stand-in for a URL none of whose parts can be shown: its scheme when it has one that
    SQLAlchemy's form allows (letters, digits, '_' and '+'), which cannot be a password."""
    scheme, sep, _ = url.partition("://")
    shown = f"{scheme}://" if sep and scheme.replace("+", "_").isidentifier() else ""
    return f"{shown}<URL hidden: {why}>"


def default_url(workdir: str | pathlib.Path) -> str:
    """The SQLite file a workdir's study lives in."""
    return f"sqlite:///{pathlib.Path(workdir).absolute() / DB_NAME}"


def url_for(workdir=None, url: str | None = None, *, must_exist: bool = False) -> str:
    """The store of `--store URL` (a URL SQLAlchemy parses, else a ConfigError that shows no part
    of it), else of `--workdir DIR` (its SQLite file, which must exist when reading: a ConfigError
    says where it looked; a bucket holds no SQLite file)."""
    if url:
        return check_url(url)
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
