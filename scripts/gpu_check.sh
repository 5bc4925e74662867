#!/usr/bin/env bash
# The prepared accelerator check for batched trials: the batched-vs-sequential tests, then the
# whole-study benchmark for 16 and 64 trials. One call, about 6 minutes on an H100.
#
# The lent GPU machines have no network; their image holds jax, flax, optax and orbax but not
# ml-collections, SQLAlchemy or mnist1d. Fetch those as wheels here first (Python 3.12 there):
#   echo /.whl/ >> .git/info/exclude
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl ml-collections sqlalchemy greenlet mnist1d
# then run this script there with `.whl` carried. Results go to $OUT (or /tmp) as tests.log, bench.log.
set -uo pipefail
out=${OUT:-/tmp}
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:$PWD/tests:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/device.txt"
python3 -c "import jax; print(jax.__version__, jax.devices())" 2>&1 | tee -a "$out/device.txt"
python3 -m pytest -q -x -p no:cacheprovider tests/test_batched.py 2>&1 | tee "$out/tests.log"
python3 scripts/bench_batched.py --trials 16 64 2>&1 | tee "$out/bench.log"
