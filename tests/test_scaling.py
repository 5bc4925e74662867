"""Batch-size scaling (playbook items 12, 13, 89): `--lineage batch_size` re-tunes a study at
another batch size, and `studies scaling` reads the steps each batch size needs to reach a common
target, classifies each step up and recommends the largest batch size that still reduces them."""

import json

import ml_collections
import pytest

from factories import constructed_study, tiny_config
from jaxplay import analysis, spaces, spec, studies, sweep
from jaxplay import config as config_lib
from jaxplay import store as store_lib
from jaxplay.analysis import scaling
from jaxplay.errors import ConfigError
from jaxplay.tuning import derivation, lineage

LR = "optimizer.learning_rate"
SEARCH = {
    "optimizer": {"learning_rate": spaces.log(1e-4, 1e-1), "b1": spaces.linear(0.8, 0.99)},
    "model": {"dropout": spaces.linear(0.0, 0.3)},
}


# ---------------------------------------------------------------------------------------------
# The derivation.


def _parent(search=SEARCH, params=None):
    """A finished parent study at batch size 64 (tiny_config's), built by hand."""
    config = tiny_config()
    config.search = ml_collections.ConfigDict(search)
    config.study.name = "parent"
    tree = json.loads(config_lib.to_json(config))
    params = params or [{LR: 3e-3, "optimizer.b1": 0.9, "model.dropout": 0.1},
                        {LR: 1e-2, "optimizer.b1": 0.95, "model.dropout": 0.2}]  # fmt: skip
    trials = [
        {"params": p, "curves": {"val/error": [(0, 0.9), (50, 0.5 + i / 10), (100, 0.4 + i / 10)]}}
        for i, p in enumerate(params)
    ]
    fixed = {k: v for k, v in tree.items() if k not in ("search", "study", "train")}
    parent = constructed_study(tree["search"], trials, steps=100, name="parent", fixed=fixed)
    parent.record["config"]["train"] = tree["train"]
    parent.record["config"]["study"] = {**tree["study"], "num_trials": 7}
    return config, parent


def _derive(config, parent, **options):
    how = lineage.REGISTRY["batch_size"]
    resolved = how.resolve_options(options, lambda key: f"--{key}")
    child = derivation.derive(config, how, resolved, parent, parent_name=parent.name)
    spec.resolve(child)  # the child is a valid study
    return child


def test_the_child_retunes_the_parents_whole_space_at_the_new_batch_size():
    config, parent = _parent()
    child = _derive(config, parent, batch_size=256)
    assert child["study"]["name"] == "parent-bs256"
    assert child["data"]["batch_size"] == 256
    # Every batch-sensitive nuisance hyperparameter is searched again, over the parent's ranges.
    assert child["search"] == json.loads(json.dumps(SEARCH))
    assert child["study"]["num_trials"] == 7  # the parent's search budget
    assert child["train"]["steps"] == 100  # the parent's step budget
    link = child["study"]["parent"]
    assert (link["study"], link["action"], link["batch_size"]) == ("parent", "batch_size", 256)
    changes = "\n".join(link["changes"])
    assert "data.batch_size: 64 -> 256, fixed" in changes
    assert "optimizer.b1, optimizer.learning_rate and the regularizer model.dropout" in changes
    assert "examples budget 25600 against the parent's 6400" in changes


def test_a_searched_batch_size_is_taken_out_of_the_search():
    search = {**SEARCH, "data": {"batch_size": spaces.discrete([32, 64], role="nuisance")}}
    params = [
        {LR: 3e-3, "optimizer.b1": 0.9, "model.dropout": 0.1, "data.batch_size": 32},
        {LR: 1e-2, "optimizer.b1": 0.95, "model.dropout": 0.2, "data.batch_size": 64},
    ]
    config, parent = _parent(search, params)
    # The parent's result was tuned at its best trial's batch size, 32.
    child = _derive(config, parent, batch_size=128)
    assert "data" not in child["search"] and child["data"]["batch_size"] == 128
    changes = child["study"]["parent"]["changes"]
    assert "taken out of the search: search.data.batch_size" in changes[0]


def test_the_parents_own_batch_size_or_none_is_refused_in_one_line():
    config, parent = _parent()
    with pytest.raises(ConfigError) as info:
        _derive(config, parent, batch_size=64)
    assert str(info.value) == (
        "--batch_size: 64 is the batch size parent was tuned at; pass another one (e.g. 128) to "
        "compare batch sizes"
    )
    with pytest.raises(ConfigError, match="^--batch_size: give the batch size"):
        _derive(config, parent)
    with pytest.raises(ConfigError, match="^--batch_size: must be an int >= 1"):
        _derive(config, parent, batch_size=0)


def test_an_untuned_learning_rate_is_a_caution():
    search = {"model": {"dropout": spaces.linear(0.0, 0.3)}}
    config, parent = _parent(search, [{"model.dropout": 0.1}, {"model.dropout": 0.2}])
    child = _derive(config, parent, batch_size=128)
    assert any(
        c.startswith("caution: the parent does not search optimizer.learning_rate")
        for c in child["study"]["parent"]["changes"]
    )


# ---------------------------------------------------------------------------------------------
# The analysis, on synthetic records.


def _record(name, batch_size, reach, *, best=0.1, steps=1000, eval_every=10, parent="root",
            steps_per_second=100.0, objective="val/error", mode="min"):  # fmt: skip
    """A finished study at `batch_size` whose best trial first evaluates at `best` at step
    `reach` (1.0 before), evaluated every `eval_every` steps, timed at `steps_per_second`."""
    curve = [(s, 1.0 if s < reach else best) for s in range(0, steps + 1, eval_every)]
    link = None if name == parent else {"study": parent, "action": "batch_size"}
    return {
        "name": name,
        "objective": objective,
        "mode": mode,
        "best_value": best,
        "best_trial": 0,
        "config": {
            "data": {"batch_size": batch_size},
            "train": {"steps": steps, "eval_every": eval_every},
            "study": {"parent": link},
        },
        "trials": [
            {
                "index": 0,
                "status": "completed",
                "params": {},
                "best_value": best,
                "steps_run": steps,
                "duration_s": 9.0,
                "steps_per_second": steps_per_second,
            }
        ],  # fmt: skip
        scaling.CURVE_KEY: curve,
    }


def _family(*points, **kw):
    """Records of a family: (batch size, steps to reach the target) each, the first the root."""
    return [
        _record("root" if i == 0 else f"root-bs{b}", b, reach, **kw)
        for i, (b, reach) in enumerate(points)
    ]


def test_perfect_scaling_then_saturation_recommends_the_knee():
    records = _family((32, 800), (64, 400), (128, 200), (256, 150), (512, 150))
    result = scaling.analyze(records)
    assert [d.kind for d in result.doublings] == [
        scaling.PERFECT, scaling.PERFECT, scaling.DIMINISHING, scaling.NONE
    ]  # fmt: skip
    assert result.critical.batch_size == 128
    assert result.largest_reducing.batch_size == 256
    text = "\n".join(result.lines())
    assert "largest batch size that still reduces the steps: 256 (root-bs256" in text
    assert "perfect scaling up to 128 (the critical batch size)" in text
    assert "256 -> 512: steps x1.00 (perfect scaling x0.50" in text
    assert scaling.EPOCH_WARNING not in text  # one step budget for all


def test_the_tolerance_comes_from_the_evaluation_spacing():
    # 200 -> 150 steps: with an evaluation every 10 steps the crossing of the 256 study lies in
    # (140, 150] and that of the 128 study in (190, 200]: ratio in [0.70, 0.79], diminishing.
    fine = scaling.analyze(_family((128, 200), (256, 150)))
    assert fine.doublings[0].kind == scaling.DIMINISHING
    assert fine.doublings[0].low == pytest.approx(140 / 200)
    assert fine.doublings[0].high == pytest.approx(150 / 190)
    # The same steps evaluated every 50 steps: the interval holds both halving and no reduction.
    coarse = scaling.analyze(_family((128, 200), (256, 150), eval_every=50))
    assert coarse.doublings[0].kind == scaling.UNRESOLVED
    assert coarse.largest_reducing is None


def test_a_study_that_never_reaches_the_target_is_reported_as_such():
    records = _family((32, 400), (64, 200), (128, 100))
    records[2] = _record("root-bs128", 128, 100, best=0.3)  # a worse result
    result = scaling.analyze(records, target=0.2)
    never = result.points[2]
    assert never.steps_to_target is None and never.why_missing.startswith("never reaches 0.2")
    assert result.doublings[1].kind == scaling.UNREACHED
    assert result.largest_reducing.batch_size == 64
    text = "\n".join(result.lines())
    assert "root-bs128: never reaches 0.2 within its budget (best 0.3 at trial 0)" in text
    assert "target 0.2 (--target)" in text
    # Without --target: the least good best value, which every study reaches.
    assert scaling.analyze(records).target == 0.3


def test_an_examples_budget_shared_across_batch_sizes_is_warned_about():
    records = [_record("root", 32, 400, steps=1000), _record("root-bs64", 64, 200, steps=500),
               _record("root-bs128", 128, 100, steps=250)]  # fmt: skip
    result = scaling.analyze(records)
    assert result.shared_examples_budget
    text = "\n".join(result.lines())
    assert "32: 1000 x 32 = 32000, 64: 500 x 64 = 32000, 128: 250 x 128 = 32000" in text
    assert "warning: the studies share an examples budget" in text
    assert "an epoch budget only probes the perfect-scaling regime" in text
    assert not scaling.analyze(_family((32, 400), (64, 200))).shared_examples_budget


def test_the_least_wall_clock_time_weighs_the_time_per_step():
    # 64 needs half the steps but each is 3x slower: 32 reaches the target first.
    records = [_record("root", 32, 400, steps_per_second=300.0),
               _record("root-bs64", 64, 200, steps_per_second=100.0)]  # fmt: skip
    result = scaling.analyze(records)
    assert result.largest_reducing.batch_size == 64
    assert result.fastest.batch_size == 32
    assert result.points[0].time_to_target == pytest.approx(400 / 300)


def test_the_family_is_the_root_and_its_batch_size_children():
    records = _family((32, 400), (64, 200))
    unrelated = _record("other", 128, 100, parent="other")
    promoted = {**_record("root-round2", 64, 100), "name": "root-round2"}
    promoted["config"]["study"]["parent"] = {"study": "root", "action": "promote"}
    every = [*records, unrelated, promoted]
    # From the root or from a child: the same family, the promote child left out.
    assert [r["name"] for r in scaling.family(every, "root")] == ["root", "root-bs64"]
    assert [r["name"] for r in scaling.family(every, "root-bs64")] == ["root", "root-bs64"]
    assert [r["name"] for r in scaling.family(every, "other")] == ["other"]


# ---------------------------------------------------------------------------------------------
# A real run: a tiny parent, one child through the sweep, then studies scaling and the report.


@pytest.fixture(scope="module")
def family_store(tmp_path_factory):
    """A 2-trial learning-rate study at batch size 32 and its --lineage batch_size 64 child."""
    workdir = tmp_path_factory.mktemp("scaling")
    study_file = workdir / "tiny.py"
    study_file.write_text(
        "import ml_collections\n"
        "from jaxplay import spaces\n"
        "def get_config(arg=None):\n"
        "    c = ml_collections.ConfigDict()\n"
        "    c.seed = 0\n"
        "    c.data = dict(name='mnist1d', batch_size=32, val_size=500)\n"
        "    c.model = dict(name='mlp', width=32, depth=1, activation='relu', dropout=0.0)\n"
        "    c.optimizer = dict(name='adam', learning_rate=3e-3, b1=0.9, b2=0.999, eps=1e-8,\n"
        "                       weight_decay=0.0)\n"
        "    c.schedule = dict(name='constant', warmup_steps=0)\n"
        "    c.train = dict(steps=60, eval_every=10, keep_best=1)\n"
        "    c.study = dict(name='tiny', notes='test', objective='val/error', mode='min',\n"
        "                   algorithm='quasirandom', num_trials=2, seed=0)\n"
        "    c.search = dict(optimizer=dict(learning_rate=spaces.log(1e-3, 1e-2)))\n"
        "    return c\n"
    )
    base = [f"--config={study_file}", f"--workdir={workdir}", "--report=false",
            "--tensorboard=false"]  # fmt: skip
    assert sweep.main(base) == 0
    assert sweep.main([*base, "--from_study=tiny", "--lineage=batch_size", "--batch_size=64"]) == 0
    return workdir


def test_studies_scaling_reads_the_family_of_a_real_run(family_store, capsys):
    capsys.readouterr()
    assert studies.main(["scaling", f"--workdir={family_store}", "--study=tiny-bs64"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("batch-size scaling of tiny: val/error (min), target ")
    result = scaling.of_study(analysis.load(family_store, study="tiny"))
    assert [(p.study, p.batch_size, p.train_steps) for p in result.points] == [
        ("tiny", 32, 60), ("tiny-bs64", 64, 60)
    ]  # fmt: skip
    # Every study reaches the default target, at an evaluation step, with a measured speed.
    for p in result.points:
        assert p.steps_to_target is not None and p.steps_to_target % 10 == 0
        assert p.seconds_per_step > 0
        assert f"{p.batch_size:<10}  {p.study}" in out
    assert "32 -> 64: steps x" in out
    # A target no study reaches.
    assert studies.main(["scaling", f"--workdir={family_store}", "--study=tiny",
                         "--target=0.0"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "tiny: never reaches 0 within its budget" in out
    assert "too few batch sizes reach the target to compare them" in out


def test_the_report_shows_the_scaling_section_with_its_plot(family_store):
    from jaxplay import analysis
    from jaxplay.analysis import html_report

    url = store_lib.default_url(family_store)
    data = analysis.load(store=url, study="tiny")
    # Reading a study from the store reads its batch-size relatives' best curves too.
    body = dict((a, html) for a, _, html in html_report.sections(data, []))["scaling"]
    assert '<img src="data:image/png;base64,' in body
    assert all(p.steps_to_target is not None for p in scaling.of_study(data).points)
    # The child's report reads its parent's curve the same way.
    child = analysis.load(store=url, study="tiny-bs64")
    result = scaling.of_study(child)
    assert [p.study for p in result.points] == ["tiny", "tiny-bs64"]
    assert all(p.steps_to_target is not None for p in result.points)
    # A study without batch-size relatives has no such section.
    alone = constructed_study({}, [{"params": {}, "curves": {"val/error": [(10, 0.5)]}}])
    assert "scaling" not in dict((a, html) for a, _, html in html_report.sections(alone, []))


def test_studies_scaling_help_says_what_it_does(capsys):
    assert studies.main(["scaling", "--help"]) == 0
    out = capsys.readouterr().out
    assert "the largest batch size that still reduces them" in out and "--target X" in out


def test_a_batch_size_child_is_a_fresh_tuning_not_stale_tuning(family_store, capsys):
    # The child searched the parent's space again at its own batch size: neither its lineage
    # changes nor compare call its tuning stale (they do for a child that reuses the parent's).
    from jaxplay import analysis

    child = analysis.load(store=store_lib.default_url(family_store), study="tiny-bs64")
    changes = " ".join(child.record["config"]["study"]["parent"]["changes"])
    assert "data.batch_size" in changes and "without --from_study" not in changes
    capsys.readouterr()
    args = ["compare", f"--workdir={family_store}", "--study=tiny", "--other=tiny-bs64"]
    assert studies.main(args) == 0
    out = capsys.readouterr().out
    assert "re-tune tiny-bs64" not in out and "reuses what tiny tuned" not in out
