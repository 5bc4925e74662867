"""The notebooks in colab/ run top to bottom in a real Jupyter kernel (nbclient), parameters
overridden."""

import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

REPO = pathlib.Path(__file__).resolve().parent.parent


def _run(path: pathlib.Path, workdir: pathlib.Path, cwd: pathlib.Path):
    """Runs the notebook with Jupyter's working directory `cwd`."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if "parameters" in cell.metadata.get("tags", []):
            cell.source = f"STUDY = 'experiments/mnist1d_mlp.py:smoke'\nWORKDIR = {str(workdir)!r}"
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return notebook


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


@pytest.mark.parametrize("cwd", ["colab", "."], ids=["from colab/ (as Jupyter opens it)", "root"])
def test_quickstart_notebook_runs_and_shows_plots_diagnostics_and_the_restored_checkpoint(
    tmp_path, cwd
):
    notebook = _run(REPO / "colab" / "quickstart.ipynb", tmp_path / "run", REPO / cwd)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    plots = next(c for c in code if "analysis.figures" in c.source)
    images = [o for o in plots.outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert (
        len(images) >= 4
    )  # axis plots of the 3 searched hyperparameters, isolation, curves, best-of-k
    run = _text(next(c for c in code if "sweep.run_study" in c.source))
    assert "playbook diagnostics" not in run  # the findings are printed once, below
    findings = _text(next(c for c in code if "analysis.diagnose" in c.source))
    assert findings.count("playbook diagnostics") == 1
    assert "no problems found" in findings or "[warning]" in findings or "[info]" in findings
    summary = dict(re.findall(r"^(config|reproduce) +(.*)$", findings, re.M))
    assert summary["config"].endswith("experiments/mnist1d_mlp.py")
    assert summary["reproduce"].startswith("python -m jaxplay.sweep --config ")
    report = pathlib.Path(_text(next(c for c in code if "analysis.report" in c.source)).strip())
    assert report.is_file() and report.read_text().startswith("<!DOCTYPE html>")
    restored = re.search(r"restored \S+ ([\d.]+), recorded ([\d.]+)", _text(code[-1]))
    assert restored and float(restored[1]) == pytest.approx(float(restored[2]), abs=1e-5)
    assert re.search(r"^test set, trial \d+ at step \d+: \{'test/error'", _text(code[-1]), re.M)
