"""The live dashboard (`python -m jaxplay.studies serve`): what the store records for it, its pages
over HTTP, that it never writes and escapes user text, and what headless Chromium makes of it while
a sweep writes to the store."""

import contextlib
import hashlib
import http.client
import json
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from factories import float_only_study, tiny_config, write_study_file
from jaxplay import spaces, studies
from jaxplay import spec as spec_lib
from jaxplay import store as store_lib
from jaxplay.analysis import tables
from jaxplay.analysis.study import read
from jaxplay.dashboard import Dashboard, pages
from jaxplay.driver.plan import plan

PAYLOAD = "<script>window.__pwned = 1</script>"

# ------------------------------------------------------------------------------------------------
# Studies written straight into a store (no training): their shape is what a sweep writes.


def write_study(url, name, results, *, notes="", parent=None, action=None, error=None):
    """A study of float_only_study's space whose trial i ends as results[i]: a best val/error
    (completed), 'failed', 'running' (logged two evaluations) or 'pending'."""
    config = float_only_study(num_trials=len(results))
    spec = spec_lib.resolve(config)
    tree = json.loads(json.dumps(spec.tree))
    if parent:
        tree["study"]["parent"] = {"study": parent, "action": action, "changes": ["test"]}
    store = store_lib.Store(url)
    config_hash = hashlib.sha256((spec.hash() + name).encode()).hexdigest()
    study_id = store.open_study(
        name, config_hash, config_path="study.py", config=tree, notes=notes,
        objective="val/error", mode="min", algorithm="quasirandom", seed=0,
        num_trials=len(results), command="test", versions={}, device_kind="cpu",
    )  # fmt: skip
    store.add_trials(study_id, plan(spec).params[: len(results)])
    for index, result in enumerate(results):
        if result == "pending":
            continue
        trial_id = store.claim(study_id, "test-worker", indices=[index])[0]
        best = result if isinstance(result, float) else 0.5
        for step, value in ((0, 0.9), (50, (0.9 + best) / 2), (100, best)):
            if result == "running" and step == 100:
                break
            store.log_metrics(trial_id, step, {"val/error": value, "train/loss": 2 * value})
        if result == "failed":
            store.finish(trial_id, "failed", error=error or "ValueError: broken")
        elif isinstance(result, float):
            store.finish(trial_id, "completed", best_value=best, best_step=100, steps_run=100)
    store.update_best(study_id)
    store.close()


@contextlib.contextmanager
def served(url):
    """A dashboard over `url` on a free port, in a thread; yields its base URL."""
    server = Dashboard(url, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fetch(base, path, method="GET", host=None):
    """(status, headers, body text) of one request."""
    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    headers = {"Host": host} if host else {}
    connection.request(method, path, headers=headers)
    response = connection.getresponse()
    body = response.read().decode()
    connection.close()
    return response.status, dict(response.getheaders()), body


def study_path(name):
    return "/study/" + urllib.parse.quote(name, safe="")


# ------------------------------------------------------------------------------------------------
# What the store records for watchers.


def test_training_speed_waits_for_a_period_that_compiled_nothing(store_url):
    """A running trial's speed comes from two evaluations after the first period (which compiled
    the program); a resume clears it until a clean period has been timed again."""
    write_study(store_url, "s", ["pending"])
    store = store_lib.Store(store_url)
    study_id = store.study_id("s")
    trial_id = store.claim(study_id, "w", indices=[0])[0]

    def progress():
        trial = store.record(study_id)["trials"][0]
        return trial["step"], trial["steps_per_second"]

    store.drop_metrics_after(trial_id, -1)  # a fresh start, as the driver does
    store.log_metrics(trial_id, 0, {"val/error": 0.9})
    assert progress() == (0, None)
    store.log_metrics(trial_id, 50, {"val/error": 0.8})  # its period compiled the program
    assert progress() == (50, None)
    time.sleep(0.01)  # the store's clock must move between the two logs
    store.log_metrics(trial_id, 100, {"val/error": 0.7})
    step, speed = progress()
    assert step == 100 and speed > 0
    store.drop_metrics_after(trial_id, 50)  # resumed from its step-50 checkpoint
    assert progress() == (50, None)
    store.log_metrics(trial_id, 100, {"val/error": 0.7})  # compiled again: still no speed
    assert progress() == (100, None)
    store.close()


def test_overview_and_version(store_url):
    write_study(store_url, "round1", [0.3, 0.4, "failed"], notes="first")
    write_study(store_url, "round1-refine", [0.35, "running", "pending"], parent="round1",
                action="refine")  # fmt: skip
    store = store_lib.Store(store_url)
    rows = {r["name"]: r for r in store.overview()}
    assert rows["round1"]["status_counts"] == {
        "pending": 0, "running": 0, "completed": 2, "infeasible": 0, "failed": 1,
    }  # fmt: skip
    assert rows["round1"]["best_value"] == 0.3 and rows["round1"]["parent"] is None
    child = rows["round1-refine"]
    assert (child["parent"], child["action"]) == ("round1", "refine")
    assert child["status_counts"]["running"] == 1 and child["status_counts"]["pending"] == 1
    study_id = store.study_id("round1-refine")
    before = store.version(study_id)
    assert store.version(study_id) == before  # reading changes nothing
    running = store.record(study_id)["trials"][1]
    assert running["status"] == "running" and running["step"] == 50
    trial_id = store.claim(study_id, "test-worker", indices=[2])[0]
    after_claim = store.version(study_id)
    assert after_claim != before
    store.log_metrics(trial_id, 0, {"val/error": 0.9})
    assert store.version(study_id) != after_claim
    store.close()


def test_a_never_writes_store_refuses_writes(store_url):
    """The dashboard's store: the database itself refuses a write, on both backends."""
    write_study(store_url, "s", [0.3])
    watcher = store_lib.Store(store_url, never_writes=True)
    watcher.retry_s = 0  # a refused write is not a passing fault; do not wait on it
    study_id = watcher.study_id("s")
    before = watcher.study_curves(study_id)
    with pytest.raises(Exception, match="(?i)read.?only"):
        watcher.log_metrics(1, 500, {"val/error": 0.1})
    assert watcher.study_curves(study_id) == before
    watcher.close()


# ------------------------------------------------------------------------------------------------
# The pages over HTTP.


def test_pages_over_http(tmp_path):
    url = store_lib.default_url(tmp_path)
    write_study(url, "round1", [0.3, 0.4, 0.5, "failed"], notes="first round")
    write_study(url, "round1-refine", [0.25, "running"], parent="round1", action="refine")
    write_study(url, "round1-rerun", [0.31, 0.29], parent="round1", action="rerun")
    write_study(url, "round2", [0.2], parent="round1-refine", action="promote")
    with served(url) as base:
        status, headers, home = fetch(base, "/")
        assert status == 200
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        for name in ("round1", "round1-refine", "round1-rerun", "round2"):
            assert f'<a href="/study/{name}">{name}</a>' in home
        # The lineage tree: refine below round 1, the promotion below the refinement, the rerun
        # beside round 1 (same line, not a level down).
        tree = home[home.index('id="lineage"') :]
        shape = (
            r"round1</a>.*?rerun: <a href=\"/study/round1-rerun\">.*?<ul><li>.*?refine.*?"
            r"round1-refine</a>.*?<ul><li>.*?promote.*?round2</a>"
        )
        assert re.search(shape, tree)
        status, _, page = fetch(base, "/study/round1-refine")
        assert status == 200
        payload = json.loads(
            re.search(
                r'<script type="application/json" id="payload">(.*?)</script>', page, re.S
            ).group(1)
        )
        assert payload["counts"]["running"] == 1 and payload["evaluations"] == 5
        assert [r["trial"] for r in payload["running"]] == [1]
        assert payload["running"][0]["step"] == 50
        paths = list(spec_lib.resolve(float_only_study()).space.paths)
        assert [p["path"] for p in payload["axis"]] == paths
        for section in ("summary", "lineage", "diagnostics", "trials", "plots", "fixed"):
            assert f'id="{section}"' in page, section
        status, _, api = fetch(base, "/api/study/round1-refine")
        update = json.loads(api)
        assert update["payload"] == payload and update["parts"]["trials"]
        version = json.loads(fetch(base, "/api/study/round1-refine/version")[2])["version"]
        assert version == update["version"]
        status, _, compare = fetch(base, "/compare?a=round1&b=round2")
        assert status == 200
        store = store_lib.Store(url, never_writes=True)
        a, b = (read(store, store.study_id(n)) for n in ("round1", "round2"))
        store.close()
        verdict = tables.compare(a, b)
        assert pages._e(verdict) in compare
        status, _, missing = fetch(base, "/study/nope")
        assert status == 404 and "no study named &#x27;nope&#x27;" in missing
        assert fetch(base, "/", method="POST")[0] == 405
        # Another host name (DNS rebinding from a web page) is refused on a loopback server.
        assert fetch(base, "/", host="evil.example:80")[0] == 403
        status, headers, script = fetch(base, "/static/plotly.min.js")
        assert status == 200 and "plotly" in script[:2000].lower()
        assert fetch(base, "/static/dashboard.js")[0] == 200


def test_user_text_is_escaped_in_every_page(tmp_path):
    url = store_lib.default_url(tmp_path)
    write_study(url, PAYLOAD, [0.3, "failed"], notes=PAYLOAD, error=PAYLOAD)
    write_study(url, "plain", [0.4])
    with served(url) as base:
        for path in ("/", study_path(PAYLOAD), "/compare?a=plain&b=" + urllib.parse.quote(PAYLOAD),
                     "/fragment/home"):  # fmt: skip
            status, _, page = fetch(base, path)
            assert status == 200, path
            assert "window.__pwned" in page and "<script>window" not in page, path
        update = fetch(base, "/api" + study_path(PAYLOAD))[2]
        assert "<script>window" not in json.dumps(json.loads(update)["payload"])


def test_serve_command_says_when_its_port_is_taken(tmp_path, capsys):
    url = store_lib.default_url(tmp_path)
    write_study(url, "s", [0.3])
    with served(url) as base:
        port = urllib.parse.urlsplit(base).port
        code = studies.main(["serve", "--workdir", str(tmp_path), "--port", str(port)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--port {port}" in err[0] and "--port 0" in err[0]


def test_serve_command_prints_its_address_and_stops_cleanly_on_ctrl_c(tmp_path):
    url = store_lib.default_url(tmp_path)
    write_study(url, "s", [0.3])
    server = subprocess.Popen(
        [sys.executable, "-m", "jaxplay.studies", "serve", "--workdir", str(tmp_path), "--port",
         "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As a shell starts a background job: SIGINT ignored, which Ctrl-C must still override.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        base = re.search(r"on (http://127\.0\.0\.1:\d+/) ", line).group(1)
        assert "read-only" in line and "Ctrl-C" in line
        assert fetch(base, "/study/s")[0] == 200
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    assert server.returncode == 0 and err == ""


# ------------------------------------------------------------------------------------------------
# In a real browser.


def _ready(browser, url):
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script("return document.body && document.body.dataset.ready")
    )


def test_browser_home_hover_table_and_no_script(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = store_lib.default_url(tmp_path)
    write_study(url, "round1", [0.3, 0.4, 0.5, 0.35, "failed"], notes="first round")
    write_study(url, PAYLOAD, [0.3, "failed"], notes=PAYLOAD, error=PAYLOAD)
    with served(url) as base:
        _ready(browser, base)
        names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#studies td a")]
        assert names == ["round1", PAYLOAD]

        _ready(browser, base + "study/round1")
        points = browser.find_elements(By.CSS_SELECTOR, "#axis-0 .scatterlayer .point")
        assert len(points) == 5  # four completed, one infeasible at the cap
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", points[0])
        ActionChains(browser).move_to_element(points[0]).perform()
        label = (
            WebDriverWait(browser, 20)
            .until(lambda d: d.find_elements(By.CSS_SELECTOR, "#axis-0 .hoverlayer .hovertext"))[0]
            .text
        )
        trial = int(re.search(r"trial (\d+)", label).group(1))
        first = spaces.parse(float_only_study().search).paths[0]
        assert first in label
        # Clicking the point selects the trial's row in the table.
        ActionChains(browser).click(points[0]).perform()
        WebDriverWait(browser, 20).until(
            lambda d: "selected" in d.find_element(By.ID, f"trial-{trial}").get_attribute("class")
        )
        # The trials table filters and sorts.
        box = browser.find_element(By.CSS_SELECTOR, "#trials input.filter")
        box.send_keys("failed")
        shown = [r for r in browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr")
                 if r.is_displayed()]  # fmt: skip
        assert len(shown) == 1 and "failed" in shown[0].text
        box.clear()
        browser.execute_script("arguments[0].dispatchEvent(new Event('input'))", box)
        header = browser.find_elements(By.CSS_SELECTOR, "#trials th")[2]  # best val/error
        header.click()
        header.click()  # descending
        values = [r.find_elements(By.TAG_NAME, "td")[2].text
                  for r in browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr")]  # fmt: skip
        numbers = [float(v) for v in values if v not in ("-", "")]
        assert numbers == sorted(numbers, reverse=True) and len(numbers) == 4

        for path in ("", study_path(PAYLOAD).lstrip("/"),
                     "compare?a=round1&b=" + urllib.parse.quote(PAYLOAD)):  # fmt: skip
            _ready(browser, base + path)
            assert browser.execute_script("return window.__pwned") is None, path
            assert PAYLOAD in browser.find_element(By.TAG_NAME, "body").text, path


def test_browser_study_page_follows_a_running_sweep(browser, tmp_path):
    """A sweep writes to the store; the open study page shows its new evaluations without a
    reload."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # Long enough to still run when the test ends (it stops the sweep): the page must see it run.
    config = tiny_config(**{"train.steps": 10**6, "train.eval_every": 200, "study.name": "live"})
    config.study.num_trials = 1
    study_file = write_study_file(tmp_path / "live.py", config)
    workdir = tmp_path / "run"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "jaxplay.sweep", "--config", study_file, "--workdir", str(workdir),
         "--tensorboard=false", "--report=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        cwd=pathlib.Path(__file__).parent.parent,
    )  # fmt: skip
    try:
        url = store_lib.default_url(workdir)
        deadline = time.monotonic() + 300
        while not _evaluations(workdir, url):
            assert sweep.poll() is None, sweep.stderr.read()
            assert time.monotonic() < deadline, "the sweep logged no evaluation"
            time.sleep(0.5)
        with served(url) as base:
            _ready(browser, base + "study/live")
            browser.execute_script("window.__samePage = 1")
            seen = int(browser.find_element(By.ID, "evaluations").get_attribute("data-count"))
            WebDriverWait(browser, 60).until(
                lambda d: (
                    int(d.find_element(By.ID, "evaluations").get_attribute("data-count")) > seen
                )
            )
            assert browser.execute_script("return window.__samePage") == 1  # no reload
            rows = browser.find_elements(By.CSS_SELECTOR, "#running-table tbody tr")
            assert rows and rows[0].find_elements(By.TAG_NAME, "td")[0].text == "0"
            assert f"/ {10**6}" in rows[0].text
    finally:
        sweep.send_signal(signal.SIGINT)
        try:
            sweep.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sweep.kill()
            sweep.wait()


def _evaluations(workdir, url) -> int:
    if not (workdir / store_lib.DB_NAME).exists():
        return 0
    store = store_lib.Store(url, never_writes=True)
    try:
        if not store.study_names():
            return 0
        return sum(len(v) for c in store.study_curves(store.study_id()).values()
                   for v in c.values())  # fmt: skip
    except Exception:  # the sweep may be creating its tables
        return 0
    finally:
        store.close()


def test_browser_study_page_counts_near_best_trials_and_draws_best_steps(browser, tmp_path):
    """The axis plots count the trials near the best (playbook item 36) and the best-step plot
    (item 51) draws each feasible trial against the 10% and 25% lines, hovering to its trial."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = store_lib.default_url(tmp_path)
    # Best 0.3: 5% of it (0.015) holds 0.3 and 0.31; every best step is the last of 100 steps.
    write_study(url, "steps", [0.3, 0.31, 0.5, 0.35, "failed"])
    with served(url) as base:
        _ready(browser, base + "study/steps")
        title = browser.find_element(By.CSS_SELECTOR, "#axis-0 .gtitle").text
        assert "5 finished trials" in title and "2 within 0.015 of the best" in title
        assert len(browser.find_elements(By.CSS_SELECTOR, "#axis-0 .shapelayer path")) >= 1
        title = browser.find_element(By.CSS_SELECTOR, "#best-step .gtitle").text
        assert title == "Best step of 4 feasible trials: 4 in the last 25%, 0 in the first 10%"
        labels = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#best-step .annotation")]
        assert "first 10%: saturated early" in labels and "last 25%: still improving" in labels
        points = browser.find_elements(By.CSS_SELECTOR, "#best-step .scatterlayer .point")
        assert len(points) == 4
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", points[0])
        ActionChains(browser).move_to_element(points[0]).perform()
        hover = "#best-step .hoverlayer .hovertext"
        label = WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, hover))
        label = label[0].text
        assert re.search(r"trial \d+", label) and "best step 100 of 100 (100% of training)" in label


def test_browser_study_page_draws_the_probe_losses_and_gradient_norms(browser, tmp_path):
    """The probe's per-step losses (items 83, 99) by learning-rate multiple, the diverged trial
    marked where it stopped, and the best trials' gradient norms with the playbook's clipping
    threshold and their histogram (items 82, 87); hovering names the trial."""
    import math

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = store_lib.default_url(tmp_path)
    tree = json.loads(json.dumps(spec_lib.resolve(float_only_study(num_trials=3)).tree))
    store = store_lib.Store(url)
    study_id = store.open_study(
        "probe", "h", config_path="study.py", config=tree, notes="", objective="val/error",
        mode="min", algorithm="manual", seed=0, num_trials=3, command="test", versions={},
        device_kind="cpu",
    )  # fmt: skip
    factors = (1, 2, 10)
    store.add_trials(study_id, [{"optimizer.learning_rate": 0.01 * f} for f in factors])
    for index, factor in enumerate(factors):
        trial_id = store.claim(study_id, "w", indices=[index])[0]
        for end in (50, 100):
            steps = range(end - 49, end + 1)
            loss = [2 * math.exp(-s / 50) + (factor == 10) * s**2 for s in steps]
            norms = [factor * (1 + (s % 5) / 10) for s in steps]
            series = {"train/step_loss": loss, "train/step_grad_norm": norms}
            assert store.log_steps(trial_id, end, series, worker="w")
            metrics = {"val/error": 0.5 - 0.1 * index + 0.001 * end,
                       "train/grad_norm": sum(norms) / len(norms)}  # fmt: skip
            store.log_metrics(trial_id, end, metrics, worker="w")
            if factor == 10:
                store.finish(trial_id, "infeasible", worker="w", steps_run=50,
                             error="training loss diverged at step 40: 1602 (> 20)")  # fmt: skip
                break
        else:
            value = 0.55 - 0.1 * index
            store.finish(trial_id, "completed", worker="w", best_value=value, best_step=50,
                         steps_run=100)  # fmt: skip
    store.update_best(study_id)
    store.close()
    with served(url) as base:
        _ready(browser, base + "study/probe")
        title = browser.find_element(By.CSS_SELECTOR, "#step-losses .gtitle").text
        assert (
            title == "Every step's training loss at 3 learning rates, 10-step running median thick"
        )
        legend = [
            e.text for e in browser.find_elements(By.CSS_SELECTOR, "#step-losses .legendtext")
        ]
        assert legend[:3] == ["1x: trial 0, learning rate 0.01", "2x: trial 1, learning rate 0.02",
                              "10x: trial 2, learning rate 0.1"]  # fmt: skip
        assert "diverged here" in legend
        # Hover the diverged trial's marker: its label names the trial and where it stopped.
        browser.execute_script(
            "const div = document.getElementById('step-losses');"
            "const i = div.data.findIndex((t) => t.name === 'diverged here');"
            "Plotly.Fx.hover(div, [{curveNumber: i, pointNumber: 0}]);"
        )
        hover = "#step-losses .hoverlayer .hovertext"
        label = WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, hover))
        assert "trial 2 (infeasible)" in label[0].text
        assert "diverged here: step 40, loss 1601" in label[0].text

        title = browser.find_element(By.CSS_SELECTOR, "#grad-norms .gtitle").text
        # The two feasible trials: the diverged one is no best trial.
        assert title.startswith("Gradient norm of the best 2 trials, every step")
        assert "histogram of trial 1's steps" in title  # the best feasible trial
        legend = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#grad-norms .legendtext")]
        assert any(
            t.startswith("90th percentile: the playbook's clipping threshold (") for t in legend
        )
        assert "trial 1 (0.45): every step" in legend and "trial 0 (0.55): every step" in legend
        # Hover the best trial's line: its label names the trial and the step's norm.
        browser.execute_script(
            "Plotly.Fx.hover(document.getElementById('grad-norms'), "
            "[{curveNumber: 0, pointNumber: 9}])"
        )
        hover = "#grad-norms .hoverlayer .hovertext"
        label = WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, hover))
        assert "trial 1" in label[0].text and "step 10: gradient norm 2" in label[0].text
