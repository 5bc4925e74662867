#!/usr/bin/env bash
# The prepared accelerator check, one call, one table at the end (about 6 minutes on an H100/H200,
# 7.5 at most): scripts/accelerator_check.py runs each step in its own process with its own time
# limit, so a slow step still leaves the others' figures, and a step that fails or runs out of
# time is a row saying so:
#   device    nvidia-smi, jax's version and devices;
#   mlp       bench_batched.py --trials 16 64: quickstart studies, batched vs sequential;
#   cnn       bench_batched.py --study experiments/mnist1d_cnn.py --trials 16;
#   forecast  bench_forecast.py: the dry run's estimate vs the real study, predicted vs measured peak;
#   resnet    bench_workloads.py: ResNet-18 float32 vs bf16 throughput.
# The limits below (seconds; override with the variables) are reasoned per step in
# scripts/accelerator_check.py. Extra arguments go to it (e.g. --small on a CPU).
#
# The lent GPU machines have no network; their image holds jax, flax, optax and orbax but not
# ml-collections, SQLAlchemy, mnist1d or grain. Fetch those as wheels here first (Python 3.12 there):
#   echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl ml-collections sqlalchemy greenlet mnist1d grain array-record portpicker
# then run this script there with `.whl` carried. Results (logs, JSON figures, table.md,
# summary.json) go to $OUT (or /tmp/accelerator-check).
set -uo pipefail
out=${OUT:-/tmp/accelerator-check}
mkdir -p "$out"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
elif ! python3 -c "import jaxplay, ml_collections, grain" 2>/dev/null; then
  # A user's machine with a network: jaxplay and what it needs, from the project's own files.
  python3 -m pip install -q -e .
fi
export PYTHONPATH=$PWD:$PWD/tests:${PYTHONPATH:-} PYTHONUNBUFFERED=1
python3 scripts/accelerator_check.py --out "$out" \
  --device_s "${DEVICE_S:-20}" --mlp_s "${MLP_S:-175}" --cnn_s "${CNN_S:-70}" \
  --forecast_s "${FORECAST_S:-85}" --resnet_s "${RESNET_S:-100}" --total_s "${TOTAL_S:-450}" "$@"
