#!/usr/bin/env bash
# The GPU check, as one prepared script for a session that is lent a device machine
# (see ../.library/device/README.md; it runs in the repository root there, $OUT comes back).
#
# Here, once:   echo /.whl/ >> .git/info/exclude
#               python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#                   --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl \
#                   array-api-compat==1.16.0 array-api-strict==2.6.1 \
#                   dask==2026.8.0 distributed==2026.8.0 partd locket tblib zict tornado
# (the GPU image lacks these; it has dask's other needs: click, cloudpickle, fsspec, pyyaml, toolz, ...)
# Then:         run(command="bash bench/gpu_session.sh", carry=[".whl"], timeout_s=560)
# and commit $OUT/bench/* under bench/results/<card>-<date>/ with the card named.
set -uo pipefail
export PYTHONUNBUFFERED=1
# JAX would take 75% of the GPU at start; the tests share the card with CuPy and PyTorch.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
(nvidia-smi || true) > "$OUT/nvidia-smi.txt" 2>&1
# The cross-backend tests of the gpu marker: cupy, torch on cuda, jax on gpu (streamed chunks
# included), and Dask arrays of CuPy chunks.
timeout 180 python3 -m pytest -m gpu -rs -q 2>&1 | tee "$OUT/pytest-gpu.txt"
# Throughput on the card, side by side (about 3 minutes).
timeout 200 python3 bench/run.py --backends numpy,numpy:chunked,cupy,torch,jax --peers torch-nn \
    --budget 5 --out "$OUT/bench" 2>&1 | tail -60 | tee "$OUT/bench.txt"
# Does a streamed chunk's copy overlap the previous chunk's compute? (issue 5)
for b in torch cupy; do
    timeout 50 python3 bench/stream_overlap.py --backend $b --m 2**26 --chunk-size 2**22 2>&1 | tee -a "$OUT/stream.txt"
done
