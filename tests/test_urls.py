"""A store URL as logs, the recorded command and the report show it: no password in any form a URL
can carry one (user info, query), and none from a URL SQLAlchemy cannot parse."""

import json
import pathlib

import pytest
import sqlalchemy as sa

from jaxplay import cli, sweep
from jaxplay import store as store_lib
from jaxplay.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parent.parent


def _shown(url):
    """The redacted URL, read back by SQLAlchemy: what the parts shown are."""
    return sa.engine.make_url(store_lib.redact(url))


def test_a_password_in_the_user_info_is_hidden():
    assert (
        store_lib.redact("postgresql+psycopg://me:s3cret@db.example:5432/studies")
        == "postgresql+psycopg://me:***@db.example:5432/studies"
    )


@pytest.mark.parametrize("key", ["password", "sslpassword", "PASSWORD"])
def test_a_password_in_the_query_is_hidden(key):
    url = f"postgresql+psycopg://me@db.example/studies?sslmode=require&{key}=s3cret"
    shown = _shown(url)
    assert "s3cret" not in store_lib.redact(url)
    # Only the secret changed: the rest still says where the store is.
    assert dict(shown.query) == {"sslmode": "require", key: "***"}
    assert (shown.username, shown.host, shown.database) == ("me", "db.example", "studies")


def test_passwords_in_the_user_info_and_the_query_at_once_are_all_hidden():
    url = (
        "postgresql+psycopg://me:s3cret@db/studies"
        "?password=s3cret2&password=s3cret3&sslpassword=s3cret4&passfile=/home/me/.pgpass"
    )
    shown = store_lib.redact(url)
    assert "s3cret" not in shown, shown
    parsed = sa.engine.make_url(shown)
    assert parsed.password == "***"
    assert parsed.query["password"] == parsed.query["sslpassword"] == "***"
    assert parsed.query["passfile"] == "/home/me/.pgpass"  # a file's name, not a secret


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://me@db.example:5432/studies?sslmode=require",
        "postgresql://db/studies",
        "sqlite:////tmp/my studies/jaxplay.db",
        "sqlite:////tmp/a@b/jaxplay.db",  # an '@' in a path is no user info
        "sqlite:///relative/jaxplay.db",
        "sqlite://",
    ],
)
def test_a_url_without_a_password_is_shown_as_given(url):
    assert store_lib.redact(url) == url


@pytest.mark.parametrize(
    "url, scheme",
    [
        ("postgresql://me:s3cret@db:notaport/studies", "postgresql://"),  # a port that is no int
        ("postgresql://me:s3cret@[::1/studies", "postgresql://"),  # an unclosed IPv6 host
        ("host=db user=me password=s3cret", ""),  # a libpq key/value string: no scheme
        ("postgres ql://me:s3cret@db/studies", ""),  # not a scheme SQLAlchemy reads
    ],
)
def test_an_unparseable_url_shows_no_password(url, scheme):
    with pytest.raises((sa.exc.ArgumentError, ValueError)):
        sa.engine.make_url(url)
    shown = store_lib.redact(url)
    assert "s3cret" not in shown and shown.startswith(scheme + "<URL hidden"), shown


@pytest.mark.parametrize(
    "url", ["postgresql://me:s3@QZX@db/studies", "postgresql://me:s3@QZ?X@db/studies"]
)
def test_a_password_with_an_unencoded_at_sign_shows_no_part_of_it(url):
    # SQLAlchemy parses these, ending the password at its first '@': the rest would show.
    assert sa.engine.make_url(url).password == "s3"
    shown = store_lib.redact(url)
    assert "QZ" not in shown and shown.startswith("postgresql://<URL hidden"), shown


def test_an_at_sign_in_the_username_keeps_the_url_readable():
    shown = _shown("postgresql://me@corp:s3cret@db/studies")
    assert (shown.username, shown.password, shown.host) == ("me@corp", "***", "db")


def test_the_recorded_command_hides_query_and_unparseable_passwords():
    args = [
        "--store",
        "postgresql+psycopg://me@db/studies?password=s3cret",
        "--store=postgresql://me:s3cret@db:notaport/studies",
        "--store=sqlite:////tmp/a.db",
    ]
    shown = cli.redacted_args(args)
    assert "s3cret" not in " ".join(shown), shown
    assert shown[0] == "--store" and shown[-1] == "--store=sqlite:////tmp/a.db"


@pytest.mark.parametrize(
    "url", ["postgresql://me:s3cret@db:notaport/studies", "postgresql://me:s3@QZX@db/studies"]
)
def test_a_store_url_that_cannot_be_shown_is_refused_without_showing_it(url):
    # create_engine's own error would quote part of it ("invalid literal for int(): 'notaport'",
    # a host named 'QZX@db').
    with pytest.raises(ConfigError, match="percent-encoded") as e:
        store_lib.url_for("unused", url)
    assert "s3" not in str(e.value) and "QZ" not in str(e.value), e.value


def test_a_query_password_stays_out_of_the_output_the_record_and_the_report(tmp_path, capsys):
    from conftest import fresh_postgres_url

    url = sa.engine.make_url(fresh_postgres_url())
    password = url.password
    in_query = (
        url.set(password=None)
        .update_query_dict({"password": password})
        .render_as_string(hide_password=False)
    )
    args = [
        f"--config={REPO}/experiments/mnist1d_mlp.py:smoke",
        f"--workdir={tmp_path}",
        f"--store={in_query}",
        "--config.study.num_trials=1",
    ]
    assert sweep.main(args) == 0
    printed = capsys.readouterr()
    store = store_lib.Store(in_query)
    try:
        record = store.record(store.study_id())  # the one study of this schema
    finally:
        store.close()
    reports = [p.read_text() for p in tmp_path.glob("report-*.html")]
    assert reports  # the report was written, and is checked below
    shown = "\n".join([printed.out, printed.err, json.dumps(record, default=str), *reports])
    assert password and f"password={password}" not in shown
    assert "password=%2A%2A%2A" in record["command"]
