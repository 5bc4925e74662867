"""Rounds as decisions (`python -m jaxplay.studies launch`): a round's goal and launch decision in
the store, the incumbent it makes, the evidence a launch needs, and where they are shown; and the
verdict weighing each side's own trial variance."""

import pytest

from jaxplay import analysis, studies
from jaxplay import store as store_lib
from jaxplay.analysis import html_report, variance
from jaxplay.dashboard import pages
from jaxplay.errors import ConfigError
from jaxplay.tuning import rounds
from test_dashboard import write_study


def _launch(url, *args):
    return studies.main(["launch", f"--store={url}", *args])


def test_launch_records_the_goal_and_makes_the_best_the_incumbent(store_url, capsys):
    write_study(store_url, "r1", [0.3, 0.2, "failed"])
    assert _launch(store_url, "--study=r1", "--goal=tune the learning rate") == 0
    out = capsys.readouterr().out
    assert "launched trial 1 of r1: it is now the incumbent" in out and "no incumbent yet" in out
    store = store_lib.Store(store_url)
    incumbent = store.incumbent()
    (probe,) = store.probes("r1", store_lib.DECISION)
    store.close()
    assert incumbent["study"] == "r1" and incumbent["trial"] == 1 and incumbent["launched"]
    assert incumbent["goal"] == "tune the learning rate"
    assert (
        probe["result"]["value"] == pytest.approx(0.2)
        and "jaxplay.studies launch" in (probe["command"])
    )
    # A goal is required; a rejection needs a reason; a trial without a value cannot be launched.
    assert _launch(store_url, "--study=r1") == 2
    assert "required: --goal" in capsys.readouterr().err
    for args, field in (
        (("--goal= ",), "--goal"),
        (("--goal=x", "--reject"), "--why"),
        (("--goal=x", "--trial=2"), "--trial 2"),
    ):
        with pytest.raises(ConfigError, match=field):
            rounds.decide(
                store_url, "r1", args[0].split("=", 1)[1],
                reject="--reject" in args, trial=2 if "--trial=2" in args else None,
            )  # fmt: skip


def test_a_rejection_is_recorded_and_leaves_the_incumbent(store_url, capsys):
    write_study(store_url, "r1", [0.2])
    write_study(store_url, "r2", [0.25], parent="r1", action="refine")
    assert _launch(store_url, "--study=r1", "--goal=baseline") == 0
    assert (
        _launch(store_url, "--study=r2", "--goal=narrow b1", "--reject", "--why=worse than r1") == 0
    )
    assert "rejected trial 0 of r2 (not launched)" in capsys.readouterr().out
    store = store_lib.Store(store_url)
    assert store.incumbent()["study"] == "r1"
    decisions = store.decisions()
    store.close()
    assert [(d["study"], d["launched"], d["why"]) for d in decisions] == [
        ("r2", False, "worse than r1"),
        ("r1", True, ""),
    ]


def test_a_launch_without_strong_evidence_is_refused_unless_forced(store_url, capsys):
    write_study(store_url, "r1", [0.30])
    write_study(store_url, "r2", [0.20], parent="r1", action="refine")
    write_study(store_url, "r3", [0.25], parent="r1", action="refine")
    assert _launch(store_url, "--study=r1", "--goal=baseline") == 0
    # Better, but no trial variance measured: refused, the verdict saying what to run.
    with pytest.raises(ConfigError, match="the trial variance is not measured") as e:
        rounds.decide(store_url, "r2", "narrow lr")
    assert "--lineage rerun" in str(e.value)
    # A rerun of r1's best: std 0.0082, the 0.1 difference is beyond it; the launch goes through.
    write_study(store_url, "r1-rerun", [0.30, 0.31, 0.29, 0.30], parent="r1", action="rerun")
    assert _launch(store_url, "--study=r2", "--goal=narrow lr") == 0
    out = capsys.readouterr().out
    assert "against the incumbent: trial 0 of r1" in out and "unlikely to be noise" in out
    # Worse than the incumbent (r2 now): refused, then forced and recorded as forced.
    with pytest.raises(ConfigError, match="not better than the incumbent"):
        rounds.decide(store_url, "r3", "try warmup")
    assert _launch(store_url, "--study=r3", "--goal=try warmup", "--force") == 0
    store = store_lib.Store(store_url)
    assert store.incumbent()["study"] == "r3" and store.incumbent()["forced"]
    store.close()


def test_a_difference_within_the_trial_noise_is_refused(store_url):
    write_study(store_url, "r1", [0.30])
    write_study(store_url, "r1-rerun", [0.30, 0.35, 0.25, 0.30], parent="r1", action="rerun")
    write_study(store_url, "r2", [0.29], parent="r1", action="refine")
    rounds.decide(store_url, "r1", "baseline")
    with pytest.raises(ConfigError, match="within the trial noise"):
        rounds.decide(store_url, "r2", "narrow lr")


def test_list_report_and_dashboard_show_the_decision_and_the_incumbent(store_url, capsys):
    write_study(store_url, "r1", [0.3])
    write_study(store_url, "r2", [0.2], parent="r1", action="refine")
    rounds.decide(store_url, "r1", "baseline <b>")
    rounds.decide(store_url, "r2", "narrow lr", reject=True, why="no rerun yet")
    assert studies.main(["list", f"--store={store_url}"]) == 0
    out = capsys.readouterr().out
    assert "r1 *" in out and "r2 *" not in out and "* incumbent: trial 0 of r1" in out
    held = html_report._summary(analysis.load(store=store_url, study="r1"))
    assert "launched trial 0" in held and "holds the incumbent" in held
    assert "baseline &lt;b&gt;" in held  # user text is escaped
    other = html_report._summary(analysis.load(store=store_url, study="r2"))
    assert "rejected trial 0" in other and "why: no rerun yet" in other
    assert "the incumbent is trial 0 of r1" in other
    store = store_lib.Store(store_url)
    overview = store.overview()
    store.close()
    assert [s["incumbent"] for s in overview] == [True, False]
    home = pages.home_fragment(overview)
    assert home.count('class="incumbent"') == 1


def test_verdict_weighs_each_sides_own_trial_variance():
    from test_variance import _record

    a, b = _record("a", [0.20]), _record("b", [0.26])
    rerun_a = _record("a-rerun", [0.20, 0.21, 0.19, 0.20], parent="a", action="rerun")  # 0.0082
    rerun_b = _record("b-rerun", [0.26, 0.29, 0.23, 0.26], parent="b", action="rerun")  # 0.0245
    both = variance.retrain_noise([a, b, rerun_a, rerun_b], "a", "b")
    assert both.own and both.threshold == pytest.approx(
        2 * (0.0081650**2 + 0.0244949**2) ** 0.5, rel=1e-4
    )
    lines = variance.verdict(a, b, [a, b, rerun_a, rerun_b])
    assert "trial variance of each side: a std 0.008165" in lines[1] and "b std 0.02449" in lines[1]
    assert "2 x sqrt(std_a^2 + std_b^2) = 0.05164" in lines[1] and "exceeds" in lines[1]
    # Pooled from a's rerun alone the same 0.06 would look beyond a much smaller threshold; with
    # b's own larger variance it still exceeds 0.0516 but a 0.05 difference would not.
    b5 = _record("b", [0.25])
    assert variance.within_noise(a, b5, [a, b5, rerun_a, rerun_b]) == ["trial"]
    assert variance.within_noise(a, b5, [a, b5, rerun_a]) == []
    # Only one side measured: its estimate stands for both, with a note naming the other.
    pooled = variance.verdict(a, b, [a, b, rerun_a])
    assert "b's own not measured, assumed the same" in pooled[1] and "2.83 x std" in pooled[1]
    # A study against its own rerun: one measurement, no note.
    same = variance.verdict(a, rerun_a, [a, rerun_a])
    assert "not measured" not in same[1] and "(a-rerun)" in same[1]
