#!/usr/bin/env bash
# The prepared accelerator check, one call (about 7 minutes on an H100):
#   1. bench_batched.py --trials 16 64: whole studies, batched vs sequential vs a Flax-docs loop;
#   2. every model family trains sequential and batched to the same numbers, the grain pipeline;
#   3. bench_workloads.py: ResNet / Transformer / GRU throughput, f32 vs bf16, device vs grain.
# Each step has its own time limit, so a slow one still leaves the others' logs in $OUT.
#
# The lent GPU machines have no network; their image holds jax, flax, optax and orbax but not
# ml-collections, SQLAlchemy, mnist1d or grain. Fetch those as wheels here first (Python 3.12 there):
#   echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl ml-collections sqlalchemy greenlet mnist1d grain array-record portpicker
# then run this script there with `.whl` carried. Results go to $OUT (or /tmp).
set -uo pipefail
out=${OUT:-/tmp}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:$PWD/tests:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/device.txt"
python3 -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tee -a "$out/device.txt"
timeout "${BENCH_BATCHED_S:-150}" python3 scripts/bench_batched.py --trials 16 64 2>&1 | tee "$out/bench_batched.log"
timeout "${TESTS_S:-130}" python3 -m pytest -q -x -p no:cacheprovider tests/test_models_families.py \
  tests/test_pipeline.py 2>&1 | tee "$out/tests.log"
timeout "${BENCH_WORKLOADS_S:-130}" python3 scripts/bench_workloads.py 2>&1 | grep -v absl | tee "$out/bench_workloads.log"
