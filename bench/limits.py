"""The machine's limits, measured: memory bandwidth (a large copy) and matmul rate.

Prints one JSON line: ``{"device": ..., "copy_bytes_per_s": ..., "matmul_flops_per_s": ...}``.
A copy reads and writes each byte, and both count, as in DESIGN.md.  The matrix
product runs on random data: constant inputs can run faster than real ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import numpy as np

from worker import repeat_times


def _best(fn, sync, repeats=5):
    def call():
        fn()
        sync()

    return statistics.median(repeat_times(call, repeats))


def cpu_limits(dtype, size_mb=512, n=2048):
    src = np.ones(size_mb * (1 << 20) // np.dtype(dtype).itemsize, dtype=dtype)
    dst = np.empty_like(src)
    copy_s = _best(lambda: np.copyto(dst, src), lambda: None)
    A = np.random.default_rng(0).standard_normal((n, n)).astype(dtype)
    mm_s = _best(lambda: A @ A, lambda: None)
    return {"device": "cpu", "copy_bytes_per_s": 2 * src.nbytes / copy_s, "matmul_flops_per_s": 2 * n**3 / mm_s}


def gpu_limits(dtype, tf32, size_mb=2048, n=8192):
    import torch

    # The old flag's setter keeps PyTorch's old and new precision settings in step.
    torch.backends.cuda.matmul.allow_tf32 = tf32
    dev = torch.device("cuda")
    dt = getattr(torch, dtype)
    src = torch.ones(size_mb * (1 << 20) // torch.finfo(dt).bits * 8, dtype=dt, device=dev)
    dst = torch.empty_like(src)
    sync = torch.cuda.synchronize
    copy_s = _best(lambda: dst.copy_(src), sync)
    A = torch.randn((n, n), dtype=dt, device=dev)
    mm_s = _best(lambda: A @ A, sync)
    return {"device": torch.cuda.get_device_name(dev), "copy_bytes_per_s": 2 * src.numel() * src.element_size() / copy_s,
            "matmul_flops_per_s": 2 * n**3 / mm_s, "tf32": tf32}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--tf32", action="store_true")
    a = p.parse_args(argv)
    try:
        out = gpu_limits(a.dtype, a.tf32) if a.gpu else cpu_limits(a.dtype)
    except Exception as exc:
        out = {"device": "gpu" if a.gpu else "cpu", "unavailable": str(exc)[:300]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
