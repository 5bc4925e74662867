"""What a study costs and how it spends its budget: device-hours per trial and per study (a stack's
time shared among its trials), the dry run's device-hours and budget plan, and whether the
batch-size probe a study shows still measured its model and optimizer."""

import csv
import datetime as dt
import io
import pathlib

import ml_collections
import pytest
import sqlalchemy as sa

from jaxplay import batch_size as batch_size_command
from jaxplay import spaces, spec, studies, sweep
from jaxplay import store as store_lib
from jaxplay.analysis import html_report, throughput
from jaxplay.analysis import record as record_lib
from jaxplay.driver.forecast import MIN_TRIALS_PER_NUISANCE, budget_plan
from jaxplay.train import mesh
from tests.factories import constructed_study, tiny_config, write_study_file

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)
H200 = "gpu: NVIDIA H200 x8"


def _store_with_runs(tmp_path, runs: list[tuple[str, float, float]], device_kind=H200):
    """A store whose study 'cost' has one finished trial per (worker, start s, end s) after T0, as
    the sweep records them (claim: started_at, finish: finished_at and duration_s)."""
    url = store_lib.default_url(tmp_path)
    store = store_lib.Store(url)
    fields = dict(config_path="x.py", config={"search": {}}, notes="", objective="val/error",
                  mode="min", algorithm="quasirandom", seed=0, num_trials=len(runs), command="",
                  git_commit=None, git_dirty=None, versions={},
                  device_kind=device_kind)  # fmt: skip
    study_id = store.open_study("cost", "h", **fields)
    store.add_trials(study_id, [{"i": i} for i in range(len(runs))])
    with store.session.begin() as s:
        for i, (worker, start, end) in enumerate(runs):
            trial = s.scalar(sa.select(store_lib.Trial).where(store_lib.Trial.index == i))
            trial.status, trial.worker, trial.best_value = "completed", worker, 0.5 - 0.01 * i
            trial.started_at = T0 + dt.timedelta(seconds=start)
            trial.finished_at = T0 + dt.timedelta(seconds=end)
            trial.duration_s = end - start
    store.update_best(study_id)
    return store, study_id


def test_a_stacks_time_is_shared_among_its_trials_and_workers_count_apart(tmp_path):
    # Worker a: a stack of 3 trials for 30 s, then one trial alone for 10 s; worker b: one trial
    # for 20 s at the same time as a's stack (another host with its own devices).
    runs = [("a", 0, 30), ("a", 0.001, 30.002), ("a", 0.002, 30.004), ("a", 30.01, 40.01),
            ("b", 5, 25)]  # fmt: skip
    store, study_id = _store_with_runs(tmp_path, runs)
    try:
        record = store.record(study_id)
    finally:
        store.close()
    shared = [t["shared_s"] for t in record["trials"]]
    assert shared[:3] == pytest.approx([10.0] * 3, abs=0.01)  # 1/3 of the stack's 30 s each
    assert shared[3:] == pytest.approx([10.0, 20.0])
    # Worker a's trials add up to the time it held trials: 0-30.004 s and 30.01-40.01 s.
    assert sum(shared[:4]) == pytest.approx(30.004 + 10.0)
    hours = [record_lib.device_hours(record, t) for t in record["trials"]]
    assert hours == pytest.approx([8 * s / 3600 for s in shared])
    assert record_lib.study_device_hours(record) == pytest.approx(8 * sum(shared) / 3600)


def test_a_stack_halved_after_running_out_of_memory_adds_up_to_its_wall_clock_time(tmp_path):
    # Four trials claimed together; out of memory, the sweep runs them as two halves one after
    # the other, all four claimed throughout: the first half ends at 10 s, the second at 30 s.
    store, study_id = _store_with_runs(
        tmp_path, [("w", 0, 10), ("w", 0, 10), ("w", 0, 30), ("w", 0, 30)]
    )
    try:
        record = store.record(study_id)
    finally:
        store.close()
    shared = [t["shared_s"] for t in record["trials"]]
    assert shared == pytest.approx([2.5, 2.5, 12.5, 12.5])  # 10 s by 4, then 20 s by 2
    assert sum(shared) == pytest.approx(30.0)


def test_show_export_and_report_give_device_hours_per_trial_and_in_total(tmp_path, capsys):
    runs = [("a", 0, 360), ("a", 0, 360), ("a", 400, 580)]  # a stack of 2, then one alone
    store, _ = _store_with_runs(tmp_path, runs, device_kind="tpu: TPU v5 lite x4")
    store.close()
    # Each: 4 devices x 180 s = 0.2 device-hours; the study 0.6.
    assert studies.main(["show", f"--workdir={tmp_path}"]) == 0
    shown = capsys.readouterr().out
    assert "compute    0.6 device-hours (tpu: TPU v5 lite x4;" in shown
    header = next(line for line in shown.splitlines() if line.lstrip().startswith("trial"))
    column = header.split().index("device-h") - 1  # "best step" is one column
    rows = [line.split() for line in shown.splitlines() if line.strip()[:1].isdigit()]
    assert [r[column] for r in rows] == ["0.2", "0.2", "0.2"]

    assert studies.main(["export", f"--workdir={tmp_path}", "--format=csv"]) == 0
    exported = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [float(r["device_hours"]) for r in exported] == pytest.approx([0.2, 0.2, 0.2])

    from jaxplay import analysis

    page = html_report.render_html(analysis.load(workdir=tmp_path), findings=[])
    summary = page[page.index("<th>Device time</th>") :].split("</tr>")[0]
    assert "0.6 device-hours</strong> over 3 finished trial(s): devices (4)" in summary
    trials = page[page.index('<section id="trials">') :].split("</section>")[0]
    assert "<th>device-hours</th>" in trials and trials.count('<td class="num">0.2</td>') == 3


def _space(search: dict) -> spaces.SearchSpace:
    return spaces.parse(ml_collections.ConfigDict({"search": search}).search)


def test_the_budget_plan_counts_scientific_settings_and_warns_below_the_minimum():
    space = _space(
        {
            "model": {"width": spaces.discrete([64, 128, 256], role="scientific")},
            "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)},
        }
    )
    minimum = MIN_TRIALS_PER_NUISANCE
    enough = 3 * 2 * minimum  # 3 widths x 2 nuisance hyperparameters x the minimum
    plan = budget_plan(space, enough)
    assert (plan.settings, plan.nuisance) == (3, ("optimizer.b1", "optimizer.learning_rate"))
    assert plan.trials_per_setting == minimum * 2 and plan.density == minimum
    text = plan.lines(seconds_per_trial=36.0, devices=2)
    assert text[0].startswith("budget: 3 scientific setting(s) (model.width: 3 values) x 10 ")
    # Per setting: 10 trials x 36 s on 2 devices = 6m00s and 0.2 device-hours.
    assert "about 6m00s and 0.2 device-hours per scientific setting" in text[0]
    assert not any("warning" in line for line in text)

    sparse = budget_plan(space, enough - 1)
    [warning] = [line for line in sparse.lines(None, 1) if "warning" in line]
    assert f"below {minimum}" in warning and f"study.num_trials to {enough}" in warning
    [none] = [line for line in budget_plan(space, 2).lines(None, 1) if "warn" in line]
    assert "2 trial(s) for 3 scientific settings: some settings get no trial" in none


def test_continuous_scientific_values_are_counted_in_the_analysis_buckets_and_each_is_counted():
    from jaxplay.analysis.diagnostics import SCIENTIFIC_BUCKETS

    space = _space(
        {
            "model": {"dropout": spaces.linear(0.0, 0.5, role="scientific"),
                      "depth": spaces.int_linear(1, 3, role="scientific")},
            "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)},
        }
    )  # fmt: skip
    # Every setting twice but the last bucket of dropout at depth 3, which gets no trial.
    params = [
        {"model.dropout": 0.5 * (b + 0.5) / SCIENTIFIC_BUCKETS, "model.depth": d,
         "optimizer.learning_rate": 1e-3}
        for b in range(SCIENTIFIC_BUCKETS) for d in (1, 2, 3) for _ in range(2)
        if (b, d) != (SCIENTIFIC_BUCKETS - 1, 3)
    ]  # fmt: skip
    plan = budget_plan(space, len(params), params)
    assert plan.scientific == (
        ("model.depth", 3, "values"),
        ("model.dropout", SCIENTIFIC_BUCKETS, "buckets"),
    )
    assert plan.settings == 3 * SCIENTIFIC_BUCKETS and plan.spread == (0, 2)
    assert "(fewest 0, most 2)" in plan.lines(None, 1)[0]


def test_the_dry_run_prices_the_study_in_device_hours_and_plans_its_budget(tmp_path, capsys):
    c = tiny_config(**{"train.steps": 20, "train.eval_every": 10})
    c.study.num_trials = 4
    c.search = dict(
        model=dict(width=spaces.discrete([16, 32], role="scientific")),
        optimizer=dict(learning_rate=spaces.log(1e-3, 1e-2)),
    )
    argv = ["--config", write_study_file(tmp_path / "s.py", c), "--workdir", str(tmp_path / "w"),
            "--executor=sequential", "--dry_run"]  # fmt: skip
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    [budget] = [line for line in out if line.startswith("budget: ")]
    assert budget.startswith("budget: 2 scientific setting(s) (model.width: 2 values) x 2 trial")
    assert (
        "1 nuisance hyperparameter(s) (optimizer.learning_rate): 2 trial(s) per setting" in budget
    )
    # 2 trials per width for one nuisance hyperparameter: below the minimum, and the fix.
    [warning] = [line for line in out if line.strip().startswith("warning: 2 trial(s)")]
    assert "raise study.num_trials to 10" in warning  # 5 per setting per nuisance
    estimate = out[-1]
    seconds_text, hours_text = (
        estimate.split("estimate: about ")[1].split(" device-hours")[0].split(" and ")
    )
    devices = record_lib.device_count(mesh.device_kind())
    assert f"({devices} device(s) x the time)" in estimate
    forecast = sweep.forecast_study(c, executor="sequential")
    # The hours are the devices times the seconds (both from one measurement each).
    assert forecast.device_hours == pytest.approx(devices * forecast.seconds / 3600)
    assert float(hours_text) > 0 and seconds_text.endswith("s")


# ---------------------------------------------------------------------------------------------
# Row 11: is the study's batch-size probe still its model's and optimizer's?


def _probe(config: dict, created_at: str, device_kind="cpu: cpu x1", study="constructed"):
    rows = [{"batch_size": b, "steps_per_period": 10, "period_seconds": [0.01 * b / 8]}
            for b in (8, 16)]  # fmt: skip
    return {"kind": "batch_size", "config": config, "device_kind": device_kind, "study": study,
            "result": {"rows": rows, "stop": "every requested batch size was measured",
                       "out_of_memory": None, "device": device_kind},
            "command": "python -m jaxplay.batch_size --config x.py",
            "created_at": created_at}  # fmt: skip


def _probed_study(probes: list[dict]):
    study = constructed_study(
        {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}},
        [{"params": {"optimizer.learning_rate": 1e-3}}],
        fixed={"model": {"name": "mlp", "width": 256}},
    )
    study.record["command"] = (
        "cd /r && python -m jaxplay.sweep --config x.py --workdir runs/x --config.model.width=256 "
        "--max_trials 3"
    )
    study.probes = probes
    return study


def _section(page: str) -> str:
    return page[page.index('<section id="throughput">') :].split("</section>")[0]


def test_a_probe_of_another_model_is_stale_and_the_report_says_what_changed_and_how_to_reprobe():
    config = {"model": {"name": "mlp", "width": 128}, "optimizer": {"name": "adam",
              "learning_rate": 1e-3}}  # fmt: skip
    study = _probed_study([_probe(config, "2026-01-02T00:00:00+00:00")])
    section = _section(html_report.render_html(study, findings=[]))
    assert '<span class="badge warning">stale</span>' in section
    assert "model.width: 128 -&gt; 256" in section
    assert (
        "cd /r &amp;&amp; python -m jaxplay.batch_size --config x.py --workdir runs/x "
        "--config.model.width=256" in section
    )  # the sweep's study file, overrides and store; not its --max_trials
    assert '<td class="num">16</td>' in section  # the table is still shown


def test_a_probe_of_the_same_model_and_optimizer_is_reused_over_a_newer_stale_one():
    same = {"model": {"name": "mlp", "width": 256}, "optimizer": {"name": "adam",
            "learning_rate": 3e-3}}  # fmt: skip
    other = {"model": {"name": "mlp", "width": 256}, "optimizer": {"name": "sgd"}}
    study = _probed_study(
        [_probe(other, "2026-01-03T00:00:00+00:00"), _probe(same, "2026-01-02T00:00:00+00:00")]
    )
    section = _section(html_report.render_html(study, findings=[]))
    assert "stale" not in section.split("<table")[0]
    assert "Reused: the probe of study &#x27;constructed&#x27; from 2026-01-02 00:00 UTC" in section
    assert "1 newer probe(s) measured another model or optimizer" in section
    # A learning rate is a traced value of one compiled program: it leaves the probe valid; the
    # optimizer's name, or a float turned off, does not.
    assert throughput.probe_changes(same, {**same, "optimizer": {"name": "adam",
                                    "learning_rate": 1e-2}}) == []  # fmt: skip
    assert throughput.probe_changes(same, {**same, "optimizer": {"name": "adam",
                                    "learning_rate": 0.0}}) == [
        "optimizer.learning_rate: 0.003 -> 0.0"
    ]  # fmt: skip
    # Another device is another measurement.
    choice = throughput.choose_probe(study.probes, same, "gpu: NVIDIA H200 x1")
    assert choice.stale and choice.changes[-1] == "device: cpu: cpu x1 -> gpu: NVIDIA H200 x1"


STUDY = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "mnist1d_mlp.py"
PROBE_FLAGS = ["--min_batch_size=16", "--max_batch_size=16", "--steps_per_period=5",
               "--repeats=1", "--config.model.width=32", "--config.model.depth=1",
               "--config.train.steps=100", "--config.train.eval_every=50"]  # fmt: skip


def test_the_probe_command_reuses_a_stored_probe_of_the_same_setup_and_reprobes_a_stale_one(
    tmp_path, capsys
):
    argv = [f"--config={STUDY}:smoke", f"--workdir={tmp_path}", *PROBE_FLAGS]
    from jaxplay import config as config_lib

    overrides = {"model.width": 32, "model.depth": 1, "train.steps": 100, "train.eval_every": 50}
    tree = spec.resolve(config_lib.load(f"{STUDY}:smoke", overrides)).tree
    store = store_lib.Store(store_lib.default_url(tmp_path))
    try:  # another study's probe of this very setup, and this study's probe of a wider model
        device = mesh.device_kind()
        store.add_probe(
            "other-study",
            "batch_size",
            config=dict(tree),
            device_kind=device,
            result=_probe({}, "")["result"],
            command="python -m jaxplay.batch_size",
        )
        wider = {**tree, "model": {**tree["model"], "width": 64}}
        store.add_probe("mnist1d-mlp-smoke", "batch_size", config=wider, device_kind=device,
                        result=_probe({}, "")["result"], command="")  # fmt: skip
    finally:
        store.close()
    assert batch_size_command.main(argv) == 0
    out = capsys.readouterr().out
    assert "reused: the probe of study 'other-study' from" in out and "--again measures anew" in out
    assert "recorded for study 'mnist1d-mlp-smoke'" in out and "probe took" not in out
    store = store_lib.Store(store_lib.default_url(tmp_path))
    try:
        newest = store.probes("mnist1d-mlp-smoke")[0]
    finally:
        store.close()
    assert newest["result"]["reused_from"]["study"] == "other-study"
    assert [r["batch_size"] for r in newest["result"]["rows"]] == [8, 16]  # the stored rows

    # A study whose only probe measured another setup measures again.
    store = store_lib.Store(store_lib.default_url(tmp_path))
    try:  # leaves the wider model's probe alone
        with store.session.begin() as s:
            s.execute(sa.delete(store_lib.Probe).where(store_lib.Probe.command != ""))
    finally:
        store.close()
    assert batch_size_command.main(argv) == 0
    out = capsys.readouterr().out
    assert "stale: the probe of study 'mnist1d-mlp-smoke' from" in out
    assert "model.width: 64 -> 32" in out and "measuring again" in out and "probe took" in out
