"""The connection to a store and what can go wrong with it: bounded waits (connect, statement and
lock timeouts), which errors are passing (a restarting server, a lock, a dropped connection: retried
with backoff) and which are not, and one message per failure naming the store and the fix.

A lost store is an error too: a SQLite file deleted, emptied or replaced while a study runs would
otherwise keep taking writes through the open connection (into the deleted file) and the sweep
would report trials that no store holds.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import sqlalchemy as sa

from jaxplay.errors import StoreUnavailable, describe

# A server that accepts the connection and never answers must not hang a worker: libpq's connect
# timeout bounds the handshake, TCP keepalives and tcp_user_timeout a connection whose peer went
# silent, statement_timeout a query stuck behind a lock. The URL's own query overrides any of them.
POSTGRES_CONNECT_ARGS = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # milliseconds
}
POSTGRES_STATEMENT_TIMEOUT_MS = 120_000
# How long SQLite waits for another process's write lock before it reports "database is locked"
# (a worker may hold it through one long transaction; the retry loop then waits further).
SQLITE_LOCK_TIMEOUT_S = 60
RETRY_ENV = "JAXPLAY_STORE_RETRY_SECS"
DEFAULT_RETRY_S = 120.0  # rides out a database restart or failover without failing a trial
OPEN_RETRY_S = 5.0  # a store unreachable when a command starts is a setup problem: say so soon


def retry_seconds() -> float:
    """How long a store call retries passing faults: $JAXPLAY_STORE_RETRY_SECS, else 120."""
    text = os.environ.get(RETRY_ENV)
    if text is None:
        return DEFAULT_RETRY_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise StoreUnavailable(f"${RETRY_ENV}: must be a number of seconds >= 0 (got {text!r})")
    return value


def sqlite_file(url: str) -> pathlib.Path | None:
    """The file of a SQLite URL; None for other backends and in-memory databases."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = parsed.database
    if database.startswith("file:"):  # a URI filename: file:/path?mode=...
        database = database[len("file:") :].partition("?")[0]
    return pathlib.Path(database).absolute()


def create(url: str, *, readonly: bool) -> sa.engine.Engine:
    """An engine for `url` with bounded waits; `readonly` opens a SQLite file without writing to
    it (a workdir on read-only storage can still be shown and reported)."""
    parsed = sa.engine.make_url(url)
    backend = parsed.get_backend_name()
    kwargs: dict = {"pool_pre_ping": True}  # a connection dropped by a restart is replaced
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
        path = sqlite_file(url)
        if readonly and path is not None:
            # A read-only directory cannot hold WAL's shared-memory file: there the file is opened
            # immutable (nothing can write it either); elsewhere read-only.
            query = {"mode": "ro", "uri": "true"}  # SQLAlchemy builds file:PATH?mode=ro
            if not os.access(path.parent, os.W_OK):
                query["immutable"] = "1"
            parsed = parsed.set(database=f"file:{path}", query=query)
    elif backend == "postgresql":
        given = set(parsed.query)
        kwargs["connect_args"] = {k: v for k, v in POSTGRES_CONNECT_ARGS.items() if k not in given}
    engine = sa.create_engine(parsed, **kwargs)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_setup(readonly))
    elif backend == "postgresql":
        sa.event.listen(engine, "connect", _postgres_setup(readonly))
    return engine


def _sqlite_setup(readonly: bool):
    def setup(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        if not readonly:
            # WAL lets readers (studies show, a report) run while a sweep writes.
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return setup


def _postgres_setup(readonly: bool):
    def setup(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET statement_timeout = {POSTGRES_STATEMENT_TIMEOUT_MS}")
        if readonly:
            cursor.execute("SET default_transaction_read_only = on")
        cursor.close()
        dbapi_connection.commit()

    return setup


def transient(error: BaseException) -> bool:
    """True for a fault that passes: a dropped connection, a server restarting or failing over,
    a lock held by another worker. A wrong password, a missing database or a file that is not a
    database stays wrong however often it is retried."""
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    message = str(error.orig).lower()
    permanent = (
        "password authentication failed", "no pg_hba.conf entry", "does not exist",
        "unable to open database file", "not a database", "malformed", "readonly database",
        "read-only", "no such table", "no such column", "permission denied",
    )  # fmt: skip
    return not any(p in message for p in permanent)


def unavailable(
    url: str, error: BaseException, waited: float, file: pathlib.Path | None = None
) -> StoreUnavailable:
    """The error a command prints for a store it cannot use: what happened and the fix."""
    message = str(getattr(error, "orig", error)).lower()
    what = describe(error)
    if "password authentication failed" in message or "no pg_hba.conf entry" in message:
        fix = "the server refused the login: check the user and password of --store"
    elif "does not exist" in message and "database" in message:
        fix = "create the database first (createdb), or fix the database name of --store"
    elif "unable to open database file" in message:
        fix = (
            f"cannot open or create {file}: check that its folder exists and is writable"
            if file
            else "cannot open the store's file"
        )
    elif "not a database" in message or "malformed" in message:
        fix = (
            f"{file or 'the file'} is not a readable SQLite database (truncated or overwritten): "
            "restore it from a backup, or move it aside to start a new store (the checkpoints "
            "in the workdir stay)"
        )
    elif "readonly database" in message or "read-only" in message:
        fix = f"{file or 'the store'} is read-only here: run the sweep where it can be written"
    elif "locked" in message:
        fix = (
            f"another process has held its lock for {waited:.0f} s: stop it (or wait), then rerun "
            "the same command"
        )
    else:
        fix = (
            f"unreachable for {waited:.0f} s: check that the database runs and --store names it, "
            f"then rerun the same command (finished trials are kept; ${RETRY_ENV} sets how long "
            "to retry)"
        )
    return StoreUnavailable(f"store {url}: {fix} ({what})")


@dataclasses.dataclass(frozen=True)
class FileIdentity:
    """Which file a SQLite store is: its device and inode, so a file deleted, emptied or
    replaced under a running study is noticed at the next store call."""

    path: pathlib.Path
    device: int
    inode: int

    @classmethod
    def of(cls, path: pathlib.Path | None) -> FileIdentity | None:
        if path is None or not path.exists():
            return None
        stat = path.stat()
        return cls(path, stat.st_dev, stat.st_ino)

    def check(self, url: str) -> None:
        """Raises StoreUnavailable when the file is no longer the one this store opened."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            what = "was deleted"
        else:
            if (stat.st_dev, stat.st_ino) != (self.device, self.inode):
                what = "was replaced by another file"
            elif stat.st_size == 0:
                what = "was emptied"
            else:
                return
        raise StoreUnavailable(
            f"store {url}: {self.path} {what} while this command ran; what happened since is "
            "not recorded anywhere, so this run stops here. Restore the file from a backup and "
            "rerun the same command (trials resume from their checkpoints)"
        )
