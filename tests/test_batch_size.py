"""The batch-size probe: the playbook's reading of synthetic throughputs, and real probes on tiny
configs."""

import math
import pathlib

import jax
import pytest

from jaxplay import batch_size as batch_size_command
from jaxplay import spec
from jaxplay import store as store_lib
from jaxplay.analysis import html_report, throughput
from jaxplay.analysis.throughput import Row
from jaxplay.errors import ConfigError
from jaxplay.tuning import batch_size
from tests.factories import constructed_study, tiny_config

REPO = pathlib.Path(__file__).resolve().parents[1]
STUDY = REPO / "experiments" / "mnist1d_mlp.py"


def rows_with(throughputs: dict) -> list[Row]:
    """Rows whose examples/s are exactly `throughputs` ({batch size: examples/s}), 10 steps a
    period."""
    return [Row(b, 10, (10 * b / t,)) for b, t in throughputs.items()]


def tiny_study(**overrides) -> spec.StudySpec:
    """tiny_config, resolved: what the probe measures (its base trial)."""
    return spec.resolve(tiny_config(**overrides))


# ---------------------------------------------------------------------------------------------
# analyze: pure, on synthetic numbers


def test_perfect_doubling_then_saturation():
    rows = rows_with({8: 100, 16: 200, 32: 400, 64: 600, 128: 650, 256: 640})
    s = throughput.analyze(rows)
    assert s.speedups[0] is None and s.speedups[1:3] == (2.0, 2.0)
    assert s.notes == (
        "",
        "near doubling",
        "near doubling",
        "sub-linear",
        "no real gain",
        "no real gain",
    )
    assert s.doubling_until == 32 and not s.still_doubling
    assert s.max_useful == 64 and not s.still_growing  # 650 is less than 10% above 600
    assert "throughput stops doubling after batch size 32" in s.recommendation
    assert "it still grows up to 64" in s.recommendation
    assert "batch sizes above 64 bring no speed-up: use at most 64" in s.recommendation
    assert "re-tuning most hyperparameters" in s.recommendation


def test_near_doubling_threshold_allows_noise():
    s = throughput.analyze(rows_with({8: 100, 16: 185, 32: 340}))  # 1.85x, 1.84x
    assert s.still_doubling and s.doubling_until == 32


def test_doubling_throughout_says_it_never_stopped():
    s = throughput.analyze(rows_with({8: 100, 16: 199, 32: 398, 64: 790}))
    assert s.still_doubling and s.doubling_until == 64
    assert s.max_useful == 64 and s.still_growing
    assert (
        "up to 64, the largest probed" in s.recommendation and "not saturated" in s.recommendation
    )
    assert "stops doubling" not in s.recommendation


def test_a_drop_ends_the_useful_range_and_is_named():
    s = throughput.analyze(rows_with({8: 100, 16: 200, 32: 150, 64: 190}))
    assert s.notes[2] == "slower" and s.slower == (32,)
    assert s.doubling_until == 16 and s.max_useful == 16
    assert "batch sizes above 16 bring no speed-up (32 slower): use at most 16" in s.recommendation


def test_a_dip_in_the_middle_does_not_hide_a_later_gain():
    # 32 is noise-slow, but 64 is clearly faster than 16: the max useful size is 64, not 16.
    s = throughput.analyze(rows_with({8: 100, 16: 200, 32: 190, 64: 300}))
    assert s.max_useful == 64 and s.still_growing and s.doubling_until == 16
    assert "it still grows up to 64, the largest probed" in s.recommendation


def test_no_or_one_row():
    assert throughput.analyze([]).max_useful is None
    one = throughput.analyze(rows_with({8: 100}))
    assert (
        one.max_useful == 8
        and one.speedups == (None,)
        and "only batch size 8" in one.recommendation
    )


def test_row_derives_throughput_from_the_median_period():
    row = Row(32, 10, (1.0, 0.5, 9.0))  # an outlier does not move the median
    assert row.seconds_per_step == pytest.approx(0.1)
    assert row.steps_per_second == pytest.approx(10) and row.examples_per_second == pytest.approx(
        320
    )


def test_out_of_memory_errors_are_recognised():
    assert batch_size.is_out_of_memory(
        jax.errors.JaxRuntimeError(
            "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 17179869184 bytes."
        )
    )
    assert batch_size.is_out_of_memory(MemoryError())
    assert not batch_size.is_out_of_memory(jax.errors.JaxRuntimeError("INTERNAL: something else"))
    assert not batch_size.is_out_of_memory(ValueError("Out of memory"))  # not from jax


# ---------------------------------------------------------------------------------------------
# probe: the real trainer on a tiny MNIST-1D MLP


def test_real_probe_measures_each_batch_size_and_stops_at_max():
    lines = []
    result = batch_size.probe(
        tiny_study(),
        min_batch_size=8,
        max_batch_size=32,
        steps_per_period=5,
        warmup=1,
        repeats=2,
        log=lines.append,
    )
    assert [r.batch_size for r in result.rows] == [8, 16, 32]
    for row in result.rows:
        assert len(row.period_seconds) == 2 and row.steps_per_period == 5
        assert math.isfinite(row.examples_per_second) and row.examples_per_second > 0
        assert row.steps_per_second > 0
    assert (
        "batch size 64 is above max_batch_size=32" in result.stop and result.out_of_memory is None
    )
    assert len(lines) == 1 + 3 and lines[0].split()[0] == "batch"  # header, then one line per size
    text = throughput.report(result)
    assert (
        "<- max useful" in text and "recommendation:" in text and "stopped: batch size 64" in text
    )


def test_probe_stops_at_the_training_set_size():
    result = batch_size.probe(
        tiny_study(), batch_sizes=[8, 4096], steps_per_period=5, repeats=1, log=None
    )
    assert [r.batch_size for r in result.rows] == [8]
    assert result.stop == "batch size 4096 exceeds the 3500 training examples"


def test_out_of_memory_ends_the_probe_and_keeps_earlier_rows(monkeypatch):
    measured = []

    def fake_measure(trial, instance, size, **kwargs):
        measured.append(size)
        if size >= 32:
            raise jax.errors.JaxRuntimeError(
                "RESOURCE_EXHAUSTED: Out of memory while trying to allocate "
                "4294967296 bytes.\nBufferAssignment OOM Debugging ..."
            )
        return Row(size, 10, (0.01 * size,))

    monkeypatch.setattr(batch_size, "measure", fake_measure)
    lines = []
    result = batch_size.probe(tiny_study(), min_batch_size=8, max_batch_size=1024, log=lines.append)
    assert measured == [8, 16, 32]  # nothing after the first out-of-memory batch size
    assert [r.batch_size for r in result.rows] == [8, 16]
    assert result.out_of_memory == 32
    assert result.stop.startswith(
        "batch size 32 ran out of memory: RESOURCE_EXHAUSTED: Out of memory"
    )
    assert "BufferAssignment" not in result.stop  # the first line only
    assert lines[-1].split() == ["32", "out", "of", "memory"]
    assert "32  out of memory" in throughput.report(result)


def test_other_runtime_errors_are_not_taken_for_out_of_memory(monkeypatch):
    def broken(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("INTERNAL: a real bug")

    monkeypatch.setattr(batch_size, "measure", broken)
    with pytest.raises(jax.errors.JaxRuntimeError, match="a real bug"):
        batch_size.probe(tiny_study(), log=None)


def test_bad_probe_settings_name_the_setting():
    with pytest.raises(ConfigError, match="--warmup: must be an int >= 1"):
        batch_size.probe(tiny_study(), warmup=0, log=None)
    with pytest.raises(ConfigError, match="min_batch_size: 64 is above max_batch_size=32"):
        batch_size.probe(tiny_study(), min_batch_size=64, max_batch_size=32, log=None)


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_prints_the_table_and_the_recommendation_and_records_it(capsys, tmp_path):
    # The overrides make the model and program those of tiny_config, so in one process this reuses
    # the compiled periods of the probe test above.
    code = batch_size_command.main(
        [
            f"--config={STUDY}:smoke",
            f"--workdir={tmp_path}",
            "--min_batch_size=16",
            "--max_batch_size=32",
            "--steps_per_period=5",
            "--repeats=2",
            "--config.model.width=32",
            "--config.model.depth=1",
            "--config.train.steps=100",
            "--config.train.eval_every=50",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "width=32" in out
    table = [line.split() for line in out.splitlines() if line.strip()[:2].isdigit()]
    assert [int(t[0]) for t in table] == [16, 32]
    assert "stopped: batch size 64 is above max_batch_size=32" in out
    assert "max useful batch size:" in out and "recommendation: " in out
    # The probe is in the workdir's store, under the study it measured, and its report shows it.
    assert "recorded for study 'mnist1d-mlp-smoke'" in out
    store = store_lib.Store(store_lib.default_url(tmp_path))
    try:
        [probe] = store.probes("mnist1d-mlp-smoke")
    finally:
        store.close()
    assert probe["kind"] == "batch_size" and "jaxplay.batch_size" in probe["command"]
    assert [r["batch_size"] for r in probe["result"]["rows"]] == [16, 32]
    assert probe["config"]["model"]["width"] == 32
    study = constructed_study({}, [{"params": {}}], name="mnist1d-mlp-smoke")
    study.probes = [probe]
    page = html_report.render_html(study, findings=[])
    assert '<section id="throughput"><h2>Throughput by batch size</h2>' in page
    assert "<p>Stopped: batch size 64 is above max_batch_size=32</p>" in page
    assert "<p>Recommendation: " in page
    assert (
        html_report.render_html(constructed_study({}, [{"params": {}}]), []).count(
            'id="throughput"'
        )
        == 0
    )  # no probe, no section


def test_cli_names_a_misspelled_override(capsys):
    code = batch_size_command.main([f"--config={STUDY}:smoke", "--config.data.batch_sise=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert (
        err.startswith("error: --config.data.batch_sise: no such field") and "'batch_size'" in err
    )


def test_cli_names_a_bad_flag(capsys):
    code = batch_size_command.main([f"--config={STUDY}:smoke", "--repeats=0"])
    assert code == 2 and "error: --repeats: must be an int >= 1" in capsys.readouterr().err


def test_noisy_timings_are_flagged():
    noisy = throughput.Probe([Row(8, 10, (1.0, 1.0, 1.0)), Row(16, 10, (1.0, 2.0, 1.5))], "done")
    text = throughput.report(noisy)
    assert "warning: timings of batch size 16 vary by more than 25%" in text
    assert "warning" not in throughput.report(throughput.Probe(noisy.rows[:1], "done"))
