"""Training from arrays: check them, plan, place them, run the loop.

:func:`fit` is what the functional API (``nn_model``) and the estimator share:
examples are columns, X (n0, m) and Y (n2, m) from any supported library.
:func:`train` is the step below it, for data and parameters already where
they will be computed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from array_api_compat import array_namespace

from . import building, planner
from .backends import backend_for_array, get_backend
from .equations import SIGMOID, get_output
from .errors import FeatureScaleWarning, TrainingDivergedError
from .execution import Execution, get_execution, set_around
from .initialization import initial_parameters_host
from .loop import EarlyStopping, Plateau, TrainResult, run
from .optimizers import GradientDescent, UpdateRule, check_state, check_state_keys, get_optimizer
from .strategies import validation_evaluator
from .validation import (
    as_array,
    check_binary,
    check_dtype_name,
    check_finite,
    check_finite_parameters,
    check_network_size,
    check_non_negative,
    check_one_hot,
    check_parameters,
    check_positive,
    check_same_place,
    check_sample_weight,
    check_seed,
    check_shapes,
    dtype_name,
    feature_scale_advice,
    to_backend,
)


def with_weights(Y, weights):
    """Y (n2, m) with the examples' weights, scaled to average 1, as its last row: (n2 + 1, m).

    Scaled so, the equations' (1/m) sums are weighted means; carried under Y,
    the weights follow their examples through every chunk, batch and stream.
    """
    if weights is None:
        return Y
    xp = array_namespace(Y, weights)
    weights = xp.reshape(weights, (1, Y.shape[1]))
    return xp.concat([Y, weights * (Y.shape[1] / xp.sum(weights))], axis=0)


@set_around
def train(X, Y, parameters: dict, *, activation, learning_rate: float, num_iterations: int, backend,
          cost_every: int = 100, callback=None, plan: planner.Plan | None = None, seed=0,
          output=SIGMOID, sample_weight=None, monitor: EarlyStopping | None = None,
          optimizer="gd", alpha: float = 0.0, optimizer_state: dict | None = None, plateau: Plateau | None = None,
          batch_size=None, epochs=None) -> TrainResult:
    """Run ``num_iterations`` steps on ``backend`` (mini-batch: ``plan.epochs`` epochs instead).

    X (n0, m), Y (n2, m), the parameters and ``sample_weight`` (m,) if given
    are already on the backend's device in one float dtype (with a streaming
    plan, X, Y and the weights are host NumPy arrays).  ``output`` is the
    output layer (:data:`backprop_core.equations.OUTPUTS`); ``monitor`` stops
    early on held-out data (:class:`backprop_core.loop.EarlyStopping`).
    ``optimizer``, ``alpha``, ``optimizer_state``: as for :func:`fit` (the
    state already on the backend's device, in the parameters' dtype).
    Start parameters that are not finite are refused by name.
    The current execution (:func:`backprop_core.execution.get_execution`) is
    read once here: its ``iteration_timeout`` replaces a cluster adapter's own,
    as in :func:`fit`, and without ``plan``, :func:`backprop_core.planner.plan`
    makes one under it, with ``batch_size`` and ``epochs`` for mini-batches.
    Errors: see :func:`backprop_core.loop.run`.
    """
    output = get_output(output)
    check_positive(learning_rate, "learning_rate")
    check_finite_parameters(parameters)
    execution = get_execution()
    if backend.distributed and execution.iteration_timeout is not None:
        backend = backend.with_iteration_timeout(execution.iteration_timeout)
    rule = _update_rule(optimizer, learning_rate, alpha)
    if optimizer_state is None:
        optimizer_state = rule.optimizer.init(parameters)
    else:
        check_state(rule.optimizer, optimizer_state, parameters)
    dtype = dtype_name(parameters["W1"].dtype)
    if plan is None:
        n1 = parameters["W1"].shape[0]
        plan = planner.plan(backend, (X.shape[0], n1, Y.shape[0], X.shape[1]), dtype, activation, execution,
                            host_data=execution.stream is True, output=output, weighted=sample_weight is not None,
                            early_stopping=monitor is not None, iterations=num_iterations, rule=rule,
                            batch_size=batch_size, epochs=epochs)
    return _run(plan, X, Y, parameters, activation, rule, optimizer_state, num_iterations, backend, dtype,
                cost_every=cost_every, callback=callback, seed=seed, output=output, sample_weight=sample_weight,
                monitor=monitor, plateau=plateau)


def _update_rule(optimizer, learning_rate, alpha) -> UpdateRule:
    check_non_negative(alpha, "alpha (the L2 penalty)")
    return UpdateRule(get_optimizer(optimizer), float(learning_rate), float(alpha))


def _run(plan, X, Y, parameters, activation, rule, optimizer_state, num_iterations, backend, dtype, *, cost_every,
         callback, seed, output, sample_weight, monitor, plateau) -> TrainResult:
    """Build ``plan``'s strategy and run it: X, Y, the parameters and their state already checked and placed."""
    strategy = building.build(plan, X, with_weights(Y, sample_weight), parameters, activation, rule.learning_rate,
                              backend, dtype, seed, output, sample_weight is not None, rule, optimizer_state)
    if plan.mode == "mini-batch":
        num_iterations = plan.epochs * strategy.updates_per_epoch
    return run(strategy, parameters, num_iterations=num_iterations, learning_rate=rule.learning_rate,
               cost_every=cost_every, callback=callback, monitor=monitor, plateau=plateau)


@dataclass
class Fit:
    """What :func:`fit` did: the result, the plan it followed, where it computed, and the
    :class:`~backprop_core.execution.Execution` it ran under."""

    result: TrainResult
    plan: planner.Plan
    backend: object
    dtype: str
    execution: Execution


def resolve_backend(backend, device, X, iteration_timeout=None):
    """The adapter to train with: Dask arrays train where their chunks are.

    ``iteration_timeout`` (seconds), where given, replaces a distributed adapter's own.
    """
    backend = get_backend(backend, device)
    source = backend_for_array(X)
    if source.distributed and not backend.distributed:
        backend = source
    backend = backend.for_data(X)
    if backend.distributed and iteration_timeout is not None:
        backend = backend.with_iteration_timeout(iteration_timeout)
    return backend


def _placed_and_checked(X, Y, sample_weight, place, dtype, output, what=""):
    """X, Y and the weights on ``place`` as ``dtype``, checked (one host read each)."""
    given = X
    X, Y = to_backend(X, place, dtype, "X" + what), to_backend(Y, place, dtype, "Y" + what)
    check_finite(X, place.xp, "X" + what, given)  # given: says an overflow of the cast as such
    check_finite(Y, place.xp, "Y" + what)
    (check_one_hot if output.name == "softmax" else check_binary)(Y, place.xp, "Y" + what)
    if sample_weight is not None:
        sample_weight = to_backend(as_array(sample_weight, "sample_weight"), place, dtype, "sample_weight")
        check_sample_weight(sample_weight, X.shape[1], place.xp, "sample_weight" + what)
    return X, Y, sample_weight


@set_around
def fit(X, Y, *, hidden_units: int, activation, learning_rate: float, num_iterations: int,
        backend="numpy", device=None, dtype=None, parameters=None, init="normal", seed=0,
        cost_every=100, callback=None, batch_size=None, epochs=None, on_plan=None, output="sigmoid",
        sample_weight=None, validation=None, n_iter_no_change=10, tol=1e-4, on_validation=None,
        optimizer="gd", alpha=0.0, optimizer_state=None, stop_on_plateau=False) -> Fit:
    """Check X (n0, m) and Y (n2, m), plan, move them once to the backend, and train.

    How it runs (chunks, workers, streams, the fused kernel, a cluster's
    iteration timeout) is the current execution's, read once as the fit starts
    (:func:`backprop_core.execution.get_execution`; set it with
    :func:`backprop_core.execution.execution_context`); the fit hands that one
    object to all it starts, and records it (``Fit.execution``).
    X and Y are checked here, once each: this is the boundary.

    ``parameters`` (host or any library) replace the random start, which is
    otherwise drawn on the host from ``numpy.random.default_rng(seed)``.
    ``on_plan(plan, backend, dtype, execution)`` is called once everything is checked and
    before training starts (the estimator records the plan there, so that an
    error raised during training still finds it).

    ``output``: "sigmoid" (Y of 0/1 labels, the lecture) or "softmax" (Y one-hot).
    ``sample_weight`` (m,): non-negative weights of the examples.
    ``validation``: ``(X_val, Y_val, weights_val or None)`` held out for early
    stopping (:class:`backprop_core.loop.EarlyStopping` with ``n_iter_no_change``
    and ``tol``; ``on_validation(iteration, cost, accuracy)`` is told each check).
    ``batch_size``, ``epochs``: mini-batch gradient descent (:func:`backprop_core.planner.plan`).

    ``stop_on_plateau``: without ``validation``, stop once the training cost has not
    fallen by ``tol`` for more than ``n_iter_no_change`` reads in a row
    (:class:`backprop_core.loop.Plateau`; mini-batch reads are then each read's
    mean batch cost), as scikit-learn's MLP does.

    ``optimizer``: the update rule (:mod:`backprop_core.optimizers`): "gd" (the
    lecture's gradient descent), "momentum", "rmsprop", "adam" with the course's
    hyperparameters, or an object such as ``Adam(beta1=0.9, beta2=0.999,
    epsilon=1e-8)``; ``learning_rate`` is its alpha.  ``alpha``: the L2 penalty
    (the course's lambda): ``(alpha / 2m) (||W1||^2 + ||W2||^2)`` is added to the
    cost and ``(alpha / m) W`` to dW1 and dW2 (m: the examples of a step).
    ``optimizer_state``: the state to resume from (a finished fit's
    ``result.optimizer_state``, from any library: it is moved like ``parameters``);
    None starts it afresh.  Sample weights (class weights turned into sample
    weights, e.g. by scikit-learn's ``compute_sample_weight``) work with every rule.

    When the features' scale makes gradient descent's ``learning_rate`` unsafe
    (:func:`backprop_core.validation.feature_scale_advice`, checked before
    training), a UserWarning says so after the run, or the
    TrainingDivergedError of a diverged run says it.
    """
    check_positive(hidden_units, "hidden_units", integer=True)
    check_positive(learning_rate, "learning_rate")
    check_positive(num_iterations, "num_iterations", integer=True)
    check_positive(cost_every, "cost_every", integer=True)
    check_seed(seed)
    check_dtype_name(dtype)
    execution = get_execution()
    output = get_output(output)
    X, Y = as_array(X, "X"), as_array(Y, "Y")
    source = check_same_place({"X": X, "Y": Y})
    check_shapes(X, Y)
    backend = resolve_backend(backend, device, X, execution.iteration_timeout)
    dtype = dtype or backend.default_dtype
    n0, m, n2 = X.shape[0], X.shape[1], Y.shape[0]
    if parameters is not None:
        _, hidden_units, _ = check_parameters(parameters, n0, n2)
    check_network_size(n0, hidden_units, n2)
    host_data = source.name == "numpy" and not backend.distributed
    rule = _update_rule(optimizer, learning_rate, alpha)
    p = planner.plan(backend, (n0, hidden_units, n2, m), dtype, activation, execution, batch_size=batch_size,
                     epochs=epochs, host_data=host_data, output=output, weighted=sample_weight is not None,
                     early_stopping=validation is not None, iterations=num_iterations, rule=rule)
    place = get_backend("numpy") if p.streams else backend
    X, Y, sample_weight = _placed_and_checked(X, Y, sample_weight, place, dtype, output)
    # Told once the run is over.  The rule bounds gradient descent's learning rate; the other rules'
    # steps do not grow with the features' scale as its do (Adam's and RMSprop's not at all).
    unsafe = feature_scale_advice(X, learning_rate, place.xp) if isinstance(rule.optimizer, GradientDescent) \
        else None
    monitor = plateau = None
    if stop_on_plateau and validation is None:  # scikit-learn's MLP: the training cost's plateau ends the run
        check_positive(n_iter_no_change, "n_iter_no_change", integer=True)
        check_non_negative(tol, "tol")
        plateau = Plateau(int(n_iter_no_change), float(tol))
    if validation is not None:
        check_positive(n_iter_no_change, "n_iter_no_change", integer=True)
        check_non_negative(tol, "tol")
        X_val, Y_val, w_val = validation
        X_val, Y_val, w_val = _placed_and_checked(X_val, Y_val, w_val, backend, dtype, output, " (validation)")
        evaluate = validation_evaluator(X_val, with_weights(Y_val, w_val), activation, backend, output,
                                        w_val is not None)
        monitor = EarlyStopping(evaluate, int(n_iter_no_change), float(tol), on_validation)
    if parameters is None:
        parameters = backend.parameters_from_host(
            initial_parameters_host(n0, hidden_units, n2, init, seed), dtype)
    else:  # small: through the host, which every backend (Dask too) takes them from
        parameters = backend.parameters_from_host(
            {k: backend_for_array(v).to_numpy(v) for k, v in parameters.items()}, dtype)
    check_finite_parameters(parameters)
    if optimizer_state is not None:  # as small as the parameters, and moved as they are
        check_state_keys(rule.optimizer, optimizer_state)
        optimizer_state = {k: as_array(v, f"optimizer_state[{k!r}]") for k, v in optimizer_state.items()}
        optimizer_state = backend.parameters_from_host(
            {k: backend_for_array(v).to_numpy(v) for k, v in optimizer_state.items()}, dtype)
        check_state(rule.optimizer, optimizer_state, parameters)
    else:
        optimizer_state = rule.optimizer.init(parameters)
    if on_plan is not None:
        on_plan(p, backend, dtype, execution)
    try:
        result = _run(p, X, Y, parameters, activation, rule, optimizer_state, num_iterations, backend, dtype,
                      cost_every=cost_every, callback=callback, seed=seed, output=output,
                      sample_weight=sample_weight, monitor=monitor, plateau=plateau)
    except TrainingDivergedError as exc:
        if unsafe is None:
            raise
        # The error names the cause: a warning beside it would say it twice.
        error = TrainingDivergedError(f"{exc}. {unsafe}", exc.parameters, exc.iteration, exc.history)
        error.advice = unsafe
        raise error from None
    if unsafe is not None:
        warnings.warn(FeatureScaleWarning(unsafe), stacklevel=3)
    return Fit(result, p, backend, dtype, execution)
