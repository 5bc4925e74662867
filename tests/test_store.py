"""The study store: claims are exclusive, records are refused rather than silently mixed."""

import math

import pytest
import sqlalchemy as sa

from jaxplay import store as store_lib
from jaxplay.errors import StoreError


@pytest.fixture
def store(store_url):
    s = store_lib.Store(store_url)
    yield s
    s.close()


def _open(store, name="s", config_hash="h1", **fields):
    defaults = dict(
        config_path="x.py",
        config={"a": 1},
        notes="",
        objective="val/error",
        mode="min",
        algorithm="quasirandom",
        seed=0,
        num_trials=3,
        command="cmd",
        git_commit=None,
        git_dirty=None,
        versions={},
        device_kind="cpu",
    )
    defaults.update(fields)
    return store.open_study(name, config_hash, **defaults)


def test_open_study_is_idempotent_and_refuses_another_config(store):
    sid = _open(store)
    assert _open(store, num_trials=10) == sid
    assert store.record(sid)["num_trials"] == 10
    with pytest.raises(StoreError, match="different config"):
        _open(store, config_hash="h2")


def test_add_trials_skips_existing_and_refuses_changed_params(store):
    sid = _open(store)
    assert store.add_trials(sid, [{"lr": 0.1}, {"lr": 0.2}]) == 2
    assert store.add_trials(sid, [{"lr": 0.1}, {"lr": 0.2}, {"lr": 0.3}]) == 1
    with pytest.raises(StoreError, match="trial 1 is recorded"):
        store.add_trials(sid, [{"lr": 0.1}, {"lr": 0.25}])


def test_append_trials_adds_only_after_the_trials_it_was_told_of(store):
    # An adaptive designer suggests from what it saw; a worker that added trials since wins.
    sid = _open(store)
    assert store.append_trials(sid, [{"lr": 0.1}, {"lr": 0.2}], start=0)
    assert not store.append_trials(sid, [{"lr": 0.3}], start=1)
    assert store.append_trials(sid, [{"lr": 0.3}], start=2)
    assert [t["params"]["lr"] for t in store.record(sid)["trials"]] == [0.1, 0.2, 0.3]


def test_claims_are_exclusive_and_in_index_order(store, store_url):
    sid = _open(store)
    store.add_trials(sid, [{"i": i} for i in range(3)])
    other = store_lib.Store(store_url)  # a second worker on the same database
    claims = [
        store.claim(sid, "w1"),
        other.claim(sid, "w2"),
        store.claim(sid, "w1"),
        other.claim(sid, "w2"),
    ]
    other.close()
    assert [c[1] for c in claims[:3]] == [0, 1, 2] and claims[3] is None
    record = store.record(sid)
    assert [t["worker"] for t in record["trials"]] == ["w1", "w2", "w1"]
    assert all(t["status"] == "running" for t in record["trials"])


def test_release_and_reset_running_make_trials_pending_again(store):
    sid = _open(store)
    store.add_trials(sid, [{"i": 0}, {"i": 1}, {"i": 2}])
    t0, _, _ = store.claim(sid, "w")
    store.claim(sid, "dead")
    store.claim(sid, "alive")
    store.release(t0)
    assert store.reset_running(sid, lambda worker: worker == "dead") == [1]
    assert [t["status"] for t in store.record(sid)["trials"]] == ["pending", "pending", "running"]


def test_an_expired_lease_is_reclaimed_and_a_renewed_one_is_not(store, store_url):
    import time

    sid = _open(store)
    store.add_trials(sid, [{"i": 0}, {"i": 1}])
    held, _, _ = store.claim(sid, "w1", lease_s=0.5)
    renewed, _, _ = store.claim(sid, "w1", lease_s=0.5)
    other = store_lib.Store(store_url)
    try:
        assert other.claim(sid, "w2", lease_s=0.5) is None  # both leases fresh
        time.sleep(0.7)
        assert store.heartbeat("w1", [renewed]) == 1
        assert other.claim(sid, "w2", lease_s=0.5)[0] == held  # w1 stopped renewing trial 0
        assert other.claim(sid, "w2", lease_s=0.5) is None
        assert store.heartbeat("w1", [held, renewed]) == 1  # trial 0 is no longer w1's
    finally:
        other.close()
    assert [t["worker"] for t in store.record(sid)["trials"]] == ["w2", "w1"]


def test_an_older_store_gains_the_lease_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    store_lib.Base.metadata.create_all(engine)
    with engine.begin() as c:
        c.execute(sa.text("ALTER TABLE trials DROP COLUMN heartbeat_at"))
    engine.dispose()
    s = store_lib.Store(url)
    try:
        sid = _open(s)
        s.add_trials(sid, [{"i": 0}])
        assert s.claim(sid, "w")[1] == 0
    finally:
        s.close()


def test_finish_metrics_and_best(store):
    sid = _open(store)
    store.add_trials(sid, [{"i": 0}, {"i": 1}, {"i": 2}])
    for value, status in ((0.3, "completed"), (0.1, "infeasible"), (0.2, "completed")):
        tid, index, _ = store.claim(sid, "w")
        store.log_metrics(tid, 0, {"val/error": 0.9, "train/loss": float("nan")})
        store.log_metrics(tid, 10, {"val/error": value, "train/loss": float("inf")})
        store.finish(tid, status, best_step=10, best_value=value, final_metrics={"x": float("nan")})
    store.drop_metrics_after(1, 5)
    store.update_best(sid)
    record = store.record(sid)
    # An infeasible trial never wins, however good its last finite value looked.
    assert record["best_value"] == 0.2 and record["best_trial"] == 2
    assert record["trials"][0]["final_metrics"] == {"x": None}
    assert record["trials"][0]["duration_s"] >= 0
    curves = store.curves(sid, 0)
    assert curves["val/error"] == [(0, 0.9)]  # step 10 dropped
    assert curves["train/loss"] == [(0, None)]  # NaN stored as NULL
    assert store.curves(sid, 2)["val/error"] == [(0, 0.9), (10, 0.2)]
    assert not any(
        isinstance(v, float) and math.isnan(v)
        for v in record["trials"][0]["final_metrics"].values()
    )


def test_study_lookup_by_name(store):
    _open(store, name="a")
    _open(store, name="b", config_hash="other")
    assert store.study_names() == ["a", "b"]
    with pytest.raises(StoreError, match="pass --study"):
        store.study_id()
    with pytest.raises(StoreError, match="no study named 'c'"):
        store.study_id("c")


def test_a_store_from_an_older_schema_is_refused_with_the_fix(tmp_path):
    url = store_lib.default_url(tmp_path)
    engine = sa.create_engine(url)
    with (
        engine.begin() as conn
    ):  # the studies table as an older jaxplay wrote it: no executor columns
        conn.execute(sa.text("CREATE TABLE studies (id INTEGER PRIMARY KEY, name VARCHAR(200))"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"lacks columns \['.*executor.*'\].*new --workdir"):
        store_lib.Store(url)


def test_store_messages_never_show_the_password(tmp_path):
    assert (
        store_lib.redact("postgresql+psycopg://me:s3cret@db/studies")
        == "postgresql+psycopg://me:***@db/studies"
    )
    store = store_lib.Store(store_lib.default_url(tmp_path))
    try:
        with pytest.raises(StoreError) as e:
            store.study_id("nope")
        assert str(tmp_path) in str(e.value)
    finally:
        store.close()


def test_a_name_that_differs_only_in_case_is_refused(store):
    _open(store, name="dup")
    with pytest.raises(StoreError, match="'Dup' differs from the store's study 'dup' only in case"):
        _open(store, name="Dup")


def test_a_study_another_worker_creates_mid_open_is_no_case_twin(store, store_url):
    # The race of several workers starting one study: another one commits the study between this
    # worker's lookup by name and its look for a same-name-but-case twin.
    other = store_lib.Store(store_url)
    created = []

    def create_first(conn, cursor, statement, *args):
        if "lower(" in statement.lower() and not created:
            created.append(_open(other, name="Race"))

    sa.event.listen(store.engine, "before_cursor_execute", create_first)
    try:
        assert _open(store, name="Race") == created[0]
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", create_first)
        other.close()


def test_workers_starting_one_study_at_once_both_succeed(store_url):
    import threading

    stores = []
    barrier = threading.Barrier(4)
    ids, errors = [], []

    def start(_):
        try:
            barrier.wait()
            s = store_lib.Store(store_url)  # a new database: the tables are created here, at once
            stores.append(s)
            sid = _open(s, name="race")
            s.add_trials(sid, [{"i": i} for i in range(20)])
            ids.append(sid)
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == [] and len(set(ids)) == 1
        assert [t["index"] for t in stores[0].record(ids[0])["trials"]] == list(range(20))
    finally:
        for s in stores:
            s.close()


def test_writes_are_fenced_by_the_lease(store):
    """A worker whose trial was reclaimed (its lease expired) can no longer write to it."""
    sid = _open(store, num_trials=1)
    store.add_trials(sid, [{"x": 1.0}])
    trial_id = store.claim(sid, "a:1", lease_s=60)[0]
    assert store.log_metrics(trial_id, 0, {"val/error": 0.5}, worker="a:1")
    assert store.claim(sid, "b:2", lease_s=0.0)[0] == trial_id  # a's lease expired: b takes over
    assert not store.log_metrics(trial_id, 10, {"val/error": 0.4}, worker="a:1")
    assert not store.finish(trial_id, "completed", worker="a:1", best_value=0.4)
    assert not store.release(trial_id, worker="a:1")
    t = store.record(sid)["trials"][0]
    assert (t["status"], t["worker"], t["best_value"]) == ("running", "b:2", None)
    assert store.finish(trial_id, "completed", worker="b:2", best_value=0.3)
    assert store.record(sid)["trials"][0]["best_value"] == 0.3
    assert [s for s, _ in store.curves(sid, 0)["val/error"]] == [0]


def test_parents_names_each_studys_parent_from_its_config(store):
    _open(store, "r1")
    _open(store, "r1-round2", config={"study": {"parent": {"study": "r1", "action": "promote"}}})
    assert store.parents() == {"r1": None, "r1-round2": "r1"}


def test_times_are_iso_8601_with_their_zone_to_the_second(store):
    study = _open(store)
    store.add_trials(study, [{"x": 1}])
    trial_id, _, _ = store.claim(study, "w", indices=[0])
    store.finish(trial_id, "completed", worker="w", best_step=1, best_value=0.5, steps_run=1)
    record = store.record(study)
    import datetime as dt

    for text in (record["created_at"], record["updated_at"], record["trials"][0]["started_at"],
                 record["trials"][0]["finished_at"]):  # fmt: skip
        moment = dt.datetime.fromisoformat(text)
        assert text.endswith("+00:00") and moment.microsecond == 0 and "." not in text
