"""Changing study.num_trials on a started study: the counts stay right, trials past a lowered
count that never started leave the study, and lowering past trials that ran is refused before
anything is recorded; a study so shrunk is a parent lineage accepts."""

from factories import float_only_study, write_study_file
from jaxplay import analysis, sweep


def _argv(study_file, workdir, trials, *extra):
    return ["--config", str(study_file), "--workdir", str(workdir), "--report=false",
            f"--config.study.num_trials={trials}", *extra]  # fmt: skip


def test_lowering_and_raising_num_trials_on_a_started_study(tmp_path, capsys):
    c = float_only_study(num_trials=6, **{"train.steps": 100})
    c.study.name = "shrink"
    study_file = write_study_file(tmp_path / "study.py", c)
    workdir = tmp_path / "w"
    first = _argv(study_file, workdir, 6, "--max_trials", "3")
    assert sweep.main(first) == 0
    capsys.readouterr()
    before = analysis.load(workdir).record

    # Below the trials that ran: refused, and nothing recorded (not even the command).
    assert sweep.main(_argv(study_file, workdir, 2)) == 2
    err = capsys.readouterr().err
    assert "study.num_trials: 2 would leave out trial(s) [2]" in err
    assert "use study.num_trials >= 3" in err
    after = analysis.load(workdir).record
    assert (after["num_trials"], after["command"]) == (before["num_trials"], before["command"])
    assert len(after["trials"]) == 6

    # Above them: the trials past the new count that never started leave the study.
    assert sweep.main(_argv(study_file, workdir, 4)) == 0
    out = capsys.readouterr().out
    assert "'shrink': 4 trials (3 already finished)" in out
    assert (
        "trial 3 (1 left in this run)" in out
        and "left in this run" not in out.split("trial 3 (1 left in this run)")[1]
    )
    record = analysis.load(workdir).record
    assert sorted(t["index"] for t in record["trials"]) == [0, 1, 2, 3]
    assert record["status_counts"]["completed"] == 4 and record["status_counts"]["pending"] == 0
    assert "num_trials=4" in record["command"]

    # A parent lineage accepts: every trial of the study has finished.
    derived = sweep.run_study(
        c, workdir, from_study="shrink", lineage_action="promote",
        lineage_options={"top_k": 1, "steps_factor": 1.0}, log=lambda s: None, report=False,
    )  # fmt: skip
    assert derived["status_counts"]["completed"] == 1

    # Raising it again runs only the new trials.
    assert sweep.main(_argv(study_file, workdir, 5)) == 0
    out = capsys.readouterr().out
    assert "5 trials (4 already finished)" in out and "trial 4 (1 left in this run)" in out
