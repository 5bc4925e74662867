"""Every shell command in the README's code blocks, run as written in one folder and in README
order (so later commands read what earlier ones wrote), shrunk to smoke size by overrides where
the README's run is long. A command that cannot run on a test machine is listed in NOT_RUN with
the test that covers it; any other command the README gains is run, so the README cannot drift
from the code."""

import os
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
README = REPO / "README.md"

# Smoke size for the study-file commands: short trials, few of them (the README's own values
# come first on the line, so these win). The steps sweep cannot fit MNIST-1D's training set in
# 100 steps; its criterion is loosened to a loss it reaches, so it still gives an estimate.
SMOKE = (
    "--config.train.steps=100 --config.train.eval_every=50 --config.schedule.warmup_steps=10 "
    "--config.study.num_trials=4"
)
EXTRA = {
    "jaxplay.steps": "--fit_metric=train/loss --fit_threshold=1.5",
    "jaxplay.batch_size": "--max_batch_size=32 --repeats=2",
}
# Commands that do not run here, each with why and what covers it instead.
NOT_RUN = {
    "pip install": "installs the package: the environment these tests run in is its result",
    "python -m pytest": "the test command itself",
    "python -m jaxplay.sweep --config sine_study.py": "run exactly as written, from a folder "
    "holding the README's two files, by tests/test_readme.py",
    "python -m jaxplay.sweep --config ...": "placeholders for a cluster's hosts: two processes on "
    "127.0.0.1 run the same flags in tests/test_multihost.py",
    "scripts/tpu_vm.sh": "creates TPU VMs with gcloud (and its block's store is theirs): "
    "tests/test_tpu_vm.py runs it against a fake gcloud",
    "tensorboard --logdir": "a server that runs until stopped: tests/test_tensorboard.py reads "
    "the event files it shows with TensorBoard's own reader",
    "python -m jaxplay.studies serve": "a server that runs until Ctrl-C: tests/test_dashboard.py "
    "serves the same app and drives it in headless Chromium",
}


def _commands(block: str) -> list[str]:
    """The logical lines of a bash block: continuations joined, comments dropped."""
    lines = block.replace("\\\n", " ").splitlines()
    out = []
    for line in lines:
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(re.sub(r"\s+", " ", line))
    return out


def _skipped(command: str) -> str | None:
    return next((why for start, why in NOT_RUN.items() if command.startswith(start)), None)


def _shrunk(command: str, sandbox: pathlib.Path) -> str:
    """The command at smoke size, its absolute folders moved into the sandbox."""
    command = command.replace(" /shared/", f" {sandbox}/shared/").replace(
        " /tmp/", f" {sandbox}/tmp/"
    )
    module = re.match(r"python -m (jaxplay\.\w+)", command)
    if module and "--config" in command and "--help" not in command:
        command += f" {SMOKE} {EXTRA.get(module.group(1), '')}"
    return command.strip()


def _script(block: str, sandbox: pathlib.Path) -> tuple[list[str], list[str]]:
    """(the lines of a bash script running a block, the commands it runs)."""
    lines, ran, variables = [], [], {}
    commands = _commands(block)
    if any(c.startswith("scripts/tpu_vm.sh") for c in commands):
        return lines, ran
    for command in commands:
        assignment = re.fullmatch(r'(\w+)="([^"]*)"', command)
        if assignment:  # S="--config ... --workdir ...": expanded below, so it is shrunk too
            variables[assignment.group(1)] = assignment.group(2)
            continue
        for name, value in variables.items():
            command = re.sub(rf"\${name}\b", value, command)
        if command.startswith("export JAXPLAY_STORE="):
            # The example's PostgreSQL host: a store of the sandbox's instead (another test may
            # drop the test database's tables at any time).
            lines.append(f"export JAXPLAY_STORE=sqlite:///{sandbox}/shared-store.db")
            continue
        parts = []
        for part in command.split(" && "):
            if _skipped(part) is None:
                parts.append(_shrunk(part, sandbox))
        if parts:
            lines.append(" && ".join(parts))
            ran.extend(parts)
    return lines, ran


def test_every_readme_command_runs(tmp_path):
    sandbox = tmp_path
    (sandbox / "experiments").symlink_to(REPO / "experiments")
    bin_dir = sandbox / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "python"  # `python` is this interpreter (its environment included)
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        JAXPLAY_COMPILATION_CACHE=str(sandbox / "xla"),
        PYTHONUNBUFFERED="1",
    )
    env.pop("JAXPLAY_STORE", None)
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    ran = []
    for i, block in enumerate(blocks):
        lines, commands = _script(block, sandbox)
        if not lines:
            continue
        script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
        run = subprocess.run(["bash", "-c", script], cwd=sandbox, env=env, capture_output=True,
                             text=True, timeout=900)  # fmt: skip
        assert run.returncode == 0, (
            f"README bash block {i} failed:\n{script}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        )
        ran.extend(commands)
    # What ran: the quickstart, the tuning loop, the reading commands (and none went unnoticed).
    joined = "\n".join(ran)
    for module in ("sweep", "steps", "batch_size", "studies"):
        assert f"python -m jaxplay.{module} " in joined
    assert "--lineage promote" in joined and "studies compare" in joined
    assert (sandbox / "runs" / "mnist1d_mlp" / "report-mnist1d-mlp-width.html").exists()
