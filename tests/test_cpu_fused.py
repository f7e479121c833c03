"""The fused step on the CPU: the equations' results, NaN kept, the same bits, its build cache, when it applies."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from backprop_core import equations
from backprop_core.activations import ACTIVATIONS
from backprop_core.equations import OUTPUTS
from backprop_core.errors import InvalidInputError
from backprop_core.initialization import initial_parameters_host
from backprop_core.lowering import build_cache, cpu_fused
from backprop_core.lowering.cpu_source import LANES, MATH_FLOAT32, MATH_ULPS

pytestmark = pytest.mark.skipif(build_cache.c_compiler() is None, reason="no C compiler (gcc or cc) here")

PARAMETERS = ("W1", "b1", "W2", "b2")
GRADIENTS = ("dW1", "db1", "dW2", "db2", "J")
LEARNING_RATE = 0.3
M_WHOLE = 1500  # the batch the sums are scaled by, larger than the examples summed (a chunk's case)


@pytest.fixture(autouse=True, scope="module")
def _own_cache(tmp_path_factory):
    """Builds go to a folder of this module's, not the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BACKPROP_CORE_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def _problem(n0, n1, n2, m, seed=0, softmax=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n0, m))
    Y = np.eye(n2)[:, rng.integers(0, n2, m)] if softmax else (rng.random((n2, m)) > 0.5).astype(np.float64)
    p = initial_parameters_host(n0, n1, n2, "xavier", seed)
    p["b1"] = 0.3 * rng.standard_normal((n1, 1))  # biases away from zero, so relu's kink is not special
    return X, Y, p


def _expected(X, Y, p, g, output=equations.SIGMOID):
    grads = equations.gradients(X, Y, *p.values(), ACTIVATIONS[g], m=M_WHOLE, with_cost=True, output=output)
    return {**dict(zip(GRADIENTS, grads)),
            **dict(zip(PARAMETERS, equations.update(*p.values(), *grads[:4], LEARNING_RATE)))}


def _run(step, X, Y, p, with_cost=True):
    X, Y = step.prepare(X), step.prepare(Y)
    return step.outputs(step.run({k: v.astype(step.dtype) for k, v in p.items()}, X, Y, with_cost, m=M_WHOLE))


def _worst(got, want, names):
    """The largest error of any output, relative to that output's largest element."""
    return max(float(np.max(np.abs(np.asarray(got[n], np.float64) - want[n])) / np.max(np.abs(want[n])))
               for n in names)


# -- the equations' results --------------------------------------------------------------------------
@pytest.mark.parametrize("with_cost", [True, False], ids=["cost", "step"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("n2", [1, 3])
def test_double_precision_matches_the_equations(activation, n2, with_cost):
    X, Y, p = _problem(3, 5, n2, 1000 + 7)  # not a multiple of the lanes: the last block is partial
    step = cpu_fused.CpuFusedStep(3, 5, n2, activation, LEARNING_RATE, "float64", threads=2)
    names = PARAMETERS + (GRADIENTS if with_cost else GRADIENTS[:4])
    assert _worst(_run(step, X, Y, p, with_cost), _expected(X, Y, p, activation), names) < 1e-12


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_single_precision_is_within_float32_rounding(activation):
    """float32 sums of 1,000 terms: within 1e-5 of the float64 equations (eps32 is 1.2e-7),
    and no further from them than NumPy's float32 run of the equations is, give or take 2e-6."""
    X, Y, p = _problem(3, 5, 2, 1000)
    step = cpu_fused.CpuFusedStep(3, 5, 2, activation, LEARNING_RATE, "float32", threads=2)
    got = _run(step, X, Y, p)
    want = _expected(X, Y, p, activation)
    numpy32 = _expected(X.astype(np.float32), Y.astype(np.float32), {k: v.astype(np.float32) for k, v in p.items()},
                        activation)
    assert got["W1"].dtype == np.float32
    error = _worst(got, want, PARAMETERS + GRADIENTS)
    assert error < 1e-5
    assert error <= _worst(numpy32, want, PARAMETERS + GRADIENTS) + 2e-6


@pytest.mark.parametrize("dtype,bound", [("float64", 1e-12), ("float32", 1e-5)])
def test_a_softmax_output_matches_the_equations(dtype, bound):
    X, Y, p = _problem(3, 5, 4, 777, softmax=True)
    softmax = OUTPUTS["softmax"]
    step = cpu_fused.CpuFusedStep(3, 5, 4, "tanh", LEARNING_RATE, dtype, output=softmax, threads=2)
    assert _worst(_run(step, X, Y, p), _expected(X, Y, p, "tanh", softmax), PARAMETERS + GRADIENTS) < bound


# -- NaN and infinity as in the equations -----------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_a_nan_parameter_gives_nan_gradients_and_cost(activation, dtype):
    X, Y, p = _problem(2, 4, 1, 100)
    p["W1"][0, 0] = np.nan
    got = _run(cpu_fused.CpuFusedStep(2, 4, 1, activation, LEARNING_RATE, dtype), X, Y, p)
    assert np.isnan(got["J"]), "the cost"
    assert np.isnan(got["dW2"]).any() and np.isnan(got["db2"]).all(), "the output layer's gradients"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_infinite_inputs_give_what_the_equations_give(dtype):
    """An infinite X saturates tanh and the sigmoid (the cost stays finite where the equations' does);
    the flags of NaN and infinity in every output match the equations'."""
    X, Y, p = _problem(2, 4, 1, 64)
    X[0, 3], X[1, 10] = np.inf, -np.inf
    got = _run(cpu_fused.CpuFusedStep(2, 4, 1, "tanh", LEARNING_RATE, dtype), X, Y, p)
    with np.errstate(all="ignore"):  # the equations meet inf - inf, as the step does
        want = _expected(X.astype(dtype), Y.astype(dtype), {k: v.astype(dtype) for k, v in p.items()}, "tanh")
    for name in PARAMETERS + GRADIENTS:
        np.testing.assert_array_equal(np.isnan(got[name]), np.isnan(want[name]), err_msg=name)
        np.testing.assert_array_equal(np.isinf(got[name]), np.isinf(want[name]), err_msg=name)


# -- the same bits; the parts add up to the whole ---------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_same_inputs_and_threads_give_the_same_bits_wherever_the_data_lie(dtype):
    X, Y, p = _problem(2, 4, 1, 10_001)
    step = cpu_fused.CpuFusedStep(2, 4, 1, "tanh", LEARNING_RATE, dtype, threads=2)
    first = _run(step, X, Y, p)
    # The same values one element further into a buffer: another alignment for the vector loads.
    m = X.shape[1]
    shifted = np.empty(2 * m + 1, dtype)[1:].reshape(2, m)
    shifted[...] = X
    assert shifted.flags.c_contiguous and shifted.ctypes.data % 64 != step.prepare(X).ctypes.data % 64
    again = step.outputs(step.run({k: v.astype(dtype) for k, v in p.items()}, shifted, step.prepare(Y), True,
                                  m=M_WHOLE))
    for name in first:
        assert first[name].tobytes() == again[name].tobytes(), name


def _sleeps_of_other_threads() -> int:
    """How often this process's threads other than the calling one went to sleep (Linux's count)."""
    me, total = threading.get_native_id(), 0
    for task in os.listdir("/proc/self/task"):
        if int(task) != me:
            with contextlib.suppress(FileNotFoundError), open(f"/proc/self/task/{task}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("voluntary_ctxt_switches"))
    return total


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts the threads' sleeps in /proc (Linux)")
def test_steps_on_one_thread_leave_the_pools_threads_asleep():
    """A plan on one thread after a timing on two (the planner times both): the pool's thread, started
    by the step on two, must not be woken by each step on one, which needs it not."""
    X, Y, p = _problem(2, 4, 1, 4096)
    two = cpu_fused.CpuFusedStep(2, 4, 1, "tanh", LEARNING_RATE, "float64", threads=2)
    one = cpu_fused.CpuFusedStep(2, 4, 1, "tanh", LEARNING_RATE, "float64", threads=1)
    X, Y = two.prepare(X), two.prepare(Y)
    for step, wakes in ((two, lambda n: n >= 50), (one, lambda n: n < 10)):  # two: the count sees the pool
        step(p, X, Y, False)
        before = _sleeps_of_other_threads()
        for _ in range(200):
            step(p, X, Y, False)
        assert wakes(_sleeps_of_other_threads() - before), (step.threads, _sleeps_of_other_threads() - before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_ranges_sums_add_up_to_the_whole_batch(dtype):
    X, Y, p = _problem(2, 4, 1, 5 * LANES + 3)
    step = cpu_fused.CpuFusedStep(2, 4, 1, "sigmoid", LEARNING_RATE, dtype, threads=1)
    Xc, Yc = step.prepare(X), step.prepare(Y)
    params = {k: v.astype(dtype) for k, v in p.items()}
    whole = step.sums(params, Xc, Yc, 0, Xc.shape[1])
    cut = 2 * LANES + 5
    parts = step.sums(params, Xc, Yc, 0, cut) + step.sums(params, Xc, Yc, cut, Xc.shape[1])
    np.testing.assert_allclose(parts, whole, rtol=1e-12 if dtype == "float64" else 1e-5)
    threads = cpu_fused.CpuFusedStep(2, 4, 1, "sigmoid", LEARNING_RATE, dtype, threads=3)
    one, three = _run(step, X, Y, p), _run(threads, X, Y, p)
    for name in GRADIENTS:
        np.testing.assert_allclose(three[name], one[name], rtol=1e-12 if dtype == "float64" else 1e-5, err_msg=name)


# -- the build cache ------------------------------------------------------------------------------------
SMALL_C = "int bc_answer(void) { return 42; }\n"


def test_a_build_is_cached_and_loaded_again_without_compiling(monkeypatch, tmp_path):
    monkeypatch.setenv("BACKPROP_CORE_CACHE", str(tmp_path))
    library = build_cache.build(SMALL_C, ("-O1",))
    assert library.parent == tmp_path and library.with_suffix(".sha256").exists()
    monkeypatch.setattr(build_cache.subprocess, "run", lambda *a, **k: pytest.fail("compiled again"))
    assert build_cache.build(SMALL_C, ("-O1",)) == library
    assert build_cache.load(SMALL_C, ("-O1",)).bc_answer() == 42


@pytest.mark.parametrize("damage", ["truncated", "garbage", "no checksum"])
def test_a_damaged_build_is_rebuilt_not_loaded(damage, monkeypatch, tmp_path):
    monkeypatch.setenv("BACKPROP_CORE_CACHE", str(tmp_path))
    library = build_cache.build(SMALL_C, ("-O1",))
    sound = library.read_bytes()
    if damage == "truncated":
        library.write_bytes(sound[:100])
    elif damage == "garbage":
        library.write_bytes(b"\x7fELF" + bytes(len(sound) - 4))
    else:
        library.with_suffix(".sha256").unlink()
    assert build_cache.build(SMALL_C, ("-O1",)) == library
    assert build_cache.load(SMALL_C, ("-O1",)).bc_answer() == 42
    assert library.with_suffix(".sha256").read_text().strip() == build_cache._digest(library)


def test_other_flags_are_another_build(monkeypatch, tmp_path):
    monkeypatch.setenv("BACKPROP_CORE_CACHE", str(tmp_path))
    assert build_cache.build(SMALL_C, ("-O1",)) != build_cache.build(SMALL_C, ("-O2",))


def test_the_cache_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("BACKPROP_CORE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert build_cache.cache_folder() == tmp_path / "backprop-core"


def test_a_compiler_error_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("BACKPROP_CORE_CACHE", str(tmp_path))
    with pytest.raises(build_cache.BuildError, match="could not build the test text"):
        build_cache.build("this is not C", ("-O1",), what="the test text")
    assert not list(tmp_path.glob("*.so"))


# -- when it applies ------------------------------------------------------------------------------------
def test_narrow_float_networks_on_numpy_apply():
    applies, why = cpu_fused.applies((2, 4, 1), "tanh", "float32")
    assert applies, why


@pytest.mark.parametrize("shape", [(64, 64, 1), (784, 512, 1)])
def test_wide_layers_do_not_apply_and_say_why(shape):
    applies, why = cpu_fused.applies(shape, "tanh", "float32")
    assert not applies and "sums" in why and "limit" in why


@pytest.mark.parametrize("kwargs,match", [
    ({"dtype": "float16"}, "float32 or float64"),
    ({"weighted": True}, "sample weights"),
    ({"optimizer": "adam"}, "plain gradient descent"),
    ({"device": "cuda:0"}, "NumPy arrays on the host"),
])
def test_what_it_does_not_run_is_named(kwargs, match):
    args = {"dtype": "float32", **kwargs}
    applies, why = cpu_fused.applies((2, 4, 1), "tanh", args.pop("dtype"), **args)
    assert not applies and match in why


def test_without_a_compiler_it_does_not_apply(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder with no compiler in it
    applies, why = cpu_fused.applies((2, 4, 1), "tanh", "float32")
    assert not applies and "no C compiler" in why


@pytest.mark.parametrize("value", ["0", "off"])
def test_the_environment_turns_it_off(monkeypatch, value):
    monkeypatch.setenv(cpu_fused.ENVIRONMENT, value)
    applies, why = cpu_fused.applies((2, 4, 1), "tanh", "float32")
    assert not applies and cpu_fused.ENVIRONMENT in why


def test_the_step_refuses_data_it_cannot_read():
    step = cpu_fused.CpuFusedStep(2, 4, 1, "tanh", LEARNING_RATE, "float32")
    X, Y, p = _problem(2, 4, 1, 10)
    with pytest.raises(InvalidInputError, match="NumPy array of float32 whose rows are contiguous"):
        step(p, X, Y.astype(np.float32), False)  # X is float64
    with pytest.raises(InvalidInputError, match="rows are contiguous"):
        step(p, np.asfortranarray(X, np.float32), Y.astype(np.float32), False)
    with pytest.raises(InvalidInputError, match=r"shape \(2, m\)"):
        step(p, step.prepare(X[:1]), step.prepare(Y), False)
    with pytest.raises(InvalidInputError, match="over the fused"):
        cpu_fused.CpuFusedStep(64, 64, 1, "tanh", LEARNING_RATE, "float32")


def test_the_parameters_passed_in_stay_as_they_were():
    X, Y, p = _problem(2, 4, 1, 50)
    step = cpu_fused.CpuFusedStep(2, 4, 1, "tanh", LEARNING_RATE, "float64")
    X, Y = step.prepare(X), step.prepare(Y)
    first, _ = step(p, X, Y, False)
    kept = {k: v.copy() for k, v in first.items()}
    second, J = step(first, X, Y, True)
    assert J.shape == () and np.isfinite(J)
    for name in PARAMETERS:
        np.testing.assert_array_equal(first[name], kept[name])
        assert not np.shares_memory(first[name], second[name])


# -- the vector math the step calls: glibc's libmvec, within the bound the README states ---------------------
VECTOR_MATH_C = """
#include <math.h>
#include "{declarations}"
#define MAP(name, type) void bc_map_##name(const type* x, type* y, long n) {{ \\
    _Pragma("omp simd") for (long i = 0; i < n; ++i) y[i] = name(x[i]); }}
MAP(expf, float) MAP(logf, float) MAP(log1pf, float) MAP(tanhf, float)
MAP(exp, double) MAP(log, double) MAP(log1p, double) MAP(tanh, double)
"""


@pytest.fixture(scope="module")
def vector_math(tmp_path_factory):
    from backprop_core.lowering.cpu_source import _vector_declarations

    header = tmp_path_factory.mktemp("mvec") / "declarations.h"
    header.write_text("#ifdef BC_MVEC\n" + _vector_declarations() + "\n#endif\n")
    text = VECTOR_MATH_C.format(declarations=header)
    try:
        return build_cache.load(text, cpu_fused.FLAGS + cpu_fused.MVEC[0], cpu_fused.MVEC[1])
    except build_cache.BuildError:
        pytest.skip("glibc's libmvec does not link here (the step then calls the scalar functions)")


def _mapped(library, function_name: str, x):
    """y = f(x) element by element, by the C function ``void f(const T* x, T* y, long n)`` of ``library``."""
    import ctypes

    y = np.empty_like(x)
    function = getattr(library, function_name)
    function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
    function(x.ctypes.data, y.ctypes.data, x.size)
    return y


def _ulps_from_exact(name: str, x, y, wider):
    """``(rounded, finite, ulps)``: NumPy's ``name`` of x in the ``wider`` dtype, rounded to x's dtype
    (beyond the dtype's range: infinity, as the scalar function gives), where that is finite, and y's
    distance from the wider value there, in units of the rounded value's last place."""
    with np.errstate(all="ignore"):
        want = getattr(np, name)(x.astype(wider))
        rounded = want.astype(x.dtype)
    finite = np.isfinite(rounded)
    return rounded, finite, np.abs(y[finite] - want[finite]) / np.spacing(np.abs(rounded[finite]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,low,high", [("exp", -100, 100), ("log", 1e-30, 1e30), ("log1p", -0.999, 1e6),
                                           ("tanh", -20, 20)])
def test_vector_math_is_within_4_ulp_and_keeps_nan_and_infinity(vector_math, name, low, high, dtype):
    rng = np.random.default_rng(1)
    wide = np.exp(rng.uniform(np.log(1e-30), np.log(max(abs(low), high)), 100_000)) * rng.choice([-1, 1], 100_000)
    x = np.concatenate([rng.uniform(low, high, 100_000), np.clip(wide, low, high),
                        [np.nan, np.inf, -np.inf, 0.0, -0.0]]).astype(dtype)
    y = _mapped(vector_math, f"bc_map_{name}{'f' if dtype == 'float32' else ''}", x)
    rounded, finite, ulps = _ulps_from_exact(name, x, y, np.longdouble)
    assert float(np.max(ulps)) <= 4.0
    np.testing.assert_array_equal(y[~finite], rounded[~finite])


# -- the float32 exp and tanh the step writes out: within the bounds cpu_source states ------------------------
WRITTEN_MATH_C = """#include <math.h>
#define BC_INF ((float)INFINITY)
#define BC_NAN ((float)NAN)
""" + MATH_FLOAT32 + """
#define MAP(name) void bc_map_##name(const float* x, float* y, long n) { \\
    _Pragma("omp simd") for (long i = 0; i < n; ++i) y[i] = bc_##name##f(x[i]); }
MAP(exp) MAP(tanh) MAP(log) MAP(log1p)
"""


def _every_61st_float32(low, high):
    """Every 61st float32 in [low, high), 0 <= low < high: all exponents, a spread of mantissas."""
    bits = np.arange(np.float32(low).view(np.int32), np.float32(high).view(np.int32), 61, dtype=np.int32)
    return bits.view(np.float32)


@pytest.mark.parametrize("name,high,low", [("exp", 110.0, -110.0),  # past where e^x overflows and underflows
                                           ("tanh", 20.0, -20.0),  # past where it rounds to 1
                                           ("log", 3.4e38, 0.0),  # every exponent, the subnormals too
                                           ("log1p", 3.4e38, -1.0)])
def test_the_written_out_float32_math_is_within_its_bound_and_keeps_nan_and_infinity(name, high, low):
    library = build_cache.load(WRITTEN_MATH_C, cpu_fused.FLAGS, ("m",))
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, -2.0, 1e-45], np.float32)
    x = np.concatenate([_every_61st_float32(0.0, high), -_every_61st_float32(0.0, -low), special])
    y = _mapped(library, f"bc_map_{name}", x)
    rounded, finite, ulps = _ulps_from_exact(name, x, y, np.float64)
    assert float(np.max(ulps)) <= MATH_ULPS[name], x[finite][np.argmax(ulps)]
    np.testing.assert_array_equal(y[~finite], rounded[~finite])  # NaN, infinities, overflow
    assert np.array_equal(np.signbit(y[x == 0]), np.signbit(rounded[x == 0]))


# -- the pool of threads ---------------------------------------------------------------------------------
def test_steps_called_from_two_threads_at_once_each_get_their_own_result():
    from concurrent.futures import ThreadPoolExecutor

    X, Y, p = _problem(2, 4, 1, 20_000)
    step = cpu_fused.CpuFusedStep(2, 4, 1, "tanh", LEARNING_RATE, "float64", threads=2)
    X, Y = step.prepare(X), step.prepare(Y)
    alone = [step.run(p, X[:, :k], Y[:, :k], True) for k in (20_000, 9_999)]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda k: step.run(p, X[:, :k], Y[:, :k], True), [20_000, 9_999] * 20))
    for i, out in enumerate(together):
        assert out.tobytes() == alone[i % 2].tobytes()


def _step_in_child(queue):
    X, Y, p = _problem(2, 4, 1, 1000)
    step = cpu_fused.CpuFusedStep(2, 4, 1, "tanh", LEARNING_RATE, "float64", threads=2)
    queue.put(step.run(p, step.prepare(X), step.prepare(Y), True))


def test_a_forked_child_starts_its_own_threads():
    import multiprocessing

    X, Y, p = _problem(2, 4, 1, 1000)
    step = cpu_fused.CpuFusedStep(2, 4, 1, "tanh", LEARNING_RATE, "float64", threads=2)
    here = step.run(p, step.prepare(X), step.prepare(Y), True)  # the parent's pool is running
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_step_in_child, args=(queue,))
    child.start()
    try:
        there = queue.get(timeout=60)  # a child waiting on its parent's threads would never answer
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert there.tobytes() == here.tobytes()


def test_a_build_for_another_cpu_is_another_build(monkeypatch, tmp_path):
    """-march=native on another machine (a home folder shared over the network) is another key."""
    monkeypatch.setenv("BACKPROP_CORE_CACHE", str(tmp_path))
    here = build_cache.build(SMALL_C, ("-O1", "-march=native"))
    monkeypatch.setattr(build_cache, "_native", lambda compiler: "-march=some-other-cpu")
    assert build_cache.build(SMALL_C, ("-O1", "-march=native")) != here


def test_without_vector_math_the_scalar_functions_give_the_same_results(monkeypatch):
    """Where libmvec does not link (another libc), the same text builds with the scalar functions."""
    monkeypatch.setattr(cpu_fused, "MVEC", (("-DBC_MVEC",), ("no-such-library",)))
    monkeypatch.setattr(cpu_fused, "_LIBRARIES", {})
    X, Y, p = _problem(3, 5, 2, 333)
    step = cpu_fused.CpuFusedStep(3, 5, 2, "tanh", LEARNING_RATE, "float64")
    assert _worst(_run(step, X, Y, p), _expected(X, Y, p, "tanh"), PARAMETERS + GRADIENTS) < 1e-12


AFFINITY_CHILD = """
import os

import numpy as np
from backprop_core.lowering import cpu_fused
allowed = set(cpu_fused.CORES)
os.sched_setaffinity(0, {min(allowed)})  # as a processes plan's running() pins its calling thread
before = set(os.listdir("/proc/self/task"))
step = cpu_fused.CpuFusedStep(2, 4, 1, "tanh", 0.1, "float64", threads=2)
X = np.zeros((2, 1000)); Y = np.zeros((1, 1000))
step.run({"W1": np.ones((4, 2)), "b1": np.zeros((4, 1)), "W2": np.ones((1, 4)), "b2": np.zeros((1, 1))}, X, Y, True)
started = set(os.listdir("/proc/self/task")) - before
cores = [os.sched_getaffinity(int(tid)) for tid in started]
assert all(len(c) == 1 for c in cores) and set().union(*cores) == allowed and len(cores) == len(allowed), (
    cores, allowed)
print("ok", len(started))
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two cores, to tell one pinned core from all of them")
def test_the_pools_threads_are_one_on_each_core_though_started_from_a_pinned_thread(tmp_path):
    """In a fresh interpreter (a new pool): started from a thread pinned to one core, the workers are one
    on each of the process's cores."""
    done = subprocess.run([sys.executable, "-c", AFFINITY_CHILD], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BACKPROP_CORE_CACHE": str(tmp_path)})
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


PLACEMENT_CHILD = """
import os
import threading
import time

import numpy as np
from backprop_core.lowering import cpu_fused

me, (first, second) = threading.get_native_id(), sorted(cpu_fused.CORES)[:2]
step = cpu_fused.CpuFusedStep(2, 4, 1, "tanh", 0.1, "float32", threads=2)
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((2, 1 << 16)).astype(np.float32), np.ones((1, 1 << 16), np.float32)
p = {"W1": np.ones((4, 2)), "b1": np.zeros((4, 1)), "W2": np.ones((1, 4)), "b2": np.zeros((1, 1))}


def ran():  # {thread: (nanoseconds run, last core)} of this process's threads but this one
    out = {}
    for tid in map(int, os.listdir("/proc/self/task")):
        if tid != me:
            with open(f"/proc/self/task/{tid}/schedstat") as f, open(f"/proc/self/task/{tid}/stat") as g:
                out[tid] = (int(f.read().split()[0]), int(g.read().rsplit(")", 1)[1].split()[36]))
    return out


step.run(p, X, Y, False)  # the pool's threads start (each runs once on its own core as it does)
shared = 0
for core in (second, first):  # the caller moves, as the planner's calibrations move it
    os.sched_setaffinity(0, {core})
    # A thread started by the first step, or given the last part on the core the caller now takes, may
    # still be on its way into its wait (8 us on that core, once in about 15 runs); that is no part.
    time.sleep(0.2)
    for _ in range(40):
        before = ran()
        step.run(p, X, Y, False)
        shared += any(t[1] == core for tid, t in ran().items() if t[0] != before.get(tid, (0, 0))[0])
print("shared", shared)
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2
                    or not os.path.isdir("/proc/self/task"), reason="needs Linux and two cores")
def test_a_step_on_two_threads_never_runs_its_other_part_on_the_callers_core(tmp_path):
    """The bench worker's plan at 2-4-1, 2^16: after the calibrations had moved the calling thread to the
    core its worker last ran on, every step woke the worker there, behind its caller, and two threads were
    no faster than one.  The caller is moved here as they moved it; no part may run on its core but its own."""
    done = subprocess.run([sys.executable, "-c", PLACEMENT_CHILD], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BACKPROP_CORE_CACHE": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["shared", "0"], done.stdout


@pytest.mark.parametrize("output", sorted(OUTPUTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gcc_vectorises_both_variants_simd_loops(activation, dtype, output, tmp_path):
    """A select GCC cannot vectorise leaves the loop scalar, ten times slower, with the same results:
    only the compiler's report shows it."""
    import re

    from backprop_core.activations import get_activation
    from backprop_core.lowering.cpu_source import cpu_source

    compiler = build_cache.c_compiler()
    if "gcc" not in build_cache._version(compiler).lower():
        pytest.skip(f"{compiler} is not GCC, whose -fopt-info reports what it vectorised")
    text = cpu_source(2, 4, 3, get_activation(activation), dtype, OUTPUTS[output]).text
    source = tmp_path / "step.c"
    source.write_text(text)
    done = subprocess.run([compiler, *cpu_fused.FLAGS, *cpu_fused.MVEC[0], "-fPIC", "-shared", "-o",
                           str(tmp_path / "step.so"), str(source), *(f"-l{name}" for name in cpu_fused.MVEC[1]),
                           "-fopt-info-vec-optimized"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    vectorised = {int(line) for line in re.findall(r"step\.c:(\d+):\d+: optimized: loop vectorized", done.stderr)}
    loops = [number + 2 for number, line in enumerate(text.splitlines(), 1) if "#pragma omp simd" in line]
    assert len(loops) == 2 and all(line in vectorised for line in loops), (loops, sorted(vectorised))
