"""The streaming input pipeline (grain) and the datasets behind it."""

import re

import numpy as np
import pytest

from factories import tiny_config
from jaxplay import config as config_lib
from jaxplay import spaces, spec, sweep, train, workloads
from jaxplay.data import pipeline, text
from jaxplay.errors import ConfigError
from jaxplay.train import feed, step
from jaxplay.train import state as state_lib


def _data(n=103):
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    return x, np.arange(n, dtype=np.int32)


def _take(it, k):
    return [next(it) for _ in range(k)]


def test_same_seed_same_batches_and_a_new_permutation_each_epoch():
    x, y = _data()
    a = _take(pipeline.train_batches(x, y, batch_size=10, seed=3), 25)
    b = _take(pipeline.train_batches(x, y, batch_size=10, seed=3), 25)
    c = _take(pipeline.train_batches(x, y, batch_size=10, seed=4), 25)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(xa[:, 0], 3 * ya)  # examples keep their labels
    assert any((ya != yc).any() for (_, ya), (_, yc) in zip(a, c))
    labels = np.concatenate([ya for _, ya in a])
    first, second = labels[:103], labels[103:206]
    # Each epoch: all once.
    assert sorted(first) == list(range(103)) and sorted(second) == list(range(103))
    assert (first != second).any()  # reshuffled


def test_resuming_at_a_step_gives_the_batches_a_full_run_gives_there():
    x, y = _data()
    full = _take(pipeline.train_batches(x, y, batch_size=8, seed=0), 30)
    resumed = _take(pipeline.train_batches(x, y, batch_size=8, seed=0, start_step=17), 13)
    for (_, a), (_, b) in zip(full[17:], resumed):
        np.testing.assert_array_equal(a, b)


def test_hosts_read_disjoint_shards_that_cover_the_data():
    x, y = _data(96)
    hosts = [
        pipeline.train_batches(x, y, batch_size=12, seed=0, process_index=i, process_count=3)
        for i in range(3)
    ]
    # One epoch: 32 examples each.
    seen = [np.concatenate([yb for _, yb in _take(it, 8)]) for it in hosts]
    assert all(len(s) == 32 and len(set(s)) == 32 for s in seen)
    assert (
        not set(seen[0]) & set(seen[1])
        and not set(seen[1]) & set(seen[2])
        and not set(seen[0]) & set(seen[2])
    )
    assert set(np.concatenate(seen)) == set(range(96))
    with pytest.raises(ConfigError, match="data.batch_size: 10 does not split evenly over 3 hosts"):
        pipeline.train_batches(x, y, batch_size=10, seed=0, process_count=3)


def test_eval_batches_cover_a_split_once_with_zero_weight_padding():
    x, y = _data(37)
    batches = list(pipeline.eval_batches(x, y, 16))
    assert [len(b[0]) for b in batches] == [16, 16, 16]
    w = np.concatenate([b[2] for b in batches])
    assert w.sum() == 37 and (w[37:] == 0).all()
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches])[:37], y)


def test_padded_examples_do_not_change_eval_metrics(tmp_path):
    trial = spec.resolve(tiny_config(**{"data.val_size": 37})).base
    instance = workloads.bind(trial)
    program = trial.program
    graphdef, state, _, _ = state_lib.init_state(trial, instance, program)
    x, y = instance.dataset.x_val, instance.dataset.y_val
    params, stats = state["params"], state["batch_stats"]
    sums = step.metric_sums_fn(graphdef, instance.task, program)
    exact = feed.evaluate_streamed(sums, params, stats, {"val": (x, y)}, 37)
    padded = feed.evaluate_streamed(sums, params, stats, {"val": (x, y)}, 16)
    on_device = step.evaluate_split(
        graphdef, instance.task, program, params, stats, feed.padded(x, y, 16)
    )
    for k in ("loss", "error"):
        assert padded[f"val/{k}"] == pytest.approx(exact[f"val/{k}"], rel=1e-6)
        assert float(on_device[k]) == pytest.approx(exact[f"val/{k}"], rel=1e-6)


def test_period_feed_reports_time_spent_waiting_for_input():
    x, y = _data()

    def slow(it):
        import time

        for item in it:
            time.sleep(0.02)
            yield item

    feed = pipeline.PeriodFeed(
        [slow(pipeline.train_batches(x, y, batch_size=4, seed=0))], 5, stacked=False, depth=1
    )
    try:
        xs, ys = feed.next()
        assert xs.shape == (5, 4, 3) and ys.shape == (5, 4)
        assert feed.take_wait() >= 0.05  # five slow batches were not ready
        assert feed.take_wait() == 0.0
    finally:
        feed.close()


def _grain_study(**overrides):
    return tiny_config(
        **{
            "data.pipeline": "grain",
            "train.steps": 100,
            "train.eval_every": 25,
            "train.checkpoint_every_secs": 0.0,
            **overrides,
        }
    )


def test_a_streamed_trial_learns_resumes_exactly_and_batches_like_sequential(tmp_path):
    c = _grain_study()
    c.search = dict(optimizer=dict(learning_rate=spaces.log(1e-3, 1e-2)))
    study = spec.resolve(c)
    trial = study.base
    curve = {}
    full = train.train_and_evaluate(
        trial, tmp_path / "full", on_eval=lambda s, m: curve.__setitem__(s, m)
    )
    assert (
        full.status == "completed" and full.final_metrics["val/error"] < curve[0]["val/error"] - 0.1
    )
    assert 0.0 <= curve[100]["train/input_wait_fraction"] <= 1.0

    def stop_at_50(step, metrics):
        if step == 50:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train.train_and_evaluate(trial, tmp_path / "cut", on_eval=stop_at_50)
    again = train.train_and_evaluate(trial, tmp_path / "cut")
    assert again.final_metrics["val/loss"] == pytest.approx(
        full.final_metrics["val/loss"], rel=1e-6
    )

    # Another trial of the study, with its own seed (its own batch order): one program.
    other = study.trial({"optimizer.learning_rate": 1e-3, "seed": 1})
    together = train.run_trials([trial, other], [tmp_path / "b0", tmp_path / "b1"])
    solo = train.train_and_evaluate(other, tmp_path / "solo1")
    assert together[0].final_metrics["val/loss"] == pytest.approx(
        full.final_metrics["val/loss"], rel=2e-4
    )
    assert together[1].final_metrics["val/loss"] == pytest.approx(
        solo.final_metrics["val/loss"], rel=2e-4
    )


def test_a_streamed_period_sent_in_chunks_trains_exactly_as_in_one_call(tmp_path, monkeypatch):
    c = _grain_study(**{"train.eval_every": 50})
    c.search = dict(optimizer=dict(learning_rate=spaces.log(1e-3, 1e-2)))
    study = spec.resolve(c)
    trials = [study.base, study.trial({"optimizer.learning_rate": 2e-3, "seed": 1})]
    dataset = workloads.bind(trials[0]).dataset
    assert feed.chunk_steps(trials[0].program, dataset) == 50  # the whole period fits

    def curves(folder):
        seen = {}
        results = train.run_trials(
            trials,
            [tmp_path / folder / str(i) for i in range(2)],
            train.Hooks(on_eval=lambda i, step, m: seen.setdefault(i, {}).__setitem__(step, m)),
        )
        return results, seen

    whole = curves("whole")
    # Room for 10 steps' batches of this dataset: a period of 50 runs as 5 calls of 10.
    step_bytes = c.data.batch_size * sum(
        np.asarray(a[:1]).nbytes for a in (dataset.x_train, dataset.y_train)
    )
    monkeypatch.setattr(feed, "CHUNK_BYTES", 10 * step_bytes + step_bytes // 2)
    assert feed.chunk_steps(trials[0].program, dataset) == 10
    chunked = curves("chunked")
    for i in range(2):
        a, b = whole[0][i], chunked[0][i]
        assert (a.status, a.best_step, a.steps_run) == (b.status, b.best_step, b.steps_run)
        assert sorted(whole[1][i]) == sorted(chunked[1][i]) == [0, 50, 100]
        for at, metrics in whole[1][i].items():
            assert metrics.keys() == chunked[1][i][at].keys()
            for name in {"train/batch_loss", "train/grad_norm", "val/loss", "train/loss"} & set(
                metrics
            ):
                assert chunked[1][i][at][name] == pytest.approx(metrics[name], rel=1e-6), name


def test_streamed_study_runs_from_the_sweep(tmp_path):
    c = _grain_study(**{"study.num_trials": 2})
    record = sweep.run_study(c, tmp_path, executor="batched", log=lambda s: None, report=False)
    assert [t["status"] for t in record["trials"]] == ["completed", "completed"]


def test_text_corpus_split_is_by_file_hash_and_windows_shift_by_one():
    assert text.is_validation("json/decoder.py", 5) == text.is_validation("json/decoder.py", 5)
    share = np.mean([text.is_validation(f"pkg/file{i}.py", 5) for i in range(4000)])
    assert 0.03 < share < 0.07
    x, y = text.windows(b"abcdefghij", 3)
    assert x.tolist() == [list(b"abc"), list(b"def"), list(b"ghi")]
    assert y.tolist() == [list(b"bcd"), list(b"efg"), list(b"hij")]
    c = config_lib.load("experiments/pystdlib_transformer.py:smoke")
    dataset = workloads.bind(spec.resolve(c).base).dataset
    assert dataset.num_classes == 256 and dataset.x_train.shape[1] == c.data.seq_len
    # No shared window.
    assert not set(map(bytes, dataset.x_val[:50])) & set(map(bytes, dataset.x_train))


@pytest.mark.parametrize(
    "path,value,field,fix",
    [
        ("data.pipeline", "tfdata", "data.pipeline: unknown 'tfdata'", "use 'device'"),
        (
            "data.val_sise",
            10,
            "data.val_sise: the 'mnist1d' dataset has no field 'val_sise'",
            "did you mean 'val_size'?",
        ),
    ],
)
def test_bad_data_fields_are_named(path, value, field, fix):
    c = tiny_config()
    section, name = path.split(".")
    with c[section].unlocked():
        c[section][name] = value
    with pytest.raises(ConfigError, match=re.escape(field)) as e:
        spec.resolve(c)
    assert fix in str(e.value)


def test_tfds_without_tensorflow_datasets_says_how_to_get_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    c = config_lib.load("experiments/cifar10_resnet.py")
    with pytest.raises(ConfigError, match="tensorflow-datasets is not installed.*synthetic_images"):
        spec.resolve(c)


class _FakeTfds:
    """The slice of tensorflow_datasets that jaxplay uses: data_source() returning a random-access
    split of {'image', 'label'} records with dataset_info. Images come in mixed sizes, as
    ImageNet's do."""

    def __init__(self):
        self.calls = []

    def data_source(self, name, split, data_dir=None, download=True):
        self.calls.append((name, split, data_dir, download))
        if split == "missing":
            raise FileNotFoundError(f"{name}/{split} not prepared")
        rng = np.random.default_rng(len(self.calls))
        sizes = [(40, 60), (50, 50), (33, 70)]
        records = [
            {"image": rng.integers(0, 255, sizes[i % 3] + (3,), dtype=np.uint8), "label": i % 4}
            for i in range(24)
        ]

        class Source(list):
            pass

        source = Source(records)
        feature = type("F", (), {"shape": (None, None, 3)})()
        label = type("L", (), {"num_classes": 4})()
        source.dataset_info = type("Info", (), {"features": {"image": feature, "label": label}})()
        return source


def test_tfds_splits_are_read_on_demand_cropped_and_resized(monkeypatch, tmp_path):
    import sys

    fake = _FakeTfds()
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake)
    c = tiny_config()
    c.data = dict(
        name="tfds",
        tfds_name="imagenet_like",
        data_dir=str(tmp_path),
        image_size=32,
        batch_size=8,
        pipeline="grain",
        val_split="validation",
    )
    c.model = dict(name="mlp", width=16, depth=1, dropout=0.0)
    c.train.steps, c.train.eval_every, c.schedule.warmup_steps = 4, 2, 1
    trial = spec.resolve(c).base
    dataset = workloads.bind(trial).dataset
    assert fake.calls == [
        ("imagenet_like", "train", str(tmp_path), False),
        ("imagenet_like", "validation", str(tmp_path), False),
    ]  # never downloads
    assert dataset.x_train.shape == (24, 32, 32, 3) and dataset.num_classes == 4
    images = dataset.x_train[np.array([0, 1, 2])]
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    assert dataset.y_train[5] == 1
    result = train.train_and_evaluate(trial, tmp_path / "trial")
    assert result.status == "completed"
    c.data.val_split = "missing"
    c.data.tfds_name = "other"
    with pytest.raises(
        ConfigError, match="data.tfds_name: cannot open 'other' split 'missing'.*tfds build other"
    ):
        spec.resolve(c)


def test_augmentation_flips_and_crops_reproducibly_from_the_key():
    import jax
    import jax.numpy as jnp

    from jaxplay.data import augment

    images = jnp.asarray(np.random.default_rng(0).integers(1, 255, (64, 8, 8, 3)), jnp.uint8)
    key = jax.random.PRNGKey(7)
    assert (augment.apply("none", images, key) == images).all()
    flipped = np.asarray(augment.apply("flip", images, key))
    same = [(flipped[i] == images[i]).all() for i in range(64)]
    mirrored = [(flipped[i] == images[i, :, ::-1]).all() for i in range(64)]
    assert all(s or m for s, m in zip(same, mirrored)) and 16 < sum(mirrored) < 48
    cropped = np.asarray(augment.apply("crop_flip", images, key))
    # Same key, same batch.
    np.testing.assert_array_equal(cropped, augment.apply("crop_flip", images, key))
    assert not (
        cropped == np.asarray(augment.apply("crop_flip", images, jax.random.PRNGKey(8)))
    ).all()
    # Every crop is a window of the zero-padded image (padding shows as zeros at the edges).
    padded = np.pad(np.asarray(images), ((0, 0), (4, 4), (4, 4), (0, 0)))
    for i in range(8):
        windows = [padded[i, r : r + 8, c : c + 8] for r in range(9) for c in range(9)]
        assert any((cropped[i] == w).all() or (cropped[i] == w[:, ::-1]).all() for w in windows)


def test_augment_is_refused_where_it_means_nothing():
    c = tiny_config()
    with c.data.unlocked():
        c.data.augment = "crop_flip"
    with pytest.raises(ConfigError, match="data.augment: the 'mnist1d' dataset") as e:
        spec.resolve(c)
    assert "set 'none'" in str(e.value)
    c = config_lib.load("experiments/cifar10_resnet.py:smoke")
    c.data.augment = "mixup"
    with pytest.raises(ConfigError, match="data.augment: unknown 'mixup'") as e:
        spec.resolve(c)
    assert "use one of" in str(e.value) and "'crop_flip'" in str(e.value)
