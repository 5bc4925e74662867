"""The store under faults: a database restart mid-trial is ridden out, a lost store stops the
sweep (and a rerun refuses to fabricate records), a store that never answers or stays locked ends
in one error line, a trial another worker holds is waited for, a failed trial can be retried, and
a huge study starts at once."""

import datetime
import os
import pathlib
import socket
import subprocess
import sys
import threading

import pytest
import sqlalchemy as sa

from conftest import postgres_url
from factories import float_only_study
from jaxplay import driver, spec, studies, sweep, train
from jaxplay import store as store_lib
from jaxplay.driver.plan import WINDOW
from jaxplay.errors import StoreUnavailable
from jaxplay.store import engine as engine_lib
from test_workers import _study_file

REPO = pathlib.Path(__file__).resolve().parent.parent


class Proxy:
    """A TCP proxy in front of a database server. `outage(seconds)` is what a client sees of a
    server restart: every open connection drops and new ones are refused, then it is back."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = self._listen(0)
        self.port = self.listener.getsockname()[1]
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(16)
        return listener

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed for an outage: wait for the new listener
                with self.lock:
                    if not self.running:
                        return
                threading.Event().wait(0.02)
                continue
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def outage(self, seconds: float):
        with self.lock:
            # shutdown, not just close: it wakes the accept() blocked on it (which would otherwise
            # keep the port listening).
            self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets = []
        threading.Event().wait(seconds)
        with self.lock:
            self.listener = self._listen(self.port)

    def close(self):
        with self.lock:
            self.running = False
            self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()


def _results(record):
    return [
        (t["status"], t["best_value"], t["best_step"], t["final_metrics"]) for t in record["trials"]
    ]


def test_a_database_restart_mid_trial_is_ridden_out(tmp_path):
    url = sa.engine.make_url(postgres_url())
    proxy = Proxy(url.host, url.port or 5432)
    engine = sa.create_engine(url)  # a fresh schema: the tables of earlier tests go
    store_lib.Base.metadata.drop_all(engine)
    engine.dispose()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    c = float_only_study(num_trials=2, **{"train.steps": 200, "train.eval_every": 50})
    reference = sweep.run_study(c, tmp_path / "reference", log=lambda _: None, report=False)
    lines, outages = [], []

    def restart_at_step_100(line):
        lines.append(line)
        if line.split()[:2] == ["step", "100/200"] and not outages:
            outage = threading.Thread(target=proxy.outage, args=(1.0,))
            outages.append(outage)
            outage.start()

    try:
        record = sweep.run_study(
            c, tmp_path / "proxied", store_url=proxied, log=restart_at_step_100, report=False
        )
    finally:
        for outage in outages:
            outage.join()
        proxy.close()
    assert outages, "\n".join(lines)
    # Every trial finished once, as an uninterrupted run did; the outage was said, not fatal.
    assert _results(record) == _results(reference)
    assert all(t["status"] == "completed" for t in record["trials"])
    store = store_lib.Store(postgres_url())
    try:
        curves = store.study_curves(store.study_id(c.study.name))
    finally:
        store.close()
    for index in (0, 1):
        assert [s for s, _ in curves[index]["val/error"]] == [0, 50, 100, 150, 200]


def _run_cli(args, cwd, **env):
    return subprocess.run(
        [sys.executable, "-m", "jaxplay.sweep", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, JAXPLAY_COMPILATION_CACHE=str(cwd / "xla"), **env),
        timeout=600,
    )


def test_a_store_deleted_mid_study_stops_it_and_a_rerun_refuses(tmp_path):
    c = float_only_study(num_trials=3, **{"train.steps": 100, "train.eval_every": 50})
    db = tmp_path / store_lib.DB_NAME

    def delete_after_trial_0(line):
        if line.startswith("trial 0 completed"):
            for suffix in ("", "-wal", "-shm"):
                pathlib.Path(f"{db}{suffix}").unlink(missing_ok=True)

    with pytest.raises(StoreUnavailable, match=f"{db} was deleted while this command ran"):
        sweep.run_study(c, tmp_path, log=delete_after_trial_0, report=False)
    # The rerun finds no study but the trials' checkpoints: it refuses rather than train over
    # them and make records up, and says how to recover.
    assert not db.exists()
    with pytest.raises(StoreUnavailable, match="holds no study 'tiny', but .* holds checkpoints"):
        sweep.run_study(c, tmp_path, log=lambda _: None, report=False)
    db.write_bytes(b"")  # emptied rather than deleted: the same
    with pytest.raises(StoreUnavailable, match="move .*tiny aside to start the study afresh"):
        sweep.run_study(c, tmp_path, log=lambda _: None, report=False)


def test_a_store_emptied_before_a_rerun_is_refused_by_the_command(tmp_path):
    study = _study_file(tmp_path, "emptied", trials=1, steps=40, every=20)
    args = [f"--config={study}", f"--workdir={tmp_path}", "--report=false"]
    first = _run_cli(args, tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (tmp_path / store_lib.DB_NAME).write_bytes(b"")
    again = _run_cli(args, tmp_path)
    assert again.returncode == 1, again.stderr[-2000:]
    errors = [line for line in again.stderr.splitlines() if line.strip()]
    assert errors[-1].startswith("error: store sqlite:///") and "holds no study" in errors[-1]
    assert "Traceback" not in again.stderr


class Silent:
    """A server that accepts connections and never answers."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        try:
            while True:
                self.held.append(self.listener.accept()[0])
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for s in self.held:
            s.close()


def test_a_store_that_never_answers_ends_in_one_error_line(tmp_path):
    pytest.importorskip("psycopg")
    silent = Silent()
    try:
        url = f"postgresql+psycopg://user:secret@127.0.0.1:{silent.port}/db?connect_timeout=1"
        study = _study_file(tmp_path, "silent", trials=1, steps=40, every=20)
        done = _run_cli(
            [f"--config={study}", f"--workdir={tmp_path}", f"--store={url}"],
            tmp_path,
            **{engine_lib.RETRY_ENV: "2"},
        )
    finally:
        silent.close()
    assert done.returncode == 1, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: store postgresql+psycopg://user:***@127.0.0.1:{silent.port}")
    assert "secret" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_a_wrong_password_is_one_line_naming_the_login(tmp_path):
    url = sa.engine.make_url(postgres_url()).set(password="wrong-password")
    with pytest.raises(StoreUnavailable, match="refused the login") as raised:
        store_lib.Store(url.render_as_string(hide_password=False))
    assert "wrong-password" not in str(raised.value)


def test_a_lock_held_past_the_timeout_is_waited_for_then_named(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_lib, "SQLITE_LOCK_TIMEOUT_S", 0.1)
    monkeypatch.setenv(engine_lib.RETRY_ENV, "0.5")
    url = store_lib.default_url(tmp_path)
    store = store_lib.Store(url)
    holder = sa.create_engine(url).connect()
    holder.exec_driver_sql("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="another process has held its lock"):
            store.open_study("locked", "hash", **_study_fields())
    finally:
        holder.rollback()
        holder.close()
    # Released within the retry window, the call goes through.
    assert store.open_study("locked", "hash", **_study_fields()) >= 1
    store.close()


def _study_fields():
    return dict(
        config_path="", config={}, objective="val/error", mode="min", algorithm="random", seed=0,
        num_trials=1, command="", versions={}, device_kind="cpu",
    )  # fmt: skip


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_store_file_is_one_error_line(tmp_path, damage, capsys):
    study = _study_file(tmp_path, "damaged", trials=1, steps=40, every=20)
    assert sweep.main([f"--config={study}", f"--workdir={tmp_path}", "--report=false"]) == 0
    db = tmp_path / store_lib.DB_NAME
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    else:
        db.write_bytes(db.read_bytes()[:700])
    capsys.readouterr()
    assert studies.main(["show", f"--workdir={tmp_path}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: store sqlite:///"), err
    assert "not a readable SQLite database" in err[0] and "move it aside" in err[0]


def test_a_read_only_workdir_can_be_shown_and_reported(tmp_path, monkeypatch, capsys):
    study = _study_file(tmp_path, "readonly", trials=1, steps=40, every=20)
    assert sweep.main([f"--config={study}", f"--workdir={tmp_path}", "--report=false"]) == 0
    capsys.readouterr()
    # What a read-only mount looks like to the store (root may write anywhere, so say it): the
    # file opens immutable, with no WAL side files to create.
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if mode == os.W_OK else real_access(p, mode)
    )
    assert studies.main(["show", f"--workdir={tmp_path}"]) == 0
    assert "readonly" in capsys.readouterr().out
    out = tmp_path.parent / f"{tmp_path.name}-report.html"
    assert studies.main(["report", f"--workdir={tmp_path}", f"--output={out}"]) == 0
    assert out.exists()


def test_a_trial_another_worker_holds_is_waited_for_then_reclaimed(tmp_path):
    c = float_only_study(num_trials=2, **{"train.steps": 100, "train.eval_every": 50})
    url = store_lib.default_url(tmp_path)
    sweep.run_study(c, tmp_path, log=lambda _: None, report=False, max_trials_this_run=0)
    other = store_lib.Store(url)
    sid = other.study_id(c.study.name)
    trial_id, index, _ = other.claim(sid, "elsewhere:1", indices=[1])
    assert index == 1

    def lease_renewed(seconds_from_now: float):
        # Another worker's lease as it stands: renewed in the future (held however slow this
        # machine is) until this worker waits for it, then long ago (that worker died).
        at = store_lib.tables.now() + datetime.timedelta(seconds=seconds_from_now)
        with other.engine.begin() as connection:
            connection.execute(
                sa.update(store_lib.Trial)
                .where(store_lib.Trial.id == trial_id)
                .values(heartbeat_at=at)
            )

    lease_renewed(3600)
    lines = []

    def log(line):
        lines.append(line)
        if line.startswith("waiting for trial 1"):
            lease_renewed(-3600)

    try:
        record = sweep.run_study(c, tmp_path, log=log, report=False, lease_s=1.0)
    finally:
        other.close()
    text = "\n".join(lines)
    # Having trained trial 0, the worker did not call the study done: it waited for trial 1,
    # reclaimed it when its lease lapsed, and trained it.
    assert "waiting for trial 1 by elsewhere:1" in text, text
    assert text.index("trial 0 completed") < text.index("waiting for trial 1")
    assert "reclaimed trial 1" in text
    assert [t["status"] for t in record["trials"]] == ["completed", "completed"]


def test_a_failed_trial_records_its_error_and_retry_failed_resumes_it(tmp_path, monkeypatch):
    c = float_only_study(num_trials=2, **{"train.steps": 100, "train.eval_every": 50})
    reference = sweep.run_study(c, tmp_path / "reference", log=lambda _: None, report=False)
    real = train.run_trials
    calls = []

    def broken_once(trials, dirs, hooks=None):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a one-off failure\nwith a second line")
        return real(trials, dirs, hooks)

    monkeypatch.setattr(train, "run_trials", broken_once)
    record = sweep.run_study(c, tmp_path / "run", log=lambda _: None, report=False)
    failed = record["trials"][0]
    assert failed["status"] == "failed"
    # Its type and message first (what every view shows), then the traceback.
    assert failed["error"].splitlines()[0] == "RuntimeError: a one-off failure"
    assert "Traceback (most recent call last)" in failed["error"]
    again = sweep.run_study(c, tmp_path / "run", log=lambda _: None, report=False)
    assert again["trials"][0]["status"] == "failed"  # a plain rerun keeps results as they are
    lines = []
    retried = sweep.run_study(
        c, tmp_path / "run", log=lines.append, report=False, retry_failed=True
    )
    assert "retrying failed trial(s) [0]" in "\n".join(lines)
    assert _results(retried) == _results(reference)
    assert retried["trials"][0]["error"] is None


def test_a_huge_study_starts_at_once(tmp_path):
    c = float_only_study(num_trials=10**9, **{"train.steps": 20, "train.eval_every": 10})
    study_plan = driver.plan(spec.resolve(c))
    # Only the first window is designed and checked before training starts.
    assert len(study_plan.params) == WINDOW
    record = sweep.run_study(c, tmp_path, log=lambda _: None, report=False, max_trials_this_run=1)
    assert record["num_trials"] == 10**9
    assert record["status_counts"]["completed"] == 1
    assert len(record["trials"]) == WINDOW
