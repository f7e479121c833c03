#!/usr/bin/env bash
# The GPU check: one command on a lent GPU machine, losing nothing when cut short.
#
#   here, once:   bash bench/gpu_session.sh --prepare     # the wheels below into .whl/ (git ignores it)
#   device tool:  run(command='bash bench/gpu_session.sh "$OUT"', carry=[".whl"], timeout_s=570)
#   afterwards:   cp -r <files_at>/<card>-<date> bench/results/ and commit it (the folder names the card)
#   rehearsal:    bash bench/gpu_session.sh --rehearse /tmp/out   # here, on the CPU: every GPU step must fail
#
# Device time: 15 minutes a session, the machine's start, idle time and closing counted.  The first call
# takes about 8-10 minutes, the start (1-2 minutes) included.  A machine stays warm only 30 s after a
# call and a fresh start costs 1-2 minutes more, so the only second call that fits is an IMMEDIATE rerun
# on the warm machine, of the step that matters most, under a smaller budget, e.g.
#   run(command='STEPS=tests BUDGET_S=180 bash bench/gpu_session.sh "$OUT"', carry=[".whl"], timeout_s=240)
# ($OUT starts empty again: the first call's files are already under its reply's files_at; commit both
# calls' session.log).  Otherwise call give_back at once.
#
# Everything goes into one folder, $1/<card>-<date>/, as each step ends (8 files, as many as the tool
# brings back):
#   session.log      what every step printed (nvidia-smi too), and how long it took
#   check.jsonl      each GPU backend resolved: device, on_gpu, free memory, versions, every spelling of
#                    the device, float32 and TF32 matmul errors (bench/gpu_check.py)
#   pytest-gpu.txt   pytest -m gpu with BACKPROP_CORE_REQUIRE_GPU=1 (a GPU test that cannot run fails),
#                    each test named with its result as it ends, the slowest 15 listed last
#   pytest-gpu.xml   the same as JUnit XML (written at the end: pytest stops itself before the step's limit)
#   results.jsonl    the benchmark of the GPU backends beside the PyTorch peer, one line per measurement
#                    as it ends, each naming the device its data were on; an entry whose data are not on
#                    a GPU fails, and the step with it (bench/run.py --require-gpu)
#   table.md, throughput.png   written from whatever finished (bench/run.py)
#   stream.jsonl     streamed chunks: side-stream copies against synchronous ones (bench/stream_overlap.py)
# Steps run in order of worth (check, tests, bench, stream; STEPS names a subset), each under its own
# limit, interrupted as Ctrl-C would (pytest and run.py then write what they have), and all inside
# BUDGET_S (default 480 s); a step that no longer fits is skipped, saying so.  The script exits 1 where
# a step failed, naming each.  Rehearsed on the CPU on 2026-12-06 (--rehearse, 2 loaded cores): every
# step ran in 88 s and wrote its file; gpu_check exit 1, every one of the 139 GPU tests failed or errored
# (BACKPROP_CORE_REQUIRE_GPU=1), every benchmark entry failed by name (no GPU), both streams failed.
#
# The GPU image (python3 3.12; CuPy 14, PyTorch 2.11, JAX 0.11, NumPy 2.5, numba, pytest, pytest-timeout,
# hypothesis, click, cloudpickle, fsspec, jinja2, msgpack, packaging, psutil, pyyaml, sortedcontainers,
# toolz) lacks these, and has no network; they are carried in .whl/ and installed with --no-index:
WHEELS="array_api_compat-1.16.0 array_api_strict-2.6.1 dask-2026.8.0 distributed-2026.8.0 partd-1.4.2
        locket-1.0.0 tblib-3.2.2 tornado-6.6.1 zict-3.0.0 scikit_learn-1.9.1 narwhals-2.29.0"
# scikit-learn: the image has one, of a version not read; the estimator needs >= 1.6 (validate_data,
# tags), so the one the CPU machine tests with travels too, with narwhals (>= 2.0.1 for it; the
# image's is of a version not read); its other needs (scipy, joblib, threadpoolctl) are there.
#
# --prepare downloads them with `pip download --python-version 3.12 --only-binary=:all:` from any Python
# with pip (PYTHON, default python3): no Python 3.12 is needed for that.  It then installs them into an
# empty folder and imports them with a CPython 3.12, as the image's: CHECK_PYTHON if set, else the first
# that runs of python3.12 on PATH (a pyenv shim that is not active does not), pyenv's versions/3.12*,
# /usr/bin/python3.12, /usr/local/bin/python3.12 and `py -3.12`.  Where none is found it says so, and
# that the wheels were not checked, and exits 0: name one with CHECK_PYTHON=/path/to/python3.12.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
WHEEL_DIR=${WHEEL_DIR:-.whl}
PYTHON=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-480}
STEPS=${STEPS:-check,tests,bench,stream}

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

is_312() { "$@" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1; }

find_python312() {  # sets CHECK (an array: a command running CPython 3.12), or returns 1
    local c
    if [[ -n ${CHECK_PYTHON:-} ]]; then
        CHECK=("$CHECK_PYTHON")
        is_312 "${CHECK[@]}" && return 0
        echo "gpu_session.sh: CHECK_PYTHON=$CHECK_PYTHON does not run a Python 3.12" >&2
        return 2
    fi
    for c in python3.12 "$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"/versions/3.12*/bin/python3.12 \
            /usr/bin/python3.12 /usr/local/bin/python3.12; do
        CHECK=("$c")
        is_312 "${CHECK[@]}" && return 0
    done
    CHECK=(py -3.12)
    is_312 "${CHECK[@]}" && return 0
    return 1
}

prepare() {  # on the CPU machine: download the wheels and check that they install and import
    local w target image found
    mkdir -p "$WHEEL_DIR"
    for w in $WHEELS; do
        $PYTHON -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 -d "$WHEEL_DIR" "${w%-*}==${w##*-}" || return 1
    done
    echo "downloaded into $WHEEL_DIR/ (for CPython 3.12 on manylinux x86_64):"
    wheel_files | xargs ls -l | awk '{print "  " $5 " bytes  " $NF}' || return 1
    du -sh "$WHEEL_DIR"
    find_python312
    found=$?
    if ((found == 2)); then return 2; fi
    if ((found)); then
        echo "gpu_session.sh: no Python 3.12 found (python3.12 on PATH, pyenv's versions, /usr/bin," \
             "/usr/local/bin, py -3.12): the wheels are downloaded but NOT install-checked;" \
             "name one: CHECK_PYTHON=/path/to/python3.12" >&2
        return 0
    fi
    # The check runs on a Python 3.12, as the GPU image's: scikit-learn's wheel is built for it. The
    # image's own packages that the carried ones need (NumPy, SciPy, joblib, threadpoolctl) come from
    # PyPI into a second folder, for this check only.
    echo "checking with ${CHECK[*]} ($("${CHECK[@]}" -c 'import sys; print(sys.version.split()[0])'))"
    target=$(mktemp -d) image=$(mktemp -d)
    "${CHECK[@]}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$target" \
        $(wheel_files) || return 1
    "${CHECK[@]}" -m pip install -q --no-compile --target "$image" numpy scipy joblib threadpoolctl \
        cloudpickle fsspec toolz pyyaml packaging click psutil sortedcontainers msgpack jinja2 || return 1
    PYTHONPATH=$target:$image "${CHECK[@]}" -c "
import sys, array_api_compat, array_api_strict, dask.array, distributed, sklearn, narwhals
for m in (array_api_compat, array_api_strict, dask, distributed, sklearn, narwhals):
    assert m.__file__.startswith(sys.argv[1]), m.__file__
    print(m.__name__, m.__version__, 'imported from the target folder')" "$target" || return 1
    rm -rf "$target" "$image"
}

if [[ ${1:-} == --prepare ]]; then prepare; exit $?; fi
rehearse=0
if [[ ${1:-} == --rehearse ]]; then rehearse=1; shift; fi
OUT_ROOT=${1:?usage: bash bench/gpu_session.sh OUTPUT_FOLDER   (on the CPU: --prepare, or --rehearse OUTPUT_FOLDER)}
files=$(wheel_files) || exit 2
if ((rehearse)); then
    card=rehearsal-on-the-cpu
elif ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_session.sh: no NVIDIA GPU here (nvidia-smi -L failed); this script runs on the lent GPU machine" \
         "(on the CPU: --rehearse)" >&2
    exit 3
else
    card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z ' 'a-z-' | tr -cd 'a-z0-9.-')
fi
OUT="$OUT_ROOT/$card-$(date -u +%F)"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1
# JAX would take 75% of the GPU at start; the tests share the card with CuPy and PyTorch.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

START=$SECONDS
left() { echo $((BUDGET_S - (SECONDS - START))); }
fit() { local l; l=$(left); echo $(($1 < l ? $1 : l)); }  # fit MAX_SECONDS: at most what is left
step() {  # step NAME MAX_SECONDS OUTPUT_FILE COMMAND...: at most MAX_SECONDS, and never past the budget
    local name=$1 cap=$2 file=$3 l t0 rc
    [[ $file == /* ]] || file=$OUT/$file  # a file in the output folder, or a path such as /dev/null
    shift 3
    l=$(left)
    if ((l < 20)); then echo "== $name: skipped, ${l} s left of ${BUDGET_S} s"; return 0; fi
    ((cap > l)) && cap=$l
    echo "== $name (at most ${cap} s, at $((SECONDS - START)) s)"
    t0=$SECONDS
    # Interrupted as Ctrl-C would: pytest writes its summary and XML, run.py its table.
    timeout -s INT -k 10 "$cap" "$@" 2>&1 | tee -a "$file"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s$( ((rc == 124 || rc == 137)) && echo ' (time limit)')"
    ((rc == 0)) || failed+=("$name")
}
failed=()
wanted() { [[ ",$STEPS," == *",$1,"* ]]; }

echo "== $(date -u +%FT%TZ) on $card; budget ${BUDGET_S} s; steps $STEPS"
if is_312 $PYTHON; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        $files || exit 1
    export PYTHONPATH=/tmp/site
elif ((rehearse)); then
    echo "== the carried wheels are for CPython 3.12 and $PYTHON is not: the rehearsal uses its own packages"
else
    echo "gpu_session.sh: $PYTHON is not a Python 3.12, as the GPU image's is and the carried wheels need" >&2
    exit 1
fi
# The project itself, unless this checkout is importable already (a rerun on a warm machine).
$PYTHON -c "import sys, backprop_core.backends as b; sys.exit(not b.__file__.startswith('$PWD/'))" 2>/dev/null \
    || $PYTHON -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
nvidia-smi 2>&1 || echo "(no nvidia-smi here)"

if wanted check; then
    step "resolve each GPU backend" 90 /dev/null $PYTHON bench/gpu_check.py --out "$OUT/check.jsonl"
fi
if wanted tests; then
    # One test that hangs must not eat the step: each has at most a minute, and pytest itself stops
    # between tests 20 s before the step's limit, so that its summary and XML are written in peace
    # (pytest-timeout, in the image; its --session-timeout from 2.3).
    cap=$(fit 200)
    limits=$($PYTHON -c "import pytest_timeout" 2>/dev/null && echo "--timeout=60 --timeout-method=signal")
    $PYTHON -c "import pytest_timeout as t, sys; sys.exit(not hasattr(t, 'SESSION_TIMEOUT_KEY'))" 2>/dev/null \
        && limits+=" --session-timeout=$((cap - 20))"
    echo "== pytest's own limits: ${limits:-none (pytest-timeout is not importable)}"
    step "pytest -m gpu, skips as failures" "$cap" pytest-gpu.txt env BACKPROP_CORE_REQUIRE_GPU=1 \
        $PYTHON -m pytest -m gpu -v -rfEs --tb=short --durations=15 $limits --junitxml="$OUT/pytest-gpu.xml" \
        -p no:cacheprovider
fi
if wanted bench; then
    # One worker per entry, the peer first; each entry an equal share of the step's time, less the report's.
    # At least 180 s, and what the tests left over, but for 50 s kept for one streaming run.
    l=$(left)
    cap=$(fit $((l - 50 > 180 ? l - 50 : 180)))
    step "benchmark: GPU backends beside the PyTorch peer" "$cap" /dev/null \
        $PYTHON bench/run.py --backends cupy,jax,cupy:fused,cupy:kernels,torch --peers torch-nn --require-gpu \
        --ms '2**16,2**19,2**22,2**26' --budget 8 --repeats 5 --time-limit $((cap - 15)) --out "$OUT"
    [[ -f $OUT/table.md ]] || $PYTHON bench/run.py --report "$OUT"  # a benchmark killed hard wrote no table
fi
if wanted stream; then
    for b in torch cupy; do
        step "streamed chunks on $b" 45 /dev/null $PYTHON bench/stream_overlap.py --backend $b --device gpu \
            --m '2**26' --chunk-size '2**22' --out "$OUT/stream.jsonl"
    done
fi
echo "== done after $((SECONDS - START)) s; commit: cp -r <files_at>/$card-$(date -u +%F) bench/results/"
ls -la "$OUT"
if ((${#failed[@]})); then
    printf '== failed (exit 1): %s\n' "${failed[@]}"
    exit 1
fi
