"""Shared fixtures: the databases a store test runs against, headless Chromium for the report."""

import os
import shutil

import pytest
import sqlalchemy as sa

POSTGRES_ENV = "JAXPLAY_TEST_POSTGRES_URL"


def postgres_url() -> str:
    """The PostgreSQL URL to test against; skips without one, except under CI=true: it fails."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{POSTGRES_ENV} is not set; .ci/run starts PostgreSQL and sets it")
        pytest.skip(
            f"no PostgreSQL: set {POSTGRES_ENV}=postgresql+psycopg://user:pw@host/db to run this"
        )
    return url


def fresh_postgres_url() -> str:
    """A PostgreSQL URL whose jaxplay tables have been dropped."""
    from jaxplay import store as store_lib

    url = postgres_url()
    engine = sa.create_engine(url)
    store_lib.Base.metadata.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """An empty store database: a SQLite file, and PostgreSQL where one is provided."""
    from jaxplay import store as store_lib

    if request.param == "sqlite":
        return store_lib.default_url(tmp_path)
    return fresh_postgres_url()


@pytest.fixture(scope="session")
def chromium() -> str:
    """A headless Chromium for checking HTML pages; skips without one, except under CI=true."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "headless Chromium is not installed; .ci/run installs it (apt-get install chromium)"
            )
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    return path


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    # The PostgreSQL tests share one database and drop its tables: under pytest-xdist (-n 2 in
    # pyproject.toml) they all run in one worker, one after another (--dist loadgroup).
    for item in items:
        if "postgres" in item.name:
            item.add_marker(pytest.mark.xdist_group("postgresql"))
