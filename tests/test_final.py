"""The end of the tuning loop: `studies evaluate` scores the chosen trial on the test set once and
records it; `studies export --format study` writes a trial as a study file that reproduces it."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest

from factories import float_only_study, write_study_file
from jaxplay import analysis, spec, studies, sweep, train, workloads
from jaxplay.analysis import html_report
from jaxplay.errors import ConfigError
from jaxplay.store import Store
from jaxplay.tuning import final


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 3-trial study, trained one trial at a time."""
    folder = tmp_path_factory.mktemp("final")
    c = float_only_study(num_trials=3, **{"train.steps": 100})
    c.study.name = "final-test"
    workdir = folder / "w"
    argv = ["--config", write_study_file(folder / "study.py", c), "--workdir", str(workdir),
            "--executor", "sequential", "--report=false"]  # fmt: skip
    assert sweep.main(argv) == 0
    return folder, workdir, c


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = studies.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_scores_the_best_trial_once_and_records_it(finished, capsys):
    folder, workdir, c = finished
    data = analysis.load(workdir)
    best = data.record["best_trial"]
    best_step = next(t.best_step for t in data.trials if t.index == best)
    trial = spec.resolve(c).trial(next(t.params for t in data.trials if t.index == best))
    expected = train.evaluate_checkpoint(trial, workdir / c.study.name / f"trial_{best:04d}",
                                         split="test")  # fmt: skip

    code, out, _ = _run(capsys, "evaluate", "--workdir", str(workdir))
    assert code == 0
    assert out.startswith(f"test set, trial {best} at step {best_step}: test/error ")
    assert "scored once" in out
    recorded = analysis.load(workdir).record["final_evaluation"]
    assert recorded["trial"] == best and recorded["step"] == best_step
    assert recorded["metrics"] == pytest.approx(expected, rel=1e-6)
    assert recorded["when"].endswith("+00:00")

    code, out, _ = _run(capsys, "show", "--workdir", str(workdir))
    assert code == 0 and f"final      test set, trial {best}" in out
    code, out, _ = _run(capsys, "show", "--workdir", str(workdir), "--json")
    assert json.loads(out)["final_evaluation"]["metrics"] == recorded["metrics"]
    page = html_report.render_html(analysis.load(workdir))
    assert "<th>Final</th>" in page and f"test set, trial {best}" in page

    # Once: a second look at the test set is refused, unless asked for (and then marked).
    code, _, err = _run(capsys, "evaluate", "--workdir", str(workdir))
    assert code == 2 and "scored on the test set already" in err and "--again" in err
    code, out, _ = _run(capsys, "evaluate", "--workdir", str(workdir), "--again", "--trial", "0")
    assert code == 0 and out.startswith("test set, trial 0") and "scored again" in out
    store = Store(f"sqlite:///{workdir}/jaxplay.db", readonly=True)
    kinds = [p["kind"] for p in store.probes(c.study.name)]
    store.close()
    assert kinds.count("final_evaluation") == 2
    # Another split is no test-set look.
    code, out, _ = _run(capsys, "evaluate", "--workdir", str(workdir), "--split", "val")
    assert code == 0 and out.startswith("val set, trial")
    assert analysis.load(workdir).record["final_evaluation"]["split"] == "test"  # test first


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--trial", "99"], "--trial 99: study 'final-test' has trials 0..2"),
        (["--split", "nope"], "--split nope: this study's dataset has test, train, val"),
    ],
)
def test_evaluate_refuses_a_bad_trial_or_split(finished, capsys, argv, message):
    _, workdir, _ = finished
    code, _, err = _run(capsys, "evaluate", "--workdir", str(workdir), *argv)
    assert code == 2 and message in err, err


def test_the_exported_trial_reproduces_its_value_exactly(finished, capsys, tmp_path):
    _, workdir, _ = finished
    data = analysis.load(workdir)
    best = data.record["best_trial"]
    original = next(t for t in data.trials if t.index == best)
    code, _, err = _run(capsys, "export", "--workdir", str(workdir), "--format", "study")
    assert code == 2 and "--output" in err
    path = tmp_path / "best.py"
    code, out, _ = _run(
        capsys, "export", "--workdir", str(workdir), "--format", "study", "--output", str(path)
    )
    assert code == 0 and out.strip() == str(path)
    text = path.read_text()
    assert f"Trial {best} of study 'final-test'" in text and "'search': {}" in text
    again = tmp_path / "again"
    assert sweep.main(["--config", str(path), "--workdir", str(again), "--report=false"]) == 0
    capsys.readouterr()
    [trial] = analysis.load(again).trials
    assert trial.params == {}  # nothing searched: the values are fixed in the file
    assert (trial.best_value, trial.best_step) == (original.best_value, original.best_step)


def test_a_study_with_its_own_workload_takes_the_code_from_its_file():
    data = types.SimpleNamespace(
        name="own", record={"config": {"workload": "my_workloads:sine", "seed": 0}}
    )
    with pytest.raises(
        ConfigError, match="ran its own workload 'my_workloads:sine': pass --config"
    ):
        final._config_tree(data, None)
    with pytest.raises(ConfigError, match="its workload is 'other:fn' but the study ran"):
        final._config_tree(data, {"workload": "other:fn"})
    tree = final._config_tree(data, {"workload": "my_workloads:sine"})
    assert tree["workload"] == "my_workloads:sine"


def test_the_exported_model_runs_with_jax_alone_and_scores_the_best_checkpoint(
    finished, capsys, tmp_path
):
    folder, workdir, c = finished
    data = analysis.load(workdir)
    best = next(t for t in data.trials if t.index == data.record["best_trial"])
    path = tmp_path / "best.jaxexport"
    code, out, _ = _run(capsys, "export", "--workdir", str(workdir), "--format", "model",
                        "--output", str(path))  # fmt: skip
    assert code == 0 and out.startswith(f"{path}\n") and "jax.export.deserialize" in out
    # The validation split the study was scored on, for a process that cannot import jaxplay.
    trial = spec.resolve(c).trial(best.params)
    x, y = workloads.bind(trial).dataset.splits["val"]
    np.savez(tmp_path / "val.npz", x=x, y=y)
    script = (
        "import sys; sys.modules['jaxplay'] = None\n"  # any import of jaxplay fails
        "import jax, numpy as np\n"
        f"exported = jax.export.deserialize(open({str(path)!r}, 'rb').read())\n"
        f"val = np.load({str(tmp_path / 'val.npz')!r})\n"
        "whole = np.asarray(exported.call(val['x']))\n"
        "part = np.asarray(exported.call(val['x'][:7]))\n"  # any batch size
        "assert np.allclose(part, whole[:7], atol=1e-5), 'batch size changes the outputs'\n"
        "print(np.mean(whole.argmax(-1) != val['y']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # Its error on the validation split is the one recorded at the best checkpoint's step.
    assert float(done.stdout) == pytest.approx(best.best_value, abs=0.5 / len(y))


def test_export_model_needs_an_output(finished, capsys):
    _, workdir, _ = finished
    code, _, err = _run(capsys, "export", "--workdir", str(workdir), "--format", "model")
    assert code == 2 and "--output: name the model file to write" in err
