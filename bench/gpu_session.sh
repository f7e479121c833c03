#!/usr/bin/env bash
# The GPU check: one command on a lent GPU machine, well inside 9 minutes, losing nothing when cut short.
#
#   here, once:   bash bench/gpu_session.sh --prepare     # the wheels below into .whl/ (git ignores it), checked
#   device tool:  run(command='bash bench/gpu_session.sh "$OUT"', carry=[".whl"], timeout_s=560)
#   afterwards:   cp -r <files_at>/<card>-<date> bench/results/ and commit it (the folder names the card)
#
# Everything goes into one folder, $1/<card>-<date>/, as each step ends (8 files, as the tool brings back):
#   session.log      what every step printed, and how long it took
#   check.jsonl      each GPU backend resolved: device, on_gpu, free memory, versions, every spelling of
#                    the device, float32 and TF32 matmul errors (bench/gpu_check.py)
#   nvidia-smi.txt
#   pytest-gpu.txt   pytest -m gpu with BACKPROP_CORE_REQUIRE_GPU=1: a GPU test that cannot run fails
#   results.jsonl    the benchmark of the GPU backends and peers, one line per measurement as it ends;
#   table.md, throughput.png   written from whatever finished (bench/run.py)
#   stream.jsonl     streamed chunks: side-stream copies against synchronous ones (bench/stream_overlap.py)
# Steps run in order of worth (check, tests, benchmark, streaming), each under its own time limit and all
# inside BUDGET_S (default 480 s); a step that no longer fits is skipped, saying so.  A machine start costs
# 1-2 of the 15 device minutes, so a second try only fits on the still-warm machine: BUDGET_S=200.
# Here, the same script rehearses on the CPU with PYTHON=<a Python 3.12 venv>/bin/python (the carried
# scikit-learn wheel is for CPython 3.12) and a stand-in nvidia-smi on PATH; rehearsed so on 2026-11-28:
# every step ran and wrote its file, and every GPU test failed, as it must where no GPU is usable.
#
# The GPU image (python3 3.12; CuPy 14, PyTorch 2.11, JAX 0.11, NumPy 2.5, numba, pytest, hypothesis, click,
# cloudpickle, fsspec, jinja2, msgpack, packaging, psutil, pyyaml, sortedcontainers, toolz) lacks these, and
# has no network; they are carried in .whl/ and installed with --no-index:
WHEELS="array_api_compat-1.16.0 array_api_strict-2.6.1 dask-2026.8.0 distributed-2026.8.0 partd-1.4.2
        locket-1.0.0 tblib-3.2.2 tornado-6.6.1 zict-3.0.0 scikit_learn-1.9.1 narwhals-2.29.0"
# scikit-learn: the image has one, of a version not read; the estimator needs >= 1.6 (validate_data,
# tags), so the one the CPU machine tests with travels too, with narwhals (>= 2.0.1 for it; the
# image's is of a version not read); its other needs (scipy, joblib, threadpoolctl) are there.
# Checked on the CPU machine on 2026-11-28 with --prepare (CHECK_PYTHON=a Python 3.12, as the image's;
# here /root/.pyenv/versions/3.12.1/bin/python3.12): all eleven downloaded for CPython 3.12 on manylinux
# x86_64 (13 MB; pure Python but tornado, cp311-abi3, and scikit-learn, cp312), installed with pip
# --no-index --no-deps --target into an empty folder, and imported from there (array_api_compat,
# array_api_strict, dask.array, distributed, sklearn, narwhals): OK.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
WHEEL_DIR=${WHEEL_DIR:-.whl}
PYTHON=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-480}

wheel_files() {  # the listed wheels present in $WHEEL_DIR; names the missing ones on stderr
    local w f missing=()
    for w in $WHEELS; do
        f=$(ls "$WHEEL_DIR/$w"-*.whl 2>/dev/null | head -1)
        if [[ -n $f ]]; then echo "$f"; else missing+=("$w"); fi
    done
    if ((${#missing[@]})); then
        echo "gpu_session.sh: the carried wheels are missing from $WHEEL_DIR/: ${missing[*]/%/-*.whl}" >&2
        echo "  on the CPU machine run: bash bench/gpu_session.sh --prepare, then carry .whl (carry=[\".whl\"])" >&2
        return 2
    fi
}

prepare() {  # on the CPU machine: download the wheels and check that they install and import
    local w target
    mkdir -p "$WHEEL_DIR"
    for w in $WHEELS; do
        $PYTHON -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d "$WHEEL_DIR" "${w%-*}==${w##*-}" || return 1
    done
    # The check runs on a Python 3.12, as the GPU image's: scikit-learn's wheel is built for it. The
    # image's own packages that the carried ones need (NumPy, SciPy, joblib, threadpoolctl) come from
    # PyPI into a second folder, for this check only.
    local check=${CHECK_PYTHON:-python3.12} image
    target=$(mktemp -d) image=$(mktemp -d)
    $check -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$target" \
        $(wheel_files) || return 1
    $check -m pip install -q --no-compile --target "$image" numpy scipy joblib threadpoolctl \
        cloudpickle fsspec toolz pyyaml packaging click psutil sortedcontainers msgpack jinja2 || return 1
    PYTHONPATH=$target:$image $check -c "
import sys, array_api_compat, array_api_strict, dask.array, distributed, sklearn, narwhals
for m in (array_api_compat, array_api_strict, dask, distributed, sklearn, narwhals):
    assert m.__file__.startswith(sys.argv[1]), m.__file__
    print(m.__name__, m.__version__, 'imported from the target folder')" "$target" || return 1
    rm -rf "$target" "$image"
    du -sh "$WHEEL_DIR"
}

if [[ ${1:-} == --prepare ]]; then prepare; exit $?; fi
OUT_ROOT=${1:?usage: bash bench/gpu_session.sh OUTPUT_FOLDER   (or --prepare, on the CPU machine)}
files=$(wheel_files) || exit 2
if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_session.sh: no NVIDIA GPU here (nvidia-smi -L failed); this script runs on the lent GPU machine" >&2
    exit 3
fi
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9.-')
OUT="$OUT_ROOT/$card-$(date -u +%F)"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1
# JAX would take 75% of the GPU at start; the tests share the card with CuPy and PyTorch.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

START=$SECONDS
step() {  # step NAME MAX_SECONDS OUTPUT_FILE COMMAND...: at most MAX_SECONDS, and never past the budget
    local name=$1 cap=$2 file=$3 left t0 rc
    [[ $file == /* ]] || file=$OUT/$file  # a file in the output folder, or a path such as /dev/null
    shift 3
    left=$((BUDGET_S - (SECONDS - START)))
    if ((left < 20)); then echo "== $name: skipped, ${left} s left of ${BUDGET_S} s"; return 0; fi
    ((cap > left)) && cap=$left
    echo "== $name (at most ${cap} s, at $((SECONDS - START)) s)"
    t0=$SECONDS
    timeout -k 5 "$cap" "$@" 2>&1 | tee -a "$file"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s$( ((rc == 124 || rc == 137)) && echo ' (time limit)')"
}

echo "== $(date -u +%FT%TZ) on $card; budget ${BUDGET_S} s"
$PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    $files || exit 1
export PYTHONPATH=/tmp/site
# The project itself, unless this checkout is importable already (a rerun on a warm machine).
$PYTHON -c "import sys, backprop_core.backends as b; sys.exit(not b.__file__.startswith('$PWD/'))" 2>/dev/null \
    || $PYTHON -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
step "resolve each GPU backend" 90 /dev/null $PYTHON bench/gpu_check.py --out "$OUT/check.jsonl"
step "pytest -m gpu, skips as failures" 200 pytest-gpu.txt env BACKPROP_CORE_REQUIRE_GPU=1 \
    $PYTHON -m pytest -m gpu -q -rfEs --tb=short -p no:cacheprovider
step "benchmark: GPU backends beside the PyTorch peer" 180 /dev/null \
    $PYTHON bench/run.py --backends cupy,cupy:kernels,jax,cupy:fused,torch --peers torch-nn --budget 4 --repeats 5 --out "$OUT"
[[ -f $OUT/table.md ]] || $PYTHON bench/run.py --report "$OUT"  # a benchmark killed hard wrote no table
for b in torch cupy; do
    step "streamed chunks on $b" 45 /dev/null $PYTHON bench/stream_overlap.py --backend $b --m '2**26' \
        --chunk-size '2**22' --out "$OUT/stream.jsonl"
done
echo "== done after $((SECONDS - START)) s; commit: cp -r <files_at>/$card-$(date -u +%F) bench/results/"
ls -la "$OUT"
