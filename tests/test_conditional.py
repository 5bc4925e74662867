"""Conditional search spaces (spaces.branches, playbook items 27 and 97): a section chosen among
branches, each with hyperparameters of its own, honoured by every designer, the trial configs, the
programs trials group into, the diagnostics, the lineage actions and the report."""

import math
import pathlib
import re

import pytest

from factories import tiny_config
from jaxplay import analysis, designers, spaces, spec, sweep
from jaxplay import config as config_lib
from jaxplay.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parent.parent


def study(**branches_kw):
    """A tiny Adam-or-Nesterov study (the base config's optimizer is Adam)."""
    c = tiny_config()
    c.study.num_trials = 6
    c.search = dict(
        optimizer=spaces.branches(
            **(
                branches_kw
                or dict(
                    adam=dict(learning_rate=spaces.log(1e-4, 1e-2), b1=spaces.linear(0.8, 0.95)),
                    sgd=dict(
                        learning_rate=spaces.log(1e-2, 1.0),
                        momentum=spaces.reverse_log(0.8, 0.99),
                        nesterov=True,
                    ),
                )
            )
        )
    )
    return c


ADAM = {"optimizer[adam].b1", "optimizer[adam].learning_rate"}
SGD = {"optimizer[sgd].learning_rate", "optimizer[sgd].momentum", "optimizer[sgd].nesterov"}


def branch_of(params):
    keys = set(params) - {"optimizer"}
    assert keys in (ADAM, SGD), params  # exactly its own branch's values, nothing of the other
    return params["optimizer"]


def test_branches_parse_into_a_switch_and_namespaced_hyperparameters():
    space = spec.resolve(study()).space
    assert space.paths == (
        "optimizer",
        "optimizer[adam].b1",
        "optimizer[adam].learning_rate",
        "optimizer[sgd].learning_rate",
        "optimizer[sgd].momentum",
    )
    switch = space.params[0]
    assert (switch.space, switch.values, switch.role) == ("categorical", ("adam", "sgd"),
                                                          "scientific")  # fmt: skip
    by_path = {p.path: p for p in space}
    sgd_lr, adam_lr = (
        by_path["optimizer[sgd].learning_rate"],
        by_path["optimizer[adam].learning_rate"],
    )
    # Same name, different hyperparameters: each its own range, its own branch, one config path.
    assert (sgd_lr.min, adam_lr.max) == (1e-2, 1e-2)
    assert sgd_lr.when == ("optimizer", "sgd") and adam_lr.when == ("optimizer", "adam")
    assert sgd_lr.config_path == adam_lr.config_path == "optimizer.learning_rate"
    assert space.fixed == (("optimizer", "sgd", "optimizer[sgd].nesterov", True),)


def test_unit_cube_maps_only_the_chosen_branch():
    space = spec.resolve(study()).space
    for u in ([0.1, 0.2, 0.3, 0.4, 0.5], [0.9, 0.2, 0.3, 0.4, 0.5]):
        params = space.from_unit(u)
        branch = branch_of(params)
        assert branch == ("adam" if u[0] < 0.5 else "sgd")
        back = space.to_unit(params)
        # The chosen branch's coordinates come back; the other branch's sit at the middle.
        for p, y in zip(space, back):
            if p.when is None or p.when[1] == branch:
                assert p.from_unit(y) == params[p.path]
            else:
                assert y == 0.5


@pytest.mark.parametrize("algorithm", ["quasirandom", "random"])
def test_non_adaptive_designers_sample_each_branch_with_its_own_values(algorithm):
    c = study()
    c.study.algorithm = algorithm
    s = spec.resolve(c)
    trials = s.designer().suggest(0, 40)
    branches = [branch_of(t) for t in trials]
    assert set(branches) == {"adam", "sgd"}
    for t in trials:
        s.trial(t)  # each resolves to a valid training config
        if t["optimizer"] == "sgd":
            assert 1e-2 <= t["optimizer[sgd].learning_rate"] <= 1.0
            assert t["optimizer[sgd].nesterov"] is True
        else:
            assert 1e-4 <= t["optimizer[adam].learning_rate"] <= 1e-2


def test_grid_enumerates_each_branch_once():
    c = study(
        adam=dict(learning_rate=spaces.discrete([1e-3, 1e-2])),
        sgd=dict(
            learning_rate=spaces.discrete([0.1, 0.3, 1.0]), momentum=spaces.discrete([0.9, 0.99])
        ),
    )
    c.study.algorithm, c.study.num_trials = "grid", None
    designer = spec.resolve(c).designer()
    points = designer.suggest(0, designer.max_trials)
    # 2 Adam points + 3 x 2 SGD points, never one point twice, never the other branch's values.
    assert designer.max_trials == 8 and len(points) == 8
    assert len({tuple(sorted(p.items())) for p in points}) == 8
    assert sum(p["optimizer"] == "adam" for p in points) == 2
    for p in points:
        own = {f"optimizer[{p['optimizer']}].{k}" for k in ("learning_rate", "momentum")}
        assert set(p) - {"optimizer"} <= own


@pytest.mark.parametrize("algorithm", ["gp", "tpe"])
def test_adaptive_designers_learn_from_both_branches(algorithm):
    """The GP sees one well-defined point per trial (the other branch's coordinates at the
    middle); TPE models each branch on its own trials (define-by-run)."""
    c = study()
    c.study.algorithm = algorithm
    s = spec.resolve(c)
    space = s.space
    starts = designers.make("quasirandom", space, 0).suggest(0, 12)
    # SGD trials do well at high learning rates, Adam trials badly everywhere.
    history = [
        {"params": p, "status": "completed",
         "value": 0.3 - 0.1 * math.log10(p["optimizer[sgd].learning_rate"])
         if p["optimizer"] == "sgd" else 0.9}
        for p in starts
    ]  # fmt: skip
    suggested = s.designer().suggest(12, 4, history)
    for t in suggested:
        branch_of(t)
        s.trial(t)
    assert sum(t["optimizer"] == "sgd" for t in suggested) >= 3


def test_a_trial_of_another_branch_starts_its_section_afresh():
    base = config_lib.to_tree(study())
    sgd = config_lib.apply(base, {"optimizer": "sgd", "optimizer[sgd].momentum": 0.95,
                                  "optimizer[sgd].nesterov": True})  # fmt: skip
    # Adam's b1, b2, eps are gone (SGD has none), SGD's values are set.
    assert sgd["optimizer"] == {"name": "sgd", "momentum": 0.95, "nesterov": True}
    adam = config_lib.apply(base, {"optimizer": "adam", "optimizer[adam].b1": 0.85})
    # The base config's own branch keeps its values.
    assert adam["optimizer"] == {**base["optimizer"], "b1": 0.85}
    with pytest.raises(ConfigError, match=r"optimizer\[sgd\].momentum: a value of branch 'sgd'"):
        config_lib.apply(base, {"optimizer": "adam", "optimizer[sgd].momentum": 0.9})


def test_each_branch_is_its_own_program():
    s = spec.resolve(study())
    adam, sgd = (s.trial(space_point) for space_point in (
        {"optimizer": "adam", "optimizer[adam].b1": 0.9, "optimizer[adam].learning_rate": 1e-3},
        {"optimizer": "sgd", "optimizer[sgd].learning_rate": 0.1, "optimizer[sgd].momentum": 0.9,
         "optimizer[sgd].nesterov": True},
    ))  # fmt: skip
    assert adam.group_key != sgd.group_key
    other_adam = s.trial(
        {"optimizer": "adam", "optimizer[adam].b1": 0.85, "optimizer[adam].learning_rate": 3e-3}
    )
    assert other_adam.group_key == adam.group_key  # traced values: one program serves both


@pytest.mark.parametrize(
    "branches_kw, message",
    [
        (dict(adam=dict(learning_rate=spaces.log(1e-4, 1e-2))),
         r"search.optimizer: spaces.branches needs two or more branches"),
        (dict(adam=dict(b1=spaces.linear(0.8, 0.9)), sgd=dict(b1=spaces.linear(0.8, 0.9))),
         r"search.optimizer branch 'sgd': optimizer.b1: 'sgd' has no hyperparameter 'b1'"),
        (dict(adam=dict(), rmsprops=dict()),
         r"search.optimizer branch 'rmsprops': optimizer.name: unknown optimizer 'rmsprops'"),
        (dict(adam=dict(name="sgd"), sgd=dict()), r"search.optimizer\[adam\].name: the branch's "),
        (dict(adam=dict(learning_rate=spaces.branches(a=dict(), b=dict())), sgd=dict()),
         r"branches inside a branch are not supported"),
    ],
)  # fmt: skip
def test_bad_branches_get_one_line_naming_the_branch(branches_kw, message):
    with pytest.raises(ConfigError, match=message) as e:
        spec.resolve(study(**branches_kw))
    assert "\n" not in str(e.value)


def test_the_fixed_hyperparameters_leave_out_the_chosen_section():
    s = spec.resolve(study())
    fixed = config_lib.fixed_hyperparameters(config_lib.to_tree(study()), s.space)
    assert not [p for p in fixed if p.startswith("optimizer.")]
    assert fixed["model.width"] == 32


def test_adam_or_nesterov_runs_through_the_sweep_the_gp_exploit_and_the_report(tmp_path):
    """The acceptance experiment (experiments/mnist1d_optimizers.py at smoke size)."""
    config = str(REPO / "experiments/mnist1d_optimizers.py:smoke")
    workdir = str(tmp_path / "run")
    common = ["--config", config, "--workdir", workdir, "--tensorboard=false"]
    assert sweep.main(common) == 0
    round1 = analysis.load(workdir, study="mnist1d-optimizers-smoke")
    assert {t.params["optimizer"] for t in round1.trials} == {"adam", "sgd"}
    for t in round1.trials:
        branch_of(t.params)
    assert sweep.main([*common, "--from_study", "mnist1d-optimizers-smoke", "--lineage",
                       "exploit", "--config.study.num_trials=2"]) == 0  # fmt: skip
    exploit = analysis.load(workdir, study="mnist1d-optimizers-smoke-exploit")
    assert exploit.parent["action"] == "exploit" and len(exploit.finished) == 2
    for t in exploit.trials:
        branch_of(t.params)
    page = (pathlib.Path(workdir) / "report-mnist1d-optimizers-smoke.html").read_text()
    captions = re.findall(r"<figcaption><strong>([^<]+)</strong>: ([^<]+?) \(", page)
    shown = {caption for _, caption in captions}
    # An axis plot per branch hyperparameter, and the isolation plot of the optimizer.
    assert {"optimizer[adam].learning_rate", "optimizer[sgd].learning_rate",
            "optimizer[sgd].momentum", "optimizer"} <= shown, shown  # fmt: skip
    # The learning rate is searched (per branch): no warning says otherwise.
    assert "The learning rate is not searched" not in page


def test_refine_widens_and_narrows_each_branch_on_its_own_best_trials():
    """SGD's best trials sit at the top of SGD's learning-rate range: that branch's range widens,
    in its own declaration; Adam's is judged on Adam's trials alone."""
    import json

    import ml_collections

    from factories import constructed_study
    from jaxplay.tuning import derivation, lineage

    config = study()
    tree = json.loads(config_lib.to_json(config))

    def trial(params, value):
        return {"params": params, "curves": {"val/error": [(0, 0.9), (50, value + 0.1),
                                                           (100, value)]}}  # fmt: skip

    trials = [
        trial({"optimizer": "sgd", "optimizer[sgd].learning_rate": lr,
               "optimizer[sgd].momentum": m, "optimizer[sgd].nesterov": True}, value)
        for lr, m, value in ((0.95, 0.9, 0.20), (0.9, 0.95, 0.21), (0.85, 0.85, 0.22),
                             (0.02, 0.9, 0.5), (0.05, 0.97, 0.45))
    ] + [
        trial({"optimizer": "adam", "optimizer[adam].learning_rate": lr,
               "optimizer[adam].b1": b1}, value)
        for lr, b1, value in ((3e-3, 0.85, 0.30), (4e-3, 0.9, 0.31), (2.5e-3, 0.82, 0.32),
                              (1.1e-4, 0.9, 0.6), (9e-3, 0.94, 0.5))
    ]  # fmt: skip
    fixed = {k: v for k, v in tree.items() if k not in ("search", "study", "train")}
    parent = constructed_study(tree["search"], trials, steps=100, name="parent", fixed=fixed)
    parent.record["config"]["train"] = tree["train"]
    parent.record["config"]["study"] = {**tree["study"], "num_trials": len(trials)}
    how = lineage.REGISTRY["refine"]
    options = how.resolve_options({}, lambda key: f"study.parent.{key}")
    child = derivation.derive(config, how, options, parent, parent_name="parent")
    spec.resolve(child)
    child = ml_collections.ConfigDict(child)
    changes = "\n".join(child.study.parent.changes)
    sgd = child.search.optimizer.choices.sgd.learning_rate
    adam = child.search.optimizer.choices.adam.learning_rate
    assert sgd["min"] == pytest.approx(1e-2) and sgd["max"] > 1.0
    assert "optimizer[sgd].learning_rate: [0.01, 1] -> [0.01," in changes
    # Adam's best three (2.5e-3 to 4e-3) narrow Adam's range around them, inside the old one.
    assert 1e-4 < adam["min"] < 2.5e-3 and 4e-3 < adam["max"] < 1e-2
