"""The study driver end to end: trials, store, checkpoints, resume, Ctrl-C, the CLI."""

import importlib.util
import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa

from factories import float_only_study, tiny_config, write_study_file
from jaxplay import cli, driver, spaces, spec, sweep, workloads
from jaxplay import config as config_lib
from jaxplay.errors import ConfigError, StoreError
from jaxplay.store import Store

REPO = pathlib.Path(__file__).resolve().parent.parent


def _period_fn(trial, stacked=False):
    """The jitted training period of a trial's program; its _cache_size() counts compilations."""
    from jaxplay.train import state, step

    instance = workloads.bind(trial)
    graphdef = state.initializer(trial, instance, trial.program)[0]
    return step.period_fn(graphdef, instance.task, trial.program, stacked)


def test_float_only_study_runs_end_to_end_with_one_compilation(tmp_path):
    c = float_only_study(num_trials=4, **{"model.width": 27})
    record = sweep.run_study(c, tmp_path, command="cmd", config_path="x.py", log=lambda s: None)
    trials = driver.plan(spec.resolve(c)).trials
    assert len({t.group_key for t in trials}) == 1  # float hyperparameters only: one program
    assert _period_fn(trials[0])._cache_size() == 1  # the 4 trials compiled it once
    assert [t["status"] for t in record["trials"]] == ["completed"] * 4
    assert record["num_trials"] == 4 and record["executor"] == "sequential"
    assert record["best_value"] == min(t["best_value"] for t in record["trials"])
    assert record["trials"][record["best_trial"]]["best_value"] == record["best_value"]
    assert record["versions"]["jax"] and record["device_kind"].startswith("cpu")
    assert record["command"] == "cmd" and record["config"]["model"]["width"] == 27
    assert "git_commit" in record and "git_dirty" in record
    for t in record["trials"]:
        ckpt = pathlib.Path(t["checkpoint_dir"])
        assert (ckpt / str(t["best_step"])).is_dir()
        assert set(t["params"]) == {
            "optimizer.learning_rate",
            "optimizer.b1",
            "train.label_smoothing",
            "model.dropout",
        }
    from jaxplay.store import Store, default_url

    store = Store(default_url(tmp_path))
    curves = store.curves(store.study_id(), 0)
    store.close()
    assert [s for s, _ in curves["val/error"]] == [0, 50, 100]
    assert {
        "train/loss",
        "train/error",
        "val/loss",
        "train/grad_norm",
        "train/learning_rate",
    } <= set(curves)


def test_rerun_continues_the_study_and_runs_only_the_rest(tmp_path):
    c = float_only_study(num_trials=4)
    first = sweep.run_study(c, tmp_path, log=lambda s: None, max_trials_this_run=2)
    assert [t["status"] for t in first["trials"]] == ["completed"] * 2 + ["pending"] * 2
    lines = []
    second = sweep.run_study(c, tmp_path, log=lines.append)
    assert any("(2 already finished)" in line for line in lines)
    assert sum(line.startswith("trial ") and "left in this run" in line for line in lines) == 2
    assert [t["status"] for t in second["trials"]] == ["completed"] * 4
    for before, after in zip(first["trials"][:2], second["trials"][:2]):
        assert before["finished_at"] == after["finished_at"]  # not re-run
    # More trials later: the first four are the same points, only the new ones run.
    c.study.num_trials = 5
    lines.clear()
    third = sweep.run_study(c, tmp_path, log=lines.append)
    assert [t["params"] for t in third["trials"][:4]] == [t["params"] for t in second["trials"]]
    assert sum("left in this run" in line for line in lines) == 1


def test_ctrl_c_mid_trial_keeps_the_store_and_resumes(tmp_path):
    c = float_only_study(num_trials=2)
    c.train.steps = 150
    c.train.checkpoint_every_secs = 0.0  # a hard interrupt resumes from the last write

    def interrupt_in_trial_1(line):
        if line.strip().startswith("step 100/") and seen["trial"] == 1:
            raise KeyboardInterrupt
        if line.startswith("trial 1 ("):
            seen["trial"] = 1

    seen = {"trial": 0}
    with pytest.raises(KeyboardInterrupt):
        sweep.run_study(c, tmp_path, log=interrupt_in_trial_1)
    from jaxplay.store import Store, default_url

    store = Store(default_url(tmp_path))
    record = store.record(store.study_id())
    store.close()
    assert [t["status"] for t in record["trials"]] == ["completed", "pending"]
    lines = []
    final = sweep.run_study(c, tmp_path, log=lines.append)
    assert any("resuming from step" in line for line in lines)
    assert [t["status"] for t in final["trials"]] == ["completed", "completed"]
    assert final["trials"][0]["finished_at"] == record["trials"][0]["finished_at"]


def test_first_ctrl_c_checkpoints_the_current_period_then_stops(tmp_path):
    c = float_only_study(num_trials=2)
    c.train.steps = 200

    def ctrl_c_at_step_100(line):
        if line.strip().startswith("step 100/"):
            os.kill(os.getpid(), signal.SIGINT)  # what a terminal sends; handled, not raised

    lines = []
    before = signal.getsignal(signal.SIGINT)  # pytest-xdist workers ignore SIGINT
    with pytest.raises(KeyboardInterrupt):
        sweep.run_study(
            c, tmp_path, log=lambda line: (lines.append(line), ctrl_c_at_step_100(line))
        )
    assert any("Ctrl-C: stopping after this evaluation period" in line for line in lines)
    assert not any("step 150/" in line for line in lines)
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    assert (driver.trial_dir(tmp_path, c.study.name, 0) / "checkpoints" / "100").is_dir()
    lines.clear()
    record = sweep.run_study(c, tmp_path, log=lines.append)
    assert "  resuming from step 100" in lines
    assert [t["status"] for t in record["trials"]] == ["completed", "completed"]


def test_diverging_trial_is_infeasible_and_the_study_goes_on(tmp_path):
    c = tiny_config(
        **{"optimizer.name": "sgd", "study.algorithm": "grid", "study.num_trials": None}
    )
    for key in ("b1", "b2", "eps"):
        del c.optimizer[key]
    c.search = dict(optimizer=dict(learning_rate=spaces.discrete([0.01, 1e5])))
    record = sweep.run_study(c, tmp_path, log=lambda s: None)
    by_lr = {t["params"]["optimizer.learning_rate"]: t for t in record["trials"]}
    assert by_lr[0.01]["status"] == "completed"
    assert by_lr[1e5]["status"] == "infeasible" and "diverged" in by_lr[1e5]["error"]
    assert record["best_trial"] == by_lr[0.01]["index"]


def test_bad_declaration_fails_before_anything_runs(tmp_path):
    c = float_only_study()
    c.search.optimizer.learning_rate.min = 0.0
    with pytest.raises(ConfigError, match="search.optimizer.learning_rate: log scale") as e:
        sweep.run_study(c, tmp_path, log=lambda s: None)
    assert "use a positive min" in str(e.value)
    assert not (tmp_path / "jaxplay.db").exists()


def test_a_trial_config_that_cannot_train_fails_before_anything_runs(tmp_path):
    c = float_only_study()
    c.search.schedule = dict(warmup_steps=spaces.int_linear(0, 500))  # beyond train.steps=100
    with pytest.raises(ConfigError, match="schedule.warmup_steps: must be in") as e:
        sweep.run_study(c, tmp_path, log=lambda s: None)
    assert "train.steps=100" in str(e.value)
    assert not (tmp_path / "jaxplay.db").exists()


@pytest.mark.parametrize(
    "path,value,message,fix",
    [
        ("train.eval_every", 7, "train.eval_every: must divide train.steps=100", "use 5 or 10"),
        ("model.name", "vit", "model.name: unknown model 'vit'", "'mlp'"),
        ("model.activation", "rleu", "model.activation: unknown 'rleu'", "'relu'"),
        ("model.dropout", 1.0, "model.dropout: a rate in [0, 1)", "got 1.0"),
        ("data.name", "cifar", "data.name: unknown dataset 'cifar'", "'mnist1d'"),
        ("data.batch_size", 100000, "data.batch_size: 100000 exceeds", "training examples"),
        ("optimizer.name", "sgd", "optimizer.b1: 'sgd' has no hyperparameter", "'momentum'"),
        ("study.objective", "val/accuracy", "study.objective: unknown metric", "'val/error'"),
    ],
)
def test_bad_base_config_fails_before_anything_runs(tmp_path, path, value, message, fix):
    c = float_only_study(**{path: value})
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        sweep.run_study(c, tmp_path, log=lambda s: None)
    assert fix in str(e.value)
    assert not (tmp_path / "jaxplay.db").exists()


def test_changed_config_in_the_same_workdir_is_refused(tmp_path):
    c = float_only_study(num_trials=1)
    sweep.run_study(c, tmp_path, log=lambda s: None)
    c.optimizer.b2 = 0.99
    with pytest.raises(StoreError, match=r"different config \(optimizer\.b2: 0\.999 -> 0\.99\)"):
        sweep.run_study(c, tmp_path, log=lambda s: None)


def test_study_in_postgresql(tmp_path):
    from conftest import fresh_postgres_url

    url = fresh_postgres_url()
    c = float_only_study(num_trials=2)
    record = sweep.run_study(c, tmp_path, store_url=url, log=lambda s: None, max_trials_this_run=1)
    assert [t["status"] for t in record["trials"]] == ["completed", "pending"]
    lines = []
    record = sweep.run_study(c, tmp_path, store_url=url, log=lines.append)
    assert [t["status"] for t in record["trials"]] == ["completed", "completed"]
    assert not (tmp_path / "jaxplay.db").exists()  # everything went to PostgreSQL
    password = sa.engine.make_url(url).password
    shown = (
        "\n".join(lines)
        + json.dumps(record, default=str)
        + (tmp_path / f"report-{c.study.name}.html").read_text()
    )
    assert password and f":{password}@" not in shown and ":***@" in "\n".join(lines)


def test_recorded_command_hides_the_store_password():
    args = [
        "--config=x.py",
        "--store=postgresql+psycopg://me:s3cret@db.example/studies",
        "--store",
        "postgresql://me:s3cret@h/db",
        "--workdir=w",
    ]
    shown = " ".join(cli.redacted_args(args))
    assert (
        "s3cret" not in shown and "--store=postgresql+psycopg://me:***@db.example/studies" in shown
    )
    assert cli.redacted_args(["--store=sqlite:////tmp/a.db"]) == ["--store=sqlite:////tmp/a.db"]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "experiments").glob("*.py")))
def test_experiment_files_validate(name):
    c = config_lib.load(str(REPO / "experiments" / name))
    assert c.study.name
    if c.data.name == "tfds" and importlib.util.find_spec("tensorflow_datasets") is None:
        # The study, its search space and designer are checked before the workload loads its data:
        # only the dataset is missing here, and the error says how to get it. The same model and
        # search run on generated images in :smoke.
        with pytest.raises(ConfigError, match="tensorflow-datasets is not installed"):
            spec.resolve(c)
        c = config_lib.load(str(REPO / "experiments" / name) + ":smoke")
    study_plan = driver.plan(spec.resolve(c))
    assert len(study_plan.params) == len(study_plan.trials) == c.study.num_trials
    assert study_plan.spec.space.by_role("scientific")  # each experiment states its question
    assert config_lib.load(str(REPO / "experiments" / name) + ":smoke").train.steps <= 200


def _cli(*args, cwd):
    env = dict(os.environ, JAXPLAY_COMPILATION_CACHE=str(cwd / "xla"))
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def test_cli_runs_a_study_and_shows_it_as_json(tmp_path):
    workdir = tmp_path / "w"
    run = _cli(
        "jaxplay.sweep",
        f"--config={REPO}/experiments/mnist1d_mlp.py:smoke",
        f"--workdir={workdir}",
        "--config.study.num_trials=2",
        "--config.train.steps=100",
        "--config.train.eval_every=50",
        "--config.schedule.warmup_steps=10",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "trial 0 (2 left in this run)" in run.stdout and "step 100/100" in run.stdout
    assert "reproduce  cd " in run.stdout
    assert "playbook diagnostics:" in run.stdout  # the sweep ends with the findings and the report
    report = workdir / "report-mnist1d-mlp-smoke.html"
    assert f"report: {report}" in run.stdout and "mnist1d-mlp-smoke" in report.read_text()
    show = _cli("jaxplay.studies", "show", f"--workdir={workdir}", "--json", cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    record = json.loads(show.stdout)
    assert record["name"] == "mnist1d-mlp-smoke" and record["num_trials"] == 2
    assert record["best_value"] == min(t["best_value"] for t in record["trials"])
    for t in record["trials"]:
        assert {"index", "status", "params", "best_value", "best_step"} <= set(t)
        assert t["status"] == "completed" and t["best_step"] in (50, 100)
    assert "--config.train.steps=100" in record["command"]
    text = _cli("jaxplay.studies", "show", f"--workdir={workdir}", cwd=tmp_path)
    assert "mnist1d-mlp-smoke" in text.stdout and "val/error" in text.stdout


@pytest.mark.parametrize(
    "override,message",
    [
        ("--config.optimizer.learnig_rate=0.1", "learnig_rate"),
        ("--config.search.optimizer.learning_rate.min=0", "log scale needs min > 0"),
        ("--config=experiments/nope.py", "nope.py"),
    ],
)
def test_cli_bad_input_exits_2_with_the_field_named(tmp_path, override, message):
    run = _cli(
        "jaxplay.sweep",
        f"--config={REPO}/experiments/mnist1d_mlp.py:smoke",
        f"--workdir={tmp_path}/w",
        override,
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "w" / "jaxplay.db").exists()


def test_cli_names_an_override_the_study_file_does_not_define(tmp_path):
    run = _cli(
        "jaxplay.sweep",
        f"--config={REPO}/experiments/mnist1d_mlp.py:smoke",
        f"--workdir={tmp_path}",
        "--config.model.dpeth=3",
        cwd=tmp_path,
    )
    assert run.returncode == 2
    assert "--config.model.dpeth: no such field (model has: " in run.stderr
    assert "did you mean 'depth'?" in run.stderr and "Traceback" not in run.stderr


def test_sigterm_checkpoints_the_current_period_and_exits_with_how_to_resume(tmp_path):
    # A preempted machine gets SIGTERM: the trial saves the period it is in and the rerun resumes
    # there.
    args = [
        "jaxplay.sweep",
        f"--config={REPO}/experiments/mnist1d_mlp.py:smoke",
        f"--workdir={tmp_path}",
        "--config.study.num_trials=1",
        "--config.train.steps=1000",
        "--config.train.eval_every=50",
        "--report=false",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1", JAXPLAY_COMPILATION_CACHE=str(tmp_path / "xla"))
    worker = subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    lines = []
    for line in worker.stdout:
        lines.append(line)
        if line.split()[:2] == ["step", "100/1000"]:
            worker.send_signal(signal.SIGTERM)
            break
    lines.extend(worker.stdout)
    worker.wait(timeout=120)
    output = "".join(lines)
    assert worker.returncode == 130, output[-3000:]
    assert "SIGTERM: stopping after this evaluation period" in output
    assert "run the same command again to continue" in output
    stopped = max(
        int(line.split()[1].split("/")[0]) for line in lines if line.split()[:1] == ["step"]
    )
    assert stopped < 1000
    rerun = _cli(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resuming from step {stopped}" in rerun.stdout


def test_a_bucket_workdir_keeps_its_url_and_asks_for_a_store(tmp_path):
    # pathlib would turn gs://bucket/w into a local folder ./gs:/bucket/w and write there silently.
    assert str(driver.trial_dir("gs://bucket/w", "s", 3)) == "gs://bucket/w/s/trial_0003"
    with pytest.raises(ConfigError, match=r"--workdir gs://bucket/w: .*pass --store postgresql://"):
        sweep.run_study(tiny_config(), "gs://bucket/w", report=False)
    assert not (pathlib.Path.cwd() / "gs:").exists()


def test_the_record_keeps_the_git_state_of_the_study_files_own_repository(tmp_path, capsys):
    repo = tmp_path / "my-research"
    repo.mkdir()
    c = float_only_study(num_trials=1, **{"train.steps": 100})
    study_file = write_study_file(repo / "study.py", c)
    git = ["git", "-C", str(repo), "-c", "user.email=r@example.org", "-c", "user.name=r"]
    for command in (["init", "-q"], ["add", "study.py"], ["commit", "-q", "-m", "study"]):
        subprocess.run([*git, *command], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    argv = ["--config", str(study_file), "--workdir", str(tmp_path / "w"), "--report=false"]
    assert sweep.main(argv) == 0
    store = Store(f"sqlite:///{tmp_path}/w/jaxplay.db", readonly=True)
    record = store.record(store.study_id())
    store.close()
    assert record["study_git_commit"] == head.strip() and record["study_git_dirty"] is False
    assert f"study file git {head.strip()}" in capsys.readouterr().out
    with open(study_file, "a") as f:
        f.write("# an uncommitted note\n")
    assert sweep.main(argv) == 0
    store = Store(f"sqlite:///{tmp_path}/w/jaxplay.db", readonly=True)
    assert store.record(store.study_id())["study_git_dirty"] is True
    store.close()
