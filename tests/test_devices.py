"""Devices, precision and pickling of the adapters; the prepared GPU check's guards.

What needs a GPU is mocked where only parsing is at stake (a fake device count);
the ``gpu``-marked tests at the end check the same things on a real card.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from backprop_core.backends import (GPU_DEVICES, BackendUnavailableError, InvalidDeviceError, PinnedStaging,
                                    backend_for_array, get_backend, make_backend, parse_device)
from backprop_core.errors import BackpropCoreError, InvalidInputError, InvalidTypeError

from backprop_core.activations import Activation, get_activation

from conftest import PRECISION_BACKENDS, assert_close, precision_state, skip_unusable, train_problem

ROOT = Path(__file__).resolve().parents[1]

# Every spelling of the second GPU, and of the first, in the one vocabulary.
SECOND_GPU = [1, "1", "gpu:1", "cuda:1", "GPU:1", " cuda:1 "]
FIRST_GPU = [0, "0", "gpu", "gpu:0", "cuda", "cuda:0"]


# -- the vocabulary ----------------------------------------------------------------------

@pytest.mark.parametrize("spec", SECOND_GPU)
def test_every_spelling_of_a_gpu_index_parses_alike(spec):
    assert parse_device(spec, "torch", cpu=True) == ("gpu", 1)


@pytest.mark.parametrize("spec, expected", [("gpu", ("gpu", None)), ("cuda", ("gpu", None)),
                                            ("cpu", ("cpu", None)), ("cpu:1", ("cpu", 1))])
def test_spellings_without_an_index_name_the_default(spec, expected):
    assert parse_device(spec, "jax", cpu=True) == expected


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu1", -1, True, 1.0, "", "cuda:1:2", object()])
def test_a_device_outside_the_vocabulary_is_named_with_the_vocabulary(spec):
    with pytest.raises(InvalidDeviceError) as info:
        parse_device(spec, "torch", cpu=True)
    assert repr(spec) in str(info.value) and GPU_DEVICES in str(info.value) and '"cpu"' in str(info.value)


def test_cpu_is_refused_by_a_gpu_only_backend():
    with pytest.raises(InvalidDeviceError, match=r"'cupy' runs on GPUs only, not on device 'cpu'"):
        parse_device("cpu", "cupy", cpu=False)


def test_a_bad_device_is_bad_input_and_an_unusable_backend():
    # ValueError for the estimator's callers; BackendUnavailableError for code that skips what cannot run.
    assert issubclass(InvalidDeviceError, InvalidInputError) and issubclass(InvalidDeviceError, ValueError)
    assert issubclass(InvalidDeviceError, BackendUnavailableError)
    assert issubclass(BackendUnavailableError, BackpropCoreError)


# -- each backend on (mocked) GPUs -------------------------------------------------------

@pytest.fixture
def torch_with_two_gpus(monkeypatch):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    return torch


@pytest.mark.parametrize("spec", SECOND_GPU)
def test_torch_takes_every_spelling(torch_with_two_gpus, spec):
    assert make_backend("torch", spec).device == torch_with_two_gpus.device("cuda", 1)


def test_torch_takes_its_own_device_objects(torch_with_two_gpus):
    torch = torch_with_two_gpus
    assert make_backend("torch", torch.device("cuda", 1)).device == torch.device("cuda", 1)
    assert make_backend("torch", torch.device("cuda")).device == torch.device("cuda", 0)
    assert make_backend("torch", torch.device("cpu")).device == torch.device("cpu")
    assert make_backend("torch").device == torch.device("cuda", 0)  # the default where CUDA is usable


def test_torch_names_a_gpu_it_does_not_have(torch_with_two_gpus):
    with pytest.raises(BackendUnavailableError, match=r"sees 2 GPU\(s\); there is no GPU 5 \(device 'cuda:5'\)"):
        make_backend("torch", "cuda:5").device  # noqa: B018


def test_torch_without_a_gpu_says_so():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if torch.cuda.is_available():
        pytest.skip("a GPU is usable here: this test is about machines without one")
    with pytest.raises(BackendUnavailableError, match="no GPU is usable here"):
        get_backend("torch", "gpu")
    assert get_backend("torch").device == torch.device("cpu")


class _FakeJaxGpu:
    platform = "gpu"

    def __init__(self, i):
        self.id = i


@pytest.fixture
def jax_with_two_gpus(monkeypatch):
    jax = pytest.importorskip("jax", reason="jax is not installed")
    gpus, real = [_FakeJaxGpu(0), _FakeJaxGpu(1)], jax.devices
    monkeypatch.setattr(jax, "devices", lambda platform=None: gpus if platform in ("gpu", "cuda") else real(platform))
    return gpus


@pytest.mark.parametrize("spec", SECOND_GPU)
def test_jax_takes_every_spelling(jax_with_two_gpus, spec):
    assert make_backend("jax", spec).device is jax_with_two_gpus[1]


def test_jax_takes_cpu_and_its_own_device_objects():
    jax = pytest.importorskip("jax", reason="jax is not installed")
    cpu = jax.devices("cpu")[0]
    assert make_backend("jax", "cpu").device is cpu
    assert make_backend("jax", cpu).device is cpu
    assert make_backend("jax", "cpu:0").device_name == "cpu:0"


def test_jax_without_a_gpu_says_so():
    jax = pytest.importorskip("jax", reason="jax is not installed")
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("a GPU is usable here: this test is about machines without one")
    with pytest.raises(BackendUnavailableError, match="no GPU is usable here"):
        get_backend("jax", 0)


@pytest.fixture
def fake_cupy(monkeypatch):
    """A stand-in for CuPy on a machine with two GPUs: enough to resolve devices."""

    class Device:
        def __init__(self, index=0):
            self.id = int(index)

        def __eq__(self, other):
            return isinstance(other, Device) and other.id == self.id

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(Device=Device, runtime=types.SimpleNamespace(getDeviceCount=lambda: 2))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    return cupy


@pytest.mark.parametrize("spec", SECOND_GPU)
def test_cupy_takes_every_spelling(fake_cupy, spec):
    backend = make_backend("cupy", spec)
    assert backend.device == fake_cupy.cuda.Device(1) and backend.device_name == "cuda:1"


def test_cupy_takes_its_own_device_objects_and_refuses_the_cpu(fake_cupy):
    assert make_backend("cupy", fake_cupy.cuda.Device(1)).device == fake_cupy.cuda.Device(1)
    assert make_backend("cupy").device == fake_cupy.cuda.Device(0)
    with pytest.raises(InvalidDeviceError, match="GPUs only"):
        make_backend("cupy", "cpu").device  # noqa: B018


@pytest.mark.parametrize("spec", [0, "cuda", "gpu:1"])
def test_numpy_refuses_gpu_devices(spec):
    with pytest.raises(InvalidDeviceError, match="CPU only"):
        get_backend("numpy", spec)


def test_array_api_strict_names_its_devices():
    xp = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    assert get_backend("array_api_strict", xp.Device("device1")).device == xp.Device("device1")
    with pytest.raises(InvalidDeviceError, match=r"no device 'device9'.*'CPU_DEVICE', 'device1'"):
        get_backend("array_api_strict", "device9")


# -- devices compared as objects -----------------------------------------------------------

def _strict_device_without_float64():
    backend = get_backend("array_api_strict")
    if "no_float64" not in backend.devices():
        pytest.skip("this version of array-api-strict has no device without float64")
    return get_backend("array_api_strict", "no_float64")


def test_a_strict_device_without_float64_computes_in_float32_by_default():
    backend = _strict_device_without_float64()
    assert backend.default_dtype == "float32"
    assert get_backend("array_api_strict").default_dtype == "float64"


def test_float64_on_a_strict_device_without_it_is_refused_by_name():
    backend = _strict_device_without_float64()
    with pytest.raises(BackendUnavailableError, match="device 'no_float64' has no float64 .*use dtype='float32'"):
        backend.dtype("float64")


def test_holds_compares_library_and_device_objects():
    xp = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    on_device1 = xp.asarray([1.0], device=xp.Device("device1"))
    assert get_backend("array_api_strict", "device1").holds(on_device1)
    assert not get_backend("array_api_strict").holds(on_device1)  # same library, another device
    assert not get_backend("numpy").holds(on_device1)  # another library
    assert not get_backend("array_api_strict").holds(np.ones(1))


def test_the_adapter_of_an_array_gets_its_device_through_the_constructor():
    xp = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    x = xp.asarray([1.0], device=xp.Device("device2"))
    backend = backend_for_array(x)
    assert backend.requested_device == xp.Device("device2")
    assert backend.holds(x)


def test_an_array_of_no_known_library_is_named():
    with pytest.raises(InvalidTypeError, match="got list"):
        backend_for_array([1.0, 2.0])


# -- precision -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["torch", "jax", "cupy"])
def test_precision_is_full_float32_unless_tf32_is_asked_for(name):
    assert make_backend(name).precision == "float32"
    assert make_backend(name, precision="tf32").precision == "tf32"


def test_get_backend_passes_the_precision():
    pytest.importorskip("torch", reason="torch is not installed")
    assert get_backend("torch", "cpu", precision="tf32").precision == "tf32"


@pytest.mark.parametrize("name, precision", [("torch", "bf16"), ("numpy", "tf32"), ("array_api_strict", "tf32")])
def test_a_precision_the_backend_cannot_apply_is_named(name, precision):
    with pytest.raises(InvalidInputError, match=f"precision.*not '{precision}'"):
        make_backend(name, precision=precision)


def _torch_matmul_settings(torch):
    return (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.fp32_precision,
            torch.backends.mkldnn.matmul.fp32_precision)


@pytest.mark.parametrize("precision, inside, outside", [("float32", "ieee", "high"), ("tf32", "tf32", "highest")])
def test_torch_applies_the_precision_in_its_context_and_restores_it(precision, inside, outside):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        pytest.skip("this PyTorch predates fp32_precision")
    torch.set_float32_matmul_precision(outside)  # the other way, so that a change shows both ways
    try:
        before = _torch_matmul_settings(torch)
        backend = get_backend("torch", "cpu", precision=precision)
        with backend.context():
            assert torch.backends.cuda.matmul.fp32_precision == inside
            assert torch.backends.cuda.matmul.allow_tf32 == (inside == "tf32")  # old and new agree
        assert _torch_matmul_settings(torch) == before
        with pytest.raises(RuntimeError, match="training failed"), backend.context():
            raise RuntimeError("training failed")
        assert _torch_matmul_settings(torch) == before
    finally:
        torch.set_float32_matmul_precision("highest")


def _dot_precision(hlo: str) -> str:
    line = next(line for line in hlo.splitlines() if "dot_general" in line)
    return line.partition("precision = ")[2].partition("]")[0]


@pytest.mark.parametrize("precision, expected", [("float32", "[HIGHEST, HIGHEST"), ("tf32", "[DEFAULT, DEFAULT")])
def test_jax_matmuls_are_traced_in_the_adapters_precision(precision, expected):
    jax = pytest.importorskip("jax", reason="jax is not installed")
    backend = get_backend("jax", "cpu", precision=precision)
    a = backend.asarray(np.ones((4, 4)), "float32")
    before = jax.config.jax_default_matmul_precision
    with backend.context():
        assert _dot_precision(jax.jit(lambda x: x @ x).lower(a).as_text()) == expected
    assert jax.config.jax_default_matmul_precision == before  # nothing leaks out of the context


def test_jax_compiled_steps_carry_the_precision_outside_any_context():
    pytest.importorskip("jax", reason="jax is not installed")
    backend = get_backend("jax", "cpu")
    step = backend.compile(lambda x: x @ x)
    a = backend.asarray(np.arange(16.0).reshape(4, 4), "float32")
    assert _dot_precision(step.lower(a).as_text()) == "[HIGHEST, HIGHEST"
    assert_close(step(a), np.arange(16.0).reshape(4, 4) @ np.arange(16.0).reshape(4, 4), backend, "float32")


@pytest.mark.parametrize("backend", PRECISION_BACKENDS, indirect=True)
def test_a_test_of_a_backend_runs_in_the_adapters_precision(backend):
    applied = precision_state(backend)
    with backend.context():
        assert precision_state(backend) == applied  # entered already: entering again changes nothing
    if backend.library == "jax":  # JAX's own default is None: TF32 on an NVIDIA GPU
        assert applied == {"jax_default_matmul_precision": backend.matmul_precision} == {
            "jax_default_matmul_precision": "highest"}


@pytest.mark.parametrize("bare_backend", PRECISION_BACKENDS, indirect=True)
def test_training_applies_the_adapters_precision_by_itself(bare_backend, problem):
    with bare_backend.context():
        applied = precision_state(bare_backend)
    tanh, seen = get_activation("tanh"), []

    def recording_tanh(Z):  # run, or traced by jax.jit, inside each step
        seen.append(precision_state(bare_backend))
        return tanh(Z)

    X, Y, p = problem
    train_problem(bare_backend, X, Y, p, bare_backend.default_dtype,
                  activation=Activation("tanh", recording_tanh, tanh.derivative))
    assert seen and all(state == applied for state in seen), (seen, applied)


# -- pickling ------------------------------------------------------------------------------

def test_an_adapter_pickles_and_trains_the_same_after(backend, problem):
    X, Y, p = problem
    again = pickle.loads(pickle.dumps(backend))
    assert type(again) is type(backend) and again.device == backend.device
    assert again.precision == backend.precision
    dtype = backend.default_dtype
    first = train_problem(backend, X, Y, p, dtype)
    second = train_problem(again, X, Y, p, dtype)
    for k in first.parameters:
        assert_close(second.parameters[k], backend.to_numpy(first.parameters[k]), again, dtype, err_msg=k)


def test_an_unpickled_gpu_adapter_fails_when_used_not_when_unpickled(torch_with_two_gpus, monkeypatch):
    backend = make_backend("torch", "gpu:1", precision="tf32")
    assert backend.device_name == "cuda:1"
    data = pickle.dumps(backend)
    monkeypatch.undo()  # the GPUs are gone, as on a machine without one
    if torch_with_two_gpus.cuda.is_available():
        pytest.skip("a GPU is usable here: this test is about machines without one")
    again = pickle.loads(data)
    assert again.requested_device == "cuda:1" and again.precision == "tf32"
    with pytest.raises(BackendUnavailableError, match="'cuda:1' but no GPU is usable here"):
        again.device  # noqa: B018


def test_an_unpickled_cupy_adapter_needs_no_cupy_until_used(fake_cupy, monkeypatch):
    data = pickle.dumps(make_backend("cupy", fake_cupy.cuda.Device(1)))
    monkeypatch.delitem(sys.modules, "cupy")
    monkeypatch.setattr(sys, "path", [])  # no real CuPy can be found either
    again = pickle.loads(data)
    assert again.requested_device == "cuda:1"
    with pytest.raises(BackendUnavailableError, match="install"):
        again.device  # noqa: B018


# -- staged uploads ----------------------------------------------------------------------------

class _Copy:
    """A device copy's event, finished when the test says so."""
    done = False


def test_a_staging_buffer_is_reused_only_after_its_copy_has_finished():
    allocated = []

    def allocate(shape, dtype):
        buffer = np.empty(shape, dtype)
        allocated.append(buffer)
        return buffer, buffer

    staging = PinnedStaging(allocate, lambda event: event.done)
    first_copy, host = _Copy(), np.arange(6.0).reshape(2, 3)
    first = staging.fill(host, "float32")
    np.testing.assert_array_equal(first[1], host)  # copied once, cast on the way
    assert first[1].dtype == np.float32
    staging.reading(first, first_copy)
    second = staging.fill(host + 1, "float32")
    assert second[0] is not first[0]  # the first may still be read by its copy
    staging.reading(second, _Copy())
    first_copy.done = True
    third = staging.fill(host + 2, "float32")
    assert third[0] is first[0] and len(allocated) == 2  # reused once its copy was done
    np.testing.assert_array_equal(third[1], host + 2)


# -- Dask: resolving reads, connecting is explicit -------------------------------------------

@pytest.fixture
def no_connection(monkeypatch):
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed")

    def refuse(*args, **kwargs):
        raise AssertionError("a Client was opened")

    monkeypatch.setattr(distributed, "Client", refuse)


def test_reading_the_device_of_an_address_opens_no_connection(no_connection):
    backend = make_backend("dask", "tcp://127.0.0.1:9")
    assert backend.device == "tcp://127.0.0.1:9" and backend.device_name == "tcp://127.0.0.1:9"
    assert backend.client is None
    assert pickle.loads(pickle.dumps(backend)).device == "tcp://127.0.0.1:9"


def test_connecting_to_an_address_nobody_listens_on_fails_naming_it(monkeypatch):
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    from backprop_core.backends import dask_backend

    monkeypatch.setattr(dask_backend, "CONNECT_TIMEOUT_S", 1)
    backend = make_backend("dask", "tcp://127.0.0.1:9")
    with pytest.raises(BackendUnavailableError, match=r"could not reach a Dask scheduler at 'tcp://127.0.0.1:9' within 1 s"):
        backend.connect()


def test_a_backend_given_a_client_is_described_and_pickled_by_its_address(no_connection):
    client = types.SimpleNamespace(scheduler=types.SimpleNamespace(address="tcp://10.0.0.5:8786"),
                                   scheduler_info=lambda: {})
    backend = make_backend("dask", client)
    assert backend.scheduler_client is client  # used as given
    assert backend.device == "tcp://10.0.0.5:8786"
    again = pickle.loads(pickle.dumps(backend))
    assert again.requested_device == "tcp://10.0.0.5:8786" and again.client is None


def test_dask_refuses_what_is_not_a_scheduler():
    pytest.importorskip("dask.array", reason="dask is not installed")
    with pytest.raises(InvalidDeviceError, match="scheduler address"):
        make_backend("dask", "gpu").device  # noqa: B018


def test_dask_with_cupy_chunks_defaults_to_float32():
    from backprop_core.backends.dask_backend import DaskBackend

    assert DaskBackend(chunk_library="cupy").default_dtype == "float32"
    assert DaskBackend().default_dtype == "float64"


# -- the prepared GPU check's guards ------------------------------------------------------------

def _pytest(env, *args):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, **env})


def test_a_gpu_test_that_cannot_run_fails_when_a_gpu_is_required():
    if make_backend("cupy").availability()[0]:
        pytest.skip("cupy is usable here: this test is about machines where it is not")
    test = "tests/test_backends.py::test_gradients_agree_with_numpy_float64[cupy]"
    required = _pytest({"BACKPROP_CORE_REQUIRE_GPU": "1"}, test)
    assert required.returncode == 1 and "BACKPROP_CORE_REQUIRE_GPU=1 but" in required.stdout
    allowed = _pytest({"BACKPROP_CORE_REQUIRE_GPU": "0"}, test, "-rs")
    assert allowed.returncode == 0 and "1 skipped" in allowed.stdout


def test_the_gpu_session_stops_at_once_without_the_carried_wheels(tmp_path):
    empty, out = tmp_path / "wheels", tmp_path / "out"
    empty.mkdir()
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu_session.sh"), str(out)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, env={**os.environ, "WHEEL_DIR": str(empty)})
    assert done.returncode == 2
    assert "carried wheels are missing" in done.stderr and "array_api_compat-" in done.stderr
    assert not out.exists() or not any(out.rglob("*"))  # nothing ran


def test_the_gpu_check_runs_here_on_the_cpu(tmp_path):
    pytest.importorskip("torch", reason="torch is not installed")
    out = tmp_path / "check.jsonl"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--backends", "numpy,torch",
                           "--device", "cpu", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    env, numpy_, torch_ = (json.loads(line) for line in out.read_text().splitlines())
    assert env["backend"] == "environment" and "array_api_compat" in env
    assert torch_["device"] == "cpu" and torch_["on_gpu"] is False and all(torch_["spellings_agree"].values())
    assert torch_["matmul_relative_error"]["float32"] < 1e-5  # float32 against float64, measured


def _still_running(marker: str) -> list:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes().decode(errors="replace"):
                found.append(cmdline.parent.name)
        except OSError:  # the process ended while we looked
            pass
    return found


def test_the_benchmark_stopped_midway_keeps_what_finished(tmp_path, children):
    marker = str(2**30 + 4321)  # an m-max no other process uses: finds the worker by its command line
    run = children([sys.executable, str(ROOT / "bench" / "run.py"), "--backends", "numpy", "--peers", "none",
                    "--shapes", "2-4-1", "--m-min", "1024", "--m-max", marker, "--repeats", "3",
                    "--budget", "600", "--out", str(tmp_path), "--quiet"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results = tmp_path / "results.jsonl"
    deadline = time.monotonic() + 240
    with run.stderr:
        while '"kind": "measurement"' not in (results.read_text() if results.exists() else ""):
            assert run.poll() is None and time.monotonic() < deadline, "no measurement was written while running"
            time.sleep(0.2)
        run.send_signal(signal.SIGTERM)  # as `timeout` stops it
        assert run.wait(timeout=60) == 128 + signal.SIGTERM, run.stderr.read()
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert records[0]["kind"] == "environment"
    assert [r for r in records if r["kind"] == "measurement" and r["trained"]]
    assert "## 2-4-1" in (tmp_path / "table.md").read_text()
    assert not _still_running(marker), "the worker outlived the stopped run"
    (tmp_path / "table.md").unlink()
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--report", str(tmp_path)], check=True,
                   timeout=120)
    assert "## 2-4-1" in (tmp_path / "table.md").read_text()


# -- on a real GPU ----------------------------------------------------------------------------

GPU_BACKENDS = [pytest.param(name, marks=pytest.mark.gpu, id=name) for name in ("cupy", "torch", "jax")]


def _gpu_backend(name, device="gpu", **options):
    try:
        return get_backend(name, device, **options)
    except BackendUnavailableError as exc:
        skip_unusable(f"backend {name} has no usable GPU here: {exc}", gpu=True)


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_every_spelling_names_the_same_gpu(name):
    first = _gpu_backend(name)
    for spec in [*FIRST_GPU, None, first.device]:
        assert get_backend(name, spec).device == first.device, spec
    assert first.on_gpu and first.device_name in first.devices()


@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_tf32_is_applied_only_when_asked_for(name):
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((1024, 1024)), rng.standard_normal((1024, 1024))
    exact = A @ B
    error = {}
    for precision in ("float32", "tf32"):
        backend = _gpu_backend(name, precision=precision)
        a, b = backend.asarray(A, "float32"), backend.asarray(B, "float32")
        with backend.context():
            product = backend.compile(lambda x, y: x @ y)(a, b)
        error[precision] = np.linalg.norm(backend.to_numpy(product) - exact) / np.linalg.norm(exact)
    assert error["float32"] < 1e-5, error
    assert error["tf32"] > 10 * error["float32"], error  # TF32 really ran when asked for


@pytest.mark.parametrize("name", [p for p in GPU_BACKENDS if p.id in ("cupy", "torch")])
def test_free_memory_counts_what_the_pool_holds_free(name):
    backend = _gpu_backend(name)
    x = backend.asarray(np.ones((64, 1 << 20)), "float32")  # 256 MiB
    backend.synchronize(x)
    del x
    if name == "cupy":
        import cupy

        with backend.device:
            driver_free = cupy.cuda.runtime.memGetInfo()[0]
    else:
        import torch

        driver_free = torch.cuda.mem_get_info(backend.device)[0]
    assert backend.free_memory() - driver_free >= 255 << 20
