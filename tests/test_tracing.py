"""The equations traced into a graph, and the graph run back: the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

from backprop_core import equations, tracing
from backprop_core.activations import ACTIVATIONS
from backprop_core.initialization import initial_parameters_host

ACTIVATION_NAMES = sorted(ACTIVATIONS)


def _problem(n0, n1, n2, m, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n0, m))
    Y = (rng.random((n2, m)) > 0.5).astype(np.float64)
    return X, Y, initial_parameters_host(n0, n1, n2, "xavier", seed)


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("n2", [1, 3])
def test_the_graph_computes_what_the_equations_compute(activation, n2):
    g = ACTIVATIONS[activation]
    X, Y, p = _problem(3, 5, n2, 40)
    graph = tracing.trace_gradients(3, 5, n2, g)
    expected = equations.gradients(X, Y, *p.values(), g, m=100, with_cost=True)
    got = tracing.evaluate(graph, {"X": X, "Y": Y, "m": 100, **p})
    for name, a, b in zip(("dW1", "db1", "dW2", "db2", "J"), got, expected):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_sums_over_the_examples_are_marked_as_reductions():
    graph = tracing.trace_gradients(2, 4, 1, ACTIVATIONS["tanh"])
    reductions = [n for n in graph.nodes if n.reduces_examples]
    # dZ2 A1^T, sum(dZ2), dZ1 X^T, sum(dZ1), and the cost.
    assert sorted(n.shape for n in reductions) == [(), (1, 1), (1, 4), (4, 1), (4, 2)]
    assert all(not n.per_example for n in reductions)


def test_repeated_work_is_recorded_once():
    graph = tracing.trace_gradients(2, 4, 1, ACTIVATIONS["sigmoid"])
    keys = [(n.op, tuple(a.id if isinstance(a, tracing.Node) else a for a in n.args), repr(n.attrs))
            for n in graph.nodes if n.op != "input"]
    assert len(keys) == len(set(keys))
    # 1/m appears once although the equations write it for every gradient.
    assert sum(1 for n in graph.nodes if n.op == "divide" and n.args[0] == 1.0 and n.shape == ()) == 1


def test_without_the_cost_there_is_no_cost_output():
    graph = tracing.trace_gradients(2, 4, 1, ACTIVATIONS["tanh"], with_cost=False)
    assert graph.outputs[4] is None
    assert not any(n.op == "log1p" for n in graph.nodes)


def test_branching_on_traced_data_is_refused():
    def branches(x):
        return x if x > 0 else -x

    with pytest.raises(tracing.TraceError, match="must not branch on data"):
        tracing.trace(branches, {"x": (1, tracing.M)})


def test_an_operation_the_tracer_does_not_know_is_named():
    with pytest.raises(tracing.TraceError, match="does not record 'cumulative_sum'"):
        tracing.trace(lambda x: tracing.namespace.cumulative_sum(x), {"x": (1, tracing.M)})
