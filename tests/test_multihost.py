"""Several processes training one trial together under jax.distributed (two CPU processes on
127.0.0.1 stand in for the hosts of a TPU VM slice or a multi-node GPU job)."""

import socket
import subprocess
import sys

import pytest

from jaxplay import store as store_lib
from test_workers import _study_file, _worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("pipeline", ["device", "grain"])
def test_two_processes_complete_a_trial_together(pipeline, tmp_path):
    path = _study_file(tmp_path, "together", trials=2, steps=40, every=20)
    port = _free_port()
    hosts = [
        _worker(
            path,
            tmp_path,
            f"--config.data.pipeline={pipeline}",
            f"--coordinator=127.0.0.1:{port}",
            "--num_processes=2",
            f"--process_id={i}",
        )
        for i in (0, 1)
    ]
    outputs = [h.communicate(timeout=600)[0] for h in hosts]
    assert [h.returncode for h in hosts] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    primary, other = outputs
    assert "2 processes train each trial together" in primary, primary[-3000:]
    assert "trial 0 completed" in primary and "trial 1 completed" in primary
    assert "trial " not in other, other[-3000:]  # only process 0 prints, writes the store, reports
    store = store_lib.Store(store_lib.default_url(tmp_path))
    try:
        sid = store.study_id("together")
        record = store.record(sid)
        assert [t["status"] for t in record["trials"]] == ["completed", "completed"]
        for t in record["trials"]:
            assert [s for s, _ in store.curves(sid, t["index"])["val/error"]] == [0, 20, 40]
            # The checkpoints were written collectively into the shared workdir, and restore.
            steps = sorted(
                int(p.name)
                for p in (
                    tmp_path / "together" / f"trial_{t['index']:04d}" / "checkpoints"
                ).iterdir()
                if p.name.isdigit()
            )
            assert steps and steps[-1] == 40 and t["best_step"] in steps
        if pipeline == "device":  # the same batches as one process: the same numbers
            from jaxplay import config as config_lib
            from jaxplay import sweep

            alone = sweep.run_study(
                config_lib.load(str(path)),
                tmp_path / "alone",
                executor="sequential",
                log=lambda _: None,
                report=False,
            )
            for together, one in zip(record["trials"], alone["trials"]):
                assert together["best_value"] == pytest.approx(one["best_value"], abs=1e-6)
                assert together["final_metrics"]["val/loss"] == pytest.approx(
                    one["final_metrics"]["val/loss"], rel=1e-4
                )
    finally:
        store.close()


def test_importing_jaxplay_starts_no_jax_backend():
    # jax.distributed.initialize must run before any backend starts; the sweep imports all of these
    # (and the study file's modules) before it calls it.
    code = (
        "import jaxplay.sweep, jaxplay.spec, jaxplay.driver, jaxplay.train, jaxplay.tuning, "
        "jaxplay.models, jaxplay.workloads, jaxplay.analysis, jaxplay.data.pipeline, "
        "jaxplay.data.images, jaxplay.data.text\n"
        "from jax._src import xla_bridge\n"
        "assert not xla_bridge._backends, xla_bridge._backends"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


def test_multi_host_flags_go_together():
    from jaxplay import distributed
    from jaxplay.errors import ConfigError

    distributed.initialize()  # none given: one process, nothing to join
    with pytest.raises(
        ConfigError, match="--coordinator, --num_processes and --process_id go together"
    ):
        distributed.initialize(coordinator="127.0.0.1:1234", num_processes=2)
