"""The Dask backend: the same equations per chunk, the same parameters, clear failures."""

from __future__ import annotations

import time

import numpy as np
import pytest

import backprop_core as bc
from backprop_core.backends import get_backend

from backprop_core.activations import get_activation
from backprop_core.training import train

from conftest import assert_close, lecture, skip_unusable
from conftest import train_problem as _train

da = pytest.importorskip("dask.array", reason="dask is not installed")


@pytest.fixture(scope="module")
def reference(problem):
    """The problem trained by plain NumPy in float64: what every Dask run must land on."""
    X, Y, p = problem
    return _train(get_backend("numpy"), X, Y, p, "float64")


def _dask(X, Y):
    """X and Y as Dask arrays of 1,000 examples per chunk."""
    return da.from_array(X, chunks=(X.shape[0], 1000)), da.from_array(Y, chunks=(Y.shape[0], 1000))


def _assert_same_parameters(result, reference, library="numpy"):
    """The parameters, arrays of the chunks' ``library`` on the client, are the reference's."""
    for k in reference.parameters:
        assert_close(result.parameters[k], reference.parameters[k], get_backend(library), "float64",
                     rtol=1e-10, atol=1e-13, err_msg=k)


def _train_dask(backend, Xd, Yd, p, **kw):
    return train(Xd, Yd, backend.parameters_from_host(p, "float64"), activation=get_activation("tanh"),
                 learning_rate=0.5, num_iterations=20, backend=backend, cost_every=5, **kw)


def test_dask_default_scheduler_matches_numpy(problem, reference):
    X, Y, p = problem
    Xd, Yd = da.from_array(X, chunks=(3, 1100)), da.from_array(Y, chunks=(1, 700))  # misaligned on purpose
    result = _train_dask(get_backend("dask"), Xd, Yd, p)
    _assert_same_parameters(result, reference)
    assert [i for i, _ in result.history] == [i for i, _ in reference.history]


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield cluster, client


@pytest.mark.slow  # starts a Dask cluster
def test_dask_cluster_of_two_workers_matches_numpy(problem, reference, cluster):
    _, client = cluster
    X, Y, p = problem
    Xd, Yd = _dask(X, Y)
    backend = get_backend("dask", client)
    result = _train_dask(backend, Xd, Yd, p)
    _assert_same_parameters(result, reference)
    assert len(client.scheduler_info()["workers"]) == 2


@pytest.mark.slow  # starts a Dask cluster
def test_a_cluster_named_by_its_scheduler_address(problem, reference, cluster):
    local, _ = cluster
    X, Y, p = problem
    backend = get_backend("dask", local.scheduler_address)  # as for a cluster elsewhere
    try:
        assert backend.device == local.scheduler_address
        result = _train_dask(backend, *_dask(X, Y), p)
    finally:
        backend.client.close()
    _assert_same_parameters(result, reference)


@pytest.mark.slow  # starts a Dask cluster
def test_estimator_takes_dask_arrays_and_answers_in_dask(cluster, flower_data):
    X, Y = flower_data
    Xd, yd = da.from_array(X.T, chunks=(100, 2)), da.from_array(Y[0].astype(float), chunks=100)
    model = lecture(max_iter=300).fit(Xd, yd)
    plain = lecture(max_iter=300).fit(X.T, Y[0])
    assert_close(model.parameters_["W1"], plain.parameters_["W1"], get_backend("numpy"), "float64", rtol=1e-9)
    assert model.backend_.name == "dask" and model.plan_.mode == "dask"
    # Still lazy, in the caller's library.
    assert_close(model.predict(Xd), plain.predict(X.T), get_backend("dask"), "float64", rtol=0, atol=0)


@pytest.mark.slow  # starts a Dask cluster
def test_worker_restarted_mid_training_recomputes_its_chunks(problem, reference, cluster):
    # A worker process dies; its nanny restarts it and Dask recomputes the lost chunks.
    import os
    import signal

    _, client = cluster
    X, Y, p = problem
    backend = get_backend("dask", client)
    victim = sorted(client.scheduler_info()["workers"])[0]
    pid = client.run(os.getpid, workers=[victim])[victim]

    def kill(iteration, cost):
        if iteration == 5:
            os.kill(pid, signal.SIGKILL)

    result = _train_dask(backend, *_dask(X, Y), p, callback=kill)
    _assert_same_parameters(result, reference)
    client.wait_for_workers(2, timeout=60)


# -- a cluster that fails mid-fit: a DistributedTrainingError within iteration_timeout -------------
def _parameters_after(iterations, X, Y, p):
    """What NumPy holds after ``iterations`` of the run _train_dask makes."""
    backend = get_backend("numpy")
    return train(X, Y, backend.parameters_from_host(p, "float64"), activation=get_activation("tanh"),
                 learning_rate=0.5, num_iterations=iterations, backend=backend, cost_every=5).parameters


def _scheduler_lost(cluster, client):
    cluster.sync(cluster.scheduler.close)


# id: (what happens at iteration 5, what the error says)
CLUSTER_FAILURES = {
    "client closed": (lambda cluster, client: client.close(), "the Dask client was closed"),
    "scheduler lost": (_scheduler_lost, "the connection to the Dask scheduler at .* was lost"),
    "every worker lost": (lambda cluster, client: cluster.scale(0),  # keeps no worker and starts none
                          "did not complete within iteration_timeout=4 s"),
}


@pytest.fixture()
def small_cluster():
    """A cluster of one worker thread, closed however the test left it (its scheduler may be gone)."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0")
    client = distributed.Client(cluster)
    yield cluster, client
    client.close(timeout=2)
    try:
        cluster.close(timeout=2)
    except Exception:  # noqa: BLE001 - a scheduler the test closed does not answer
        pass


@pytest.mark.slow  # starts a Dask cluster
@pytest.mark.parametrize("case", list(CLUSTER_FAILURES))
def test_a_failing_cluster_stops_within_the_timeout_and_keeps_the_completed_iterations(problem, small_cluster, case):
    from backprop_core.backends.dask_backend import DaskBackend

    cluster, client = small_cluster
    X, Y, p = problem
    fail, message = CLUSTER_FAILURES[case]
    failed_at = []

    def at_five(iteration, cost):
        if iteration == 5:
            failed_at.append(time.monotonic())
            fail(cluster, client)

    with pytest.raises(bc.DistributedTrainingError, match=message) as info:
        _train_dask(DaskBackend(client, iteration_timeout=4), *_dask(X, Y), p, callback=at_five)
    assert time.monotonic() - failed_at[0] < 1.5 * 4  # within iteration_timeout, not twice it
    assert info.value.iteration == 6  # iteration 5 completed: its cost read is where the cluster failed
    expected = _parameters_after(6, X, Y, p)
    for k in expected:
        assert_close(info.value.parameters[k], expected[k], get_backend("numpy"), "float64", rtol=1e-10, atol=1e-13,
                     err_msg=k)


@pytest.mark.slow  # starts a Dask cluster
def test_train_takes_the_iteration_timeout_of_the_execution_over_the_adapters(problem, small_cluster):
    from backprop_core.backends.dask_backend import DaskBackend

    cluster, client = small_cluster
    X, Y, p = problem
    failed_at = []

    def retire(iteration, cost):
        if iteration == 5:
            failed_at.append(time.monotonic())
            cluster.scale(0)

    with pytest.raises(bc.DistributedTrainingError, match="iteration_timeout=2 s"), \
            bc.execution_context(iteration_timeout=2):
        _train_dask(DaskBackend(client, iteration_timeout=20), *_dask(X, Y), p, callback=retire)
    assert time.monotonic() - failed_at[0] < 1.5 * 2


@pytest.mark.slow  # starts a Dask cluster
def test_the_estimator_sets_the_iteration_timeout_and_keeps_what_a_first_fit_trained(flower_data, small_cluster):
    cluster, client = small_cluster
    X, Y = flower_data
    Xd, yd = da.from_array(X.T, chunks=(100, 2)), da.from_array(Y[0].astype(float), chunks=100)

    def retire(iteration, cost):
        if iteration == 5:
            failed_at.append(time.monotonic())
            cluster.scale(0)

    failed_at = []
    model = lecture(max_iter=50, cost_every=5, backend="dask", device=client)
    with pytest.raises(bc.DistributedTrainingError, match="iteration_timeout=2 s") as info, \
            bc.execution_context(iteration_timeout=2):
        model.fit(Xd, yd, callback=retire)
    assert time.monotonic() - failed_at[0] < 1.5 * 2
    for k, kept in info.value.parameters.items():
        np.testing.assert_array_equal(model.parameters_[k], kept, err_msg=k)


@pytest.mark.slow  # starts a Dask cluster
def test_a_refit_that_loses_its_cluster_leaves_the_model_as_it_was(flower_data, small_cluster):
    _, client = small_cluster
    X, Y = flower_data
    model = lecture(max_iter=50, cost_every=5).fit(X.T, Y[0])
    before = {k: v.copy() for k, v in model.parameters_.items()}

    def close(iteration, cost):
        if iteration == 5:
            client.close()

    Xd, yd = da.from_array(X.T, chunks=(100, 2)), da.from_array(Y[0].astype(float), chunks=100)
    with pytest.raises(bc.DistributedTrainingError, match="client was closed"):
        model.set_params(backend="dask", device=client).fit(Xd, yd, callback=close)
    assert model.backend_.name == "numpy" and model.n_iter_ == 50
    for k in before:
        np.testing.assert_array_equal(model.parameters_[k], before[k], err_msg=k)


@pytest.mark.slow  # starts a Dask cluster
def test_a_model_trained_with_a_client_saves_the_schedulers_address(flower_data, small_cluster, tmp_path):
    from backprop_core.persistence import load_parameters

    _, client = small_cluster
    X, Y = flower_data
    Xd, yd = da.from_array(X.T, chunks=(100, 2)), da.from_array(Y[0].astype(float), chunks=100)
    with bc.execution_context(iteration_timeout=7.0):
        model = lecture(max_iter=20, backend="dask", device=client).fit(Xd, yd)
    model.save(tmp_path / "model.npz")
    _, meta = load_parameters(tmp_path / "model.npz")
    assert meta["params"]["device"] == client.scheduler.address
    loaded = bc.BackpropClassifier.load(tmp_path / "model.npz")
    assert model.execution_.iteration_timeout == 7.0 and "iteration_timeout" not in meta["params"]
    assert_close(model.predict(Xd), loaded.predict(X.T), get_backend("dask"), "float64", rtol=0, atol=0)


# -- softmax outputs and sample weights, chunk by chunk -----------------------------------------------
def test_softmax_and_sample_weights_on_dask_match_numpy():
    from backprop_core.dask_training import DaskFullBatch
    from backprop_core.equations import get_output
    from backprop_core.loop import run
    from backprop_core.strategies import WholeBatch
    from backprop_core.training import with_weights

    rng = np.random.default_rng(2)
    X = rng.standard_normal((3, 3000))
    Y = np.eye(3)[(X[0] > 0).astype(int) + (X[1] * X[2] > 0)].T  # one-hot, three classes
    w = rng.uniform(0.1, 3.0, 3000)
    p = bc.initialize_parameters(3, 5, 3, init="xavier", seed=4)
    g, softmax, numpy_ = get_activation("tanh"), get_output("softmax"), get_backend("numpy")
    kw = dict(num_iterations=20, learning_rate=0.5, cost_every=5)
    expected = run(WholeBatch(X, with_weights(Y, w), g, 0.5, numpy_, softmax, weighted=True), p, **kw)
    # Chunked unlike each other on purpose: the weights ride under Y and follow X's chunks.
    Xd, Yd, wd = da.from_array(X, chunks=(3, 700)), da.from_array(Y, chunks=(3, 1100)), da.from_array(w, chunks=900)
    dask_ = get_backend("dask")
    result = run(DaskFullBatch(Xd, with_weights(Yd, wd), dask_.parameters_from_host(p, "float64"), g, 0.5, dask_,
                               softmax, weighted=True), dask_.parameters_from_host(p, "float64"), **kw)
    for k in expected.parameters:
        assert_close(result.parameters[k], expected.parameters[k], numpy_, "float64", rtol=1e-10, atol=1e-13,
                     err_msg=k)
    np.testing.assert_allclose([J for _, J in result.history], [J for _, J in expected.history], rtol=1e-10)


def test_the_backend_follows_the_library_of_the_chunks():
    from backprop_core.backends.dask_backend import DaskBackend, chunk_library_of

    Xd = da.from_array(np.ones((2, 10)), chunks=(2, 5))
    assert chunk_library_of(Xd) == "numpy"
    backend = DaskBackend(chunk_library="cupy")  # as if made for CuPy chunks
    adapted = backend.for_data(Xd)
    assert adapted.chunk_library == "numpy" and backend.chunk_library == "cupy"
    assert adapted.for_data(Xd) is adapted


def test_a_dask_array_is_placed_in_words_by_the_library_of_its_chunks():
    from backprop_core.backends.dask_backend import DaskBackend

    # What a refusal of X and Y in two places says: one scheduler computes any chunks.
    assert DaskBackend().place_of(da.from_array(np.ones((2, 10)), chunks=(2, 5))) == "made of numpy chunks"


def test_parameters_of_another_library_than_the_chunks_are_named(problem):
    from backprop_core.backends.dask_backend import DaskBackend

    xps = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    X, Y, p = problem
    strict_params = {k: xps.asarray(v) for k, v in p.items()}  # not the chunks' library
    with pytest.raises(TypeError, match="chunks are numpy arrays but the parameters are array_api_strict"):
        train(*_dask(X, Y), strict_params,
              activation=get_activation("tanh"), learning_rate=0.5, num_iterations=2, backend=DaskBackend())


def _cupy_or_skip():
    from backprop_core.backends import make_backend

    usable, why = make_backend("cupy").availability()
    if not usable:
        skip_unusable(f"Dask with CuPy chunks needs a usable CuPy: {why}", gpu=True)
    import cupy

    return cupy


@pytest.mark.gpu
def test_dask_with_cupy_chunks_matches_numpy(problem, reference):
    cupy = _cupy_or_skip()
    X, Y, p = problem
    Xd = da.from_array(cupy.asarray(X), chunks=(3, 1000), asarray=False)
    Yd = da.from_array(cupy.asarray(Y), chunks=(2, 1000), asarray=False)
    backend = get_backend("dask").for_data(Xd)
    result = _train_dask(backend, Xd, Yd, p)
    assert all(isinstance(v, cupy.ndarray) for v in result.parameters.values())
    _assert_same_parameters(result, reference, library="cupy")


@pytest.mark.gpu
def test_estimator_takes_dask_arrays_of_cupy_chunks(flower_data):
    cupy = _cupy_or_skip()
    X, Y = flower_data
    Xd = da.from_array(cupy.asarray(X.T), chunks=(100, 2), asarray=False)
    yd = da.from_array(cupy.asarray(Y[0].astype(float)), chunks=100, asarray=False)
    assert lecture(max_iter=1).fit(Xd, yd).dtype_ == "float32"  # never float64 silently
    model = lecture(max_iter=300, dtype="float64").fit(Xd, yd)
    plain = lecture(max_iter=300, dtype="float64").fit(X.T, Y[0])
    assert isinstance(model.parameters_["W1"], cupy.ndarray)
    assert_close(model.parameters_["W1"], plain.parameters_["W1"], get_backend("cupy"), "float64", rtol=1e-9)
    assert_close(model.predict(Xd).compute(), plain.predict(X.T), get_backend("cupy"), "float64", rtol=0, atol=0)


def test_wrong_scheduler_address_is_named(monkeypatch):
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    from backprop_core.backends import dask_backend

    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT_S", 2)
    with pytest.raises(bc.BackendUnavailableError, match="could not reach a Dask scheduler at 'tcp://127.0.0.1:9'"):
        get_backend("dask", "tcp://127.0.0.1:9")
