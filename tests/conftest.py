"""Shared fixtures: the databases a store test runs against, headless Chromium for the report and
the dashboard."""

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
    return _own_schema(url)


def _own_schema(url: str) -> str:
    """The URL with this test process's own schema first on PostgreSQL's search path, created if
    missing: the tests of one pytest-xdist worker run one after another and drop their tables,
    and those of another worker never see them."""
    schema = f"jaxplay_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    engine.dispose()
    return (
        sa.engine.make_url(url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )


def fresh_postgres_url() -> str:
    """A PostgreSQL URL (this process's schema) whose jaxplay tables have been dropped."""
    from jaxplay import store as store_lib

    url = postgres_url()
    engine = sa.create_engine(url)
    store_lib.Base.metadata.drop_all(engine)
    engine.dispose()
    return url


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
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


@pytest.fixture(scope="session")
def browser(chromium):
    """Headless Chromium driven through chromedriver (selenium), for pages with scripts: skips
    without chromedriver, except under CI=true (.ci/run installs Debian's chromium-driver)."""
    driver_path = shutil.which("chromedriver")
    if not driver_path:
        if os.environ.get("CI") == "true":
            pytest.fail("chromedriver is not installed; .ci/run installs it (chromium-driver)")
        pytest.skip("chromedriver not installed (apt-get install chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def own_worker_registry(tmp_path, monkeypatch):
    """Each test its own registry of live jaxplay workers (jaxplay.devices): sweeps that other
    pytest processes run at the same time must not count as workers sharing this test's device
    (they would halve its memory budget). A test's own worker processes inherit it."""
    monkeypatch.setenv("JAXPLAY_WORKERS_DIR", str(tmp_path / "jaxplay-workers"))
