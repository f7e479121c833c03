"""The equations against independent oracles, in float64."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from backprop_core import equations
from backprop_core.activations import ACTIVATIONS, get_activation
from backprop_core.backends import BackendUnavailableError
from backprop_core.initialization import initial_parameters_host

from conftest import assert_close

ACTIVATION_NAMES = sorted(ACTIVATIONS)


def _cost(X, Y, p, g):
    _, _, Z2, _ = equations.forward(X, p["W1"], p["b1"], p["W2"], p["b2"], g)
    return float(equations.cost_from_logits(Z2, Y))


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("n2", [1, 3])
def test_gradients_match_central_differences(activation, n2):
    rng = np.random.default_rng(7)
    n0, n1, m = 3, 5, 11
    X = rng.standard_normal((n0, m))
    Y = (rng.random((n2, m)) > 0.5).astype(np.float64)
    p = initial_parameters_host(n0, n1, n2, "xavier", seed=3)
    p["b1"] = rng.standard_normal((n1, 1)) * 0.3  # away from relu's kink at 0 for most units
    g = get_activation(activation)
    Z1, A1, Z2, A2 = equations.forward(X, p["W1"], p["b1"], p["W2"], p["b2"], g)
    grads = dict(zip(["W1", "b1", "W2", "b2"], equations.backward(X, Y, p["W2"], Z1, A1, A2, g)))
    h = 1e-6
    for name, value in p.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus, minus = {k: v.copy() for k, v in p.items()}, {k: v.copy() for k, v in p.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            numeric[idx] = (_cost(X, Y, plus, g) - _cost(X, Y, minus, g)) / (2 * h)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=f"d{name} ({activation})")


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_activation_derivative_matches_central_difference(activation):
    g = get_activation(activation)
    Z = np.linspace(-4, 4, 81)
    Z = Z[np.abs(Z) > 1e-3]  # relu has no derivative at 0
    h = 1e-6
    numeric = (g(Z + h) - g(Z - h)) / (2 * h)
    np.testing.assert_allclose(g.prime(Z, g(Z)), numeric, rtol=1e-6, atol=1e-9)


def test_activation_values():
    Z = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(get_activation("tanh")(Z), np.tanh(Z))
    np.testing.assert_allclose(get_activation("sigmoid")(Z), 1 / (1 + np.exp(-Z)))
    np.testing.assert_allclose(get_activation("relu")(Z), np.maximum(Z, 0))
    np.testing.assert_allclose(get_activation("leaky_relu")(Z), np.where(Z > 0, Z, 0.01 * Z))


def test_sigmoid_is_stable_at_extremes():
    Z = np.array([[-1000.0, -40.0, 0.0, 40.0, 1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A = equations.sigmoid(Z)
    assert np.all(np.isfinite(A))
    np.testing.assert_allclose(A, [[0.0, np.exp(-40.0), 0.5, 1.0, 1.0]], rtol=1e-12, atol=0)


def test_cost_matches_textbook_formula_where_it_is_finite():
    rng = np.random.default_rng(0)
    Z2 = rng.standard_normal((2, 50)) * 3
    Y = (rng.random((2, 50)) > 0.5).astype(float)
    A2 = 1 / (1 + np.exp(-Z2))
    textbook = -np.sum(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)) / 50
    assert float(equations.cost_from_logits(Z2, Y)) == pytest.approx(textbook, rel=1e-12)
    assert float(equations.cost_from_probabilities(A2, Y)) == pytest.approx(textbook, rel=1e-9)


def test_cost_is_finite_when_the_output_saturates():
    Z2 = np.array([[800.0, -800.0, 800.0, -800.0]])
    Y = np.array([[1.0, 0.0, 0.0, 1.0]])
    J = float(equations.cost_from_logits(Z2, Y))
    assert J == pytest.approx((800 + 800) / 4)  # wrong with full confidence costs |z| each
    A2 = np.array([[1.0, 0.0, 1.0, 0.0]])  # exactly saturated, as float64 sigmoid gives
    assert np.isfinite(float(equations.cost_from_probabilities(A2, Y)))
    assert float(equations.cost_from_probabilities(A2, Y)) > 10


def test_one_step_decreases_the_cost():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 40))
    Y = (X[:1] * X[1:] > 0).astype(float)
    p = initial_parameters_host(2, 4, 1, "xavier", seed=0)
    g = get_activation("tanh")
    *new, J0 = equations.step(X, Y, p["W1"], p["b1"], p["W2"], p["b2"], g, 0.1, with_cost=True)
    q = dict(zip(["W1", "b1", "W2", "b2"], new))
    assert _cost(X, Y, q, g) < float(J0)
    assert float(J0) == pytest.approx(_cost(X, Y, p, g))


# -- softmax output and sample weights ----------------------------------------------------------
SOFTMAX = equations.OUTPUTS["softmax"]


def _softmax_problem(n0=3, n1=5, n2=4, m=13, seed=7, weighted=False):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n0, m))
    Y = np.eye(n2)[:, rng.integers(0, n2, m)]  # one-hot columns
    p = initial_parameters_host(n0, n1, n2, "xavier", seed=3)
    p["b1"] = rng.standard_normal((n1, 1)) * 0.3
    w = rng.uniform(0.2, 3.0, (1, m)) if weighted else None
    return X, Y, p, (None if w is None else w * (m / w.sum()))  # weights average 1, as training scales them


def _softmax_cost(X, Y, p, g, w=None):
    _, _, Z2, _ = equations.forward(X, p["W1"], p["b1"], p["W2"], p["b2"], g, SOFTMAX)
    return float(equations.cost_from_logits(Z2, Y, output=SOFTMAX, weights=w))


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_softmax_gradients_match_central_differences(activation, weighted):
    X, Y, p, w = _softmax_problem(weighted=weighted)
    g = get_activation(activation)
    *grads, _ = equations.gradients(X, Y, *p.values(), g, output=SOFTMAX, weights=w)
    h = 1e-6
    for name, grad in zip(p, grads):
        numeric = np.zeros_like(p[name])
        for idx in np.ndindex(p[name].shape):
            plus, minus = {k: v.copy() for k, v in p.items()}, {k: v.copy() for k, v in p.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            numeric[idx] = (_softmax_cost(X, Y, plus, g, w) - _softmax_cost(X, Y, minus, g, w)) / (2 * h)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8, err_msg=f"d{name} ({activation})")


def test_weighted_sigmoid_gradients_match_central_differences():
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((3, 9)), (rng.random((2, 9)) > 0.5).astype(float)
    p = initial_parameters_host(3, 4, 2, "xavier", seed=1)
    w = rng.uniform(0.1, 2.0, (1, 9))
    g = get_activation("tanh")

    def cost(q):
        _, _, Z2, _ = equations.forward(X, *q.values(), g)
        return float(equations.cost_from_logits(Z2, Y, weights=w))

    *grads, _ = equations.gradients(X, Y, *p.values(), g, weights=w)
    for name, grad in zip(p, grads):
        numeric = np.zeros_like(p[name])
        for idx in np.ndindex(p[name].shape):
            plus, minus = {k: v.copy() for k, v in p.items()}, {k: v.copy() for k, v in p.items()}
            plus[name][idx] += 1e-6
            minus[name][idx] -= 1e-6
            numeric[idx] = (cost(plus) - cost(minus)) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8, err_msg=f"d{name}")


def _autograd_oracle(X, Y, p, activation, w):
    """Gradients of the softmax cross-entropy by torch.autograd in float64, written from the textbook."""
    torch = pytest.importorskip("torch", reason="torch is not installed (the autograd oracle)")
    t = {k: torch.tensor(v, requires_grad=True) for k, v in p.items()}
    Xt, Yt = torch.tensor(X), torch.tensor(Y)
    hidden = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
              "leaky_relu": lambda z: torch.nn.functional.leaky_relu(z, 0.01)}[activation]
    Z2 = t["W2"] @ hidden(t["W1"] @ Xt + t["b1"]) + t["b2"]
    loss = -(Yt * torch.log_softmax(Z2, dim=0)).sum(dim=0)  # per example
    weights = torch.ones(X.shape[1], dtype=torch.float64) if w is None else torch.tensor(w[0])
    (torch.sum(weights * loss) / X.shape[1]).backward()
    return [t[k].grad.numpy() for k in p]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_softmax_gradients_match_autograd_on_every_backend(backend, weighted):
    try:
        dtype = "float64"
        backend.dtype(dtype)
    except BackendUnavailableError:  # jax without 64-bit mode
        dtype = "float32"
    X, Y, p, w = _softmax_problem(weighted=weighted)
    for activation in ACTIVATION_NAMES:
        expected = _autograd_oracle(X, Y, p, activation, w)
        on = {k: backend.asarray(v, dtype) for k, v in p.items()}
        wd = None if w is None else backend.asarray(w, dtype)
        *grads, _ = equations.gradients(backend.asarray(X, dtype), backend.asarray(Y, dtype), *on.values(),
                                        get_activation(activation), output=SOFTMAX, weights=wd)
        for name, got, want in zip(p, grads, expected):
            assert_close(got, want, backend, dtype, err_msg=f"d{name} ({activation})")


def test_softmax_columns_are_distributions_even_at_extremes():
    Z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 0.0], [999.0, 1000.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A = equations.softmax(Z)
    np.testing.assert_allclose(A.sum(axis=0), 1.0, rtol=1e-15)
    np.testing.assert_allclose(A[:, 2], 1 / 3)
    np.testing.assert_allclose(A[:, 0], [1 / (1 + np.exp(-1.0)), 0.0, np.exp(-1.0) / (1 + np.exp(-1.0))])


def test_softmax_cost_matches_textbook_formula_and_stays_finite():
    rng = np.random.default_rng(0)
    Z2 = rng.standard_normal((4, 30)) * 3
    Y = np.eye(4)[:, rng.integers(0, 4, 30)]
    A2 = np.exp(Z2) / np.exp(Z2).sum(axis=0)
    textbook = -np.sum(Y * np.log(A2)) / 30
    assert float(equations.cost_from_logits(Z2, Y, output=SOFTMAX)) == pytest.approx(textbook, rel=1e-12)
    assert float(equations.cost_from_probabilities(A2, Y, SOFTMAX)) == pytest.approx(textbook, rel=1e-9)
    wrong = np.array([[800.0], [-800.0]])  # confidently class 0, truly class 1
    assert float(equations.cost_from_logits(wrong, np.array([[0.0], [1.0]]), output=SOFTMAX)) == pytest.approx(1600)


def test_weights_make_the_cost_a_weighted_mean():
    rng = np.random.default_rng(4)
    Z2, Y = rng.standard_normal((1, 6)), (rng.random((1, 6)) > 0.5).astype(float)
    w = np.array([[2.0, 0.0, 1.0, 1.0, 2.0, 0.0]])  # averages 1
    per_example = np.array([float(equations.cost_from_logits(Z2[:, i:i + 1], Y[:, i:i + 1])) for i in range(6)])
    expected = np.sum(w[0] * per_example) / w.sum()
    assert float(equations.cost_from_logits(Z2, Y, weights=w)) == pytest.approx(expected, rel=1e-12)


def test_an_unknown_output_is_named():
    with pytest.raises(ValueError, match="unknown output 'tanh'; choose one of"):
        equations.get_output("tanh")


def test_softmax_and_weights_trace_to_the_same_numbers():
    from backprop_core import tracing

    X, Y, p, w = _softmax_problem(weighted=True)
    g = get_activation("relu")
    graph = tracing.trace_gradients(3, 5, 4, g, weighted=True, output=SOFTMAX)
    expected = equations.gradients(X, Y, *p.values(), g, m=50, with_cost=True, output=SOFTMAX, weights=w)
    got = tracing.evaluate(graph, {"X": X, "Y": Y, "m": 50, "weights": w, **p})
    for name, a, b in zip(("dW1", "db1", "dW2", "db2", "J"), got, expected):
        np.testing.assert_array_equal(a, b, err_msg=name)
