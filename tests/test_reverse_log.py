"""spaces.reverse_log: uniform in log(1 - value), so 0.9, 0.99 and 0.999 are equally likely; every
designer, the unit cube, the grid, the axis plots, the diagnostics and refine honour it."""

import math

import ml_collections
import numpy as np
import pytest

from factories import constructed_study, float_only_study
from jaxplay import analysis, designers, spaces, spec, sweep
from jaxplay.analysis.diagnostics import common
from jaxplay.errors import ConfigError
from jaxplay.tuning import actions


def _space(**decl):
    return spaces.parse(ml_collections.ConfigDict({"optimizer": {"b1": decl or
                        spaces.reverse_log(0.9, 0.999)}}))  # fmt: skip


def test_equal_mass_per_decade_of_one_minus_the_value():
    [p] = list(_space())
    assert [p.from_unit(u) for u in (0.0, 0.5)] == pytest.approx([0.9, 0.99])
    assert p.from_unit(0.999999) == pytest.approx(0.999, abs=1e-8)
    for value in (0.9, 0.95, 0.99, 0.999):
        assert p.from_unit(p.to_unit(value)) == pytest.approx(value, rel=1e-12)
    assert p.grid(3) == pytest.approx([0.9, 0.99, 0.999])
    # Quasi-random points put half of them in [0.9, 0.99) and half in [0.99, 0.999]: Halton's
    # discrepancy in one dimension is below (1 + log2 n) / n.
    n = 1024
    points = [t["optimizer.b1"] for t in designers.make("quasirandom", _space(), 0).suggest(0, n)]
    low = sum(v < 0.99 for v in points) / n
    assert abs(low - 0.5) <= (1 + math.log2(n)) / n
    assert min(points) >= 0.9 and max(points) <= 0.999


@pytest.mark.parametrize(
    "decl, message",
    [
        (spaces.reverse_log(0.9, 1.0), "reverse_log scale needs max < 1 (got 1.0)"),
        ({"space": "int", "scale": "reverse_log", "min": 1, "max": 3},
         "unknown scale 'reverse_log' for an int space; use 'linear' or 'log'"),
    ],
)  # fmt: skip
def test_bad_reverse_log_declarations_are_named(decl, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spaces.parse(ml_collections.ConfigDict({"optimizer": {"b1": decl}}))


def test_diagnostics_refine_and_plots_use_the_scale():
    [p] = list(_space())
    assert common.position(p, 0.99) == pytest.approx(0.5)
    assert common.value_at(p, 0.5) == pytest.approx(0.99)
    lo, hi = actions._widened(p, "upper")
    assert lo == 0.9 and 0.999 < hi < 1  # widened toward 1 on the log(1 - value) axis
    assert 1 - hi == pytest.approx(0.001 / (100**actions.WIDEN))
    search = {"optimizer": {"b1": spaces.reverse_log(0.9, 0.999)}}
    # Spread over the scale, better toward 1: the best two in its last 10% on this scale.
    trials = [
        {"params": {"optimizer.b1": p.from_unit(u)},
         "curves": {"val/error": [(100, 0.6), (500, 0.55 - 0.3 * u), (1000, 0.5 - 0.3 * u)]}}
        for u in (0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.92, 0.98)
    ]  # fmt: skip
    study = constructed_study(search, trials)
    axes = next(fig for name, _, fig in analysis.figures(study) if name.startswith("Axis"))
    ax = axes.axes[0]
    assert ax.get_xscale() == "function"
    x0, x1 = ax.get_xlim()
    assert x0 < 0.9 and 0.999 < x1 < 1  # the range's ends, padded, on the scale
    # The best trial sits at the upper edge on this scale: the playbook widens there.
    titles = [f.title for f in analysis.diagnose(study)]
    assert any("optimizer.b1" in t and "upper" in t for t in titles), titles


def test_a_study_searching_a_reverse_log_space_runs(tmp_path):
    c = float_only_study(num_trials=3, **{"train.steps": 100})
    c.search = dict(optimizer=dict(b1=spaces.reverse_log(0.8, 0.99, role="nuisance")))
    record = sweep.run_study(c, tmp_path, log=lambda s: None, report=False)
    values = [t["params"]["optimizer.b1"] for t in record["trials"]]
    assert all(0.8 <= v <= 0.99 for v in values) and record["status_counts"]["completed"] == 3
    assert spec.resolve(c).space.paths == ("optimizer.b1",)


def test_tpe_samples_the_reverse_log_axis():
    pytest.importorskip("optuna", reason="optuna is in the test extra: pip install -e '.[test]'")
    space = _space()
    designer = designers.make("tpe", space, 0, mode="min")
    history = [
        {"params": {"optimizer.b1": v}, "status": "completed", "value": abs(math.log(1 - v) + 5)}
        for v in (0.9, 0.95, 0.99, 0.995, 0.999)
    ]
    points = [t["optimizer.b1"] for t in designer.suggest(5, 20, history)]
    assert all(0.9 <= v <= 0.999 for v in points)
    # Drawn on the log(1 - value) axis: about half below 0.99 (on a linear axis 91% would be).
    # The sampler is seeded, so this is one fixed draw, not a chance.
    assert np.mean([v < 0.99 for v in points]) < 0.75
