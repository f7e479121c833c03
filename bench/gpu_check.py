"""Resolve each GPU backend and say what it found, in one quick process (the GPU check's first step).

    python bench/gpu_check.py [--out check.jsonl]

For cupy, torch on "gpu" and jax on "gpu": the device, ``on_gpu``, free memory,
library versions; whether CuPy compiles and runs a kernel (NVRTC and the CUDA
headers it needs); whether every spelling of the first GPU resolves to the same
device; and, for each precision, the relative error of a float32 matrix product
against float64 (full float32 lands near 1e-7, TF32 near 1e-4: the setting is
shown to take effect, not assumed).  One JSON line per backend; a table last.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import traceback

import numpy as np

#: Every spelling of the first GPU must resolve to one device (``--device cpu`` checks "cpu" alone).
SPELLINGS = {"gpu": (None, 0, "0", "gpu", "gpu:0", "cuda", "cuda:0"), "cpu": ("cpu",)}


def matmul_error(backend, A, B) -> float:
    """‖AB − (AB in float64)‖ / ‖AB in float64‖ for a product computed on ``backend`` in float32."""
    a, b = backend.asarray(A, "float32"), backend.asarray(B, "float32")
    with backend.context():
        product = backend.compile(lambda x, y: x @ y)(a, b)
    exact = A @ B
    return float(np.linalg.norm(backend.to_numpy(product) - exact) / np.linalg.norm(exact))


def check(name: str, device: str = "gpu") -> dict:
    from backprop_core.backends import get_backend

    record = {"backend": name}
    try:
        backend = get_backend(name, device)
        record.update(device=backend.device_name, device_object=repr(backend.device), on_gpu=backend.on_gpu,
                      default_dtype=backend.default_dtype, version=backend.version(),
                      free_memory_bytes=backend.free_memory(), devices=backend.devices())
        record["spellings_agree"] = {repr(s): get_backend(name, s).device == backend.device
                                     for s in (*SPELLINGS[device], backend.device)}
        rng = np.random.default_rng(0)
        A, B = rng.standard_normal((2048, 2048)), rng.standard_normal((2048, 2048))
        record["matmul_relative_error"] = {p: matmul_error(get_backend(name, device, precision=p), A, B)
                                           for p in backend.precisions}
    except Exception as exc:  # report and go on: the other backends still tell something
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc(limit=6)
    return record


def dask_on_cupy() -> dict:
    """The Dask adapter for arrays of CuPy chunks: its dtype must be float32 on the GPU."""
    try:
        import cupy
        import dask.array as da

        from backprop_core.backends import backend_for_array

        x = da.from_array(cupy.ones((2, 8), dtype=cupy.float32), chunks=(2, 4), asarray=False)
        backend = backend_for_array(x)
        return {"backend": "dask+cupy", "chunk_library": backend.chunk_library, "on_gpu": backend.on_gpu,
                "default_dtype": backend.default_dtype}
    except Exception as exc:
        return {"backend": "dask+cupy", "error": f"{type(exc).__name__}: {exc}"}


def cupy_compiles() -> dict:
    """CuPy compiles every kernel with NVRTC at first use, from the CUDA headers it finds: one tiny
    RawKernel compiled and run says whether that works here before any test depends on it."""
    try:
        import cupy
        from cupy_backends.cuda.libs import nvrtc

        twice = cupy.RawKernel(r'extern "C" __global__ void twice(float* x) { x[threadIdx.x] *= 2.0f; }', "twice")
        x = cupy.arange(32, dtype=cupy.float32)
        twice((1,), (32,), (x,))
        return {"backend": "cupy compiles", "nvrtc": ".".join(map(str, nvrtc.getVersion())),
                "raw_kernel_right": bool((x.get() == 2 * np.arange(32)).all())}
    except Exception as exc:
        return {"backend": "cupy compiles", "error": f"{type(exc).__name__}: {exc}"[:500]}


def environment() -> dict:
    env = {"backend": "environment", "python": platform.python_version(), "numpy": np.__version__}
    for lib in ("array_api_compat", "array_api_strict", "dask", "distributed", "cupy", "torch", "jax", "jaxlib"):
        try:
            env[lib] = __import__(lib).__version__
        except Exception as exc:
            env[lib] = f"not importable: {type(exc).__name__}: {exc}"[:200]
    return env


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="also write the JSON lines to this file")
    p.add_argument("--backends", default="cupy,torch,jax")
    p.add_argument("--device", default="gpu", choices=sorted(SPELLINGS), help="cpu: try the script without a GPU")
    a = p.parse_args(argv)
    out = open(a.out, "w") if a.out else sys.stdout
    records = []

    def emit(rec):
        records.append(rec)
        line = json.dumps(rec)
        print(line, flush=True)
        if out is not sys.stdout:
            out.write(line + "\n")
            out.flush()

    emit(environment())
    for name in a.backends.split(","):
        emit(check(name, a.device))
    if a.device == "gpu":
        emit(cupy_compiles())
        emit(dask_on_cupy())
    print(f"\n{'backend':>10} {'device':>8} {'free GiB':>9} {'fp32 err':>9} {'tf32 err':>9} spellings  version")
    for rec in records[1:]:
        if rec["backend"] in ("dask+cupy", "cupy compiles"):
            print(f"{rec['backend']}: {rec}")
            continue
        if "error" in rec:
            print(f"{rec['backend']:>10} ERROR {rec['error'][:150]}")
            continue
        err, free = rec["matmul_relative_error"], rec["free_memory_bytes"]
        print(f"{rec['backend']:>10} {rec['device']:>8} {free / 2**30 if free else float('nan'):9.1f} "
              f"{err['float32']:9.1e} {err.get('tf32', float('nan')):9.1e} "
              f"{'agree' if all(rec['spellings_agree'].values()) else 'DIFFER':>9}  {rec['version']}")
    return 1 if any("error" in r for r in records[1:]) else 0


if __name__ == "__main__":
    sys.exit(main())
