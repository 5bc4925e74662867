"""`python -m jaxplay.studies` list/show/report/compare/export and their Python API."""

import csv
import io
import json

import pytest

from factories import constructed_study, float_only_study
from jaxplay import analysis, spaces, studies, sweep

SEARCH = {
    "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)},
    "model": {"width": spaces.discrete([16, 32])},
}


def _study(name="round-1", notes="", search=SEARCH):
    curve = lambda end: {"val/error": [(0, 0.9), (500, end + 0.1), (1000, end)]}  # noqa: E731
    return constructed_study(
        search,
        [
            {"params": {"optimizer.learning_rate": 1e-3, "model.width": 16}, "curves": curve(0.30)},
            {
                "params": {"optimizer.learning_rate": 1e-1, "model.width": 32},
                "status": "infeasible",
                "error": "train/loss is nan at step 120",
            },
            {"params": {"optimizer.learning_rate": 3e-3, "model.width": 32}, "curves": curve(0.20)},
            {"params": {"optimizer.learning_rate": 1e-4, "model.width": 16}, "status": "pending"},
        ],
        name=name,
        notes=notes,
    )


def test_export_csv_has_one_row_per_trial_best_first_with_params_and_errors():
    rows = list(csv.DictReader(io.StringIO(analysis.export(_study(), "csv"))))
    assert [r["trial"] for r in rows] == [
        "2",
        "0",
        "1",
        "3",
    ]  # completed by objective, infeasible, pending
    assert [r["status"] for r in rows] == ["completed", "completed", "infeasible", "pending"]
    assert (
        float(rows[0]["best val/error"]) == pytest.approx(0.20) and rows[0]["best_step"] == "1000"
    )
    assert rows[0]["optimizer.learning_rate"] == "0.003" and rows[0]["model.width"] == "32"
    assert rows[2]["error"] == "train/loss is nan at step 120"


def test_export_json_carries_the_tracking_fields_and_the_rows():
    data = json.loads(analysis.export(_study(notes="lr sweep"), "json"))
    assert (
        data["name"] == "round-1"
        and data["notes"] == "lr sweep"
        and data["objective"] == "val/error"
    )
    assert [t["trial"] for t in data["trials"]] == [2, 0, 1, 3]
    with pytest.raises(ValueError, match="format: unknown 'xml'"):
        analysis.export(_study(), "xml")


def test_compare_puts_two_rounds_side_by_side():
    narrowed = {
        "optimizer": {"learning_rate": spaces.log(1e-3, 1e-2)},
        "model": {"width": spaces.discrete([16, 32])},
    }
    text = analysis.compare(_study("round-1"), _study("round-2", search=narrowed), findings=False)
    lines = text.splitlines()
    assert lines[0].split() == ["study", "round-1", "round-2"]
    learning_rate = next(
        line for line in lines if line.startswith("search optimizer.learning_rate")
    )
    assert "[0.0001, 0.1]" in learning_rate and "[0.001, 0.01]" in learning_rate
    best = next(line for line in lines if line.startswith("best "))
    assert best.count("0.2 (trial 2)") == 2
    assert "trial variance unknown: rerun the best trial with several seeds" in text


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    """Two small real studies in one store: round 1 and a round 2 with a narrower learning rate."""
    workdir = tmp_path_factory.mktemp("studies")
    first = float_only_study(num_trials=3)
    first.study.name = "round-1"
    sweep.run_study(first, workdir, log=lambda s: None, report=False)
    second = float_only_study(num_trials=2)
    second.study.name = "round-2"
    second.search.optimizer.learning_rate = spaces.log(2e-3, 5e-3)
    sweep.run_study(second, workdir, log=lambda s: None, report=False)
    return workdir


def test_cli_list_show_export_compare_report(two_studies, capsys, tmp_path):
    def cli(*args):
        code = studies.main([args[0], f"--workdir={two_studies}", *args[1:]])
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    header, *lines = cli("list").splitlines()
    assert header.split()[:5] == ["study", "trials", "finished", "running", "pending"]
    assert [line.split()[:5] for line in lines] == [
        ["round-1", "3", "3", "0", "0"],
        ["round-2", "2", "2", "0", "0"],
    ]
    assert "round-2" in cli("show", "--study=round-2")
    rows = list(csv.DictReader(io.StringIO(cli("export", "--study=round-1"))))
    assert len(rows) == 3 and all(r["status"] == "completed" for r in rows)
    written = tmp_path / "trials.json"
    assert cli("export", "--study=round-2", "--format=json", f"--output={written}").strip() == str(
        written
    )
    assert len(json.loads(written.read_text())["trials"]) == 2
    text = cli("compare", "--study=round-1", "--other=round-2")
    assert "diagnostics of round-1" in text and "diagnostics of round-2" in text
    report = tmp_path / "r.html"
    assert cli("report", "--study=round-2", f"--output={report}").strip() == str(report)
    html = report.read_text()
    assert "round-2" in html and "data:image/png;base64," in html


def test_cli_errors_name_the_problem(two_studies, tmp_path, capsys):
    assert studies.main(["show", f"--workdir={two_studies}"]) == 2
    assert "holds 2 studies" in capsys.readouterr().err
    assert studies.main(["report", f"--workdir={tmp_path}/nothing"]) == 2
    assert "no study store" in capsys.readouterr().err
    assert (
        studies.main(["compare", f"--workdir={two_studies}", "--study=round-1", "--other=round-9"])
        == 2
    )
    assert "no study named 'round-9'" in capsys.readouterr().err


def test_list_show_and_export_answer_without_starting_jax(two_studies):
    """`studies list|show|export` read the store only: no jax import on their path (it costs
    seconds; scripts/bench_studies.py times them)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from jaxplay import studies\n"
        "for argv in (['list'], ['show', '--study=round-1'], ['export', '--study=round-1']):\n"
        f"    assert studies.main([*argv, '--workdir={two_studies}']) == 0\n"
        "print('jax' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
