"""Sensitivity analysis (jaxplay.analysis.importance): which hyperparameters matter, which
interact, which could be fixed, on synthetic studies whose answer is known."""

import ml_collections
import numpy as np
from scipy import stats

from jaxplay import spaces
from jaxplay.analysis import html_report, importance
from jaxplay.analysis import record as record_lib
from jaxplay.designers.quasirandom import QuasiRandomDesigner
from tests.factories import constructed_study

SEARCH = {
    "s": {
        "x1": spaces.linear(0.0, 1.0),
        "x2": spaces.log(1e-4, 1e-1),  # the objective depends on its log: binned on that scale
        "x3": spaces.linear(-1.0, 1.0),
    }
}
NOISE = 0.05


def _study(objective, num_trials: int, seed: int = 0, statuses=None):
    """A constructed study: quasi-random trials of SEARCH whose val/error is objective(u) at the
    unit-cube point u of each trial, plus N(0, NOISE^2)."""
    space = spaces.parse(ml_collections.ConfigDict({"search": SEARCH}).search)
    rng = np.random.default_rng(seed)
    trials = []
    for i, params in enumerate(QuasiRandomDesigner(space, seed).suggest(0, num_trials)):
        u = np.array(space.to_unit(params))
        value = float(objective(u) + NOISE * rng.standard_normal())
        status = statuses[i] if statuses else "completed"
        trials.append({"params": params, "status": status,
                       "curves": {"val/error": [(100, value)]}})  # fmt: skip
    return constructed_study(SEARCH, trials)


def strong_x1_and_x1_x2(u):
    # x1's main effect (variance 1/12) plus an x1 x x2 interaction with no main effect of x2
    # (variance 9/144); x3 is not used.
    return u[0] + 3.0 * (u[0] - 0.5) * (u[1] - 0.5)


def test_ranks_x1_first_finds_its_interaction_with_x2_and_calls_x3_insensitive():
    found = importance.analyze(_study(strong_x1_and_x1_x2, 128).record)
    assert found.reason is None and found.trials == 128
    assert [e.paths[0] for e in found.mains][0] == "s.x1"
    assert found.verdict("s.x1") == "matters; interacts with s.x2"
    assert found.verdict("s.x2") == "interacts with s.x1"
    assert found.verdict("s.x3") == "insensitive: could be fixed"
    strongest = found.pairs[0]
    assert strongest.paths == ("s.x1", "s.x2") and strongest.significant
    assert not any(e.significant for e in found.pairs[1:])
    # Shares are of the variance, beyond chance: x1's is the largest, x3's near nothing.
    share = {e.paths[0]: e.share for e in found.mains}
    assert share["s.x1"] > strongest.share > share["s.x3"]


def test_pure_noise_finds_nothing_significant_at_the_stated_rate():
    studies = 200
    alarms = sum(
        any(e.significant for e in (*found.mains, *found.pairs))
        for found in (
            importance.analyze(_study(lambda u: 0.0, 24, seed=seed).record)
            for seed in range(studies)
        )
    )
    # A test that holds its family-wise rate ALPHA gives a Binomial(studies, ALPHA) count of
    # studies with any finding: within its 0.1% and 99.9% quantiles (neither blind nor loose).
    low, high = stats.binom.ppf([0.001, 0.999], studies, importance.ALPHA)
    assert low <= alarms <= high, alarms


def test_too_few_feasible_trials_say_why_and_show_stays_quiet():
    need = importance.MIN_TRIALS
    statuses = ["completed"] * (need - 1) + ["infeasible"] * 3  # infeasible trials do not count
    study = _study(strong_x1_and_x1_x2, need + 2, statuses=statuses)
    found = importance.analyze(study.record)
    assert found.reason.startswith(f"needs at least {need} feasible trials (has {need - 1})")
    assert importance.lines(found) == []
    assert "sensitivity" not in record_lib.format_record(study.record)
    page = html_report.render_html(study, findings=[])
    assert f"<p>No sensitivity analysis: it needs at least {need} feasible trials" in page


def test_the_report_and_show_list_each_hyperparameter_with_its_share_and_verdict():
    study = _study(strong_x1_and_x1_x2, 128)
    page = html_report.render_html(study, findings=[])
    section = page[page.index('<section id="sensitivity">') :].split("</section>")[0]
    rows = section.split("<tbody>")[1].split("</tbody>")[0].split("</tr>")[:-1]
    assert [r.split("<code>")[1].split("</code>")[0] for r in rows][0] == "s.x1"
    x3 = next(r for r in rows if "<code>s.x3</code>" in r)
    assert "insensitive: could be fixed" in x3 and "<td>nuisance</td>" in x3
    assert "interact: re-tune them together" in section  # the x1 x x2 pair
    assert f"{importance.PERMUTATIONS} shuffles" in section

    shown = record_lib.format_record(study.record).splitlines()
    start = next(i for i, line in enumerate(shown) if line.startswith("sensitivity ("))
    assert shown[start + 1].split()[0] == "s.x1" and shown[start + 1].endswith(
        "interacts with s.x2"
    )
    assert any(line.strip().startswith("interaction s.x1 x s.x2:") for line in shown[start:])


def test_a_category_that_matters_is_found_and_a_constant_one_is_set_aside():
    search = {"m": {"act": spaces.categorical(["relu", "gelu", "tanh"]),
                    "size": spaces.discrete([64]), "lr": spaces.log(1e-4, 1e-1)}}  # fmt: skip
    rng = np.random.default_rng(1)
    penalty = {"relu": 0.0, "gelu": 0.05, "tanh": 0.3}
    trials = []
    for i in range(36):
        act = ("relu", "gelu", "tanh")[i % 3]
        lr = float(10 ** rng.uniform(-4, -1))
        value = 0.2 + penalty[act] + NOISE * rng.standard_normal()
        trials.append({"params": {"m.act": act, "m.size": 64, "m.lr": lr},
                       "curves": {"val/error": [(100, value)]}})  # fmt: skip
    found = importance.analyze(constructed_study(search, trials).record)
    assert found.verdict("m.act") == "matters"
    assert found.verdict("m.lr") == "insensitive: could be fixed"
    assert found.constant == ("m.size",)


def test_an_insensitive_scientific_hyperparameter_is_an_answer_not_a_value_to_fix():
    search = {
        "s": {"x1": spaces.linear(0.0, 1.0), "x3": spaces.linear(0.0, 1.0, role="scientific")}
    }
    rng = np.random.default_rng(2)
    trials = [
        {"params": {"s.x1": float(a), "s.x3": float(b)},
         "curves": {"val/error": [(100, float(a + NOISE * rng.standard_normal()))]}}
        for a, b in rng.random((40, 2))
    ]  # fmt: skip
    found = importance.analyze(constructed_study(search, trials).record)
    assert found.verdict("s.x3") == "insensitive: no effect found in this range"
    assert found.verdict("s.x1") == "matters"


def test_a_large_share_without_significance_is_unclear_not_insensitive():
    from jaxplay.analysis.importance import Effect, Sensitivity

    def main(path, share, chance, p):
        return Effect(paths=(path,), share=share, observed=share + chance, chance=chance, p=p)

    found = Sensitivity(
        trials=12,
        bins=2,
        mains=(main("lr", 0.32, 0.1, 0.06), main("b1", 0.05, 0.1, 0.7), main("w", 0.3, 0.1, 0.01)),
        roles={"lr": "nuisance", "b1": "nuisance", "w": "scientific"},
    )
    # Twelve trials cannot tell lr's 32% from chance: nothing to fix on that evidence.
    assert found.verdict("lr").startswith("unclear: 32% of the variance but p 0.06")
    # No more than shuffled objectives explain: it may be fixed.
    assert found.verdict("b1") == "insensitive: could be fixed"
    assert found.verdict("w") == "matters"
