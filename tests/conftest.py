"""One list of backends drives every cross-backend test.

CPU entries run everywhere the library is installed; GPU entries carry the
``gpu`` marker (``pytest -m gpu`` selects them) and skip, saying why, where no
GPU is usable.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import numpy as np

import backprop_core as bc
from backprop_core.activations import get_activation
from backprop_core.execution import FIELDS as EXECUTION_FIELDS
from backprop_core.execution import execution_context
from backprop_core.backends import BackendUnavailableError, get_backend
from backprop_core.training import train
from backprop_core.datasets import flower

gpu = pytest.mark.gpu

#: The command line as a user runs it: the installed console script beside this interpreter,
#: else the module (a source tree that is not installed).
SCRIPT = Path(sys.executable).with_name("backprop-core")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "backprop_core.cli"]

# (id, backend name, device, array-api-strict flags)
STRICTEST = {"boolean_indexing": False, "data_dependent_shapes": False, "enabled_extensions": ()}
BACKENDS = [
    pytest.param(("numpy", None, None), id="numpy"),
    pytest.param(("array_api_strict", None, None), id="strict"),
    pytest.param(("array_api_strict", "device1", None), id="strict-device1"),
    pytest.param(("array_api_strict", None, STRICTEST), id="strict-strictest"),
    pytest.param(("torch", "cpu", None), id="torch-cpu"),
    pytest.param(("jax", "cpu", None), id="jax-cpu"),
    pytest.param(("cupy", None, None), id="cupy", marks=gpu),
    pytest.param(("torch", "cuda", None), id="torch-cuda", marks=gpu),
    pytest.param(("jax", "gpu", None), id="jax-gpu", marks=gpu),
]

# As SciPy does with SCIPY_ARRAY_API: one environment variable narrows the list, e.g.
# BACKPROP_CORE_BACKENDS="numpy,strict" pytest.  Ids not named are left out, not skipped.
_only = os.environ.get("BACKPROP_CORE_BACKENDS")
if _only:
    BACKENDS = [b for b in BACKENDS if b.id in _only.split(",")]


#: Set on a GPU machine (the prepared GPU check does): a GPU backend that cannot run
#: there is a failure, so a broken CUDA set-up cannot look green.
REQUIRE_GPU = os.environ.get("BACKPROP_CORE_REQUIRE_GPU") == "1"


def skip_unusable(reason: str, *, gpu: bool):
    """Skip, saying why; on a machine that must have a GPU, a GPU test that cannot run fails."""
    if gpu and REQUIRE_GPU:
        pytest.fail(f"BACKPROP_CORE_REQUIRE_GPU=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def cupy_backend():
    """The CuPy adapter on its default GPU, the test run inside its context (as :func:`backend`), for
    the tests of what only CuPy runs (kernels this library compiles); skips, saying why, where CuPy or
    a GPU is missing."""
    try:
        backend = get_backend("cupy")
    except BackendUnavailableError as exc:
        skip_unusable(f"this test runs kernels compiled for CuPy on a GPU: {exc}", gpu=True)
    with backend.context():
        yield backend


def _make(spec, gpu=False):
    name, device, flags = spec
    try:
        backend = get_backend(name, device)
    except BackendUnavailableError as exc:
        skip_unusable(f"backend {name} on {device or 'its default device'} is not usable here: {exc}", gpu=gpu)
    return backend, flags


@contextlib.contextmanager
def _strict_flags(flags):
    if not flags:
        yield
        return
    import array_api_strict

    array_api_strict.set_array_api_strict_flags(**flags)
    try:
        yield
    finally:
        array_api_strict.reset_array_api_strict_flags()


@pytest.fixture(params=BACKENDS)
def backend(request):
    """A usable backend adapter; the test runs inside its :meth:`context` (its device current, its
    matmul precision applied) and with its array-api-strict flags.

    Every value a test computes on a GPU is so computed in the adapter's precision, full float32:
    outside it JAX multiplies float32 in TF32 on an NVIDIA GPU, 2.5-5x over the tolerances here.
    """
    backend, flags = _make(request.param, gpu=request.node.get_closest_marker("gpu") is not None)
    with _strict_flags(flags), backend.context():
        yield backend


@pytest.fixture(params=BACKENDS)
def bare_backend(request):
    """The adapter of :func:`backend` with no context entered: for the tests that the library's
    entry points apply the adapter's precision themselves, as a user calls them."""
    backend, flags = _make(request.param, gpu=request.node.get_closest_marker("gpu") is not None)
    with _strict_flags(flags):
        yield backend


#: The backends whose libraries have a matmul precision to apply (the adapters' ``precisions``).
PRECISION_BACKENDS = [b for b in BACKENDS if b.values[0][0] in ("torch", "jax", "cupy")]


def precision_state(backend) -> dict:
    """The settings ``backend``'s library reads when it multiplies float32 matrices, as they are now
    (what the adapter's context sets: a test compares them inside and outside it)."""
    if backend.library == "jax":
        import jax

        return {"jax_default_matmul_precision": jax.config.jax_default_matmul_precision}
    if backend.library == "torch":
        import torch

        matmul = torch.backends.cuda.matmul
        return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
                "fp32_precision": getattr(matmul, "fp32_precision", None), "allow_tf32": matmul.allow_tf32}
    if backend.library == "cupy":
        from cupy._core import _routines_linalg as linalg  # where the cupy adapter sets it

        return {"compute_type": linalg.get_compute_type(np.float32)}
    return {}


@pytest.fixture(autouse=True)
def _no_tf32():
    """Pin TF32 off where torch is already imported, so float32 means float32."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    yield


def tolerance(dtype_name: str) -> dict:
    return {"rtol": 1e-9, "atol": 1e-12} if np.dtype(dtype_name) == np.float64 else {"rtol": 2e-3, "atol": 2e-5}


def assert_close(actual, expected, backend, dtype: str | None = None, *, err_msg="", **tol):
    """``actual`` is an array of ``backend``'s library, on its device, of ``dtype`` and of
    ``expected``'s shape, with ``expected``'s values within a tolerance set by the dtype
    (``tol`` overrides it).  Each check fails with its own message.
    """
    dtype = dtype or backend.default_dtype
    where = f"{err_msg}: " if err_msg else ""
    assert backend.owns(actual), f"{where}a {type(actual).__name__}, not an array of {backend.name}"
    assert backend.holds(actual), f"{where}on device {backend.device_of(actual)}, not {backend.device}"
    assert actual.dtype == backend.dtype(dtype), f"{where}dtype {actual.dtype}, not {dtype}"
    expected = np.asarray(expected)
    assert tuple(actual.shape) == expected.shape, f"{where}shape {tuple(actual.shape)}, not {expected.shape}"
    np.testing.assert_allclose(backend.to_numpy(actual), expected, **(tol or tolerance(dtype)), err_msg=err_msg)


def lecture(**settings):
    """``BackpropClassifier(**(LECTURE | settings))``: the lecture's small full-batch network, which the
    tests of the full-batch machinery (chunks, workers, devices, files) and of the course's numbers
    train; the estimator's defaults are a practitioner's (test_practitioner.py)."""
    from backprop_core.estimator import LECTURE

    return bc.BackpropClassifier(**(LECTURE | settings))


@pytest.fixture(scope="session")
def flower_data():
    return flower()


@pytest.fixture(scope="session")
def moons():
    """scikit-learn's two moons, 300 rows: (X (300, 2), y)."""
    from sklearn.datasets import make_moons

    return make_moons(300, noise=0.15, random_state=0)


@pytest.fixture(scope="session")
def iris():
    """scikit-learn's iris, standardized: (X (150, 4), y)."""
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="session")
def problem():
    """A small two-output problem, X (3, 5000), Y (2, 5000), and initial parameters."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 5000))
    Y = np.stack([X[0] * X[1] > 0, X[2] > 0]).astype(np.float64)  # n2 = 2
    p = bc.initialize_parameters(3, 6, 2, init="xavier", seed=1)
    return X, Y, p


def train_problem(backend, X, Y, p, dtype, **kw):
    """20 full-batch iterations of the ``problem`` on ``backend`` (``kw`` goes to ``train``; the
    execution's settings among them, chunk_size, workers, stream..., to ``execution_context``)."""
    settings = {name: kw.pop(name) for name in EXECUTION_FIELDS if name in kw}
    params = backend.parameters_from_host(p, dtype)
    streamed = settings.get("stream") is True
    with execution_context(**settings):
        return train(backend.asarray(X, dtype) if not streamed else X.astype(dtype),
                     backend.asarray(Y, dtype) if not streamed else Y.astype(dtype), params,
                     **{"activation": get_activation("tanh"), "learning_rate": 0.5, "num_iterations": 20,
                        "backend": backend, "cost_every": 5, **kw})


# -- child processes: signals as a terminal leaves them, and none outlives its test -------------

@contextlib.contextmanager
def _signals_not_ignored(signals=(signal.SIGINT, signal.SIGTERM)):
    """While a child starts: SIGINT and SIGTERM not ignored here, so that the child starts with them at
    their default actions.  A POSIX shell starts its background jobs with SIGINT ignored, the
    children of a test run started so inherit it, and Python keeps an ignored SIGINT ignored: a
    test's Ctrl-C would reach a child that goes on training (how the suite's Ctrl-C tests once
    hung, issue 32).  A handler of this process's own is reset to the default by the child's exec;
    no preexec_fn, which would make subprocess fork a multithreaded process."""
    ignored = [s for s in signals if signal.getsignal(s) is signal.SIG_IGN]
    for signum in ignored:
        signal.signal(signum, signal.default_int_handler)
    try:
        yield
    finally:
        for signum in ignored:
            signal.signal(signum, signal.SIG_IGN)


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt in this process for the test, as at a terminal, also in a run
    started with SIGINT ignored (a shell's background job, some CI runners): there a SIGINT the test
    sends itself would be dropped, and the test would fail for how the suite was started."""
    with _signals_not_ignored((signal.SIGINT,)):
        yield


@pytest.fixture
def children():
    """``start(args, **popen) -> subprocess.Popen``, a child with signals at their defaults
    (:func:`_signals_not_ignored`); every child still running at the test's end, passed or failed,
    is killed (its whole group, when it leads one), so none trains on after the suite."""
    started = []

    def start(args, **popen):
        with _signals_not_ignored():
            process = subprocess.Popen([str(a) for a in args], **popen)
        started.append((process, bool(popen.get("start_new_session"))))
        return process

    yield start
    for process, leads_group in started:
        if leads_group:  # its worker processes too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
