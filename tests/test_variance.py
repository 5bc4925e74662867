"""Tests for jaxplay.analysis.variance: trial and study noise, and the verdict on a difference."""

import pytest

from jaxplay.analysis import variance


def _record(name, values, *, parent=None, action=None, mode="min", objective="val/error"):
    trials = [
        {
            "index": i,
            "status": "completed" if v is not None else "infeasible",
            "best_value": v,
            "params": {},
        }
        for i, v in enumerate(values)
    ]
    finite = [v for v in values if v is not None]
    best = (min if mode == "min" else max)(finite) if finite else None
    config = {"study": {"parent": {"study": parent, "action": action}}} if parent else {}
    return {
        "name": name,
        "mode": mode,
        "objective": objective,
        "best_value": best,
        "trials": trials,
        "config": config,
    }


def test_trial_noise_is_the_spread_of_a_rerun_of_either_study():
    rerun = _record("a-rerun", [0.20, 0.22, 0.21, 0.23, None], parent="a", action="rerun")
    noise = variance.trial_noise([_record("a", [0.2, 0.5]), rerun], {"a", "b"})
    assert noise.kind == "trial" and noise.n == 4 and noise.sources == ("a-rerun",)
    assert noise.std == pytest.approx(0.012910, rel=1e-3) and noise.mean == pytest.approx(0.215)
    assert (
        variance.trial_noise([rerun], {"b"}) is None
    )  # a rerun of an unrelated study says nothing


def test_study_noise_groups_a_study_with_its_reseeds():
    records = [
        _record("a", [0.30, 0.25]),
        _record("a-seed1", [0.28, 0.40], parent="a", action="reseed"),
        _record("a-seed2", [0.27], parent="a", action="reseed"),
        _record("other", [0.1]),
    ]
    for name in ("a", "a-seed1"):
        noise = variance.study_noise(records, name)
        assert noise.n == 3 and set(noise.sources) == {"a", "a-seed1", "a-seed2"}
        # One value per study, its best (0.25, 0.28, 0.27): not its other trials (0.30, 0.40).
        assert 0.25 <= noise.mean <= 0.28 and noise.std > 0
    assert variance.study_noise(records, "other") is None
    # Search seeds that agree on the best value make a smaller study variance, none when equal.
    closer = [
        _record("a", [0.30, 0.25]),
        _record("a-seed1", [0.26, 0.40], parent="a", action="reseed"),
        _record("a-seed2", [0.25], parent="a", action="reseed"),
    ]
    assert variance.study_noise(closer, "a").std < noise.std
    same = [
        _record("a", [0.30, 0.25]),
        _record("a-seed1", [0.25, 0.40], parent="a", action="reseed"),
        _record("a-seed2", [0.25], parent="a", action="reseed"),
    ]
    agreed = variance.study_noise(same, "a")
    assert agreed.std == 0 and agreed.mean == pytest.approx(0.25)


def test_verdict_says_whether_a_difference_exceeds_each_noise():
    a, b = _record("a", [0.20]), _record("b", [0.30])
    rerun = _record("a-rerun", [0.20, 0.21, 0.19, 0.20], parent="a", action="rerun")  # std 0.0082
    seeds = [_record("a-seed1", [0.26], parent="a", action="reseed")]  # study std 0.042
    lines = variance.verdict(a, b, [a, b, rerun, *seeds])
    assert lines[0] == "a is better by 0.1 in best val/error."
    assert (
        "trial variance" in lines[1]
        and "the difference exceeds" in lines[1]
        and "unlikely to be noise" in lines[1]
    )
    assert (
        "study variance" in lines[2]
        and "the difference is within" in lines[2]
        and "may be noise" in lines[2]
    )
    assert "(few samples: a rough estimate)" in lines[2]
    unknown = variance.verdict(a, b, [a, b])
    assert (
        "--from_study a --lineage rerun" in unknown[1]
        and "--from_study a --lineage reseed" in unknown[2]
    )
    assert variance.verdict(a, _record("c", [0.3], objective="val/loss"), [a]) == []


def test_a_difference_of_two_results_is_weighed_at_two_sqrt_two_sigma():
    # 2 * sqrt(2) = 2.83 std: with a trial std of 0.01, a difference of 0.025 may be noise and one
    # of 0.03 is unlikely to be.
    a = _record("a", [0.20])
    rerun = _record("a-rerun", [0.19, 0.20, 0.21], parent="a", action="rerun")  # std 0.01
    for diff, where in ((0.025, "within"), (0.03, "beyond")):
        b = _record("b", [0.20 + diff])
        assert f"{where} trial noise" in variance.difference_text(a, b, [a, b, rerun])


def test_difference_text_weighs_a_related_study_against_the_known_noise():
    a, b = _record("a", [0.20]), _record("b", [0.30])
    rerun = _record("a-rerun", [0.20, 0.21, 0.19, 0.20], parent="a", action="rerun")
    assert variance.difference_text(a, b, [a, b, rerun]) == "0.1 worse: beyond trial noise (0.023)"
    assert variance.difference_text(b, a, [a, b, rerun]).startswith("0.1 better: ")
    assert variance.difference_text(a, b, [a, b]).endswith(
        "noise not measured (--lineage rerun, reseed)"
    )
