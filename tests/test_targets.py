"""Every lowering target behind one interface, and each checked against the reference evaluation.

The targets are those the planner asks (``lowering.TARGETS``); each answers
``applies(fit)`` and ``compile(fit, learning_rate)``, whose step has one call
shape (:mod:`backprop_core.lowering.target`).  The reference is
``tracing.evaluate`` of the traced step (``equations.gradients`` then
``equations.update``) in float64 NumPy, the oracle of every lowering: here for
every target, every activation, both float dtypes and n2 > 1.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from backprop_core import lowering, tracing
from backprop_core.activations import ACTIVATIONS
from backprop_core.backends import BackendUnavailableError, get_backend
from backprop_core.equations import OUTPUTS
from backprop_core.initialization import initial_parameters_host
from backprop_core.lowering import ops
from backprop_core.lowering.cuda_fused.host import compiler
from backprop_core.lowering.cupy_kernels import GraphStep, step_graph
from backprop_core.lowering.cupy_kernels.host import HostDevice
from backprop_core.lowering.target import Fit

from conftest import skip_unusable, tolerance

PACKAGE = Path(lowering.__file__).parent
TARGET_NAMES = [t.name for t in lowering.TARGETS]
#: Ops that are not element-wise: each target lowers them its own way (ops.py's docstring).
STRUCTURAL = {"input", "const", "astype", "matmul", "transpose", "sum", "max"}
LEARNING_RATE = 0.5


@pytest.fixture(autouse=True)
def _own_build_cache(monkeypatch, tmp_path_factory):
    """The fused CPU step's builds go to the test run's folder, not the user's cache."""
    monkeypatch.setenv("BACKPROP_CORE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


# -- one table of ops ----------------------------------------------------------------------------------------
def test_every_op_the_tracer_records_has_a_row_or_is_structural():
    assert set(tracing.OPS) <= set(ops.OPS) | STRUCTURAL
    assert not set(ops.OPS) & STRUCTURAL


@pytest.mark.parametrize("output", sorted(OUTPUTS))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_op_in_the_traced_step_of_each_activation_is_in_the_table(activation, output):
    for weighted in (False, True):
        graph = step_graph(3, 5, 2, ACTIVATIONS[activation], True, OUTPUTS[output], weighted)
        emitted = {node.op for node in graph.nodes}
        assert emitted - STRUCTURAL <= set(ops.OPS), emitted - STRUCTURAL - set(ops.OPS)


# -- one interface -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend_name", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("name", TARGET_NAMES)
def test_every_target_answers_whether_it_applies_and_why(name, backend_name):
    target = lowering.find(name)
    fit = Fit(get_backend(backend_name), (2, 4, 1), ACTIVATIONS["tanh"], "float32")
    applies, why = target.applies(fit)
    assert isinstance(applies, bool) and isinstance(why, str) and why
    assert target.chosen in ("executor", "measured", "asked")
    if backend_name == "array_api_strict":
        assert not applies, why  # every target here runs on NumPy or CuPy arrays


def test_targets_are_found_by_name_and_names_are_unique():
    assert len(set(TARGET_NAMES)) == len(TARGET_NAMES)
    assert all(lowering.find(name).name == name for name in TARGET_NAMES)
    assert lowering.find("no such target") is None


@pytest.mark.parametrize("module", ["planner.py", "calibrations.py", "building.py", "strategies.py"])
def test_no_string_picks_a_target(module):
    """The planner asks the targets; their names appear only in the targets' own modules."""
    text = (PACKAGE.parent / module).read_text()
    for name in TARGET_NAMES:
        assert f'"{name}"' not in text and f"'{name}'" not in text, (module, name)


def test_no_target_borrows_another_modules_private_names():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.relative_to(PACKAGE)} imports {private} from {node.module}"


# -- every target against the reference ----------------------------------------------------------------------
def _problem(n0, n1, n2, m, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n0, m))
    Y = (rng.random((n2, m)) > 0.5).astype(np.float64)
    return X, Y, initial_parameters_host(n0, n1, n2, "xavier", seed)


def _reference(shape, g, X, Y, params, with_cost):
    values = {"X": X, "Y": Y, **params, "m": X.shape[1], "learning_rate": LEARNING_RATE}
    return tracing.evaluate(step_graph(*shape, g, with_cost), values, np)


def _step(name, fit, tmp_path_factory):
    """The target's step where it runs here: its own compile(fit), or for the CuPy kernels without a GPU
    the same step object on NumPy with the chains built as host C++."""
    target = lowering.find(name)
    applies, why = target.applies(fit)
    if applies:
        return target.compile(fit, LEARNING_RATE)
    if name == "kernels" and fit.host_numpy:
        if compiler() is None:
            skip_unusable("no C++ compiler to build the kernels' chains for the CPU", gpu=False)
        workdir = tmp_path_factory.mktemp("kernels")
        return GraphStep(fit.shape, fit.activation, LEARNING_RATE, fit.backend, fit.dtype,
                         device=lambda backend, dtype: HostDevice(backend, dtype, workdir))
    skip_unusable(f"{name} does not run here: {why}", gpu=name == "fused")


def _backend_for(name):
    if name in ("fused",):
        try:
            return get_backend("cupy")
        except BackendUnavailableError as exc:
            skip_unusable(f"the fused CUDA kernel needs CuPy on a GPU (its C text built for the CPU is "
                          f"checked in test_cuda_fused.py): {exc}", gpu=True)
    return get_backend("numpy")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("name", TARGET_NAMES)
def test_every_target_steps_as_the_reference_evaluation(name, activation, dtype, tmp_path_factory):
    shape, g = (3, 4, 2), ACTIVATIONS[activation]
    backend = _backend_for(name)
    fit = Fit(backend, shape, g, dtype)
    step = _step(name, fit, tmp_path_factory)
    X, Y, params = _problem(*shape, 37)
    Xd, Yd = step.prepare(backend.asarray(X, dtype)), step.prepare(backend.asarray(Y, dtype))
    start = backend.parameters_from_host(params, dtype)
    with backend.context():
        for with_cost in (True, False):
            new, J = step(start, Xd, Yd, with_cost)
            *expected, expected_J = _reference(shape, g, X, Y, params, with_cost)
            for key, value in zip(("W1", "b1", "W2", "b2"), expected):
                np.testing.assert_allclose(backend.to_numpy(new[key]), value, err_msg=key, **tolerance(dtype))
            if with_cost:
                np.testing.assert_allclose(float(backend.to_numpy(J)), float(expected_J), **tolerance(dtype))
            else:
                assert J is None
