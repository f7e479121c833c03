"""The traced gradients lowered to NumPy calls into preallocated buffers: the same numbers.

The reference is always ``equations.gradients`` (or ``tracing.evaluate`` for graphs
that are not the lecture's), run array by array on contiguous copies.
"""

from __future__ import annotations

import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backprop_core import equations, tracing
from backprop_core.activations import ACTIVATIONS
from backprop_core.lowering.numpy_buffers import BufferedGradients, buffered_gradients
from backprop_core.errors import InvalidInputError, InvalidTypeError
from backprop_core.initialization import initial_parameters_host

from conftest import tolerance

ACTIVATION_NAMES = sorted(ACTIVATIONS)
NAMES = ("dW1", "db1", "dW2", "db2", "J")
EXACT = {"rtol": 1e-12, "atol": 0.0}


def _problem(n0, n1, n2, m, dtype=np.float64, seed=0):
    """X (n0, m), binary Y (n2, m) and parameters as a list [W1, b1, W2, b2], all of dtype."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n0, m)).astype(dtype)
    Y = (rng.random((n2, m)) > 0.5).astype(dtype)
    p = initial_parameters_host(n0, n1, n2, "xavier", seed)
    return X, Y, [p[k].astype(dtype) for k in ("W1", "b1", "W2", "b2")]


def _reference(X, Y, params, activation, m):
    """equations.gradients on contiguous copies of the chunk, scaled by the batch's m."""
    return equations.gradients(np.ascontiguousarray(X), np.ascontiguousarray(Y), *params,
                               ACTIVATIONS[activation], m=m, with_cost=True)


def _assert_same(got, expected, **tol):
    assert len(got) == len(expected)
    for name, a, b in zip(NAMES, got, expected):
        if b is None:
            assert a is None, name
        else:
            np.testing.assert_allclose(a, b, err_msg=name, **tol)


# -- the numbers are the equations' ---------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("n2", [1, 3])
def test_float64_gradients_and_cost_equal_the_equations(activation, n2):
    X, Y, params = _problem(3, 5, n2, 300)
    step = buffered_gradients(3, 5, n2, activation, np.float64, columns=300)
    _assert_same(step(X, Y, *params, 1000), _reference(X, Y, params, activation, 1000), **EXACT)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("n2", [1, 3])
def test_float32_stays_float32_within_float32_tolerance(activation, n2):
    X, Y, params = _problem(3, 5, n2, 300, np.float32)
    step = buffered_gradients(3, 5, n2, activation, np.float32, columns=300)
    got = step(X, Y, *params, 1000)
    assert all(type(a) is np.ndarray and a.dtype == np.float32 for a in got)
    expected = _reference(X.astype(np.float64), Y.astype(np.float64),
                          [p.astype(np.float64) for p in params], activation, 1000)
    _assert_same(got, expected, **tolerance("float32"))


def test_without_the_cost_the_cost_is_none():
    X, Y, params = _problem(2, 4, 1, 50)
    step = buffered_gradients(2, 4, 1, "tanh", np.float64, columns=50, with_cost=False)
    got = step(X, Y, *params, 50)
    assert got[4] is None
    _assert_same(got[:4], _reference(X, Y, params, "tanh", 50)[:4], **EXACT)


def test_inputs_may_be_given_by_name():
    X, Y, (W1, b1, W2, b2) = _problem(2, 4, 1, 50)
    step = buffered_gradients(2, 4, 1, "tanh", np.float64, columns=50)
    _assert_same(step(X, Y, W1, b1, W2=W2, b2=b2, m=50), step(X, Y, W1, b1, W2, b2, 50), rtol=0, atol=0)


def test_the_cost_is_a_zero_dimensional_array():
    X, Y, params = _problem(2, 4, 1, 50)
    J = buffered_gradients(2, 4, 1, "tanh", np.float64, columns=50)(X, Y, *params, 50)[4]
    assert type(J) is np.ndarray and J.shape == ()


# -- chunks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_a_strided_chunk_shorter_than_the_buffers(activation):
    X, Y, params = _problem(3, 5, 2, 1000)
    step = buffered_gradients(3, 5, 2, activation, np.float64, columns=256)
    Xc, Yc = X[:, 300:500], Y[:, 300:500]  # views: each row strides over the whole batch
    assert not Xc.flags.c_contiguous
    _assert_same(step(Xc, Yc, *params, 1000), _reference(Xc, Yc, params, activation, 1000), **EXACT)


def test_chunks_add_up_to_the_whole_batch():
    X, Y, params = _problem(3, 5, 2, 1000)
    step = buffered_gradients(3, 5, 2, "tanh", np.float64, columns=256)
    parts = [step(X[:, a:a + 256], Y[:, a:a + 256], *params, 1000) for a in range(0, 1000, 256)]
    _assert_same([sum(p[i] for p in parts) for i in range(5)], _reference(X, Y, params, "tanh", 1000),
                 rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype, columns", [(np.float32, 4), (np.float64, 8)])
def test_a_one_example_chunk_rows_a_buffer_apart(dtype, columns):
    # Each row of the chunk is one buffer row (16 or 64 bytes) apart: the strides at which
    # NumPy 2.4's np.negative into a strided output goes wrong on AVX-512.
    X, Y, params = _problem(1, 1, 2, 6, dtype=dtype)
    step = buffered_gradients(1, 1, 2, "leaky_relu", dtype, columns=columns)
    _assert_same(step(X[:, :1], Y[:, :1], *params, 100), _reference(X[:, :1], Y[:, :1], params, "leaky_relu", 100),
                 **(EXACT if dtype == np.float64 else tolerance("float32")))


def test_a_second_call_sees_only_its_own_data():
    X, Y, params = _problem(3, 5, 2, 600)
    step = buffered_gradients(3, 5, 2, "sigmoid", np.float64, columns=300)
    step(X[:, :300], Y[:, :300], *params, 600)
    # Shorter, then longer again: nothing left in the buffers may leak into the answer.
    for a, b in ((300, 450), (100, 400)):
        _assert_same(step(X[:, a:b], Y[:, a:b], *params, 600),
                     _reference(X[:, a:b], Y[:, a:b], params, "sigmoid", 600), **EXACT)


def test_results_are_fresh_arrays_the_next_call_leaves_alone():
    X, Y, params = _problem(3, 5, 2, 200)
    step = buffered_gradients(3, 5, 2, "tanh", np.float64, columns=100)
    first = step(X[:, :100], Y[:, :100], *params, 200)
    step(X[:, 100:], Y[:, 100:], *params, 200)
    _assert_same(first, _reference(X[:, :100], Y[:, :100], params, "tanh", 200), **EXACT)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_the_inputs_are_not_written(activation):
    X, Y, params = _problem(3, 5, 2, 100)
    before = [a.copy() for a in (X, Y, *params)]
    buffered_gradients(3, 5, 2, activation, np.float64, columns=100)(X, Y, *params, 100)
    for a, b in zip((X, Y, *params), before):
        np.testing.assert_array_equal(a, b)


# -- copies and threads -----------------------------------------------------------------------
def test_a_copy_computes_what_the_original_computes():
    X, Y, params = _problem(3, 5, 2, 300)
    step = buffered_gradients(3, 5, 2, "relu", np.float64, columns=300)
    twin = step.copy()
    _assert_same(twin(X, Y, *params, 300), step(X, Y, *params, 300), rtol=0, atol=0)


def test_copies_in_two_threads_sum_alternate_chunks_to_the_whole_batch():
    X, Y, params = _problem(3, 5, 2, 4096)
    step = buffered_gradients(3, 5, 2, "tanh", np.float64, columns=256)
    bounds = [(a, a + 256) for a in range(0, 4096, 256)]
    sums = [None, None]

    def work(k, own):
        for a, b in bounds[k::2]:
            part = own(X[:, a:b], Y[:, a:b], *params, 4096)
            sums[k] = part if sums[k] is None else [s + p for s, p in zip(sums[k], part)]

    threads = [threading.Thread(target=work, args=(k, s)) for k, s in enumerate((step, step.copy()))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _assert_same([a + b for a, b in zip(*sums)], _reference(X, Y, params, "tanh", 4096),
                 rtol=1e-12, atol=1e-15)


# -- buffers made once --------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_a_call_allocates_nothing_the_size_of_the_chunk(activation):
    c = 1 << 16
    X, Y, params = _problem(2, 4, 1, 2 * c)
    X, Y = X[:, c:], Y[:, c:]  # strided views: the products over the examples must not copy them
    step = buffered_gradients(2, 4, 1, activation, np.float64, columns=c)
    step(X, Y, *params, c)  # the first call at a chunk size prepares its views

    def peak_bytes(f):
        tracemalloc.start()
        try:
            f()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    one_row = c * X.itemsize
    # The measurement sees NumPy's arrays: the equations, array by array, allocate rows.
    assert peak_bytes(lambda: _reference(X, Y, params, activation, c)) > one_row
    # What is left is small and fixed: parameter-sized results and NumPy's casting buffer
    # (8192 elements, for the condition of a where).
    assert peak_bytes(lambda: step(X, Y, *params, c)) < one_row / 4


def test_an_outer_product_runs_as_a_broadcast_multiply():
    # W2.T @ dZ2 with n2 = 1 contracts over a size-1 axis; matmul is 12x slower at it.
    text = repr(buffered_gradients(2, 4, 1, "tanh", np.float32, columns=64))
    outer = [line for line in text.splitlines() if "= matmul(" in line and "(4, M)" in line]
    assert len(outer) == 2  # W1 @ X (contraction 2) and W2.T @ dZ2 (contraction 1)
    assert sorted(line.split(": ")[1].split(" ->")[0] for line in outer) == ["matmul", "multiply"]


def test_dead_intermediates_lend_their_buffers():
    graph = tracing.trace_gradients(64, 32, 1, ACTIVATIONS["tanh"])
    step = BufferedGradients(graph, np.float32, columns=1000)
    one_each = sum(1000 * 4 * int(np.prod([d for d in n.shape if d is not tracing.M]))
                   for n in graph.nodes if n.per_example and n.op not in ("input", "transpose"))
    assert 0 < step.buffer_bytes < one_each / 2


def test_a1_dies_before_dz1_is_made():
    # In the equations' order A1 lives until dW2 at the end, beside g'(Z1) and W2^T dZ2: three
    # (n1, c) arrays.  Run dW2 as soon as dZ2 exists and two suffice for tanh.
    step = buffered_gradients(64, 32, 1, "tanh", np.float32, columns=1000)
    assert step.buffer_bytes < 3 * 32 * 1000 * 4


# -- any graph of the ops the tracer records ------------------------------------------------------
def _every_op(X, Y, W, c):
    """A softmax-like output and the rest of the tracer's ops, for graphs beyond the lecture's."""
    xp = tracing.namespace
    Z = W @ X + c
    Zmax = xp.max(Z, axis=0, keepdims=True)
    E = xp.exp(Z - Zmax)
    logp = Z - Zmax - xp.log(xp.sum(E, axis=0, keepdims=True))
    mask = (Z > 0.0) + 0.0 * xp.astype(Z >= Y, xp.float64) + xp.astype(Z < -1.0, xp.float64)
    mixed = xp.where(Z <= 0.5, xp.sqrt(xp.abs(Z)), -xp.log1p(Z * Z)) ** 2.0
    other = xp.where(Z == 0.0, 1.0, xp.tanh(Z)) - 1.0 / c
    grad = (mixed * mask + other - logp) @ X.T
    return grad, xp.sum(E / (1.0 + E), axis=1, keepdims=True), xp.max(logp)


def test_every_op_of_the_tracer_lowers_and_matches_evaluate():
    graph = tracing.trace(_every_op, {"X": (3, tracing.M), "Y": (4, tracing.M), "W": (4, 3), "c": ()})
    lowered = {n.op for n in graph.nodes} - {"input", "const"}
    assert lowered == set(tracing.OPS) - {"input", "const"}  # the test covers every rule
    rng = np.random.default_rng(1)
    values = {"X": rng.standard_normal((3, 400))[:, 50:250], "Y": rng.standard_normal((4, 200)),
              "W": rng.standard_normal((4, 3)), "c": 3.0}
    values["X"][0, :5] = 0.0  # where(Z == 0) takes both branches
    got = BufferedGradients(graph, np.float64, columns=256)(**values)
    expected = tracing.evaluate(graph, {**values, "X": np.ascontiguousarray(values["X"])})
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, **EXACT)


def test_a_constant_node_is_folded_into_the_step():
    X = tracing.Node("input", (), (2, tracing.M), attrs={"name": "X"})
    two = tracing.Node("const", (), (), attrs={"value": 2.0})
    half = tracing.Node("divide", (1.0, two), ())
    scaled = tracing.Node("multiply", (half, X), (2, tracing.M))
    total = tracing.Node("sum", (scaled,), (2, 1), attrs={"axis": (1,), "keepdims": True})
    graph = tracing.Graph({"X": X}, (total,), [X, two, half, scaled, total])
    x = np.arange(10.0).reshape(2, 5)
    np.testing.assert_array_equal(BufferedGradients(graph, np.float64, columns=8)(x)[0], [[5.0], [17.5]])


def test_an_input_no_output_needs_is_still_an_argument():
    graph = tracing.trace(lambda X, Y: tracing.namespace.sum(2.0 * X, axis=1, keepdims=True),
                          {"X": (2, tracing.M), "Y": (1, tracing.M)})
    x = np.arange(6.0).reshape(2, 3)
    got, = BufferedGradients(graph, np.float64, columns=4)(x, np.zeros((1, 3)))
    np.testing.assert_array_equal(got, [[6.0], [24.0]])


def test_an_op_without_a_rule_is_named_when_the_step_is_built():
    graph = tracing.trace_gradients(2, 4, 1, ACTIVATIONS["tanh"])
    node = next(n for n in graph.nodes if n.op == "tanh")
    node.op = "cumulative_sum"
    with pytest.raises(InvalidInputError, match="no NumPy lowering for op 'cumulative_sum'"):
        BufferedGradients(graph, np.float64, columns=16)


# -- any shape ---------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(1, 3)),
       columns=st.integers(1, 80), c=st.integers(0, 80), offset=st.integers(0, 20),
       activation=st.sampled_from(ACTIVATION_NAMES), seed=st.integers(0, 2**31))
def test_any_shape_and_chunk_equals_the_equations(shape, columns, c, offset, activation, seed):
    n0, n1, n2 = shape
    c = min(c, columns)
    X, Y, params = _problem(n0, n1, n2, c + offset + 5, seed=seed)
    step = buffered_gradients(n0, n1, n2, activation, np.float64, columns)
    Xc, Yc = X[:, offset:offset + c], Y[:, offset:offset + c]
    _assert_same(step(Xc, Yc, *params, 100), _reference(Xc, Yc, params, activation, 100),
                 rtol=1e-12, atol=1e-16)


# -- bad input is named -------------------------------------------------------------------------
@pytest.fixture
def small():
    X, Y, params = _problem(2, 4, 1, 20)
    return buffered_gradients(2, 4, 1, "tanh", np.float64, columns=16), X, Y, params


def test_more_examples_than_columns_is_refused(small):
    step, X, Y, params = small
    with pytest.raises(InvalidInputError, match="X has 20 examples, more than the 16 columns"):
        step(X, Y, *params, 20)


def test_a_dtype_other_than_the_steps_is_refused(small):
    step, X, Y, params = small
    with pytest.raises(InvalidTypeError, match="Y has dtype float32, but this step was built for float64"):
        step(X[:, :8], Y[:, :8].astype(np.float32), *params, 20)


def test_a_parameter_of_the_wrong_shape_is_named(small):
    step, X, Y, (W1, b1, W2, b2) = small
    with pytest.raises(InvalidInputError, match=r"W2 has shape \(4, 1\), expected \(1, 4\)"):
        step(X[:, :8], Y[:, :8], W1, b1, W2.T, b2, 20)


def test_chunks_of_x_and_y_of_different_lengths_are_refused(small):
    step, X, Y, params = small
    with pytest.raises(InvalidInputError, match=r"Y has shape \(1, 7\), expected \(1, 'c'\) with c = 8"):
        step(X[:, :8], Y[:, :7], *params, 20)


def test_an_array_of_another_library_is_refused(small):
    step, X, Y, params = small
    with pytest.raises(InvalidTypeError, match="X must be a NumPy array, got list"):
        step(X[:, :8].tolist(), Y[:, :8], *params, 20)


@pytest.mark.parametrize("m", [None, "20", float("nan"), True])
def test_m_must_be_a_finite_number(small, m):
    step, X, Y, params = small
    with pytest.raises(InvalidTypeError, match="m must be a finite real number"):
        step(X[:, :8], Y[:, :8], *params, m)


def test_a_missing_input_is_named(small):
    step, X, Y, params = small
    with pytest.raises(InvalidTypeError, match=r"missing input\(s\) \['m'\]"):
        step(X[:, :8], Y[:, :8], *params)


@pytest.mark.parametrize("columns", [0, -1, 2.5, True])
def test_columns_must_be_a_positive_integer(columns):
    with pytest.raises(InvalidInputError, match="columns must be a positive integer"):
        buffered_gradients(2, 4, 1, "tanh", np.float64, columns)


@pytest.mark.parametrize("dtype", [np.int32, "complex128", "not a dtype"])
def test_dtype_must_be_real_floating(dtype):
    with pytest.raises(InvalidTypeError, match="dtype"):
        buffered_gradients(2, 4, 1, "tanh", dtype, 16)


def test_an_unknown_activation_is_named():
    with pytest.raises(InvalidInputError, match="unknown activation 'softsign'"):
        buffered_gradients(2, 4, 1, "softsign", np.float64, 16)
