"""Data parallelism: one trial's batch split over 8 (forced CPU) devices gives the result of one
device."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from factories import tiny_config
from jaxplay import spec, train
from jaxplay.errors import ConfigError
from jaxplay.train import mesh

OVERRIDES = [
    {"model.dropout": 0.1, "train.eval_batch_size": 512},
    {"data.pipeline": "grain", "train.eval_batch_size": 512},
]

EIGHT_DEVICES = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
import jax
from jaxplay import spec, train, workloads
from jaxplay.train import feed, mesh
from test_data_parallel import _config
assert jax.device_count() == 8
out = []
for i, overrides in enumerate(json.loads(sys.argv[1])):
    trial = spec.resolve(_config(overrides)).base
    curve = {}
    result = train.train_and_evaluate(
        trial, f"{sys.argv[3]}/{i}", on_eval=lambda s, m: curve.__setitem__(s, m)
    )
    program = trial.program
    if program.pipeline == "device":
        dataset = workloads.bind(trial).dataset
        examples = trial.train.train_eval_examples
        val = feed.device_data(dataset, program, examples, mesh.data_mesh(program))["val"][0]
        assert len(val.sharding.device_set) == 8 and not val.sharding.is_fully_replicated
    out.append({"status": result.status, "curve": curve})
print("RESULT" + json.dumps(out))
"""


def _config(overrides):
    c = tiny_config(**{"train.steps": 60, "train.eval_every": 20, "schedule.warmup_steps": 5})
    for path, value in overrides.items():
        section, field = path.split(".")
        with c[section].unlocked():
            c[section][field] = value
    return c


def test_a_trial_split_over_eight_devices_equals_one_device(tmp_path):
    tests = os.path.dirname(__file__)
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            EIGHT_DEVICES,
            json.dumps(OVERRIDES),
            tests,
            str(tmp_path / "eight"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    eight = json.loads(run.stdout.split("RESULT", 1)[1])
    for i, overrides in enumerate(OVERRIDES):
        curve = {}
        result = train.train_and_evaluate(
            spec.resolve(_config(overrides)).base,
            tmp_path / f"one{i}",
            on_eval=lambda s, m, curve=curve: curve.__setitem__(s, m),
        )
        assert result.status == eight[i]["status"] == "completed"
        other = {int(k): v for k, v in eight[i]["curve"].items()}
        assert sorted(other) == sorted(curve) == [0, 20, 40, 60]
        for step in curve:
            for name in {"train/loss", "val/loss", "train/batch_loss", "train/grad_norm"} & set(
                curve[step]
            ):
                np.testing.assert_allclose(
                    other[step][name],
                    curve[step][name],
                    rtol=1e-4,
                    atol=1e-6,
                    err_msg=f"{overrides} {name} at step {step}",
                )


def test_a_batch_that_does_not_split_over_the_devices_is_refused(monkeypatch):
    program = spec.resolve(tiny_config(**{"data.batch_size": 60})).base.program
    monkeypatch.setattr(mesh.jax, "device_count", lambda: 8)
    with pytest.raises(
        ConfigError, match="data.batch_size: 60 does not split evenly over 8 devices"
    ) as e:
        mesh.data_mesh(program)
    assert "use a multiple of 8" in str(e.value)
