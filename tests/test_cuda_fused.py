"""The fused kernel: its expressions against the equations, its CUDA source, when it applies, the GPU step."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from array_api_compat import array_namespace

from backprop_core import equations, tracing
from backprop_core.activations import ACTIVATIONS, Activation
from backprop_core.errors import InvalidInputError, InvalidTypeError
from backprop_core.lowering.cuda_fused import (MAX_ACCUMULATORS, FusedStep, NotFusableError, accumulator_count, choose,
                                 fused_support, kernel_source, lower_step)
from backprop_core.lowering.cuda_fused.cuda import BLOCK, C_OPERATIONS, grid_size
from backprop_core.lowering.cuda_fused.host import NUMPY_OPERATIONS, HostBuild, compiler, run_numpy
from backprop_core.lowering.cuda_fused.scalar import AFTER, EXAMPLE, RULES, SCALAR_OPS
from backprop_core.initialization import initial_parameters_host

from conftest import assert_close, gpu, skip_unusable, tolerance

ACTIVATION_NAMES = sorted(ACTIVATIONS)
GRADIENTS = ("dW1", "db1", "dW2", "db2", "J")
PARAMETERS = ("W1", "b1", "W2", "b2")
M_WHOLE = 1500  # the batch the sums are scaled by, larger than the examples summed (a chunk's case)
LEARNING_RATE = 0.3


def _problem(n0, n1, n2, m, seed=0, softmax=False):
    """X (n0, m), Y (n2, m) (one-hot for a softmax output, else 0/1) and host parameters."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n0, m))
    if softmax:
        Y = np.eye(n2)[:, rng.integers(0, n2, m)]
    else:
        Y = (rng.random((n2, m)) > 0.5).astype(np.float64)
    p = initial_parameters_host(n0, n1, n2, "xavier", seed)
    p["b1"] = 0.3 * rng.standard_normal((n1, 1))  # biases away from zero, so relu's kink is not special
    return X, Y, p


def _expected(X, Y, p, g):
    """The equations' gradients and cost (m = M_WHOLE), and the update along them."""
    grads = equations.gradients(X, Y, *p.values(), g, m=M_WHOLE, with_cost=True)
    return {**dict(zip(GRADIENTS, grads)),
            **dict(zip(PARAMETERS, equations.update(*p.values(), *grads[:4], LEARNING_RATE)))}


def assert_close_to(got, want, rtol, names):
    """Each output within rtol of the equations' value, relative to the array's largest element."""
    for name in names:
        scale = float(np.max(np.abs(want[name])))
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=rtol * scale, err_msg=name)


# An activation that is not one of the library's: the kernel follows whatever the equations call.
def _softplus(Z):
    xp = array_namespace(Z)
    return xp.log1p(xp.exp(Z))


def _softplus_prime(Z, A):
    return 1.0 / (1.0 + array_namespace(Z).exp(-Z))


SOFTPLUS = Activation("softplus", _softplus, _softplus_prime)


# Reduces over the hidden units of each example, as a softmax output will (max, exp, sum over axis 0).
def _shifted_tanh(Z):
    xp = array_namespace(Z)
    return xp.tanh(Z - xp.max(Z, axis=0, keepdims=True))


SHIFTED_TANH = Activation("shifted_tanh", _shifted_tanh, lambda Z, A: 1.0 - A * A)

ALL_ACTIVATIONS = [ACTIVATIONS[name] for name in ACTIVATION_NAMES] + [SOFTPLUS, SHIFTED_TANH]
IDS = [g.name for g in ALL_ACTIVATIONS]


# -- the lowering, evaluated with NumPy ---------------------------------------------------------------
@pytest.mark.parametrize("g", ALL_ACTIVATIONS, ids=IDS)
@pytest.mark.parametrize("n2", [1, 3])
def test_numpy_form_computes_the_gradients_of_the_equations(g, n2):
    X, Y, p = _problem(3, 5, n2, 1000)
    got = run_numpy(lower_step(3, 5, n2, g, with_cost=True), X, Y, p, m=M_WHOLE, learning_rate=LEARNING_RATE)
    assert_close_to(got, _expected(X, Y, p, g), 1e-12, GRADIENTS)


@pytest.mark.parametrize("g", ALL_ACTIVATIONS, ids=IDS)
@pytest.mark.parametrize("n2", [1, 3])
def test_numpy_form_updates_as_the_equations_update(g, n2):
    X, Y, p = _problem(3, 5, n2, 1000)
    got = run_numpy(lower_step(3, 5, n2, g, with_cost=False), X, Y, p, m=M_WHOLE, learning_rate=LEARNING_RATE)
    assert "J" not in got
    assert_close_to(got, _expected(X, Y, p, g), 1e-12, PARAMETERS)


def test_sums_over_the_examples_are_the_only_work_after_the_loop():
    program = lower_step(2, 4, 1, ACTIVATIONS["tanh"], with_cost=True)
    in_loop = program.needed(program.accumulators)
    assert not [s for s in in_loop if s.phase == AFTER]
    assert not [s for s in in_loop if s.op == "input" and s.name == "m"]  # 1/m waits for the sums
    assert not [s for s in program.needed(program.output_scalars) if s.phase == EXAMPLE]


@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_a_value_that_needs_all_the_examples_first_is_refused(reduce):
    def centred(Z):
        xp = array_namespace(Z)
        return xp.tanh(Z - getattr(xp, reduce)(Z, axis=1, keepdims=True))

    g = Activation("centred", centred, lambda Z, A: 1.0 - A * A)
    with pytest.raises(NotFusableError, match="over the examples"):
        lower_step(2, 4, 1, g, with_cost=False)


def test_every_traced_op_lowers_and_prints():
    assert set(tracing.OPS) - {"input"} <= set(RULES)
    assert set(SCALAR_OPS) <= set(C_OPERATIONS)
    assert set(SCALAR_OPS) - {"astype"} <= set(NUMPY_OPERATIONS)


# -- the generated source, compiled for the CPU -------------------------------------------------------
_BUILDS = {}


def _host_build(n0, n1, n2, g, dtype, tmp_path_factory):
    if compiler() is None:
        skip_unusable("no C++ compiler (g++, c++, clang++) to build the generated source for the CPU", gpu=False)
    key = (n0, n1, n2, g, dtype)
    if key not in _BUILDS:
        _BUILDS[key] = HostBuild(kernel_source(n0, n1, n2, g, dtype), tmp_path_factory.mktemp("host"))
    return _BUILDS[key]


@pytest.mark.parametrize("variant", ["cost", "step"])
@pytest.mark.parametrize("g", ALL_ACTIVATIONS, ids=IDS)
@pytest.mark.parametrize("n2", [1, 3])
def test_generated_source_built_for_the_cpu_matches_the_equations(g, n2, variant, tmp_path_factory):
    X, Y, p = _problem(3, 5, n2, 1000)
    build = _host_build(3, 5, n2, g, "float64", tmp_path_factory)
    got = build.run(X, Y, p, m=M_WHOLE, learning_rate=LEARNING_RATE, variant=variant)
    names = PARAMETERS + GRADIENTS if variant == "cost" else PARAMETERS + GRADIENTS[:4]
    assert_close_to(got, _expected(X, Y, p, g), 1e-12, names)


@pytest.mark.parametrize("g", ALL_ACTIVATIONS, ids=IDS)
def test_single_precision_source_built_for_the_cpu_matches_the_equations(g, tmp_path_factory):
    X, Y, p = _problem(3, 5, 2, 1000)
    build = _host_build(3, 5, 2, g, "float32", tmp_path_factory)
    got = build.run(X.astype(np.float32), Y.astype(np.float32), p, m=M_WHOLE, learning_rate=LEARNING_RATE)
    assert got["W1"].dtype == np.float32
    want = _expected(X, Y, p, g)
    for name in PARAMETERS + GRADIENTS:
        np.testing.assert_allclose(got[name], want[name], **tolerance("float32"), err_msg=name)


# -- the generated source, as CUDA ------------------------------------------------------------------
SOURCES = [(2, 4, 1, "tanh", "float32"), (2, 4, 1, "sigmoid", "float64"), (3, 5, 3, "relu", "float32"),
           (3, 5, 3, "leaky_relu", "float64"), (4, 8, 1, "tanh", "float64"), (1, 1, 1, "relu", "float32")]


@pytest.mark.parametrize("n0,n1,n2,activation,dtype", SOURCES)
def test_cuda_source_compiles_with_nvcc(n0, n1, n2, activation, dtype, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        skip_unusable("nvcc (the CUDA compiler) is not installed here", gpu=False)
    source = tmp_path / "fused.cu"
    source.write_text(kernel_source(n0, n1, n2, activation, dtype).text)
    done = subprocess.run([nvcc, "-arch=sm_90", "-cubin", "-o", str(tmp_path / "fused.cubin"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "fused.cubin").stat().st_size > 0


#: The card the GPU checks run on (an H200, compute capability 9.0) names the architecture.
NVRTC_ARCH = "90"


def nvrtc_compile(text: str, kernels, arch: str = NVRTC_ARCH) -> bytes:
    """``text`` compiled by NVRTC with the options CuPy 14's ``RawModule(code=text)`` passes
    on a device of compute capability ``arch``; returns the cubin, after checking that
    NVRTC warned of nothing and that each of ``kernels`` is in it under the name
    ``get_function`` looks up.  No GPU needed; skips, saying why, where CuPy or
    NVRTC is missing (CI has neither).

    The options, from CuPy 14.2's source: ``compile_with_cache`` (cupy/_core/core.pyx)
    adds ``assemble_cupy_compiler_options``' (CCCL and CUDA include paths,
    ``--std=c++17``); ``_compile_with_cache_cuda`` (cupy/cuda/compiler.py) adds
    ``-ftz=true``; ``_compile_using_nvrtc_no_warning`` adds ``-arch=sm_<cc>`` (a cubin,
    not PTX) and ``--device-as-default-execution-space`` (``--pch`` only when
    CUPY_NVRTC_USE_PCH is set).
    """
    try:
        from cupy._core import core
        from cupy_backends.cuda.libs import nvrtc
    except Exception as exc:  # ImportError, or CuPy's own complaint about its CUDA libraries
        skip_unusable(f"CuPy is not importable here ({type(exc).__name__}: {exc})", gpu=False)
    try:
        nvrtc.getVersion()
    except Exception as exc:  # no libnvrtc where cuda-pathfinder looks
        skip_unusable(f"NVRTC is not loadable here: {str(exc).splitlines()[0]}", gpu=False)
    if not hasattr(core, "assemble_cupy_compiler_options"):
        skip_unusable("this CuPy predates CuPy 14's compiler options (assemble_cupy_compiler_options)", gpu=False)
    options = [*core.assemble_cupy_compiler_options(()), "-ftz=true", f"-arch=sm_{arch}",
               "--device-as-default-execution-space"]
    program = nvrtc.createProgram(text, "kern.cu", [], [])
    try:
        nvrtc.compileProgram(program, options)
    except Exception as exc:
        pytest.fail(f"NVRTC refused the source: {exc}\n{nvrtc.getProgramLog(program)}")
    log = nvrtc.getProgramLog(program)
    assert not re.search(r"warning|error", log, re.IGNORECASE), log
    cubin = nvrtc.getCUBIN(program)
    missing = [name for name in kernels if name.encode() + b"\0" not in cubin]
    assert not missing, f"kernels {missing} are not in the cubin under their own names"
    return cubin


# No activation above calls sqrt or pow: this one does, so that NVRTC sees every C function the printer writes.
def _root_power(Z):
    return array_namespace(Z).sqrt(1.0 + Z * Z) ** 1.5


def _root_power_prime(Z, A):
    xp = array_namespace(Z)
    return 1.5 * Z / xp.sqrt(xp.sqrt(1.0 + Z * Z))  # d/dZ (1 + Z^2)^0.75


ROOT_POWER = Activation("root_power", _root_power, _root_power_prime)
NVRTC_SHAPES = [(2, 4), (3, 5)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n0,n1", NVRTC_SHAPES, ids=[f"{n0}-{n1}" for n0, n1 in NVRTC_SHAPES])
@pytest.mark.parametrize("n2", [1, 3])
@pytest.mark.parametrize("g", ALL_ACTIVATIONS + [ROOT_POWER], ids=IDS + [ROOT_POWER.name])
def test_cuda_source_compiles_with_nvrtc_as_cupy_compiles_it(g, n2, n0, n1, dtype):
    source = kernel_source(n0, n1, n2, g, dtype)
    nvrtc_compile(source.text, [source.kernel(stage, variant) for stage in ("partial", "finalize")
                                for variant in source.accumulators])


_MATH = re.compile(r"\b(tanh|exp|log1p|log|fabs|sqrt|pow)(f?)\(")
_FLOAT = re.compile(r"(?<![\w.])(\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)(f?)")


@pytest.mark.parametrize("activation", ["sigmoid", "leaky_relu"])
def test_single_precision_source_uses_single_precision_functions_and_literals(activation):
    text = kernel_source(2, 4, 1, activation, "float32").text
    assert {suffix for _, suffix in _MATH.findall(text)} == {"f"}
    assert {suffix for _, suffix in _FLOAT.findall(text)} == {"f"}
    assert "typedef float real;" in text


@pytest.mark.parametrize("activation", ["sigmoid", "leaky_relu"])
def test_double_precision_source_uses_double_precision_functions_and_literals(activation):
    text = kernel_source(2, 4, 1, activation, "float64").text
    assert {suffix for _, suffix in _MATH.findall(text)} == {""}
    assert {suffix for _, suffix in _FLOAT.findall(text)} == {""}
    assert "typedef double real;" in text


def test_the_kernel_follows_the_activation():
    tanh = kernel_source(2, 4, 1, "tanh", "float32").text
    relu = kernel_source(2, 4, 1, "relu", "float32").text
    assert "tanhf(" in tanh and "tanhf(" not in relu


def test_the_grid_fills_the_device_once_and_no_more_than_the_examples_need():
    assert grid_size(1, 132, 8) == 1
    assert grid_size(10 * BLOCK + 1, 132, 8) == 11
    assert grid_size(2**26, 132, 8) == 132 * 8
    assert grid_size(2**26, 132, 0) == 132


# -- when it applies ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 4, 1), (3, 5, 3), (1, 1, 1), (4, 8, 1)])
def test_the_accumulator_count_is_what_the_trace_sums(shape):
    assert len(lower_step(*shape, ACTIVATIONS["tanh"], with_cost=True).accumulators) == accumulator_count(*shape)
    assert len(lower_step(*shape, ACTIVATIONS["tanh"], with_cost=False).accumulators) == accumulator_count(*shape) - 1


def test_narrow_shapes_are_supported():
    assert fused_support(2, 4, 1) == (True, fused_support(2, 4, 1)[1])
    assert "18 sums" in fused_support(2, 4, 1)[1]


@pytest.mark.parametrize("shape", [(64, 64, 1), (784, 512, 1), (8, 8, 1)])
def test_shapes_over_the_limit_are_refused_with_the_reason(shape):
    applies, why = fused_support(*shape)
    assert not applies
    assert str(accumulator_count(*shape)) in why and str(MAX_ACCUMULATORS) in why and "array-API path" in why


def test_the_fused_step_refuses_a_shape_over_the_limit_before_touching_a_gpu():
    with pytest.raises(InvalidInputError, match="over the fused kernel's limit"):
        FusedStep(64, 64, 1, "tanh", 0.1, "float32")


@pytest.mark.parametrize("fused,shape,expected", [
    (True, (2, 4, 1), True), (True, (64, 64, 1), False), (False, (2, 4, 1), False),
    ("auto", (64, 64, 1), False)])
def test_the_fused_keyword_decides(fused, shape, expected):
    use, why = choose(fused, *shape)
    assert use is expected and why


def test_auto_waits_for_gpu_measurements():
    use, why = choose("auto", 2, 4, 1)
    assert not use and "fused=True" in why


@pytest.mark.parametrize("call,error,match", [
    (lambda: fused_support(0, 4, 1), InvalidInputError, "n0 must be at least 1"),
    (lambda: fused_support(2, 4.0, 1), InvalidTypeError, "n1 must be an integer"),
    (lambda: kernel_source(2, 4, 1, "tanh", "float16"), InvalidInputError, "float32 or float64"),
    (lambda: kernel_source(2, 4, 1, "swish", "float32"), InvalidInputError, "unknown activation"),
    (lambda: choose("yes", 2, 4, 1), InvalidInputError, "fused must be"),
    (lambda: FusedStep(2, 4, 1, "tanh", "fast", "float32"), InvalidTypeError, "learning_rate"),
])
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# -- on a GPU -------------------------------------------------------------------------------------------
def _train_fused(backend, X, Y, p, g, dtype, iterations, cost_every=5):
    n1, n0 = p["W1"].shape
    step = FusedStep(n0, n1, p["W2"].shape[0], g, 0.5, dtype)
    params = backend.parameters_from_host(p, dtype)
    X, Y = backend.asarray(X, dtype), backend.asarray(Y, dtype)
    costs = []
    for i in range(iterations):
        params, J = step(params, X, Y, with_cost=i % cost_every == 0)
        if J is not None:
            costs.append(J)
    return params, [float(J) for J in costs]  # the parameters on the GPU, the costs read after the loop


def _train_numpy(X, Y, p, g, iterations):
    params, costs = tuple(p.values()), []
    for i in range(iterations):
        *params, J = equations.step(X, Y, *params, g, 0.5, with_cost=i % 5 == 0)
        if J is not None:
            costs.append(float(J))
    return dict(zip(PARAMETERS, params)), costs


@gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n2", [1, 3])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_fused_step_lands_on_the_float64_numpy_parameters(cupy_backend, activation, n2, dtype):
    X, Y, p = _problem(3, 5, n2, 5000)
    g = ACTIVATIONS[activation]
    got, got_costs = _train_fused(cupy_backend, X, Y, p, g, dtype, 20)
    want, want_costs = _train_numpy(X, Y, p, g, 20)
    for name in PARAMETERS:
        assert_close(got[name], want[name], cupy_backend, dtype, err_msg=name)
    np.testing.assert_allclose(got_costs, want_costs, **tolerance(dtype))


@gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_runs_are_bit_identical(cupy_backend, dtype):
    X, Y, p = _problem(2, 4, 1, 2**20)  # many blocks, so the order of their sums matters
    first = _train_fused(cupy_backend, X, Y, p, ACTIVATIONS["tanh"], dtype, 10)
    second = _train_fused(cupy_backend, X, Y, p, ACTIVATIONS["tanh"], dtype, 10)
    for name in PARAMETERS:
        assert np.array_equal(cupy_backend.to_numpy(first[0][name]), cupy_backend.to_numpy(second[0][name])), name
    assert first[1] == second[1]


@gpu
def test_fused_step_keeps_the_parameters_it_was_given(cupy_backend):
    X, Y, p = _problem(2, 4, 1, 1000)
    step = FusedStep(2, 4, 1, "tanh", 0.5, "float64")
    params = cupy_backend.parameters_from_host(p, "float64")
    X, Y = cupy_backend.asarray(X, "float64"), cupy_backend.asarray(Y, "float64")
    first, _ = step(params, X, Y, with_cost=False)
    before = {k: cupy_backend.to_numpy(v).copy() for k, v in first.items()}
    step(first, X, Y, with_cost=False)
    step(first, X, Y, with_cost=True)
    for name in PARAMETERS:
        assert np.array_equal(cupy_backend.to_numpy(first[name]), before[name]), name


@gpu
def test_fused_step_reads_examples_as_rows_without_a_copy(cupy_backend):
    X, Y, p = _problem(3, 5, 2, 3000)
    step = FusedStep(3, 5, 2, "tanh", 0.5, "float64")
    params = cupy_backend.parameters_from_host(p, "float64")
    columns, _ = step(params, cupy_backend.asarray(X, "float64"), cupy_backend.asarray(Y, "float64"), False)
    rows, _ = step(params, cupy_backend.asarray(X.T.copy(), "float64").T,
                   cupy_backend.asarray(Y.T.copy(), "float64").T, False)
    for name in PARAMETERS:
        assert np.array_equal(cupy_backend.to_numpy(rows[name]), cupy_backend.to_numpy(columns[name])), name


@gpu
def test_fused_step_names_bad_data(cupy_backend):
    X, Y, p = _problem(2, 4, 1, 100)
    step = FusedStep(2, 4, 1, "tanh", 0.5, "float32")
    params = cupy_backend.parameters_from_host(p, "float32")
    with pytest.raises(InvalidInputError, match="X is float64"):
        step(params, cupy_backend.asarray(X, "float64"), cupy_backend.asarray(Y, "float32"), False)
    with pytest.raises(InvalidInputError, match=r"Y must have shape \(1, m\)"):
        step(params, cupy_backend.asarray(X, "float32"), cupy_backend.asarray(X, "float32"), False)


@gpu
def test_bench_entry_trains(cupy_backend):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import worker
    from fused_entry import FusedEntry

    record = worker.measure(FusedEntry("cupy:fused", None, "float32", 0.1), 2, 4, 1, 2**16, "float32", 3, 1)
    assert record["trained"] is True
