"""The notebooks in colab/ run top to bottom (code cells executed in order, parameters overridden)."""
import json
import pathlib

import matplotlib
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((REPO / "colab").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.chdir(REPO)
    notebook = json.loads(path.read_text())
    namespace = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)
        if "parameters" in cell["metadata"].get("tags", []):
            namespace["WORKDIR"] = str(tmp_path / "run")
            namespace["STUDY"] = "experiments/mnist1d_mlp.py:smoke"
    assert namespace["restored"]["val/error"] == pytest.approx(namespace["winner"]["best_value"], abs=1e-6)
