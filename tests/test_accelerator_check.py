"""scripts/accelerator_check.py --small, at its tiniest, on this machine: one table with a row per
step, a step out of time and a missing forecast script as rows saying so (never a crash), and the
benchmarks' JSON figures readable."""

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
STEPS = ("device", "mlp", "cnn", "forecast", "resnet")


def test_accelerator_check_small(tmp_path):
    out = tmp_path / "out"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "accelerator_check.py"),
            "--out",
            str(out),
            # --cnn_s 1: forced out of time (a study's process takes longer)
            *"--small --trials 2 --steps 20 --cnn_s 1 --resnet_periods 3 --resnet_every 2".split(),
            *"--forecast_script scripts/no_such_forecast.py".split(),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = (out / "table.md").read_text()
    assert table in run.stdout  # printed at the end as well
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in table.splitlines()[2:]]
    assert all(len(row) == 4 for row in rows), table
    by_step = {step: [row for row in rows if row[0] == step] for step in STEPS}
    assert all(by_step.values()), table
    status = {step: by_step[step][0][2] for step in STEPS}
    assert status["cnn"].startswith("TIMED OUT after 1 s (log cnn.log)"), table
    assert status["forecast"] == "not run (scripts/no_such_forecast.py missing)", table
    for step in ("device", "mlp", "resnet"):
        assert status[step].startswith("ok in "), (step, table, run.stdout[-3000:])

    # the figures behind the rows
    mlp = json.loads((out / "mlp.json").read_text())
    assert mlp["running"] is None and mlp["backend"] == "cpu"
    assert {(r["trials"], r["variant"]) for r in mlp["runs"]} == {(2, "batched"), (2, "sequential")}
    assert all(r["seconds"] > 0 for r in mlp["runs"]) and mlp["speedup"]["2"] > 0
    [ratio] = [row[2] for row in by_step["mlp"] if row[1].startswith("2 trials")]
    assert ratio.endswith(f"= {mlp['speedup']['2']:.2f}x"), table
    assert "does not apply on cpu" in table
    resnet = json.loads((out / "resnet.json").read_text())
    assert [(r["family"], r["dtype"]) for r in resnet["rows"]] == [
        ("resnet18-cifar", "float32"),
        ("resnet18-cifar", "bfloat16"),
    ]
    assert all(r["examples_per_s"] > 0 and r["status"] == "completed" for r in resnet["rows"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"]["cnn"]["status"] == "timeout"
    assert summary["steps"]["forecast"]["status"] == "not run"
    assert {row["step"] for row in summary["rows"]} == set(STEPS)
    for step in STEPS:
        assert (out / f"{step}.log").exists()
