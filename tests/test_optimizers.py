"""The course's next update rules (momentum, RMSprop, Adam) and its L2 penalty: the rules against
a hand computation and against torch.optim on every backend, the penalty's gradient against
central differences, and both through the one training loop (whole batch, chunks, mini-batches,
Dask, worker processes, weights, resuming), the lecture's default left bit for bit as it was."""

from __future__ import annotations

import numpy as np
import pytest

import backprop_core as bc
from backprop_core import building, equations, optimizers, planner
from backprop_core.activations import get_activation
from backprop_core.execution import execution_context
from backprop_core.initialization import initial_parameters_host
from backprop_core.optimizers import Adam, GradientDescent, Momentum, RMSprop, UpdateRule
from backprop_core.parameters import NAMES
from backprop_core.strategies import Chunked
from backprop_core.training import fit

from conftest import assert_close

TANH = get_activation("tanh")
RULES = ["momentum", "rmsprop", "adam"]
SHAPES = {"W1": (4, 3), "b1": (4, 1), "W2": (2, 4), "b2": (2, 1)}


def _gradient_steps(count=4, seed=0):
    """``count`` gradients ``{name: array}`` of a 3-4-2 network, float64, of varied scale."""
    rng = np.random.default_rng(seed)
    return [{k: rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 1) for k, shape in SHAPES.items()}
            for _ in range(count)]


def _start(seed=1):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(shape) for k, shape in SHAPES.items()}


# -- the course's formulas, written out in float64 NumPy: the oracle ---------------------------------
def course_update(rule, p, grads, state, lr, beta=0.9, beta1=0.9, beta2=0.999, eps=1e-8):
    """One update by the course's formulas; ``state`` (a dict, changed in place) holds vdW, sdW and t."""
    state["t"] = state.get("t", 0) + 1
    t, new = state["t"], {}
    for k in NAMES:
        dW, v, s = grads[k], state.get("vd" + k, 0.0), state.get("sd" + k, 0.0)
        if rule == "gd":
            new[k] = p[k] - lr * dW
        elif rule == "momentum":
            v = beta * v + (1 - beta) * dW
            new[k] = p[k] - lr * v
        elif rule == "rmsprop":
            s = beta2 * s + (1 - beta2) * dW ** 2
            new[k] = p[k] - lr * dW / (np.sqrt(s) + eps)
        elif rule == "adam":
            v = beta1 * v + (1 - beta1) * dW
            s = beta2 * s + (1 - beta2) * dW ** 2
            v_corrected, s_corrected = v / (1 - beta1 ** t), s / (1 - beta2 ** t)
            new[k] = p[k] - lr * v_corrected / (np.sqrt(s_corrected) + eps)
        state["vd" + k], state["sd" + k] = v, s
    return new


#: The optimizers as the tests build them: RMSprop with the course's Adam beta2 where the oracle uses it.
def _optimizer(rule):
    return {"gd": GradientDescent(), "momentum": Momentum(beta=0.9), "rmsprop": RMSprop(beta2=0.999),
            "adam": Adam(beta1=0.9, beta2=0.999, epsilon=1e-8)}[rule]


def _on(backend, host: dict, dtype):
    return {k: backend.asarray(v, dtype) for k, v in host.items()}


# -- each rule on every backend ------------------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES)
def test_rule_matches_the_course_formulas_written_out(backend, rule):
    dtype, lr = backend.default_dtype, 0.05
    optimizer = _optimizer(rule)
    p, want, state = _on(backend, _start(), dtype), _start(), {}
    opt_state = optimizer.init(p)
    for grads in _gradient_steps():
        p, opt_state = optimizer.update(p, tuple(backend.asarray(grads[k], dtype) for k in NAMES), opt_state, lr)
        want = course_update(rule, want, grads, state, lr)
    for k in NAMES:
        assert_close(p[k], want[k], backend, dtype, err_msg=k)
    for name, value in opt_state.items():  # the state too: vdW, sdW, t, each like its parameter
        assert_close(value, state[name], backend, dtype, err_msg=name)


def test_adam_first_step_moves_each_weight_by_the_learning_rate_against_its_gradient_sign(backend):
    # After one update v_c = dW and s_c = dW^2, so W moves by lr dW / (|dW| + eps): lr, signed.
    dtype = backend.default_dtype
    grads = _gradient_steps(1)[0]
    p = Adam().update(_on(backend, _start(), dtype), tuple(backend.asarray(grads[k], dtype) for k in NAMES),
                      Adam().init(_on(backend, _start(), dtype)), 0.01)[0]
    for k in NAMES:
        assert_close(p[k], _start()[k] - 0.01 * np.sign(grads[k]), backend, dtype, err_msg=k, rtol=1e-5, atol=1e-5)


def _torch_optimizer(rule, params, lr):
    torch = pytest.importorskip("torch")
    if rule == "momentum":
        # The course's vdW = beta vdW + (1 - beta) dW is SGD's buffer with dampening = beta; torch's
        # first step copies dW into an empty buffer instead, so the buffer starts at zero here.
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, dampening=0.9)
        for q in params:
            opt.state[q]["momentum_buffer"] = torch.zeros_like(q)
        return opt
    if rule == "rmsprop":  # torch's alpha is beta2; its eps is added outside the square root, as here
        return torch.optim.RMSprop(params, lr=lr, alpha=0.999, eps=1e-8)
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)


@pytest.mark.parametrize("rule", RULES)
def test_rule_matches_torch_optim_on_the_same_gradients(backend, rule):
    torch = pytest.importorskip("torch")
    dtype, lr = backend.default_dtype, 0.05
    optimizer = _optimizer(rule)
    mine = _on(backend, _start(), dtype)
    theirs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in _start().values()]
    reference = _torch_optimizer(rule, theirs, lr)
    opt_state = optimizer.init(mine)
    for grads in _gradient_steps(6):
        mine, opt_state = optimizer.update(mine, tuple(backend.asarray(grads[k], dtype) for k in NAMES),
                                           opt_state, lr)
        for q, k in zip(theirs, NAMES):
            q.grad = torch.tensor(grads[k], dtype=torch.float64)
        reference.step()
    for q, k in zip(theirs, NAMES):
        assert_close(mine[k], q.detach().numpy(), backend, dtype, err_msg=k)


def test_torch_momentum_without_a_zero_buffer_is_not_the_course_form():
    # Documents why the comparison above starts torch's buffer at zero: its default first step differs.
    torch = pytest.importorskip("torch")
    grads = _gradient_steps(1)[0]
    q = torch.tensor(_start()["W1"], requires_grad=True)
    opt = torch.optim.SGD([q], lr=0.1, momentum=0.9, dampening=0.9)
    q.grad = torch.tensor(grads["W1"])
    opt.step()
    course = course_update("momentum", _start(), grads, {}, 0.1)["W1"]
    assert not np.allclose(q.detach().numpy(), course)
    np.testing.assert_allclose(q.detach().numpy(), _start()["W1"] - 0.1 * grads["W1"])


def test_state_is_made_where_the_parameters_are(backend):
    dtype = backend.default_dtype
    p = _on(backend, _start(), dtype)
    state = Adam().init(p)
    assert set(state) == set(Adam().state_names) == {f"{v}d{k}" for v in "vs" for k in NAMES} | {"t"}
    for name, value in state.items():
        shape = () if name == "t" else SHAPES[name[2:]]
        assert_close(value, np.zeros(shape), backend, dtype, err_msg=name)
    assert Momentum().state_names == ("vdW1", "vdb1", "vdW2", "vdb2")
    assert RMSprop().state_names == ("sdW1", "sdb1", "sdW2", "sdb2")
    assert GradientDescent().init(p) == {}


# -- hyperparameters and names ---------------------------------------------------------------------------
def test_optimizers_by_name_carry_the_course_defaults():
    assert optimizers.get_optimizer("adam") == Adam(beta1=0.9, beta2=0.999, epsilon=1e-8)
    assert optimizers.get_optimizer("momentum") == Momentum(beta=0.9)
    assert optimizers.get_optimizer("gd") == GradientDescent()
    mine = Adam(beta2=0.99)
    assert optimizers.get_optimizer(mine) is mine


@pytest.mark.parametrize("bad, match", [
    (lambda: optimizers.get_optimizer("sgd"), "unknown optimizer 'sgd'; choose one of"),
    (lambda: Adam(beta1=1.0), r"Adam's beta1 must be in \[0, 1\)"),
    (lambda: Momentum(beta=-0.1), r"momentum's beta must be in \[0, 1\)"),
    (lambda: RMSprop(epsilon=0.0), "RMSprop's epsilon must be a positive finite number"),
    (lambda: Adam(beta2="0.9"), "Adam's beta2 must be a number"),
])
def test_bad_hyperparameters_are_named(bad, match):
    with pytest.raises(bc.InvalidInputError, match=match):
        bad()


def test_numpy_scalar_hyperparameters_keep_float32_arrays_float32():
    p = {k: v.astype(np.float32) for k, v in _start().items()}
    grads = tuple(v.astype(np.float32) for v in _gradient_steps(1)[0].values())
    new, state = Adam(beta1=np.float64(0.9)).update(p, grads, Adam().init(p), 0.01)
    assert all(v.dtype == np.float32 for v in (*new.values(), *state.values()))


# -- the L2 penalty ---------------------------------------------------------------------------------------
def _penalized_cost(X, Y, p, alpha, weights=None):
    _, _, Z2, _ = equations.forward(X, p["W1"], p["b1"], p["W2"], p["b2"], TANH)
    J = equations.cost_from_logits(Z2, Y, weights=weights)
    return float(J + equations.l2_cost(p["W1"], p["W2"], alpha, X.shape[1]))


@pytest.mark.parametrize("weighted", [False, True])
def test_penalized_gradients_match_central_differences(weighted):
    rng = np.random.default_rng(3)
    X, Y = rng.standard_normal((3, 13)), (rng.random((2, 13)) > 0.5).astype(np.float64)
    weights = rng.random((1, 13)) * 2 if weighted else None
    p, alpha = _start(), 0.7
    *grads, J = equations.gradients(X, Y, *(p[k] for k in NAMES), TANH, with_cost=True, weights=weights)
    *grads, J = equations.penalized(p["W1"], p["W2"], *grads, J, alpha, X.shape[1])
    assert float(J) == pytest.approx(_penalized_cost(X, Y, p, alpha, weights), rel=1e-12)
    h = 1e-6
    for name, analytic in zip(NAMES, grads):
        numeric = np.zeros_like(p[name])
        for idx in np.ndindex(p[name].shape):
            plus, minus = {k: v.copy() for k, v in p.items()}, {k: v.copy() for k, v in p.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            numeric[idx] = (_penalized_cost(X, Y, plus, alpha, weights)
                            - _penalized_cost(X, Y, minus, alpha, weights)) / (2 * h)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9, err_msg=f"d{name}")


def test_the_penalty_is_the_course_formula_on_weights_not_biases():
    p, alpha, m = _start(), 0.7, 13
    grads = tuple(np.ones(SHAPES[k]) for k in NAMES)
    dW1, db1, dW2, db2, J = equations.penalized(p["W1"], p["W2"], *grads, 0.0, alpha, m)
    np.testing.assert_allclose(dW1, 1 + alpha / m * p["W1"])
    np.testing.assert_allclose(dW2, 1 + alpha / m * p["W2"])
    assert (db1 == 1).all() and (db2 == 1).all()
    assert J == pytest.approx(alpha / (2 * m) * ((p["W1"] ** 2).sum() + (p["W2"] ** 2).sum()))


def test_no_penalty_hands_back_the_very_same_arrays():
    p, grads = _start(), tuple(_gradient_steps(1)[0].values())
    out = equations.penalized(p["W1"], p["W2"], *grads, None, 0.0, 13)
    assert all(a is b for a, b in zip(out, (*grads, None)))


# -- through the training loop -----------------------------------------------------------------------------
def _hand_fit(X, Y, p, rule, lr, alpha, iterations, weights=None, batch=None, epochs=None, seed=0):
    """The fit by the course's formulas in float64 NumPy: the equations' gradients, the penalty, the rule."""
    m = X.shape[1]
    if weights is not None:
        weights = (weights * (m / weights.sum()))[None, :]
    if batch is None:
        batches = [(slice(None), slice(0, m))] * iterations
    else:
        rng, batches = np.random.default_rng(seed), []
        for _ in range(epochs):
            order = rng.permutation(m)
            batches += [(order, slice(a, min(a + batch, m))) for a in range(0, m, batch)]
    state = {}
    for order, cut in batches:
        Xb, Yb = X[:, order][:, cut], Y[:, order][:, cut]
        wb = None if weights is None else weights[:, order][:, cut]
        *g, _ = equations.gradients(Xb, Yb, *(p[k] for k in NAMES), TANH, weights=wb)
        g = dict(zip(NAMES, g))
        mb = Xb.shape[1]
        g["W1"], g["W2"] = g["W1"] + alpha / mb * p["W1"], g["W2"] + alpha / mb * p["W2"]
        p = course_update(rule, p, g, state, lr, beta2=0.999)
    return p


def _fit(backend, X, Y, p, rule, **kw):
    dtype = backend.default_dtype
    return fit(backend.asarray(X, dtype), backend.asarray(Y, dtype), hidden_units=6, activation=TANH,
               backend=backend, parameters=p, optimizer=_optimizer(rule), cost_every=2, **kw)


@pytest.mark.parametrize("chunk_size", [None, 1024], ids=["whole", "chunks"])
@pytest.mark.parametrize("rule", RULES + ["gd"])
def test_a_fit_moves_as_the_course_formulas_do(backend, problem, rule, chunk_size):
    X, Y, p = problem
    with execution_context(chunk_size=chunk_size):
        done = _fit(backend, X, Y, p, rule, learning_rate=0.05, num_iterations=5, alpha=0.3)
    assert done.plan.mode == ("whole batch" if chunk_size is None else "chunks")
    want = _hand_fit(X, Y, p, rule, 0.05, 0.3, 5)  # the penalty once a step, not once a chunk
    for k in NAMES:
        assert_close(done.result.parameters[k], want[k], backend, err_msg=k)


def test_mini_batch_adam_moves_as_the_course_formulas_do(backend, problem):
    X, Y, p = problem
    done = _fit(backend, X, Y, p, "adam", learning_rate=0.01, num_iterations=1, alpha=0.3, batch_size=1000,
                epochs=2, seed=4)
    want = _hand_fit(X, Y, p, "adam", 0.01, 0.3, None, batch=1000, epochs=2, seed=4)
    assert done.result.n_iter == 10 and int(backend.to_numpy(done.result.optimizer_state["t"])) == 10
    for k in NAMES:
        assert_close(done.result.parameters[k], want[k], backend, err_msg=k)


def test_the_cost_read_includes_the_penalty(problem):
    X, Y, p = problem
    with execution_context(chunk_size=None):
        done = fit(X, Y, hidden_units=6, activation=TANH, learning_rate=0.05, num_iterations=3, parameters=p,
                   optimizer="adam", alpha=2.0)
    assert done.result.history[0][1] == pytest.approx(_penalized_cost(X, Y, p, 2.0), rel=1e-12)


def test_class_weights_go_through_every_rule(problem):
    from sklearn.utils.class_weight import compute_sample_weight

    X, Y, p = problem
    labels = Y[0].astype(int)
    weights = compute_sample_weight({0: 1.0, 1: 3.0}, labels)
    for rule in RULES:
        done = fit(X, Y, hidden_units=6, activation=TANH, learning_rate=0.05, num_iterations=5, parameters=p,
                   optimizer=_optimizer(rule), alpha=0.3, sample_weight=weights)
        want = _hand_fit(X, Y, p, rule, 0.05, 0.3, 5, weights=weights)
        for k in NAMES:
            np.testing.assert_allclose(done.result.parameters[k], want[k], rtol=1e-9, atol=1e-12,
                                       err_msg=f"{rule} {k}")


def test_integer_weights_count_as_repeated_examples_for_adam(problem):
    X, Y, p = problem
    counts = np.random.default_rng(5).integers(1, 4, X.shape[1])
    common = dict(hidden_units=6, activation=TANH, learning_rate=0.01, num_iterations=5, parameters=p,
                  optimizer="adam")
    with execution_context(chunk_size=None):
        weighted = fit(X, Y, sample_weight=counts, **common).result.parameters
        repeated = fit(np.repeat(X, counts, axis=1), np.repeat(Y, counts, axis=1), **common).result.parameters
    for k in NAMES:
        np.testing.assert_allclose(weighted[k], repeated[k], rtol=1e-9, atol=1e-12, err_msg=k)


# -- resuming ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", RULES)
def test_a_fit_resumed_from_its_state_continues_where_it_stopped(backend, problem, rule):
    X, Y, p = problem
    kw = dict(learning_rate=0.05, alpha=0.3)
    with execution_context(chunk_size=None):
        whole = _fit(backend, X, Y, p, rule, num_iterations=8, **kw).result
        first = _fit(backend, X, Y, p, rule, num_iterations=4, **kw).result
        second = _fit(backend, X, Y, first.parameters, rule, num_iterations=4,
                      optimizer_state=first.optimizer_state, **kw).result
    for k in NAMES:
        assert_close(second.parameters[k], backend.to_numpy(whole.parameters[k]), backend, err_msg=k)
    for name in whole.optimizer_state:
        assert_close(second.optimizer_state[name], backend.to_numpy(whole.optimizer_state[name]), backend,
                     err_msg=name)
    restarted = _fit(backend, X, Y, first.parameters, rule, num_iterations=4, **kw).result
    assert not np.allclose(backend.to_numpy(restarted.parameters["W1"]), backend.to_numpy(whole.parameters["W1"]))


def test_gradient_descent_carries_no_state(problem):
    X, Y, p = problem
    assert fit(X, Y, hidden_units=6, activation=TANH, learning_rate=0.05, num_iterations=2,
               parameters=p).result.optimizer_state is None


@pytest.mark.parametrize("change, match", [
    (lambda s: {k: v for k, v in s.items() if k != "t"}, "does not belong to optimizer 'adam'"),
    (lambda s: {**s, "vdW1": np.zeros((3, 3))}, r"optimizer_state\['vdW1'\] has shape \(3, 3\)"),
    (lambda s: {**s, "sdW2": -np.ones((2, 6))}, "optimizer_state sdW2 must be finite"),
    (lambda s: {**s, "vdb1": np.full((6, 1), np.nan)}, "optimizer_state vdb1 must be finite"),
    (lambda s: [1, 2], "optimizer_state must be a dict of arrays"),
])
def test_a_state_that_cannot_be_resumed_is_refused_by_name(problem, change, match):
    X, Y, p = problem
    common = dict(hidden_units=6, activation=TANH, learning_rate=0.05, num_iterations=2, optimizer="adam")
    state = fit(X, Y, parameters=p, **common).result.optimizer_state
    with pytest.raises(bc.InvalidInputError, match=match):
        fit(X, Y, parameters=p, optimizer_state=change(state), **common)


# -- where steps fuse their update, and where the data are ---------------------------------------------------
def test_dask_applies_the_rule_to_the_summed_gradients(problem):
    da = pytest.importorskip("dask.array")
    X, Y, p = problem
    common = dict(hidden_units=6, activation=TANH, learning_rate=0.05, num_iterations=4, parameters=p,
                  optimizer="adam", alpha=0.3)
    on_dask = fit(da.from_array(X, chunks=(3, 1000)), da.from_array(Y, chunks=(2, 1000)), **common)
    assert on_dask.plan.mode == "dask"
    want = _hand_fit(X, Y, p, "adam", 0.05, 0.3, 4)
    for k in NAMES:
        np.testing.assert_allclose(on_dask.result.parameters[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_worker_processes_apply_the_rule_once_to_their_sums(problem):
    from backprop_core import processes

    if not processes.available():
        pytest.skip("worker processes need a POSIX system that can start an interpreter")
    X, Y, p = problem
    with execution_context(chunk_size=1024, workers=2, parallel="processes"):
        done = fit(X, Y, hidden_units=6, activation=TANH, learning_rate=0.05, num_iterations=4, parameters=p,
                   optimizer=_optimizer("rmsprop"), alpha=0.3)
    assert (done.plan.parallel, done.plan.workers) == ("processes", 2)
    want = _hand_fit(X, Y, p, "rmsprop", 0.05, 0.3, 4)
    for k in NAMES:
        np.testing.assert_allclose(done.result.parameters[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


def _fusing_backend():
    from backprop_core.backends.numpy_backend import NumpyBackend

    class Fusing(NumpyBackend):  # stands for CuPy in the planner, which asks only fuses_kernels
        name = "fusing"
        fuses_kernels = True

    return Fusing()


@pytest.mark.parametrize("rule", [UpdateRule(Adam(), 0.01), UpdateRule(GradientDescent(), 0.5, alpha=0.1)],
                         ids=["adam", "gd-alpha"])
def test_the_fused_kernel_is_not_planned_for_another_rule_and_the_plan_says_why(rule):
    fusing = _fusing_backend()
    lecture = planner.plan(fusing, (2, 4, 1, 400), "float64", TANH, fused=True,
                           rule=UpdateRule(GradientDescent(), 0.5))
    assert lecture.executor == "fused"
    with pytest.warns(UserWarning, match="the fused kernel updates by gradient descent without L2 penalty"):
        p = planner.plan(fusing, (2, 4, 1, 400), "float64", TANH, fused=True, rule=rule)
    assert p.executor != "fused"


@pytest.mark.parametrize("rule", [UpdateRule(Adam(), 0.01), UpdateRule(GradientDescent(), 0.5, alpha=0.1)],
                         ids=["adam", "gd-alpha"])
def test_the_fused_cpu_step_is_not_planned_for_another_rule_and_the_plan_says_why(rule):
    from backprop_core.backends.numpy_backend import NumpyBackend
    from backprop_core.lowering import cpu_fused

    ok, why = cpu_fused.applies((2, 4, 1), TANH, "float64")
    if not ok:
        pytest.skip(f"the fused CPU step does not run here: {why}")
    p = planner.plan(NumpyBackend(), (2, 4, 1, 4096), "float64", TANH, rule=rule)
    assert p.executor != cpu_fused.NAME
    assert "the fused CPU step applies plain gradient descent" in p.reason


def test_the_kernels_whole_batch_step_hands_its_gradients_to_another_rule(monkeypatch):
    from backprop_core.lowering import cupy_kernels as gpu_lowering
    from backprop_core.backends.array_api_strict_backend import ArrayApiStrictBackend
    from backprop_core.lowering.cupy_kernels import GraphStep
    from backprop_core.strategies import Lowered

    class KernelRunning(ArrayApiStrictBackend):  # stands for CuPy: kernels made by the library
        name = "kernel-running"
        fuses_kernels = True

    monkeypatch.setenv(gpu_lowering.ENVIRONMENT, "kernels")
    backend = KernelRunning()
    p = planner.plan(backend, (3, 6, 2, 1000), "float64", TANH, fused=False)
    assert (p.mode, p.executor) == ("whole batch", "kernels")
    X, Y = backend.asarray(np.zeros((3, 1000)), "float64"), backend.asarray(np.zeros((2, 1000)), "float64")
    params = backend.parameters_from_host(initial_parameters_host(3, 6, 2, "xavier", 0), "float64")
    rule = UpdateRule(Adam(), 0.01)
    strategy = building.build(p, X, Y, params, TANH, 0.01, backend, "float64", rule=rule,
                             state=rule.optimizer.init(params))
    assert isinstance(strategy, Chunked) and strategy.rule is rule
    lecture = building.build(p, X, Y, params, TANH, 0.01, backend, "float64")
    assert isinstance(lecture, Lowered) and isinstance(lecture.lowered, GraphStep)


# -- the default: the lecture's step, bit for bit -----------------------------------------------------------
def test_the_default_fit_is_the_lecture_step_bit_for_bit(backend, problem, monkeypatch):
    from backprop_core.lowering import cpu_fused

    # The fused CPU step, which the planner may pick, equals the equations to rounding, not bit for bit.
    monkeypatch.setenv(cpu_fused.ENVIRONMENT, "0")
    X, Y, p = problem
    dtype = backend.default_dtype
    Xb, Yb = backend.asarray(X, dtype), backend.asarray(Y, dtype)
    with execution_context(chunk_size=None):
        done = fit(Xb, Yb, hidden_units=6, activation=TANH, learning_rate=0.5, num_iterations=5, backend=backend,
                   parameters=p, cost_every=100)
    params = tuple(backend.parameters_from_host(p, dtype)[k] for k in NAMES)
    steps = {with_cost: backend.compile(lambda ps, X, Y, c=with_cost: equations.step(X, Y, *ps, TANH, 0.5, c))
             for with_cost in (False, True)}  # compiled as a strategy's steps are (jax.jit fuses differently)
    with backend.context():
        for i in range(5):
            params = steps[i == 0](params, Xb, Yb)[:4]
    for k, want in zip(NAMES, params):
        np.testing.assert_array_equal(backend.to_numpy(done.result.parameters[k]), backend.to_numpy(want),
                                      err_msg=k)


@pytest.mark.parametrize("options, execution", [({}, {}), ({}, {"chunk_size": 1024}), ({"batch_size": 1000}, {})],
                         ids=["auto", "chunks", "mini"])
def test_gd_without_penalty_named_or_given_is_the_default_bit_for_bit(problem, options, execution):
    X, Y, p = problem
    common = dict(hidden_units=6, activation=TANH, learning_rate=0.5, num_iterations=6, parameters=p, **options)
    with execution_context(**execution):
        default = fit(X, Y, **common)
    for named in (dict(optimizer="gd", alpha=0.0), dict(optimizer=GradientDescent(), alpha=0)):
        with execution_context(**execution):
            same = fit(X, Y, **named, **common)
        assert same.plan == default.plan
        for k in NAMES:
            np.testing.assert_array_equal(same.result.parameters[k], default.result.parameters[k], err_msg=k)
        assert same.result.history == default.result.history


# -- nn_model ---------------------------------------------------------------------------------------------
def test_nn_model_returns_the_cost_history_on_request(flower_data):
    X, Y = flower_data
    parameters, costs = bc.nn_model(X, Y, 4, 3000, return_costs=True)
    assert [i for i, _ in costs] == [0, 1000, 2000, 3000]
    assert costs[0][1] == pytest.approx(0.693, abs=1e-3) and costs[-1][1] < costs[0][1]
    plain = bc.nn_model(X, Y, 4, 3000)
    for k in NAMES:
        np.testing.assert_array_equal(parameters[k], plain[k])


def test_nn_model_takes_a_callback_beside_print_cost(flower_data, capsys):
    X, Y = flower_data
    seen = []
    bc.nn_model(X, Y, 4, 2000, print_cost=True, callback=lambda i, J: seen.append((i, J)))
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"Cost after iteration {i}: {J:f}" for i, J in seen]
    assert [i for i, _ in seen] == [0, 1000, 2000]


def test_nn_model_trains_with_adam_and_a_penalty(flower_data):
    X, Y = flower_data
    parameters, costs = bc.nn_model(X, Y, 4, 1000, learning_rate=0.01, optimizer="adam", alpha=0.1,
                                    return_costs=True)
    assert costs[-1][1] < 0.5 * costs[0][1]


# -- around the rules --------------------------------------------------------------------------------------
def test_streamed_chunks_apply_the_rule_to_their_sums(problem):
    X, Y, p = problem
    with execution_context(chunk_size=1024, stream=True):
        done = fit(X, Y, hidden_units=6, activation=TANH, learning_rate=0.05, num_iterations=4, parameters=p,
                   optimizer="adam", alpha=0.3)
    assert done.plan.mode == "streamed chunks"
    want = _hand_fit(X, Y, p, "adam", 0.05, 0.3, 4)
    for k in NAMES:
        np.testing.assert_allclose(done.result.parameters[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_early_stopping_runs_with_a_rule_and_hands_back_its_state(problem):
    X, Y, p = problem
    done = fit(X[:, :4000], Y[:, :4000], hidden_units=6, activation=TANH, learning_rate=0.01, num_iterations=50,
               parameters=p, optimizer="adam", cost_every=5, validation=(X[:, 4000:], Y[:, 4000:], None),
               n_iter_no_change=1, tol=1.0)  # no check improves by 1: it stops at the third check
    assert done.result.n_iter == 10
    assert int(done.result.optimizer_state["t"]) == 10  # the state of the n_iter updates run


def test_the_feature_scale_advice_is_given_for_gradient_descent_only(problem):
    import warnings

    X, Y, p = problem
    common = dict(hidden_units=6, activation=TANH, learning_rate=0.01, num_iterations=3, parameters=p)
    with pytest.warns(bc.FeatureScaleWarning, match="learning_rate=0.01"):
        fit(100.0 * X, Y, **common)  # mean squares near 10,000: gradient descent's rate 0.01 is unsafe
    with warnings.catch_warnings():
        warnings.simplefilter("error", bc.FeatureScaleWarning)
        fit(100.0 * X, Y, optimizer="adam", **common)  # Adam's step does not grow with the scale
