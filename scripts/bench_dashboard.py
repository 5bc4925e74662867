"""How fast the dashboard answers: the `serve` command's start, and a study page of many trials
drawn in headless Chromium (Debian's chromium and chromium-driver; selenium from the test extra).

    python scripts/bench_dashboard.py                  # 500 trials, 10 evaluations each
    python scripts/bench_dashboard.py --trials 2000 --json

The study is the quickstart's (experiments/mnist1d_mlp.py) with its trials written straight into a
fresh SQLite store (synthetic curves, no training). "start" is from launching the command to its
first answered request; "page" is from asking the browser for the study page to every plot drawn
(the page marks document.body.dataset.ready), first with the server reading the study ("cold"),
then from its cache ("warm", median of 3). The issue's bar: both under 2 s.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jaxplay import config as config_lib  # noqa: E402
from jaxplay import spec as spec_lib  # noqa: E402
from jaxplay import store as store_lib  # noqa: E402
from jaxplay.driver.plan import plan as plan_study  # noqa: E402


def build_store(folder: pathlib.Path, trials: int, evaluations: int, seed: int = 0) -> str:
    """A store holding the quickstart study with `trials` finished trials of synthetic curves."""
    config = config_lib.load(str(ROOT / "experiments/mnist1d_mlp.py"))
    config.study.num_trials = trials
    spec = spec_lib.resolve(config)
    study_plan = plan_study(spec)
    study_plan.grow(trials)
    params = study_plan.params
    url = store_lib.default_url(folder)
    store = store_lib.Store(url)
    study_id = store.open_study(
        spec.study.name, spec.hash(), config_path="experiments/mnist1d_mlp.py", config=spec.tree,
        notes="synthetic curves for the dashboard benchmark", objective=spec.study.objective,
        mode=spec.study.mode, algorithm=spec.study.algorithm, seed=spec.study.seed,
        num_trials=trials, command="scripts/bench_dashboard.py", versions={}, device_kind="-",
    )  # fmt: skip
    store.add_trials(study_id, params)
    rng = np.random.default_rng(seed)
    steps = spec.tree["train"]["steps"]
    for index in range(trials):
        claimed = store.claim(study_id, "bench", indices=[index])
        floor = 0.3 + 0.4 * rng.random()
        best, best_step = math.inf, 0
        for k in range(evaluations + 1):
            step = k * steps // evaluations
            error = floor + (0.9 - floor) * math.exp(-4 * k / evaluations) + 0.01 * rng.random()
            loss = 2.3 * error
            metrics = {"val/error": error, "val/loss": loss + 0.1, "train/loss": loss}
            store.log_metrics(claimed[0], step, metrics)
            if error < best:
                best, best_step = error, step
        store.finish(claimed[0], "completed", best_value=best, best_step=best_step,
                     steps_run=steps)  # fmt: skip
    store.update_best(study_id)
    store.close()
    return url


def time_start(url: str) -> tuple[subprocess.Popen, str, float]:
    """Launches `studies serve` on a free port; (process, address, seconds to the first answer)."""
    t0 = time.perf_counter()
    command = [sys.executable, "-m", "jaxplay.studies", "serve", "--store", url, "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = server.stdout.readline()
    address = line.split(" on ", 1)[1].split(" ", 1)[0]
    urllib.request.urlopen(address, timeout=30).read()
    return server, address, time.perf_counter() - t0


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1500,1100"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def time_page(driver, address: str) -> dict:
    """Seconds from asking for the page to every plot drawn, and the browser's own split of it:
    the server's answer, the scripts loaded (Plotly's bundle parsed), the plots drawn."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get("about:blank")
    t0 = time.perf_counter()
    driver.get(address)
    WebDriverWait(driver, 60, poll_frequency=0.02).until(
        lambda d: d.execute_script("return document.body && document.body.dataset.ready")
    )
    total = time.perf_counter() - t0
    timing = driver.execute_script("return performance.getEntriesByType('navigation')[0].toJSON()")
    ready = float(driver.execute_script("return document.body.dataset.ready"))
    return {
        "total_s": round(total, 2),
        "answered_s": round(timing["responseEnd"] / 1000, 2),
        "scripts_loaded_s": round(timing["domContentLoadedEventStart"] / 1000, 2),
        "drawn_s": round(ready / 1000, 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--evaluations", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        url = build_store(pathlib.Path(folder), args.trials, args.evaluations)
        built = time.perf_counter() - t0
        starts = []
        for _ in range(3):
            server, address, seconds = time_start(url)
            starts.append(seconds)
            server.terminate()
            server.wait()
        server, address, _ = time_start(url)
        driver = browser()
        try:
            name = store_lib.Store(url, never_writes=True).study_names()[0]
            page = f"{address}study/{name}"
            cold = time_page(driver, page)
            warm = sorted((time_page(driver, page) for _ in range(3)), key=lambda t: t["total_s"])
            home = time_page(driver, address)
        finally:
            driver.quit()
            server.terminate()
            server.wait()
    figures = {
        "trials": args.trials,
        "evaluations_per_trial": args.evaluations,
        "store_built_s": round(built, 1),
        "server_start_s": [round(s, 2) for s in starts],
        "study_page_cold": cold,
        "study_page_warm_median": warm[1],
        "home_page": home,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"study of {args.trials} trials x {args.evaluations + 1} evaluations "
              f"(store written in {built:.1f} s)")  # fmt: skip
        print(f"server start (to first answer): {', '.join(f'{s:.2f} s' for s in starts)}")
        for label, t in (("study page, cold", cold), ("study page, warm (median of 3)", warm[1]),
                         ("home page", home)):  # fmt: skip
            print(f"{label}: {t['total_s']:.2f} s (server answered at {t['answered_s']:.2f} s, "
                  f"scripts loaded at {t['scripts_loaded_s']:.2f} s, plots drawn at "
                  f"{t['drawn_s']:.2f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
