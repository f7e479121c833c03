"""From a plan to the strategy the loop runs: what computes a fit's chunks, and the strategy
that runs a :class:`~backprop_core.planner.Plan` with BLAS on the plan's threads.

:func:`executor_for` names what computes the chunks (the first executor among the lowering
targets that applies, :mod:`backprop_core.lowering`, else the equations); :func:`make_gradients`
makes it; :func:`build` turns a plan into a strategy of :mod:`backprop_core.strategies` (or of
:mod:`backprop_core.processes`, :mod:`backprop_core.dask_training`) and is the one place a fit's
BLAS threads are pinned.  The planner decides (:mod:`backprop_core.planner`); the calibrations
build what they time here too (:mod:`backprop_core.calibrations`), so a plan is timed as it runs.
"""

from __future__ import annotations

import contextlib

import numpy as np
from array_api_compat import is_numpy_namespace

from . import lowering, processes
from .activations import get_activation
from .blas import blas_threads
from .chunked import ChunkedGradients
from .equations import SIGMOID, get_output
from .errors import InvalidInputError
from .lowering.target import EXECUTOR, Fit
from .optimizers import beyond_lecture
from .strategies import Chunked, Lowered, MiniBatch, WholeBatch, make_equations_gradients


# -- what computes the chunks ------------------------------------------------------------
def executor_for(fit: Fit) -> str:
    """The name of what computes a fit's chunks: the first executor target that applies
    (:mod:`backprop_core.lowering`: NumPy's buffered step; CuPy's kernels once proven or asked
    for), else "equations", the equations compiled by the backend where it can (jax.jit)."""
    for target in lowering.TARGETS:
        if target.chosen == EXECUTOR and target.applies(fit)[0]:
            return target.name
    return "equations"


def default_executor(backend) -> str:
    """The fastest way this backend computes a chunk's gradients (:func:`executor_for` of any fit on it)."""
    return executor_for(Fit(backend))


def make_gradients(backend, executor: str, activation, shape, dtype, columns: int, output=SIGMOID,
                   weighted: bool = False):
    """``make(with_cost)`` for :class:`ChunkedGradients` computing by ``executor`` (an executor target's
    name, or "equations"), on chunks of at most ``columns`` examples of an n0-n1-n2 network (``shape``)."""
    if executor == "equations":
        return make_equations_gradients(backend, activation, output, weighted)
    target = lowering.find(executor)
    if target is None or target.gradients is None:
        raise InvalidInputError(f"unknown executor {executor!r}")
    return target.gradients(Fit(backend, shape, get_activation(activation), dtype, get_output(output), weighted),
                            columns)


# -- from a plan to the strategy the loop runs ------------------------------------------
def build(p, X, Y, parameters, activation, learning_rate, backend, dtype, seed=0, output=SIGMOID,
          weighted: bool = False, rule=None, state=None):
    """The strategy that runs plan ``p`` (a :class:`~backprop_core.planner.Plan`) on X (n0, m) and
    Y (n2, m), BLAS on ``p.blas_threads`` while it runs (the caller's setting restored after).

    Where each path's BLAS threads are pinned: here, once, for every plan kind (the whole
    batch by the equations or a lowered step, chunks on threads or in the calling process
    of several, one chunk of m, mini-batches): the strategy's ``running()`` enters
    :func:`~backprop_core.blas.blas_threads` (``p.blas_threads``) before the strategy's own
    context, and leaves it however the run ends (an exception, Ctrl-C), which gives the
    caller's setting back.  Nothing inside pins again (:class:`ChunkedGradients` does not), so
    the plan's number is what runs.  Two other places pin, outside a fit's strategy: worker
    processes pin one thread each for their life (:mod:`backprop_core.processes`, as
    :func:`~backprop_core.planner.blas_plan` plans processes), and the calibrations
    (:mod:`backprop_core.calibrations`) pin as the plan they time would run.
    ``p.blas_threads`` None (a GPU, Dask, torch, jax, the fused CPU step's own threads) leaves
    the caller's setting as it is.

    A ``weighted`` fit's Y carries the weights as its last row (n2 + 1, m).
    ``rule``: the :class:`~backprop_core.optimizers.UpdateRule` (None: the lecture's
    gradient descent at ``learning_rate``) and ``state`` its optimizer's start state.
    NumPy data are laid out once, here, as the step's products run fastest
    (:func:`row_major`).
    """
    if not p.streams and p.parallel != "processes":  # streamed chunks, and processes' shared copy, are cut as they go
        X = row_major(X)
    return _pinned(_strategy(p, X, Y, parameters, activation, learning_rate, backend, dtype, seed, output,
                             weighted, rule, state), p.blas_threads)


def row_major(X):
    """X (n0, m) with each feature's m values contiguous, copied once if it is a NumPy array laid out
    otherwise.  A caller's (m, n0) rows transposed are a view in the other order, on which
    OpenBLAS's threaded ``W1 @ X`` took 81 to 660 us against 21 to 37 us for the same product on
    the copy (569 examples, 30 features, 32 units); other arrays are left as they are."""
    if isinstance(X, np.ndarray) and X.ndim == 2 and not X.flags.c_contiguous:
        return np.ascontiguousarray(X)
    return X


def _pinned(strategy, threads):
    """``strategy``, its ``running()`` context holding BLAS on ``threads`` threads (None: as it is)."""
    if threads is None:
        return strategy
    running = strategy.running

    @contextlib.contextmanager
    def pinned():
        with blas_threads(threads), running():
            yield

    strategy.running = pinned
    return strategy


def _strategy(p, X, Y, parameters, activation, learning_rate, backend, dtype, seed, output, weighted,
              rule, state):
    lecture = beyond_lecture(rule) is None
    if p.mode == "dask":
        from .dask_training import DaskFullBatch

        return DaskFullBatch(X, Y, parameters, activation, learning_rate, backend, output, weighted, rule, state)
    if p.mode == "mini-batch":
        return MiniBatch(X, Y, activation, learning_rate, backend, p.batch_size, seed, output, weighted, rule,
                         state)
    n0, n2 = X.shape[0], parameters["W2"].shape[0]
    n1 = parameters["W1"].shape[0]
    target = lowering.find(p.executor)
    # A target's step runs the whole batch and fuses the lecture's update: the fused targets always (the
    # planner chooses them only for it), an executor in a whole-batch plan (a chunk of m) of the lecture's
    # rule.  Another rule takes an executor's gradients (one chunk of m) below and applies itself to them.
    executor_step = p.mode == "whole batch" and p.chunk_size is not None and lecture
    if target is not None and (target.chosen != EXECUTOR or executor_step):
        if not lecture:  # the planner does not choose it for such a fit (its _target_plan, _asked_plan)
            raise InvalidInputError(f"the {target.name} step updates by gradient descent only, not by {rule}")
        fit = Fit(backend, (n0, n1, n2), get_activation(activation), dtype, get_output(output), weighted)
        step = target.compile(fit, learning_rate, threads=p.workers)
        return Lowered(step.prepare(X), step.prepare(Y), backend.compile(step), backend)  # NumPy's hook: as is
    if p.chunk_size is None:
        return WholeBatch(X, Y, activation, learning_rate, backend, output, weighted, rule, state)
    make = make_gradients(backend, p.executor, activation, (n0, n1, n2), dtype, p.chunk_size, output, weighted)
    if p.parallel == "processes" and p.workers > 1:
        network = process_network(backend, "processes", (n0, n1, n2), activation, output, weighted, dtype,
                                  X.shape[1], chunk_size=p.chunk_size, stream=p.streams, batch_size=None)
        gradients = processes.ProcessChunkedGradients(make, p.chunk_size, backend=backend, dtype=dtype,
                                                      workers=p.workers, network=network)
        return processes.ProcessChunked(X, Y, learning_rate, backend, gradients, rule, state)
    gradients = ChunkedGradients(make, p.chunk_size, backend=backend, dtype=dtype, workers=p.workers,
                                 stream=p.streams)
    return Chunked(X, Y, learning_rate, backend, gradients, rule, state)


# -- worker processes --------------------------------------------------------------------
def process_network(backend, parallel, shape, activation, output, weighted, dtype, m, *, chunk_size, stream,
                    batch_size):
    """The network as worker processes rebuild it, where processes may run this fit over m
    examples; None where they may not.  Refuses, by name, what makes parallel="processes"
    impossible."""
    if parallel == "threads":
        return None
    asked = parallel == "processes"
    activation, output = get_activation(activation), get_output(output)
    numpy_host = not backend.distributed and not backend.on_gpu and is_numpy_namespace(backend.xp)
    network = processes.Network.of(shape, activation, output, weighted, dtype) if numpy_host else None
    need, free = processes.shared_bytes(shape[0], shape[2] + weighted, m, dtype), processes.shared_memory_free()
    fits = free is None or need <= free
    if not asked:
        return network if processes.available() and fits else None
    if not numpy_host:
        raise InvalidInputError(
            f"parallel='processes' runs chunks on worker processes, which only the numpy backend does "
            f"(its arrays are host memory); the {backend.name} backend computes on its own")
    if not processes.available():
        raise InvalidInputError("parallel='processes' needs a POSIX system that can start an interpreter; "
                                "use parallel='threads'")
    if network is None:
        raise InvalidInputError(
            f"parallel='processes': worker processes rebuild the activation and the output layer by name, "
            f"and the activation {activation.name!r} or the output {output.name!r} given is a function of the "
            f"caller's, not the library's own; use parallel='threads'")
    if not fits:
        raise InvalidInputError(
            f"parallel='processes' copies X and Y into shared memory: they need {need / 2**20:,.0f} MiB and "
            f"/dev/shm has {free / 2**20:,.0f} MiB free; use parallel='threads' (or, in a container, give it "
            f"a larger shared memory, e.g. docker run --shm-size)")
    for given, what in ((batch_size is not None, "batch_size (mini-batches run one at a time)"),
                        (chunk_size is None, "chunk_size=None (the batch is never cut into chunks)"),
                        (stream is True, "stream=True (chunks streamed through a device)")):
        if given:
            raise InvalidInputError(f"parallel='processes' shares a batch's chunks among processes: "
                                    f"it does not apply with {what}")
    return network
