"""Ready for an accelerator, checked on a CPU: stacks sized by the device's memory (simulated
with --device_memory), recovery from a device that runs out of memory (injected), a trial too
big for the device, and the dry run."""

import re

import jax
import numpy as np
import pytest

from factories import float_only_study, tiny_config, write_study_file
from jaxplay import driver, spaces, spec, sweep, values
from jaxplay.errors import ConfigError
from jaxplay.store import Store
from jaxplay.train import cost
from jaxplay.train import step as step_lib

OOM = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.00GiB."


def _trial(width: int):
    return spec.resolve(tiny_config(**{"model.width": width})).base


def _nbytes(tree) -> int:
    return sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(tree))


def test_a_compiled_stack_counts_every_trial_state():
    trial = _trial(48)
    one, three = cost.footprint(trial, 1), cost.footprint(trial, 3)
    from jaxplay import optim, workloads
    from jaxplay.train import state as state_lib

    instance = workloads.bind(trial)
    _, init = state_lib.initializer(trial, instance, trial.program)
    keys = state_lib.trial_keys(trial.seed)
    state_bytes = _nbytes(jax.eval_shape(init.jitted, keys["init"], optim.as_arrays(trial.hparams)))
    # Each trial of a stack brings its params and optimizer state (and its activations).
    assert three.argument_bytes - one.argument_bytes >= 2 * state_bytes
    assert one.peak_bytes >= state_bytes and three.peak_bytes > one.peak_bytes
    assert one.flops_per_step > 0


@pytest.mark.parametrize("fits", [5, 2])
def test_stack_size_is_the_largest_that_fits_and_shrinks_as_the_model_grows(fits):
    small, large = _trial(40), _trial(160)
    budget = cost.footprint(small, fits).peak_bytes  # exactly `fits` small trials fit
    k, seen = cost.stack_size(small, 8, budget)
    assert k == fits
    assert all(f.peak_bytes <= budget for n, f in seen.items() if n <= k)
    assert cost.footprint(small, k + 1).peak_bytes > budget  # one more does not fit
    k_large, _ = cost.stack_size(large, 8, budget)
    assert k_large < k
    assert cost.footprint(large, k_large).peak_bytes <= budget or k_large == 1
    assert k_large == 1 or cost.footprint(large, k_large + 1).peak_bytes > budget
    assert cost.stack_size(small, 3, budget)[0] == min(3, fits)  # --batch_trials still caps it


def test_the_sweep_stacks_what_the_memory_holds_and_records_it(tmp_path):
    c = float_only_study(num_trials=6, **{"model.width": 40})
    trial = spec.resolve(c).base
    limit = int(cost.footprint(trial, 3).peak_bytes / cost.MARGIN) + 1
    lines = []
    record = sweep.run_study(
        c, tmp_path, executor="batched", batch_trials=6, device_memory=limit, log=lines.append
    )
    assert [t["status"] for t in record["trials"]] == ["completed"] * 6
    said = [line for line in lines if line.startswith("group ")]
    assert len(said) == 1 and "6 trial(s), stacks of 3 (the most that fit)" in said[0], said
    started = [line for line in lines if "run batched in one compiled program" in line]
    assert [line.split()[1] for line in started] == ["0-2", "3-5"], lines
    store = Store(f"sqlite:///{tmp_path}/jaxplay.db", readonly=True)
    [probe] = store.probes(c.study.name, "batching")
    store.close()
    assert probe["result"]["stack"] == 3 and probe["result"]["limit_bytes"] == limit
    assert probe["result"]["predicted_peak_bytes"] <= limit * cost.MARGIN
    assert probe["config"]["cap"] == 6


def _device_that_holds(monkeypatch, most: int, *, at_call: int = 1):
    """Simulates a device on which a stack of more than `most` trials runs out of memory: at its
    first call (XLA failing to compile or place it) or at call `at_call` (while running)."""
    real = step_lib.period_fn

    def period_fn(graphdef, task, program, stacked=False):
        fn = real(graphdef, task, program, stacked)
        calls = []

        def period(state, *args):
            calls.append(1)
            k = jax.tree.leaves(state)[0].shape[0] if stacked else 1
            if k > most and len(calls) >= at_call:
                raise jax.errors.JaxRuntimeError(OOM)
            return fn(state, *args)

        period.lower = fn.lower
        return period

    monkeypatch.setattr(step_lib, "period_fn", period_fn)


def _results(record) -> list:
    return [
        (t["status"], t["best_step"], t["best_value"], t["final_metrics"])
        for t in sorted(record["trials"], key=lambda t: t["index"])
    ]


@pytest.mark.parametrize("at_call", [1, 3], ids=["compiling", "running"])
def test_out_of_memory_halves_the_stack_and_the_results_are_an_uninterrupted_runs(
    tmp_path, monkeypatch, at_call
):
    # A checkpoint every period: the halves resume from the step the big stack reached.
    c = float_only_study(num_trials=4, **{"train.steps": 200, "train.checkpoint_every_secs": 0.0})
    reference = sweep.run_study(
        c, tmp_path / "ref", executor="batched", batch_trials=2, log=lambda s: None
    )
    _device_that_holds(monkeypatch, 2, at_call=at_call)
    lines = []
    record = sweep.run_study(
        c, tmp_path / "oom", executor="batched", batch_trials=4, log=lines.append
    )
    halving = [line for line in lines if line.startswith("out of device memory")]
    assert len(halving) == 1 and "with 4 trials stacked" in halving[0], lines
    assert "halving to stacks of 2" in halving[0] and "RESOURCE_EXHAUSTED" in halving[0]
    resumed = [line for line in lines if "resuming trial" in line]
    assert len(resumed) == (0 if at_call == 1 else 4), lines  # from step 100: two periods ran
    ours, theirs = _results(record), _results(reference)
    for (status, step, value, final), (r_status, r_step, r_value, r_final) in zip(ours, theirs):
        assert status == r_status == "completed" and step == r_step
        assert value == pytest.approx(r_value, abs=1e-6)
        assert final.keys() == r_final.keys()
        for name in ("val/loss", "val/error", "train/loss"):
            np.testing.assert_allclose(final[name], r_final[name], rtol=1e-5, err_msg=name)
    store = Store(f"sqlite:///{tmp_path}/oom/jaxplay.db", readonly=True)
    [probe] = store.probes(c.study.name, "batching")
    store.close()
    assert probe["result"]["stack"] == 2
    assert probe["result"]["reason"] == "out of memory with stacks of 4"


def test_a_trial_too_big_for_the_device_fails_with_the_sizes_and_the_study_goes_on(
    tmp_path, monkeypatch, capsys
):
    c = tiny_config(**{"study.num_trials": 2, "study.algorithm": "grid"})
    c.search = dict(model=dict(width=spaces.discrete([16, 64], role="scientific")))
    real = step_lib.period_fn

    def period_fn(graphdef, task, program, stacked=False):  # width 64 fits nowhere
        fn = real(graphdef, task, program, stacked)

        def period(state, *args):
            if any(a.shape[-1] == 64 for a in jax.tree.leaves(state["params"])):
                raise jax.errors.JaxRuntimeError(OOM)
            return fn(state, *args)

        period.lower = fn.lower
        return period

    monkeypatch.setattr(step_lib, "period_fn", period_fn)
    study_file = write_study_file(tmp_path / "study.py", c)
    argv = ["--config", study_file, "--workdir", str(tmp_path / "w"),
            "--executor", "batched", "--report=false"]  # fmt: skip
    assert sweep.main(argv) == 1  # done, but a trial needs attention
    out = capsys.readouterr().out
    store = Store(f"sqlite:///{tmp_path}/w/jaxplay.db", readonly=True)
    record = store.record(store.study_id(c.study.name))
    store.close()
    by_width = {t["params"]["model.width"]: t for t in record["trials"]}
    assert by_width[16]["status"] == "completed"
    big = by_width[64]
    assert big["status"] == "failed"
    first = big["error"].splitlines()[0]
    assert first.startswith("DeviceOutOfMemory: out of device memory with one trial: it needs ")
    for words in ("data.batch_size 64", "bfloat16", "smaller model", "RESOURCE_EXHAUSTED"):
        assert words in first, first
    assert "FAILED" in out and "--retry_failed" in out


GROUP = re.compile(r"^group (\[.*?\]) \(.*?\): (\d+) trial\(s\)")


def test_dry_run_writes_nothing_and_its_groups_are_the_sweeps(tmp_path, capsys):
    c = float_only_study(num_trials=6, **{"train.steps": 100})
    c.search.model = dict(
        width=spaces.discrete([24, 48], role="scientific"), dropout=spaces.linear(0.0, 0.3)
    )
    study_file = write_study_file(tmp_path / "study.py", c)
    trial = spec.resolve(c).trial({"model.width": 48, "model.dropout": 0.1})
    limit = int(cost.footprint(trial, 2).peak_bytes / cost.MARGIN) + 1
    workdir = tmp_path / "w"
    argv = ["--config", study_file, "--workdir", str(workdir), "--executor", "batched",
            "--device_memory", str(limit), "--report=false"]  # fmt: skip
    assert sweep.main([*argv, "--dry_run"]) == 0
    dry = capsys.readouterr().out
    assert not workdir.exists()  # no store, no folder, no checkpoint
    assert "6 trial(s) to run (0 finished)" in dry and "Nothing was trained or written" in dry
    planned = {}
    for line in dry.splitlines():
        if (m := GROUP.match(line)) and " stack(s) of " in line:
            stack = int(line.split(" stack(s) of ")[1].split(";")[0])
            planned[m.group(1)] = (int(m.group(2)), stack)
    assert len(planned) == 2, dry
    assert "estimate: about" in dry and "GFLOP per trial step" in dry

    assert sweep.main(argv) == 0
    run = capsys.readouterr().out
    ran = {}
    for line in run.splitlines():
        if m := GROUP.match(line):
            ran[m.group(1)] = (int(m.group(2)), int(line.split("stacks of ")[1].split(" ")[0]))
    assert ran == planned, (run, dry)
    assert planned["[model.width=48]"][1] <= 2 < 3  # the larger model's stacks are memory-bound

    # A dry run of the finished study has nothing left to run, and still writes nothing.
    before = sorted(p.name for p in workdir.rglob("*"))
    assert sweep.main([*argv, "--dry_run"]) == 0
    assert "0 trial(s) to run (6 finished)" in capsys.readouterr().out
    assert sorted(p.name for p in workdir.rglob("*")) == before


def test_the_dry_run_in_python_says_the_same(tmp_path):
    c = float_only_study(num_trials=3, **{"train.steps": 100})
    forecast = sweep.forecast_study(c, tmp_path / "none", executor="sequential")
    assert isinstance(forecast, driver.Forecast) and not (tmp_path / "none").exists()
    [group] = forecast.groups
    assert (group.trials, group.stack, group.stacks) == (3, 1, 3)
    assert group.trial_bytes == group.stack_bytes > 0
    assert forecast.seconds == pytest.approx(group.compile_s + group.train_s + group.checkpoint_s)
    assert forecast.seconds > 0 and forecast.lines()[-1].startswith("estimate: about")


@pytest.mark.parametrize(
    "value, message",
    [("lots", "'lots' is not a size"), ("0", "must be > 0"), ("-1GB", "must be > 0")],
)
def test_device_memory_flag_is_checked(tmp_path, value, message, capsys):
    argv = ["--config", "experiments/mnist1d_mlp.py:smoke", "--workdir", str(tmp_path),
            f"--device_memory={value}"]  # fmt: skip
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err
    assert "--device_memory" in err and message in err and not (tmp_path / "jaxplay.db").exists()


def test_sizes_parse_and_print():
    assert values.parse_size("16GB") == 16 * 10**9 and values.parse_size("512MiB") == 512 * 2**20
    assert values.parse_size("1.5e9") == 1_500_000_000
    assert values.size(3 * 2**30) == "3.0 GiB" and values.size(100) == "100 B"


def test_the_report_says_how_memory_sized_the_stacks(tmp_path):
    from jaxplay import analysis
    from jaxplay.analysis import html_report

    c = float_only_study(num_trials=2, **{"train.steps": 100})
    limit = int(cost.footprint(spec.resolve(c).base, 2).peak_bytes / cost.MARGIN) + 1
    sweep.run_study(
        c, tmp_path, executor="batched", device_memory=limit, report=False, log=lambda s: None
    )
    page = html_report.render_html(analysis.load(workdir=tmp_path, study=c.study.name))
    row = page[page.index("<th>Stacks</th>") :].split("</tr>")[0]
    assert "2 per stack (fits the memory budget; predicted peak" in row
    assert values.size(limit) in row and "--device_memory" in row


def test_the_dry_run_halves_a_stack_that_runs_out_and_names_a_trial_that_never_fits(
    tmp_path, monkeypatch
):
    c = float_only_study(num_trials=4, **{"train.steps": 100})
    _device_that_holds(monkeypatch, 2)
    forecast = sweep.forecast_study(c, executor="batched", batch_trials=4)
    [group] = forecast.groups
    assert (group.stack, group.stacks) == (2, 2)  # as the sweep would run it after halving
    _device_that_holds(monkeypatch, 0)
    with pytest.raises(ConfigError, match=r"out of device memory with one trial: it needs "):
        sweep.forecast_study(c, executor="batched", batch_trials=4)
