"""Cross-backend agreement, namespaces and devices, and the registry."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest


import backprop_core as bc
from backprop_core.backends import BackendUnavailableError, InvalidDeviceError, backend_for_array, get_backend
from backprop_core.backends.numpy_backend import NumpyBackend

from conftest import assert_close, lecture

K = 50  # iterations compared


def test_training_matches_the_float64_numpy_reference(backend, flower_data):
    X, Y = flower_data
    reference = bc.nn_model(X, Y, 4, K, backend="numpy", dtype="float64", cost_every=10)
    params = bc.nn_model(X, Y, 4, K, backend=backend, dtype=backend.default_dtype, cost_every=10)
    for k, ref in reference.items():
        assert_close(params[k], ref, backend, err_msg=f"{k} on {backend.name}")


def test_gradients_agree_with_numpy_float64(backend):
    try:
        dtype = "float64"
        backend.dtype(dtype)
    except BackendUnavailableError:
        dtype = "float32"
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3, 30))
    Y = (rng.random((2, 30)) > 0.5).astype(float)
    p_host = bc.initialize_parameters(3, 6, 2, init="xavier", seed=4)
    for activation in bc.ACTIVATIONS:
        A2, cache = bc.forward_propagation(X, p_host, activation=activation)
        ref = bc.backward_propagation(p_host, cache, X, Y, activation=activation)
        Xd, Yd = backend.asarray(X, dtype), backend.asarray(Y, dtype)
        p = {k: backend.asarray(v, dtype) for k, v in p_host.items()}
        with backend.context():  # the adapter's precision: full float32, never TF32
            A2d, cached = bc.forward_propagation(Xd, p, activation=activation)
            grads = bc.backward_propagation(p, cached, Xd, Yd, activation=activation)
        for k, v in ref.items():
            assert_close(grads[k], v, backend, dtype, err_msg=f"{k} {activation}")


def test_estimator_outputs_in_callers_namespace_and_device(backend, flower_data):
    X, Y = flower_data
    Xd, yd = backend.asarray(X.T, backend.default_dtype), backend.asarray(Y[0], backend.default_dtype)
    model = lecture(max_iter=200, backend=backend.name,
                    device=backend.requested_device).fit(Xd, yd)
    reference = lecture(max_iter=200, dtype=backend.default_dtype).fit(X.T, Y[0])
    assert_close(model.predict(Xd), reference.predict(X.T), backend)
    assert_close(model.predict_proba(Xd), reference.predict_proba(X.T), backend)
    # NumPy in, NumPy out, whatever the training backend.
    assert isinstance(model.predict(X.T), np.ndarray)
    np.testing.assert_array_equal(model.predict(X.T), backend.to_numpy(model.predict(Xd)))


def test_a_float64_model_answers_jax_in_float32_where_jax_has_no_float64(flower_data):
    jax = pytest.importorskip("jax", reason="jax is not installed")
    if jax.config.jax_enable_x64:
        pytest.skip("JAX's 64-bit mode is on here: it has float64")
    X, Y = flower_data
    model = lecture(max_iter=200).fit(X.T, Y[0])  # NumPy, float64
    jax_cpu = get_backend("jax", "cpu")
    Xd = jax_cpu.asarray(X.T, "float32")
    assert_close(model.predict_proba(Xd), model.predict_proba(X.T), jax_cpu, "float32")
    assert_close(model.predict(Xd), model.predict(X.T), jax_cpu, "uint8", rtol=0, atol=0)  # labels as fitted


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown backend 'tensorflow'.*numpy"):
        get_backend("tensorflow")


def test_missing_or_unusable_backend_says_why():
    # cupy is either absent (install hint) or present without a GPU (no GPU found).
    try:
        get_backend("cupy")
    except BackendUnavailableError as exc:
        assert "install" in str(exc) or "GPU" in str(exc)
    else:
        pytest.skip("cupy is usable here: this test is about machines where it is not")


def test_bad_device_is_named():
    with pytest.raises(InvalidDeviceError, match="CPU only"):
        get_backend("numpy", "cuda")
    with pytest.raises(InvalidDeviceError, match="device 'device9'"):
        get_backend("array_api_strict", "device9")
    with pytest.raises(InvalidDeviceError, match=r'does not understand device .cuda-1.*"gpu:1"'):
        get_backend("torch", "cuda-1")


def test_arrays_come_back_to_the_host_as_numpy(backend):
    host = np.arange(6.0).reshape(2, 3)
    back = backend.to_numpy(backend.asarray(host, backend.default_dtype))
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)


def test_the_adapter_of_an_array_holds_it(backend):
    x = backend.asarray(np.ones((2, 3)), backend.default_dtype)
    found = backend_for_array(x)
    assert type(found) is type(backend) and found.holds(x)
    assert found.device == backend.device  # device objects, compared as objects


class _RecordingNumpy(NumpyBackend):
    name = "recording-numpy"
    created = 0

    def __init__(self, device=None):
        super().__init__(device)
        type(self).created += 1


def test_third_party_backend_by_registration(flower_data):
    X, Y = flower_data
    bc.register_backend("recording-numpy", _RecordingNumpy)
    try:
        assert "recording-numpy" in bc.backend_names()
        params = bc.nn_model(X, Y, 3, 20, backend="recording-numpy")
        assert _RecordingNumpy.created >= 1
        np.testing.assert_allclose(params["W1"], bc.nn_model(X, Y, 3, 20)["W1"])
    finally:
        bc.unregister_backend("recording-numpy")
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("recording-numpy")


def test_third_party_backend_by_entry_point(tmp_path):
    # A real distribution on sys.path declaring an entry point, found by importlib.metadata.
    dist = tmp_path / "thirdparty_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-backend\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[backprop_core.backends]\nthirdparty = thirdparty_mod:Adapter\n")
    (tmp_path / "thirdparty_mod.py").write_text(textwrap.dedent("""
        from backprop_core.backends.numpy_backend import NumpyBackend
        class Adapter(NumpyBackend):
            name = "thirdparty"
    """))
    code = textwrap.dedent("""
        import sys, numpy as np, backprop_core as bc
        from backprop_core.datasets import flower
        assert "thirdparty" in bc.backend_names()
        assert "thirdparty_mod" not in sys.modules  # listed, not imported
        X, Y = flower()
        p = bc.nn_model(X, Y, 2, 10, backend="thirdparty")
        print(type(bc.get_backend("thirdparty")).__name__, p["W1"].shape)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "Adapter (2, 2)"


def test_importing_and_listing_backends_imports_no_framework():
    code = ("import sys, backprop_core as bc; bc.backend_names(); bc.nn_model(*__import__("
            "'backprop_core.datasets', fromlist=['x']).flower(), 2, 5); "
            "print([m for m in ('torch', 'jax', 'cupy', 'array_api_strict', 'dask') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
