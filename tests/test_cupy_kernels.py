"""The "kernels" executor: its partition, its printed chains, its arithmetic on a CPU, its gating, the GPU step."""

from __future__ import annotations

import re

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from array_api_compat import array_namespace

import backprop_core as bc
from backprop_core import building, equations, planner, training
from backprop_core.lowering import cupy_kernels as gpu_lowering
from backprop_core.activations import ACTIVATIONS, Activation
from backprop_core.backends import BackendUnavailableError, get_backend
from backprop_core.backends.array_api_strict_backend import ArrayApiStrictBackend
from backprop_core.equations import OUTPUTS
from backprop_core.lowering.cuda_fused.host import compiler
from backprop_core.lowering.cupy_kernels import Program, gradients_graph, partition, step_graph
from backprop_core.lowering.cupy_kernels.gemm import blas_call, emulate, layout_of
from backprop_core.lowering.cupy_kernels import steps
from backprop_core.lowering.cupy_kernels.host import HostChains, HostDevice
from backprop_core.lowering.cupy_kernels import GraphStep
from backprop_core.strategies import Lowered
from backprop_core.lowering.cupy_kernels.partition import EXAMPLE, EXAMPLE_CHAIN, GEMM, SUM, UNIFORM, UNIFORM_CHAIN
from backprop_core.lowering.cupy_kernels.source import COLUMN, ELEMENT
from backprop_core.chunked import ChunkedGradients
from backprop_core.loop import run
from backprop_core.tracing import Node

from conftest import assert_close, gpu, skip_unusable, tolerance
from test_cuda_fused import ACTIVATION_NAMES, GRADIENTS, LEARNING_RATE, M_WHOLE, PARAMETERS, _problem, nvrtc_compile

# Every graph the executor runs: activation x outputs n2 x output layer x with the cost or not.
GRAPHS = [pytest.param(g, n2, out, cost, id=f"{g}-{n2}-{out}-{'cost' if cost else 'step'}")
          for g in ACTIVATION_NAMES for n2 in (1, 3) for out in ("sigmoid", "softmax") for cost in (True, False)]


def _close(got, want, rtol, names):
    """Each output within rtol of the equations' value, relative to the array's largest element."""
    for name, a, b in zip(names, got, want):
        if b is None:
            assert a is None, name
            continue
        scale = float(np.max(np.abs(b)))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=name)


_BUILDS = {}


def _host(program_key, make, tmp_path_factory) -> HostChains:
    if compiler() is None:
        skip_unusable("no C++ compiler (g++, c++, clang++) to build the chains for the CPU", gpu=False)
    if program_key not in _BUILDS:
        _BUILDS[program_key] = HostChains(make(), tmp_path_factory.mktemp("chains"))
    return _BUILDS[program_key]


def _step_of(part, node_id):
    for step in part.steps:
        if any(n.id == node_id for n in step.nodes):
            return step
    return None


# -- the partition --------------------------------------------------------------------------------------
@pytest.mark.parametrize("g,n2,out,cost", GRAPHS)
def test_every_node_lands_in_exactly_one_step(g, n2, out, cost):
    graph = gradients_graph(3, 5, n2, ACTIVATIONS[g], cost, OUTPUTS[out])
    part = partition(graph)
    placed = [n.id for step in part.steps for n in step.nodes] + [n.id for n in part.host + part.views]
    assert sorted(placed) == sorted(n.id for n in graph.nodes if n.op != "input")


def _step_successors(part):
    """step -> the steps reading what it computes (through views)."""
    producer = {n.id: i for i, step in enumerate(part.steps) for n in step.nodes}
    base = {n.id: n.args[0] for n in part.views}

    def source(node):
        while node.id in base:
            node = base[node.id]
        return producer.get(node.id)

    succ = {i: set() for i in range(len(part.steps))}
    for i, step in enumerate(part.steps):
        for a in step.inputs:
            j = source(a)
            if j is not None:
                succ[j].add(i)
    return succ


def _path_through_another(succ, start, goal) -> bool:
    stack, seen = [s for s in succ[start] if s != goal], set()
    while stack:
        s = stack.pop()
        if s == goal:
            return True
        if s not in seen:
            seen.add(s)
            stack.extend(succ[s])
    return False


@pytest.mark.parametrize("g,n2,out,cost", GRAPHS)
@pytest.mark.parametrize("inline_terms", [0, 256])
def test_adjacent_chains_are_apart_only_where_merging_would_make_a_cycle(g, n2, out, cost, inline_terms):
    graph = step_graph(3, 5, n2, ACTIVATIONS[g], cost, OUTPUTS[out])
    part = partition(graph, inline_terms)
    index = {id(step): i for i, step in enumerate(part.steps)}
    succ = _step_successors(part)
    elementwise = {n.id for n in graph.nodes if part.role[n.id] in (EXAMPLE, UNIFORM)}
    for node in graph.nodes:
        for a in node.args:
            if isinstance(a, Node) and a.id in elementwise and node.id in elementwise:
                i, j = index[id(_step_of(part, a.id))], index[id(_step_of(part, node.id))]
                if i != j:
                    assert _path_through_another(succ, i, j), f"#{a.id} -> #{node.id} left in two chains"


def test_launches_per_step_of_2_4_1_tanh_are_pinned():
    """9 launches per iteration, 11 with the cost.

    One chain computes all of each example (W1 X + b1, tanh, W2 A1 + b2, the
    sigmoid, dZ2 = A2 - Y, W2^T dZ2 and 1 - A1^2, dZ1), the products with two
    and four weights unrolled; then cuBLAS sums over the examples: dZ2 A1^T and
    dZ1 X^T (2 products) and sum(dZ2), sum(dZ1) (2 products with ones); then one
    chain per parameter scales its sums by 1/m and updates it (4: the
    parameters' shapes differ).  The cost adds a third sum (the losses, which
    the example chain computes alongside) and the chain J = total / m.
    """
    g = ACTIVATIONS["tanh"]
    step = partition(step_graph(2, 4, 1, g, with_cost=False))
    assert step.launches == 9
    assert step.counts() == {EXAMPLE_CHAIN: 1, GEMM: 2, SUM: 2, UNIFORM_CHAIN: 4}
    with_cost = partition(step_graph(2, 4, 1, g, with_cost=True))
    assert with_cost.launches == 11
    assert with_cost.counts() == {EXAMPLE_CHAIN: 1, GEMM: 2, SUM: 3, UNIFORM_CHAIN: 5}


def _products(part):
    return {(tuple(map(str, n.args[0].shape)), tuple(map(str, n.args[1].shape))): part.role[n.id]
            for n in part.graph.nodes if n.op == "matmul"}


def test_products_with_many_weights_or_summing_over_the_examples_go_to_cublas():
    wide = _products(partition(step_graph(784, 512, 1, ACTIVATIONS["tanh"], False)))
    assert wide[(("512", "784"), ("784", "M"))] == GEMM  # W1 X: 401,408 weights
    assert wide[(("1", "512"), ("512", "M"))] == GEMM    # W2 A1: 512 weights, over INLINE_TERMS
    assert wide[(("512", "1"), ("1", "M"))] == EXAMPLE   # W2^T dZ2: an outer product, element by element
    assert wide[(("1", "M"), ("M", "512"))] == GEMM      # dZ2 A1^T sums over the examples
    narrow = _products(partition(step_graph(2, 4, 1, ACTIVATIONS["tanh"], False)))
    assert narrow[(("4", "2"), ("2", "M"))] == EXAMPLE    # W1 X: 8 weights, unrolled
    assert narrow[(("4", "M"), ("M", "2"))] == GEMM      # dZ1 X^T sums over the examples


def test_the_activation_derivative_joins_the_chain_that_uses_it():
    # With every product on cuBLAS, the forward chain (A1 = tanh) and the backward one (dZ1) are apart:
    # 1 - A1**2 is computed where dZ1 needs it, not written out by the forward chain.
    graph = gradients_graph(3, 5, 1, ACTIVATIONS["tanh"], False)
    part = partition(graph, inline_terms=0)
    tanh = next(n for n in graph.nodes if n.op == "tanh")
    square = next(n for n in graph.nodes if n.op == "multiply" and n.args == (tanh, tanh))
    derivative = next(n for n in graph.nodes if n.op == "subtract" and square in n.args)
    dZ1 = next(n for n in graph.nodes if n.op == "multiply" and derivative in n.args)
    assert _step_of(part, derivative.id) is _step_of(part, dZ1.id) is _step_of(part, square.id)
    assert _step_of(part, tanh.id) is not _step_of(part, dZ1.id)
    assert tanh in _step_of(part, tanh.id).outputs and derivative not in _step_of(part, derivative.id).outputs


def test_softmax_combines_each_examples_outputs_inside_one_chain():
    graph = gradients_graph(3, 5, 3, ACTIVATIONS["tanh"], True, OUTPUTS["softmax"])
    part = partition(graph)
    over_rows = [n for n in graph.nodes if n.op in ("max", "sum") and n.per_example]
    assert over_rows and all(part.role[n.id] == EXAMPLE for n in over_rows)
    assert part.chains == 1 + 5  # the examples', then one per parameter and J


def test_a_max_over_the_examples_is_refused_with_the_reason():
    def centred(Z):
        xp = array_namespace(Z)
        return xp.tanh(Z - xp.max(Z, axis=1, keepdims=True))

    g = Activation("centred", centred, lambda Z, A: 1.0 - A * A)
    with pytest.raises(bc.InvalidInputError, match="a max over the examples has no GPU lowering"):
        partition(gradients_graph(2, 4, 1, g, False))


def _tanh_through_transposes(Z):
    return array_namespace(Z).tanh(0.5 * (Z.T.T + Z))  # Z read directly and through two views


def test_a_chain_never_reads_through_a_view_what_it_computes(tmp_path_factory):
    g = Activation("tanh_through_transposes", _tanh_through_transposes, lambda Z, A: 1.0 - A * A)
    graph = gradients_graph(3, 5, 2, g, True)
    part = partition(graph)
    for view in part.views:
        base = view.args[0]
        while base in part.views:
            base = base.args[0]
        readers = {id(_step_of(part, n.id)) for n in graph.nodes if view in n.args and n not in part.views}
        assert id(_step_of(part, base.id)) not in readers, f"a view of #{base.id} is read where #{base.id} is made"
    X, Y, p = _problem(3, 5, 2, 500)
    got = _host(("views",), lambda: Program(graph, "float64"), tmp_path_factory)({"X": X, "Y": Y, **p, "m": 500})
    _close(got, equations.gradients(X, Y, *p.values(), g, with_cost=True), 1e-12, GRADIENTS)


# -- the printed chains -------------------------------------------------------------------------------
def test_each_chain_is_one_kernel_for_the_device_and_one_function_for_the_host():
    program = Program(step_graph(2, 4, 1, ACTIVATIONS["tanh"], True), "float32")
    assert program.source.text.count("__global__") == program.partition.chains
    assert program.source.text.count("extern \"C\" void bc_host_chain") == program.partition.chains


def test_wide_chains_run_a_thread_per_element_and_narrow_ones_a_thread_per_example():
    wide = Program(step_graph(784, 512, 1, ACTIVATIONS["tanh"], True), "float32")
    assert {k.layout for k in wide.source.kernels if k.step.kind == EXAMPLE_CHAIN} == {ELEMENT}
    assert len(wide.source.text) < 40_000  # 512 rows are one line each, not unrolled
    narrow = Program(step_graph(2, 4, 1, ACTIVATIONS["tanh"], True), "float32")
    assert [k.layout for k in narrow.source.kernels if k.step.kind == EXAMPLE_CHAIN] == [COLUMN]


SOURCES = [((2, 4, 1), "tanh", "sigmoid", "float32", False), ((3, 5, 3), "relu", "softmax", "float64", True),
           ((64, 64, 1), "sigmoid", "sigmoid", "float32", True), ((784, 512, 1), "leaky_relu", "sigmoid",
                                                                   "float32", False)]


@pytest.mark.parametrize("shape,activation,out,dtype,weighted", SOURCES)
def test_chain_source_compiles_with_nvcc(shape, activation, out, dtype, weighted, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        skip_unusable("nvcc (the CUDA compiler) is not installed here", gpu=False)
    program = Program(step_graph(*shape, ACTIVATIONS[activation], True, OUTPUTS[out], weighted), dtype)
    source = tmp_path / "chains.cu"
    source.write_text(program.source.text)
    done = subprocess.run([nvcc, "-arch=sm_90", "-cubin", "-o", str(tmp_path / "chains.cubin"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr, done.stderr


GRAPH_KINDS = {"step": step_graph, "gradients": gradients_graph}  # GraphStep's graphs, make_kernel_gradients'


def _nvrtc_compiles(graph, dtype):
    program = Program(graph, dtype)
    nvrtc_compile(program.source.text, [kernel.name for kernel in program.source.kernels])


@pytest.mark.parametrize("kind", sorted(GRAPH_KINDS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("g,n2,out,cost", GRAPHS)
def test_chain_source_compiles_with_nvrtc_as_cupy_compiles_it(g, n2, out, cost, dtype, kind):
    _nvrtc_compiles(GRAPH_KINDS[kind](2, 4, n2, ACTIVATIONS[g], cost, OUTPUTS[out]), dtype)


@pytest.mark.parametrize("kind", sorted(GRAPH_KINDS))
@pytest.mark.parametrize("shape,activation,out,dtype,weighted", SOURCES)
def test_wide_and_weighted_chain_sources_compile_with_nvrtc(shape, activation, out, dtype, weighted, kind):
    _nvrtc_compiles(GRAPH_KINDS[kind](*shape, ACTIVATIONS[activation], True, OUTPUTS[out], weighted), dtype)


# -- the arithmetic, on a CPU ------------------------------------------------------------------------
@pytest.mark.parametrize("g,n2,out,cost", GRAPHS)
def test_host_run_computes_the_gradients_of_the_equations(g, n2, out, cost, tmp_path_factory):
    X, Y, p = _problem(3, 5, n2, 1000, softmax=out == "softmax")
    graph = lambda: Program(gradients_graph(3, 5, n2, ACTIVATIONS[g], cost, OUTPUTS[out]), "float64")  # noqa: E731
    chains = _host(("gradients", g, n2, out, cost), graph, tmp_path_factory)
    got = chains({"X": X, "Y": Y, **p, "m": M_WHOLE})
    want = equations.gradients(X, Y, *p.values(), ACTIVATIONS[g], m=M_WHOLE, with_cost=cost,
                               output=OUTPUTS[out])
    _close(got, want, 1e-12, GRADIENTS)


def _step_reference(X, Y, p, g, out="sigmoid", weights=None):
    *grads, J = equations.gradients(X, Y, *p.values(), g, m=X.shape[1], with_cost=True, output=OUTPUTS[out],
                                    weights=weights)
    return (*equations.update(*p.values(), *grads, LEARNING_RATE), J)


@pytest.mark.parametrize("shape", [(2, 4, 1), (20, 16, 3)])  # 20-16: W1 X (320 weights) by cuBLAS
@pytest.mark.parametrize("weighted", [False, True])
def test_host_run_of_the_step_updates_as_the_equations_do(shape, weighted, tmp_path_factory):
    X, Y, p = _problem(*shape, 700)
    weights = np.random.default_rng(1).random((1, 700)) * 2 if weighted else None
    g = ACTIVATIONS["tanh"]
    make = lambda: Program(step_graph(*shape, g, True, weighted=weighted), "float64")  # noqa: E731
    values = {"X": X, "Y": Y, **p, "m": 700, "learning_rate": LEARNING_RATE}
    if weighted:
        values["weights"] = weights
    got = _host(("step", shape, weighted), make, tmp_path_factory)(values)
    _close(got, _step_reference(X, Y, p, g, weights=weights), 1e-12, PARAMETERS + ("J",))


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_host_run_in_single_precision_is_within_float32_tolerance(activation, tmp_path_factory):
    X, Y, p = _problem(3, 5, 2, 1000)
    g = ACTIVATIONS[activation]
    make = lambda: Program(step_graph(3, 5, 2, g, True), "float32")  # noqa: E731
    p32 = {k: v.astype(np.float32) for k, v in p.items()}
    got = _host(("float32", activation), make, tmp_path_factory)(
        {"X": X.astype(np.float32), "Y": Y.astype(np.float32), **p32, "m": 1000, "learning_rate": LEARNING_RATE})
    assert all(a.dtype == np.float32 for a in got)
    for name, a, b in zip(PARAMETERS + ("J",), got, _step_reference(X, Y, p, g)):
        np.testing.assert_allclose(a, b, **tolerance("float32"), err_msg=name)


@pytest.mark.parametrize("out", ["sigmoid", "softmax"])
def test_every_product_by_blas_gives_what_the_unrolled_products_give(out, tmp_path_factory):
    X, Y, p = _problem(3, 5, 3, 600, softmax=out == "softmax")
    g = ACTIVATIONS["sigmoid"]
    values = {"X": X, "Y": Y, **p, "m": 600, "learning_rate": LEARNING_RATE}
    runs = {}
    for terms in (0, 256):
        graph = step_graph(3, 5, 3, g, True, OUTPUTS[out])
        runs[terms] = _host(("blas", out, terms), lambda: Program(graph, "float64", inline_terms=terms),  # noqa: B023
                            tmp_path_factory)(values)
    _close(runs[0], runs[256], 1e-13, PARAMETERS + ("J",))
    _close(runs[0], _step_reference(X, Y, p, g, out), 1e-12, PARAMETERS + ("J",))


def test_chunks_read_through_strides_add_up_to_the_gradients_of_the_batch(tmp_path_factory):
    X, Y, p = _problem(3, 5, 2, 1000)
    g = ACTIVATIONS["relu"]
    for terms in (0, 256):
        chains = _host(("chunks", terms), lambda: Program(gradients_graph(3, 5, 2, g, True), "float64",  # noqa: B023
                                                          inline_terms=terms), tmp_path_factory)
        total = None
        for a in range(0, 1000, 300):  # strided views of X and Y, the last chunk shorter
            part = chains({"X": X[:, a:a + 300], "Y": Y[:, a:a + 300], **p, "m": 1000})
            total = part if total is None else tuple(t + q for t, q in zip(total, part))
        _close(total, equations.gradients(X, Y, *p.values(), g, with_cost=True), 1e-12, GRADIENTS)


def test_a_buffer_is_reused_where_no_other_thread_still_reads_it():
    # Every product on cuBLAS: W1 X, tanh, W2 A1, then one chain (one thread per element of (5, m)).
    graph = step_graph(3, 5, 1, ACTIVATIONS["tanh"], True)
    program = Program(graph, "float64", inline_terms=0)
    slot = {n.op + str(n.shape[0]): (program.storage[n.id].spec, program.storage[n.id].ordinal)
            for n in graph.nodes if program.storage.get(n.id) is not None and program.storage[n.id].kind == "buffer"}
    assert slot["tanh5"] == slot["matmul5"]  # A1 is written over W1 X, which dies as it is read
    # W2 A1 (one row) dies in the chain too, but the chain's five threads per example all read it:
    # nothing the chain writes may take its place.
    assert slot["matmul1"] not in {where for name, where in slot.items() if name != "matmul1"}


# -- the BLAS arguments ------------------------------------------------------------------------------------
def _layouts(rows, cols, rng):
    """A (rows, cols) matrix in four memory layouts: C order, Fortran order, a column slice, a transposed view."""
    values = rng.standard_normal((rows, cols))
    wide = np.zeros((rows, cols + 3))
    wide[:, 1:cols + 1] = values
    return {"c-order": values.copy(), "fortran": np.asfortranarray(values), "column-slice": wide[:, 1:cols + 1],
            "transposed": values.T.copy().T}


@pytest.mark.parametrize("c_layout", ["c-order", "fortran"])
@pytest.mark.parametrize("a_layout", ["c-order", "fortran", "column-slice", "transposed"])
@pytest.mark.parametrize("b_layout", ["c-order", "fortran", "column-slice", "transposed"])
@pytest.mark.parametrize("shape", [(4, 3, 5), (1, 6, 1), (5, 1, 2)])
def test_one_blas_call_reads_every_layout_without_a_copy(c_layout, a_layout, b_layout, shape):
    r, k, q = shape
    rng = np.random.default_rng(0)
    A, B = _layouts(r, k, rng)[a_layout], _layouts(k, q, rng)[b_layout]
    C = np.zeros((r, q), order="F" if c_layout == "fortran" else "C")
    emulate(blas_call(layout_of(C), layout_of(A), layout_of(B)), C, A, B)
    np.testing.assert_allclose(C, A @ B, rtol=1e-14)


def test_an_operand_without_adjacent_rows_or_columns_is_refused():
    A = np.zeros((4, 6))[::2, ::2]
    with pytest.raises(bc.InvalidInputError, match="neither adjacent rows nor adjacent columns"):
        blas_call(layout_of(np.zeros((2, 2))), layout_of(A), layout_of(np.zeros((3, 2))))


# -- when it runs ---------------------------------------------------------------------------------------------
class _KernelRunning(ArrayApiStrictBackend):
    """Stands for CuPy in the planner: a backend running kernels made by the library, not NumPy."""

    name = "kernel-running"
    fuses_kernels = True


def test_cupy_keeps_the_equations_until_the_kernels_are_proven(monkeypatch):
    monkeypatch.delenv(gpu_lowering.ENVIRONMENT, raising=False)
    assert gpu_lowering.PROVEN is False
    assert building.default_executor(_KernelRunning()) == "equations"
    monkeypatch.setattr(gpu_lowering, "PROVEN", True)
    assert building.default_executor(_KernelRunning()) == "kernels"
    monkeypatch.setenv(gpu_lowering.ENVIRONMENT, "equations")  # a user may still opt out
    assert building.default_executor(_KernelRunning()) == "equations"


def test_numpy_and_other_backends_never_get_the_kernels(monkeypatch):
    monkeypatch.setenv(gpu_lowering.ENVIRONMENT, "kernels")
    assert building.default_executor(get_backend("numpy")) == "buffered"
    assert building.default_executor(get_backend("array_api_strict")) == "equations"


def test_the_environment_asks_for_the_kernels_and_the_plan_builds_them(monkeypatch):
    monkeypatch.setenv(gpu_lowering.ENVIRONMENT, "kernels")
    backend = _KernelRunning()
    p = planner.plan(backend, (2, 4, 1, 1000), "float32", ACTIVATIONS["tanh"])
    assert (p.mode, p.executor, p.chunk_size) == ("whole batch", "kernels", 1000)
    X, Y, params = _problem(2, 4, 1, 1000)
    xp = backend.xp
    strategy = building.build(p, xp.asarray(X), xp.asarray(Y), backend.parameters_from_host(params, "float64"),
                             ACTIVATIONS["tanh"], 0.5, backend, "float64")
    assert isinstance(strategy, Lowered) and isinstance(strategy.lowered, GraphStep)
    make = building.make_gradients(backend, "kernels", ACTIVATIONS["tanh"], (2, 4, 1), "float32", 256)
    assert callable(make)


def test_an_unknown_executor_in_the_environment_is_named(monkeypatch):
    monkeypatch.setenv(gpu_lowering.ENVIRONMENT, "fastest")
    with pytest.raises(bc.InvalidInputError, match="BACKPROP_CORE_CUPY_EXECUTOR='fastest'"):
        building.default_executor(_KernelRunning())


def test_the_levers_are_reported_before_any_gpu_is_touched():
    X, Y, _ = _problem(2, 4, 1, 100)
    steps = GraphStep((2, 4, 1), ACTIVATIONS["tanh"], 0.5, _KernelRunning(), "float32")
    levers = steps.levers
    assert levers["launches_per_step"] == 9 and levers["launches_per_step_with_cost"] == 11
    assert levers["fused_chains"] == 5 and levers["tf32"] is False and levers["graph_replay"] is False
    assert levers["graph_replay_note"] == "not captured yet"


# -- the loop's strategy, on the host stand-in and on a GPU ---------------------------------------------------
PLACES = [pytest.param("host", id="host"), pytest.param("cupy", id="cupy", marks=gpu)]


@pytest.fixture(params=PLACES)
def place(request, tmp_path_factory):
    """``(backend, device)``: NumPy with the chains built as host C++, or CuPy on a GPU."""
    if request.param == "host":
        if compiler() is None:
            skip_unusable("no C++ compiler (g++, c++, clang++) to build the chains for the CPU", gpu=False)
        workdir = tmp_path_factory.mktemp("device")
        return get_backend("numpy"), lambda backend, dtype: HostDevice(backend, dtype, workdir)
    try:
        return get_backend("cupy"), steps.cupy_device
    except BackendUnavailableError as exc:
        skip_unusable(f"the kernels executor needs CuPy on a GPU: {exc}", gpu=True)


def _run_steps(place, X, Y, p, dtype, g="tanh", out="sigmoid", graphs=True, iterations=12, cost_every=4):
    backend, device = place
    shape = (X.shape[0], p["W1"].shape[0], Y.shape[0])
    step = GraphStep(shape, ACTIVATIONS[g], 0.5, backend, dtype, OUTPUTS[out], graphs=graphs, device=device)
    strategy = Lowered(backend.asarray(X, dtype), backend.asarray(Y, dtype), step, backend)
    with backend.context():
        result = run(strategy, backend.parameters_from_host(p, dtype), num_iterations=iterations,
                     learning_rate=0.5, cost_every=cost_every)
    return dict(result.parameters), result.history, strategy.levers  # the parameters where they were trained


def _run_equations(X, Y, p, g="tanh", out="sigmoid", iterations=12, cost_every=4):
    params, history = tuple(p.values()), []
    for i in range(iterations):
        *new, J = equations.step(X, Y, *params, ACTIVATIONS[g], 0.5, with_cost=i % cost_every == 0,
                                 output=OUTPUTS[out])
        if J is not None:
            history.append((i, float(J)))
        params = new
    J = equations.cost_from_logits(equations.forward(X, *params, ACTIVATIONS[g], OUTPUTS[out])[2], Y,
                                   output=OUTPUTS[out])
    return dict(zip(PARAMETERS, params)), history + [(iterations, float(J))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n2,out", [(1, "sigmoid"), (3, "softmax")])
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_the_steps_land_on_the_float64_parameters_of_the_equations(place, activation, n2, out, dtype):
    X, Y, p = _problem(3, 5, n2, 3000, softmax=out == "softmax")
    got, got_history, _ = _run_steps(place, X, Y, p, dtype, activation, out)
    want, want_history = _run_equations(X, Y, p, activation, out)
    for name in PARAMETERS:
        assert_close(got[name], want[name], place[0], dtype, err_msg=name)
    assert [i for i, _ in got_history] == [i for i, _ in want_history]
    np.testing.assert_allclose([J for _, J in got_history], [J for _, J in want_history], **tolerance(dtype))


def test_a_wide_network_lands_on_the_float64_parameters_of_the_equations(place):
    X, Y, p = _problem(64, 300, 1, 2048)  # W1 X and W2 A1 by cuBLAS, the chains one thread per element
    got, _, levers = _run_steps(place, X, Y, p, "float32", iterations=6)
    assert levers["launch_kinds"][GEMM] == 4
    want, _ = _run_equations(X, Y, p, iterations=6)
    for name in PARAMETERS:
        assert_close(got[name], want[name], place[0], "float32", err_msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_replayed_steps_give_the_bits_of_steps_launched_one_by_one(place, dtype):
    X, Y, p = _problem(3, 5, 2, 2**14)
    replayed, replayed_history, levers = _run_steps(place, X, Y, p, dtype, graphs=True)
    assert levers["graph_replay"] is True, levers["graph_replay_note"]
    eager, eager_history, eager_levers = _run_steps(place, X, Y, p, dtype, graphs=False)
    assert eager_levers["graph_replay"] is False and eager_levers["graph_replay_note"] == "not asked for"
    for name in PARAMETERS:
        assert np.array_equal(place[0].to_numpy(replayed[name]), place[0].to_numpy(eager[name])), name
    assert replayed_history == eager_history


def test_two_runs_are_bit_identical(place):
    m = 2**16 if place[0].on_gpu else 2**10  # on a GPU: long cuBLAS sums, chains over many blocks
    X, Y, p = _problem(20, 300, 1, m)
    first = _run_steps(place, X, Y, p, "float32")
    second = _run_steps(place, X, Y, p, "float32")
    for name in PARAMETERS:
        assert np.array_equal(place[0].to_numpy(first[0][name]), place[0].to_numpy(second[0][name])), name
    assert first[1] == second[1]


def test_the_step_follows_the_arrays_it_is_given(place):
    """Its buffers and graphs are made for the X and Y of the first call, and made again for others."""
    backend, device = place
    step = GraphStep((3, 5, 2), ACTIVATIONS["tanh"], 0.5, backend, "float64", device=device)
    _, _, p = _problem(3, 5, 2, 10)
    with backend.context():
        for m, seed in ((1000, 1), (600, 2), (1000, 3)):
            X, Y, _ = _problem(3, 5, 2, m, seed=seed)
            new, J = step(backend.parameters_from_host(p, "float64"), backend.asarray(X, "float64"),
                          backend.asarray(Y, "float64"), True)
            *expected, expected_J = equations.step(X, Y, *p.values(), ACTIVATIONS["tanh"], 0.5, with_cost=True)
            for name, value in zip(PARAMETERS, expected):
                np.testing.assert_allclose(backend.to_numpy(new[name]), value, rtol=1e-12, atol=1e-14, err_msg=name)
            np.testing.assert_allclose(float(backend.to_numpy(J)), float(expected_J), rtol=1e-12)


def test_parameters_the_loop_keeps_are_never_written_over(place):
    backend, device = place
    X, Y, p = _problem(3, 5, 2, 1000)
    step = GraphStep((3, 5, 2), ACTIVATIONS["tanh"], 0.5, backend, "float64", device=device)
    strategy = Lowered(backend.asarray(X, "float64"), backend.asarray(Y, "float64"), step, backend)
    with strategy.running():
        kept, _ = strategy.step(backend.parameters_from_host(p, "float64"), 0, True)
        before = {k: backend.to_numpy(v).copy() for k, v in kept.items()}
        current = kept
        for i in range(1, 6):
            current, _ = strategy.step(current, i, i % 2 == 0)
        strategy.cost(current)
    for name in PARAMETERS:
        assert np.array_equal(backend.to_numpy(kept[name]), before[name]), name


def test_chunks_of_the_batch_add_up_to_the_gradients_of_the_batch(place):
    backend, device = place
    X, Y, p = _problem(3, 5, 2, 5000)
    g = ACTIVATIONS["relu"]
    make = gpu_lowering.make_kernel_gradients(backend, g, (3, 5, 2), "float64", 1200, device=device)
    chunked = ChunkedGradients(make, 1200, backend=backend, dtype="float64")
    with backend.context(), chunked.running():
        got = chunked(backend.parameters_from_host(p, "float64"), backend.asarray(X, "float64"),
                      backend.asarray(Y, "float64"), with_cost=True)
    _close([backend.to_numpy(a) for a in got], equations.gradients(X, Y, *p.values(), g, with_cost=True), 1e-12,
           GRADIENTS)


# -- on a GPU only ----------------------------------------------------------------------------------------
@gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_fit_asking_for_the_kernels_runs_them_and_lands_on_the_equations(cupy_backend, dtype, monkeypatch):
    monkeypatch.setenv(gpu_lowering.ENVIRONMENT, "kernels")
    X, Y, p = _problem(3, 5, 2, 5000)
    fit = training.fit(X, Y, hidden_units=5, activation=ACTIVATIONS["tanh"], learning_rate=0.5, num_iterations=20,
                       backend="cupy", dtype=dtype, parameters=p, cost_every=5)
    assert (fit.plan.mode, fit.plan.executor) == ("whole batch", "kernels")
    want, _ = _run_equations(X, Y, p, iterations=20, cost_every=5)
    for name in PARAMETERS:
        assert_close(fit.result.parameters[name], want[name], cupy_backend, dtype, err_msg=name)


def _wide_gradient_error(precision):
    backend = get_backend("cupy", precision=precision)
    X, Y, p = _problem(64, 64, 1, 4096)
    make = gpu_lowering.make_kernel_gradients(backend, ACTIVATIONS["tanh"], (64, 64, 1), "float32", 4096)
    with backend.context():
        got = make(False)(backend.parameters_from_host(p, "float32"), backend.asarray(X, "float32"),
                          backend.asarray(Y, "float32"), 4096)
    want = equations.gradients(X, Y, *p.values(), ACTIVATIONS["tanh"])
    return float(np.max(np.abs(backend.to_numpy(got[0]) - want[0])) / np.max(np.abs(want[0])))


@gpu
def test_tf32_is_off_by_default_and_on_when_asked(cupy_backend):
    assert _wide_gradient_error("float32") < 1e-5  # dW1 from W1 X and dZ1 X^T, both cuBLAS products
    assert _wide_gradient_error("tf32") > 1e-4     # TensorFloat-32 keeps 10 bits of each input


@gpu
def test_bench_entry_records_the_levers(cupy_backend):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import worker

    record = worker.measure(worker.make_entry("cupy:kernels", None, "float32", 0.1), 2, 4, 1, 2**16,
                            "float32", 3, 1)
    assert record["trained"] is True
    assert record["levers"]["graph_replay"] is True, record["levers"]["graph_replay_note"]
    assert record["levers"]["launches_per_step"] == 9


def test_the_lowering_knows_nothing_of_the_loop():
    """Loop strategies live with the loop (strategies.py runs every target's step); the targets only lower."""
    folder = Path(gpu_lowering.__file__).parent.parent
    imports = re.compile(r"^\s*(from|import) \S*\b(loop|strategies|chunked|training)\b", re.MULTILINE)
    for module in folder.rglob("*.py"):
        assert not imports.search(module.read_text()), (module, imports.search(module.read_text()))
