"""Batch-size guards (playbook items 5, 15, 89, 102): a batch size searched for a validation
objective is flagged, every tuning result is tagged with its batch size, and `studies compare`,
the lineage view and derived studies say when tuning done at one batch size is stale at another."""

import json

import ml_collections
import pytest

from factories import constructed_study, tiny_config
from jaxplay import analysis, spaces, spec
from jaxplay import config as config_lib
from jaxplay.analysis import html_report, variance
from jaxplay.analysis.diagnostics import CHECKS, diagnose
from jaxplay.analysis.diagnostics.batch_size import batch_sensitive, check_batch_size
from jaxplay.analysis.record import batch_size_of, config_path
from jaxplay.tuning import derivation, lineage

LR = "optimizer.learning_rate"
BS = "data.batch_size"
FIXED = {
    "data": {"batch_size": 64},
    "model": {"dropout": 0.0},
    "optimizer": {"name": "adam", "learning_rate": 1e-3, "b1": 0.9, "weight_decay": 0.0},
    "train": {"steps": 1000, "eval_every": 100, "label_smoothing": 0.1},
}


def _curve(value):
    return {"val/error": [(0, 0.9), (500, value + 0.1), (1000, value)]}


def _study(search, params, *, objective="val/error", name="bs", fixed=FIXED, parent=None):
    """A finished study of one trial per entry of `params` (the first the best), built by hand."""
    trials = [{"params": p, "curves": _curve(0.2 + 0.01 * i)} for i, p in enumerate(params)]
    if objective != "val/error":
        trials = [{**t, "curves": {objective: t["curves"]["val/error"]}} for t in trials]
    study = constructed_study(
        search, trials, objective=objective, name=name, fixed=json.loads(json.dumps(fixed))
    )
    if parent:
        study.record["config"]["study"] = {"parent": parent}
    return study


def _batch_finding(study):
    found = [f for f in diagnose(study) if f.check == "batch_size"]
    assert len(found) <= 1
    return found[0] if found else None


def _sizes(role, lr_role="nuisance"):
    """A search of the batch size (with `role`) and the learning rate (with `lr_role`, or fixed
    when None), and six trials over it."""
    search = {"data": {"batch_size": spaces.discrete([32, 64, 128], role=role)}}
    params = [{BS: [32, 64, 128][i % 3]} for i in range(6)]
    if lr_role:
        search["optimizer"] = {"learning_rate": spaces.log(1e-4, 1e-1, role=lr_role)}
        params = [{**p, LR: 1e-3 * (i + 1)} for i, p in enumerate(params)]
    return search, params


# ---------------------------------------------------------------------------------------------
# The diagnostic: data.batch_size searched for a validation objective.


def test_the_check_is_registered_under_a_short_name():
    assert "batch_size" in CHECKS


def test_a_nuisance_batch_size_tuned_for_validation_error_is_a_warning():
    finding = _batch_finding(_study(*_sizes("nuisance")))
    assert (finding.severity, finding.param) == ("warning", BS)
    assert "shouldn't be used to directly tune the validation set performance" in finding.detail
    assert "typically goes away if the training pipeline is optimized independently" in (
        finding.detail
    )
    # The fix: the probe's batch size, and a scientific batch size with a nuisance learning rate.
    assert "python -m jaxplay.batch_size --config experiments/constructed.py" in finding.action
    assert "make data.batch_size scientific and search optimizer.learning_rate" in finding.action


def test_a_scientific_batch_size_at_one_fixed_learning_rate_is_a_warning():
    finding = _batch_finding(_study(*_sizes("scientific", lr_role=None)))
    assert finding.severity == "warning" and finding.title.endswith("at one learning rate")
    assert "optimizer.learning_rate is fixed at 0.001" in finding.detail
    assert "each batch size is compared at its own best values" in finding.action
    # A scientific learning rate is a question, not a tuning of it for each batch size.
    finding = _batch_finding(_study(*_sizes("scientific", lr_role="scientific")))
    assert finding.severity == "warning" and "scientific, not a nuisance" in finding.detail


def test_a_scientific_batch_size_with_a_nuisance_learning_rate_is_information():
    # The playbook's fair comparison (each batch size at its own best learning rate): information,
    # naming what stays fixed for every batch size and that the choice is by training speed.
    finding = _batch_finding(_study(*_sizes("scientific")))
    assert finding.severity == "info" and "learning rate" in finding.title
    assert "the playbook's fair comparison" in finding.detail
    assert "model.dropout=0, optimizer.b1=0.9" in finding.detail
    assert "optimizer.weight_decay=0, train.label_smoothing=0.1" in finding.detail
    assert "Finished trials per batch size: 32: 2, 64: 2, 128: 2" in finding.detail
    assert "python -m jaxplay.batch_size" in finding.action


@pytest.mark.parametrize(
    "search, params, objective",
    [
        ({"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1)}}, [{LR: 1e-3}], "val/error"),
        (*_sizes("nuisance"), "train/error"),  # fitting the training set is another question
    ],
)
def test_the_check_is_quiet_without_a_searched_batch_size_or_a_validation_objective(
    search, params, objective
):
    assert _batch_finding(_study(search, params, objective=objective)) is None


def test_branches_count_a_learning_rate_only_when_every_branch_searches_one():
    both = {
        "data": {"batch_size": spaces.discrete([32, 128], role="scientific")},
        "optimizer": spaces.branches(
            adam={"learning_rate": spaces.log(1e-4, 1e-2)},
            sgd={"learning_rate": spaces.log(1e-2, 1.0), "momentum": spaces.linear(0.8, 0.99)},
        ),
    }
    params = [
        {BS: 32, "optimizer": "adam", "optimizer[adam].learning_rate": 1e-3},
        {BS: 128, "optimizer": "sgd", "optimizer[sgd].learning_rate": 0.1,
         "optimizer[sgd].momentum": 0.9},
    ]  # fmt: skip
    finding = _batch_finding(_study(both, params))
    assert finding.severity == "info"
    assert "optimizer.learning_rate, optimizer.momentum" in finding.detail
    one = json.loads(json.dumps(both))
    one["optimizer"]["choices"]["sgd"] = {"momentum": spaces.linear(0.8, 0.99)}
    finding = _batch_finding(_study(one, [{**params[0]}]))
    assert finding.severity == "warning" and "of only some branches" in finding.detail


def test_a_branchs_own_batch_size_is_its_config_path():
    search = {
        "data": spaces.branches(
            mnist1d={"batch_size": spaces.discrete([32, 64], role="nuisance")},
            digits={"batch_size": 16},
        )
    }
    study = _study(search, [{"data": "mnist1d", "data[mnist1d].batch_size": 32}])
    assert config_path("data[mnist1d].batch_size") == BS
    assert [f.param for f in check_batch_size(study)] == ["data[mnist1d].batch_size"]
    assert batch_size_of(study.record) == 32  # the best trial's own value tags the study


def test_batch_sensitive_hyperparameters_are_the_optimizers_and_the_regularizers():
    for path in (LR, "optimizer[sgd].momentum", "model.dropout", "train.label_smoothing"):
        assert batch_sensitive(path), path
    for path in ("optimizer.name", "model.width", "schedule.warmup_steps", BS):
        assert not batch_sensitive(path), path


# ---------------------------------------------------------------------------------------------
# Tuning results tagged with their batch size: compare and the lineage.

SEARCH = {"optimizer": {"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)}}
TRIALS = [{LR: 3e-3, "optimizer.b1": 0.9}, {LR: 1e-2, "optimizer.b1": 0.95}]


def _at(batch_size, name, search=SEARCH, params=TRIALS, parent=None):
    fixed = {**FIXED, "data": {"batch_size": batch_size}}
    return _study(search, params, name=name, fixed=fixed, parent=parent)


def _promoted(parent, batch_size, name="r1-round2"):
    """A round 2 of `parent` at another batch size: its best trial's values, listed."""
    child = _at(batch_size, name, search={}, params=[parent.feasible[0].params])
    child.record["config"]["study"] = {"parent": {"study": parent.name, "action": "promote"}}
    child.record["config"]["study"]["trials"] = [parent.feasible[0].params]
    return child


def test_compare_tags_each_study_with_its_batch_size_and_says_the_earlier_tuning_is_stale():
    round1 = _at(64, "r1")
    round2 = _promoted(round1, 128)
    round2.family = [round1.record]
    text = analysis.compare(round2, round1, findings=False)
    assert next(line for line in text.splitlines() if line.startswith("batch size")).split() == [
        "batch", "size", "128", "64",
    ]  # fmt: skip
    assert "Tuned at different batch sizes: r1-round2 at 128, r1 at 64" in text
    assert "The tuning of r1 (at 64) is stale at r1-round2's batch size 128" in text
    assert "typically requires starting the tuning process all over again" in text
    assert (
        "r1-round2 reuses what r1 tuned at batch size 64 (--lineage promote): optimizer.b1, "
        "optimizer.learning_rate are stale at 128." in text
    )
    assert "not a fair comparison unless each is re-tuned at its own batch size" in text
    assert "re-tune r1-round2 at 128" in text
    # The fairness verdict comes before the noise verdict.
    assert text.index("Was each tuned at its own batch size?") < text.index("beyond the noise")


def test_studies_each_tuned_at_their_own_batch_size_compare_fairly():
    text = analysis.compare(_at(64, "small"), _at(256, "large"), findings=False)
    assert "Tuned at different batch sizes: small at 64, large at 256" in text
    assert "small searched optimizer.b1, optimizer.learning_rate at its own" in text
    assert "Each searched its own learning rate at its own batch size: a fair comparison" in text
    # One that searches no learning rate was not tuned at its batch size.
    fixed_lr = _at(256, "large", search={}, params=[{}])
    text = analysis.compare(_at(64, "small"), fixed_lr, findings=False)
    assert "large does not search optimizer.learning_rate" in text
    assert "re-tune large at 256" in text


def test_compare_at_one_batch_size_says_nothing_about_it():
    text = analysis.compare(_at(64, "a"), _at(64, "b"), findings=False)
    assert "batch sizes" not in text and "stale" not in text
    searched = _at(64, "c", search={**SEARCH, **_sizes("nuisance")[0]},
                   params=[{**TRIALS[0], BS: 64}, {**TRIALS[1], BS: 128}])  # fmt: skip
    text = analysis.compare(_at(64, "a"), searched, findings=False)
    assert "64 (best trial; searched 64, 128)" in text and "stale" not in text


def test_the_lineage_cell_says_the_tuning_is_stale_across_batch_sizes():
    round1 = _at(64, "r1")
    round2 = _promoted(round1, 128)
    records = [round1.record, round2.record]
    cell = variance.difference_text(round2.record, round1.record, records)
    assert cell.startswith(
        "batch size 64 (this study 128): r1's tuning is stale at 128, not a fair comparison "
        "unless each is re-tuned at its own batch size; the same: "
    )
    same = _at(128, "r1b")
    assert variance.difference_text(round2.record, same.record, records).startswith("the same")
    # The report's Lineage section shows the cell.
    round2.family = [round1.record]
    lineage_html = dict((a, body) for a, _, body in html_report.sections(round2, []))["lineage"]
    assert "r1&#x27;s tuning is stale at 128" in lineage_html


def test_stale_tuning_is_followed_through_the_lineage_until_a_fresh_search():
    # r1 at 64 -> refine at 128 -> promote at 128: round 3 still runs on r1's tuning.
    r1 = _at(64, "r1")
    refined = _at(128, "r1-refine", parent={"study": "r1", "action": "refine"})
    promoted = _at(128, "r1-round2", parent={"study": "r1-refine", "action": "promote"})
    records = [r1.record, refined.record, promoted.record]
    found = variance.retuning(promoted.record, records)
    assert (found.stale_from, found.stale_batch_size, found.via) == (
        "r1",
        64,
        ("refine", "promote"),
    )
    assert not found.retuned
    # A reseed searches the parent's space afresh: its own tuning, at its own batch size.
    reseed = _at(128, "r1-seed1", parent={"study": "r1", "action": "reseed"})
    assert variance.retuning(reseed.record, [r1.record, reseed.record]).retuned
    # Through its lineage, compare calls the refine's descendant the later study.
    lines = variance.batch_size_lines(promoted.record, r1.record, records)
    assert "The tuning of r1 (at 64) is stale at r1-round2's batch size 128" in lines[0]
    assert "(--lineage refine, then promote)" in lines[1]


def test_a_rerun_or_reseed_at_another_batch_size_is_not_counted_as_noise():
    def spread(name, batch_size, action, values):
        params = [{LR: 3e-3, "optimizer.b1": 0.9}] * len(values)
        s = _at(batch_size, name, search={}, params=params)
        for t, v in zip(s.record["trials"], values):
            t["best_value"] = v
        s.record["config"]["study"] = {"parent": {"study": "r1", "action": action}}
        return s.record

    r1, other = _at(64, "r1").record, _at(64, "other").record
    for size, counted in ((64, True), (128, False)):
        rerun = spread("r1-rerun", size, "rerun", [0.2, 0.21, 0.22])
        assert (variance.trial_noise([r1, rerun], {"r1"}) is not None) is counted
        seed = spread("r1-seed1", size, "reseed", [0.3])
        assert (variance.study_noise([r1, seed], "r1") is not None) is counted
        assert other  # an unrelated study at the same batch size changes nothing


# ---------------------------------------------------------------------------------------------
# A derived study at another batch size names what it inherits stale.


def _parent_study():
    """A finished parent whose recorded config is tiny_config (batch size 64) searching the
    learning rate and b1."""
    base = tiny_config()
    base.search = ml_collections.ConfigDict(SEARCH)
    base.study.name = "parent"
    tree = json.loads(config_lib.to_json(base))
    fixed = {k: v for k, v in tree.items() if k not in ("search", "study")}
    params = [{LR: 3e-3, "optimizer.b1": 0.85}, {LR: 1e-2, "optimizer.b1": 0.95},
              {LR: 1e-4, "optimizer.b1": 0.9}]  # fmt: skip
    study = _study(SEARCH, params, name="parent", fixed=fixed)
    study.record["config"]["study"] = {**tree["study"], "num_trials": len(params)}
    return study


def _derive(action, batch_size, **options):
    config = tiny_config(**{BS: batch_size})
    config.search = ml_collections.ConfigDict(SEARCH)
    config.study.name = "parent"
    how = lineage.REGISTRY[action]
    resolved = how.resolve_options(options, lambda key: f"study.parent.{key}")
    parent = _parent_study()
    child = derivation.derive(config, how, resolved, parent, parent_name=parent.name)
    spec.resolve(child)
    return child["study"]["parent"]["changes"]


def test_a_child_at_another_batch_size_names_its_stale_inherited_hyperparameters():
    changes = _derive("promote", 128)
    line = next(c for c in changes if c.startswith("data.batch_size: 64 -> 128"))
    assert "the parent's tuning is stale at batch size 128" in line
    assert "typically requires starting the tuning process all over again" in line
    assert (
        "Inherited from the parent's results at 64: optimizer.b1, "
        "optimizer.learning_rate (tuned by the parent) and the regularizers model.dropout=0, "
        "optimizer.weight_decay=0, train.label_smoothing=0" in line
    )
    assert "can be more prone to overfitting" in line  # a larger batch
    assert "Re-tune them at 128: run the study file as a new study (without --from_study)" in line
    assert "or set data.batch_size back to 64" in line
    smaller = next(c for c in _derive("exploit", 32) if c.startswith("data.batch_size"))
    assert "Re-tune them at 32" in smaller and "overfitting" not in smaller


def test_a_rerun_or_reseed_at_another_batch_size_says_it_is_not_noise():
    rerun = next(c for c in _derive("rerun", 128) if c.startswith("data.batch_size"))
    assert "not counted as trial variance" in rerun
    reseed = next(c for c in _derive("reseed", 128) if c.startswith("data.batch_size"))
    assert "searches the parent's space afresh at 128" in reseed
    assert "not counted as study variance" in reseed and "Inherited" not in reseed


def test_a_child_at_the_parents_batch_size_has_no_batch_size_caveat():
    assert not any(c.startswith("data.batch_size") for c in _derive("promote", 64))
