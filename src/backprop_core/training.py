"""Training from arrays: check them, plan, place them, run the loop.

:func:`fit` is what the functional API (``nn_model``) and the estimator share:
examples are columns, X (n0, m) and Y (n2, m) from any supported library.
:func:`train` is the step below it, for data and parameters already where
they will be computed.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import planner
from .backends import backend_for_array, get_backend
from .initialization import initial_parameters_host
from .loop import TrainResult, run
from .validation import (
    as_array,
    check_binary,
    check_dtype_name,
    check_finite,
    check_parameters,
    check_positive,
    check_same_place,
    check_shapes,
    to_backend,
)


def train(X, Y, parameters: dict, *, activation, learning_rate: float, num_iterations: int, backend,
          cost_every: int = 100, callback=None, plan: planner.Plan | None = None, seed=0,
          **options) -> TrainResult:
    """Run ``num_iterations`` steps on ``backend`` (mini-batch: ``plan.epochs`` epochs instead).

    X (n0, m), Y (n2, m) and the parameters are already on the backend's
    device in one float dtype (with a streaming plan, X and Y are host NumPy
    arrays).  Without ``plan``, :func:`backprop_core.planner.plan` makes one
    from ``options`` (chunk_size, workers, stream, batch_size, epochs).
    Errors: see :func:`backprop_core.loop.run`.
    """
    dtype = _dtype_name(parameters["W1"])
    if plan is None:
        n1 = parameters["W1"].shape[0]
        plan = planner.plan(backend, (X.shape[0], n1, Y.shape[0], X.shape[1]), dtype, activation,
                            host_data=options.get("stream") is True, **options)
    strategy = planner.build(plan, X, Y, parameters, activation, learning_rate, backend, dtype, seed)
    if plan.mode == "mini-batch":
        num_iterations = plan.epochs * strategy.updates_per_epoch
    return run(strategy, parameters, num_iterations=num_iterations, learning_rate=learning_rate,
               cost_every=cost_every, callback=callback)


def _dtype_name(array) -> str:
    return str(array.dtype).rsplit(".", 1)[-1]  # "float32" from NumPy's, torch's or JAX's name


@dataclass
class Fit:
    """What :func:`fit` did: the result, the plan it followed, and where it computed."""

    result: TrainResult
    plan: planner.Plan
    backend: object
    dtype: str


def resolve_backend(backend, device, X):
    """The adapter to train with: Dask arrays train where their chunks are."""
    backend = get_backend(backend, device)
    source = backend_for_array(X)
    if source.distributed and not backend.distributed:
        backend = source
    return backend.for_data(X)


def fit(X, Y, *, hidden_units: int, activation, learning_rate: float, num_iterations: int,
        backend="numpy", device=None, dtype=None, parameters=None, init="normal", seed=0,
        cost_every=100, callback=None, chunk_size="auto", workers=None, stream="auto",
        batch_size=None, epochs=None, fused="auto", on_plan=None) -> Fit:
    """Check X (n0, m) and Y (n2, m), plan, move them once to the backend, and train.

    ``parameters`` (host or any library) replace the random start, which is
    otherwise drawn on the host from ``numpy.random.default_rng(seed)``.
    ``on_plan(plan, backend, dtype)`` is called once everything is checked and
    before training starts (the estimator records the plan there, so that an
    error raised during training still finds it).
    """
    check_positive(hidden_units, "hidden_units", integer=True)
    check_positive(learning_rate, "learning_rate")
    check_positive(num_iterations, "num_iterations", integer=True)
    check_positive(cost_every, "cost_every", integer=True)
    check_dtype_name(dtype)
    X, Y = as_array(X, "X"), as_array(Y, "Y")
    source = check_same_place({"X": X, "Y": Y})
    check_shapes(X, Y)
    backend = resolve_backend(backend, device, X)
    dtype = dtype or backend.default_dtype
    n0, m, n2 = X.shape[0], X.shape[1], Y.shape[0]
    if parameters is not None:
        _, hidden_units, _ = check_parameters(parameters, n0, n2)
    host_data = source.name == "numpy" and not backend.distributed
    p = planner.plan(backend, (n0, hidden_units, n2, m), dtype, activation, chunk_size=chunk_size,
                     workers=workers, stream=stream, batch_size=batch_size, epochs=epochs, fused=fused,
                     host_data=host_data)
    place = get_backend("numpy") if p.streams else backend
    X, Y = to_backend(X, place, dtype, "X"), to_backend(Y, place, dtype, "Y")
    check_finite(X, place.xp, "X")
    check_finite(Y, place.xp, "Y")
    check_binary(Y, place.xp)
    if parameters is None:
        parameters = backend.parameters_from_host(
            initial_parameters_host(n0, hidden_units, n2, init, seed), dtype)
    else:  # small: through the host, which every backend (Dask too) takes them from
        parameters = backend.parameters_from_host(
            {k: backend_for_array(v).to_numpy(v) for k, v in parameters.items()}, dtype)
    if on_plan is not None:
        on_plan(p, backend, dtype)
    result = train(X, Y, parameters, activation=activation, learning_rate=learning_rate,
                   num_iterations=num_iterations, backend=backend, cost_every=cost_every,
                   callback=callback, plan=p, seed=seed)
    return Fit(result, p, backend, dtype)
