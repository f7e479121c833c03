"""Measure one entry (a backend of the library, or a peer) on one network shape.

Run by ``bench/run.py`` in a process of its own, so one library's memory pool
or thread pool never disturbs another's.  Prints one JSON line per m.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import time

import numpy as np

from backprop_core.blas import one_blas_thread
from backprop_core.errors import is_out_of_memory

PEERS = ("torch-nn", "sklearn-mlp")


def flops_per_example(n0, n1, n2):
    # forward W1 X, W2 A1; backward dW2, W2^T dZ2, dW1 (no gradient for X is needed)
    return 4 * n0 * n1 + 6 * n1 * n2


def bytes_per_example(n0, n2, itemsize):
    return (n0 + n2) * itemsize  # X and Y must be read at least once per step


def memory_per_example(n0, n1, n2, itemsize):
    # One step's working set (backprop_core.chunked), doubled for the library's temporaries.
    from backprop_core.chunked import working_bytes_per_example

    return 2 * working_bytes_per_example(n0, n1, n2, itemsize)


def repeat_times(fn, repeats, warmup=1):
    """Seconds of each of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    ``fn`` must itself wait for the work it queues (a synchronise on GPUs).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def trained(before: dict, after: dict, cost_before: float, cost_after: float) -> bool:
    """A timed step must really train: parameters change and the cost falls."""
    changed = any(not np.array_equal(before[k], after[k]) for k in before)
    return bool(changed and math.isfinite(cost_after) and cost_after < cost_before)


def make_data(n0, n2, m, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n0, m), dtype=np.float32)
    w = rng.standard_normal((n2, n0)).astype(np.float32)
    with one_blas_thread():  # see quiet_blas_cost
        Y = ((w @ X) * (X[0:1] + 0.5) > 0).astype(np.float32)  # a learnable, non-linear labelling
    return X, Y


class LibraryEntry:
    """A backend of backprop-core, run as its planner runs it.

    ``name`` is a backend (``numpy``: what a user gets by default: the planner's
    choice for this m), or ``name:equations`` for the equations array by array
    on the whole batch, with no planner (compiled by the backend where it can be:
    jax.jit), to show what the planner's choice is worth, or ``cupy:kernels``
    for the traced equations as chains and cuBLAS calls replayed as a CUDA graph
    (backprop_core.lowering.cupy_kernels), which records the levers it used, or
    ``numpy:cpu-fused`` for the fused CPU step on every core, or
    ``numpy:no-targets`` for the planner's choice without the lowering targets.
    """

    def __init__(self, name, device, dtype, lr, precision="float32"):
        from backprop_core.activations import get_activation
        from backprop_core.backends import get_backend

        name, _, self.mode = name.partition(":")
        if self.mode not in ("", "equations", "kernels", "cpu-fused", "no-targets") or (
                self.mode == "kernels" and name != "cupy") or (self.mode in ("cpu-fused", "no-targets")
                                                                and name != "numpy"):
            raise ValueError(f"unknown mode {self.mode!r} of entry {name!r}; use {name}, {name}:equations, "
                             "cupy:kernels, numpy:cpu-fused or numpy:no-targets")
        options = {"precision": precision} if precision != "float32" else {}
        self.backend = get_backend(name, device, **options)
        self.dtype, self.lr = dtype, lr
        self.g = get_activation("tanh")
        self.running = None
        self.plan = None
        self.plan_s = 0.0  # seconds the planner took to choose (its calibrations), within transfer_s

    def load(self, X, Y, params):
        from backprop_core import building, planner

        self.X, self.Y = self.backend.asarray(X, self.dtype), self.backend.asarray(Y, self.dtype)
        self.params = self.backend.parameters_from_host(params, self.dtype)
        self.backend.synchronize(self.X)
        n1, n0 = params["W1"].shape
        shape = (n0, n1, Y.shape[0], X.shape[1])
        planning = time.perf_counter()
        if self.mode == "kernels":
            self.plan = planner.Plan("whole batch", executor="kernels", chunk_size=X.shape[1],
                                     reason="the kernels executor, asked for by the entry")
        elif self.mode == "cpu-fused":  # the fused CPU step (backprop_core.lowering.cpu_fused) on every core
            from backprop_core.backends._base import cpu_cores

            self.plan = planner.Plan("whole batch", executor="cpu-fused", workers=cpu_cores(),
                                     reason="the fused CPU step, asked for by the entry")
        elif self.mode == "no-targets":  # the planner's choice among what ran before the lowering targets
            from unittest import mock

            from backprop_core.lowering import cpu_fused

            with mock.patch.dict(os.environ, {cpu_fused.ENVIRONMENT: "0"}):
                self.plan = planner.plan(self.backend, shape, self.dtype, self.g)
        elif self.mode:
            self.plan = planner.Plan("whole batch", reason="the equations array by array")
        else:
            self.plan = planner.plan(self.backend, shape, self.dtype, self.g)
        self.plan_s = time.perf_counter() - planning
        self.strategy = building.build(self.plan, self.X, self.Y, self.params, self.g, self.lr, self.backend,
                                       self.dtype)
        self.running = self.strategy.running()
        self.running.__enter__()

    def step(self):
        self.params, _ = self.strategy.step(self.params, 1, False)
        self.backend.synchronize(*self.params.values())

    def cost(self):
        return float(self.strategy.cost(self.params))

    def host_params(self):
        return {k: self.backend.to_numpy(v).copy() for k, v in self.params.items()}

    def free_memory(self):
        return self.backend.free_memory() or host_free_memory()

    def describe(self):
        described = {"precision": self.backend.precision}
        if self.plan is not None:
            described["plan"] = str(self.plan)
        if hasattr(getattr(self, "strategy", None), "levers"):  # graph replay, chains, TF32: what the kernels used
            described["levers"] = self.strategy.levers
        return described

    def release(self):
        if self.running is not None:
            self.running.__exit__(None, None, None)
            self.running = None
        self.X = self.Y = self.params = self.strategy = None


class DaskEntry:
    """The dask backend on Dask's default (threaded) scheduler: one task per chunk per iteration."""

    def __init__(self, name, device, dtype, lr):
        from backprop_core.activations import get_activation
        from backprop_core.backends import get_backend

        self.backend = get_backend("dask", device)
        self.dtype, self.lr, self.g = dtype, lr, get_activation("tanh")

    def load(self, X, Y, params):
        import dask.array as da

        from backprop_core.dask_training import DaskFullBatch
        from backprop_core.planner import chunk_size_for_bytes

        n1, n0 = params["W1"].shape
        size = chunk_size_for_bytes(n0, n1, Y.shape[0], np.dtype(self.dtype).itemsize, 32 << 20)
        Xd = da.from_array(X.astype(self.dtype), chunks=(-1, size))
        Yd = da.from_array(Y.astype(self.dtype), chunks=(-1, size))
        self.params = self.backend.parameters_from_host(params, self.dtype)
        self.strategy = DaskFullBatch(Xd, Yd, self.params, self.g, self.lr, self.backend)
        self.chunk_size, self.X = size, Xd

    def step(self):
        self.params, _ = self.strategy.step(self.params, 1, False)

    def cost(self):
        return float(self.strategy.cost(self.params))

    def host_params(self):
        return {k: np.array(v) for k, v in self.params.items()}

    def free_memory(self):
        return host_free_memory()

    def describe(self):
        return {"plan": f"dask, chunks of {self.chunk_size:,}"}

    def release(self):
        self.strategy = self.params = self.X = None


class TorchNNEntry:
    """The plain PyTorch model a user would write: nn.Linear, Tanh, nn.Linear, BCEWithLogitsLoss, SGD."""

    def __init__(self, name, device, dtype, lr):
        import torch

        from backprop_core.backends import get_backend

        self.torch = torch
        # The library's device vocabulary (run.py passes --device to every GPU entry alike):
        # torch.device itself refuses "0" and "gpu", which the cupy and jax entries take.
        self.device = get_backend("torch", device).device
        self.dtype = getattr(torch, dtype)
        self.lr = lr

    def load(self, X, Y, params):
        torch = self.torch
        n1, n0 = params["W1"].shape
        self.model = torch.nn.Sequential(torch.nn.Linear(n0, n1), torch.nn.Tanh(),
                                         torch.nn.Linear(n1, params["W2"].shape[0]))
        with torch.no_grad():
            for layer, (W, b) in zip((self.model[0], self.model[2]), (("W1", "b1"), ("W2", "b2"))):
                layer.weight.copy_(torch.as_tensor(params[W]))
                layer.bias.copy_(torch.as_tensor(params[b][:, 0]))
        self.model.to(self.device, self.dtype)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=self.lr)
        self.loss = torch.nn.BCEWithLogitsLoss()
        # Samples as rows, as a PyTorch user holds them.
        self.X = torch.as_tensor(X.T.copy()).to(self.device, self.dtype)
        self.Y = torch.as_tensor(Y.T.copy()).to(self.device, self.dtype)
        self.wait()

    def wait(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def step(self):
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.model(self.X), self.Y).backward()
        self.opt.step()
        self.wait()

    def cost(self):
        with self.torch.no_grad():
            return float(self.loss(self.model(self.X), self.Y))

    def host_params(self):
        return {str(i): p.detach().cpu().numpy().copy() for i, p in enumerate(self.model.parameters())}

    def free_memory(self):
        if self.device.type == "cuda":  # what the device has free, and what torch's pool holds free
            cuda = self.torch.cuda
            return cuda.mem_get_info(self.device)[0] + cuda.memory_reserved(self.device) \
                - cuda.memory_allocated(self.device)
        return host_free_memory()

    def release(self):
        self.X = self.Y = self.model = self.opt = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()


class SklearnEntry:
    """scikit-learn's MLPClassifier doing full-batch SGD on the CPU (one partial_fit = one step)."""

    def __init__(self, name, device, dtype, lr):
        self.dtype, self.lr = dtype, lr

    def load(self, X, Y, params):
        import warnings

        from sklearn.neural_network import MLPClassifier

        warnings.filterwarnings("ignore", message=".*batch_size.*clipped")

        n1 = params["W1"].shape[0]
        self.X, self.y = X.T.astype(self.dtype), Y[0].astype(int)
        self.model = MLPClassifier(hidden_layer_sizes=(n1,), activation="tanh", solver="sgd",
                                   batch_size=self.X.shape[0], learning_rate_init=self.lr,
                                   momentum=0.0, alpha=0.0, shuffle=False, random_state=0)
        self.model.partial_fit(self.X[:2], self.y[:2], classes=[0, 1])  # create the weights
        self.model.coefs_ = [params["W1"].T.astype(self.dtype), params["W2"].T.astype(self.dtype)]
        self.model.intercepts_ = [params["b1"][:, 0].astype(self.dtype), params["b2"][:, 0].astype(self.dtype)]

    def step(self):
        self.model.partial_fit(self.X, self.y)

    def cost(self):
        from sklearn.metrics import log_loss

        return float(log_loss(self.y, self.model.predict_proba(self.X)[:, 1], labels=[0, 1]))

    def host_params(self):
        return {str(i): c.copy() for i, c in enumerate(self.model.coefs_)}

    def free_memory(self):
        return host_free_memory()

    def release(self):
        self.X = self.y = self.model = None


def host_free_memory():
    from backprop_core.backends import host_free_memory

    return host_free_memory() or 4 << 30


def applies(entry, n0, n1, n2) -> tuple[bool, str]:
    """Can ``entry`` train an n0-n1-n2 network at all?  ``(applies, why)``, asked before its process
    starts: the fused kernel says so itself (its accumulator limit), every other entry takes any shape."""
    if entry == "cupy:fused":
        from backprop_core.lowering.cuda_fused.limits import fused_support  # imports no CuPy

        return fused_support(n0, n1, n2)
    return True, "any shape"


def ran_on(entry) -> tuple[str, bool]:
    """``(device, on a GPU)`` of the examples ``entry`` has loaded, as the adapter of those arrays
    names it: where the step actually ran, not where it was asked to (a GPU backend that falls back
    to the CPU shows here)."""
    from backprop_core.backends import backend_for_array

    placed = backend_for_array(entry.X)
    return placed.device_name, bool(placed.on_gpu)


def make_entry(entry, device, dtype, lr, precision="float32"):
    """The entry's runner; ``precision`` ("float32" or "tf32") reaches the backends that take it."""
    if entry == "torch-nn":
        return TorchNNEntry(entry, device, dtype, lr)
    if entry == "sklearn-mlp":
        return SklearnEntry(entry, device, dtype, lr)
    if entry == "dask":
        return DaskEntry(entry, device, dtype, lr)
    if entry == "cupy:fused":  # the equations compiled into one CUDA kernel (bench/fused_entry.py)
        from fused_entry import FusedEntry

        return FusedEntry(entry, device, dtype, lr)
    return LibraryEntry(entry, device, dtype, lr, precision)


def quiet_blas_cost(entry) -> float:
    """The entry's cost, a check that it trains, not a measurement, with NumPy's BLAS on one thread,
    as the data's labels are made.  A product that OpenBLAS splits (from about 2.6e5 multiply-adds)
    leaves its threads spinning for about 0.1 s after it, on the cores that what comes next is timed
    on: the labels of 2-4-1 at m = 2^18 and 2^19, made just before the planner timed the fused step,
    made its two-thread samples stall (its threads preempted, as they were not with OpenBLAS's spin
    cut to nothing by OPENBLAS_THREAD_TIMEOUT=4), and the plan kept one thread."""
    with one_blas_thread():
        return entry.cost()


def measure(entry, n0, n1, n2, m, dtype, repeats, warmup):
    from backprop_core.initialization import initial_parameters_host

    X, Y = make_data(n0, n2, m)
    params = initial_parameters_host(n0, n1, n2, "xavier", seed=0)
    t0 = time.perf_counter()
    entry.load(X, Y, params)
    transfer_s = time.perf_counter() - t0
    plan_s = getattr(entry, "plan_s", 0.0)
    device, gpu = ran_on(entry)
    del X, Y
    for _ in range(warmup):
        entry.step()
    before, cost_before = entry.host_params(), quiet_blas_cost(entry)
    times = repeat_times(entry.step, repeats, warmup=0)  # each step ends with a synchronise
    after, cost_after = entry.host_params(), quiet_blas_cost(entry)
    described = entry.describe() if hasattr(entry, "describe") else {}
    entry.release()
    median = statistics.median(times)
    return {"m": m, "device": device, "gpu": gpu,
            "step_median_s": median, "step_min_s": min(times), "step_max_s": max(times),
            "examples_per_s": m / median, "transfer_s": transfer_s, "plan_s": plan_s, "repeats": repeats,
            "cost_before": cost_before, "cost_after": cost_after,
            "trained": trained(before, after, cost_before, cost_after), **described}


def next_seconds(record: dict, next_m: int, repeats: int, warmup: int) -> float:
    """What measuring ``next_m`` is predicted to take after ``record`` (the last m's): its steps and
    data scale with m; the planner's choice (``plan_s``: calibrations of a bounded size, at most a few
    seconds) does not, and scaled with the rest it stopped the numpy entry before 2^21 (2.7 s at 2^16
    predicted 87 s at 2^21)."""
    scale = next_m / record["m"]
    plan_s = record.get("plan_s", 0.0)
    return scale * (record["step_median_s"] * (repeats + warmup + 2) + record["transfer_s"] - plan_s) + plan_s


def sweep(entry, name, shape, a) -> bool:
    """Time ``entry`` on one shape at m = m_min, 2 m_min, ... while memory and the budget allow,
    one JSON line per m.  False (after a line that says why) where a GPU was required and the
    entry's data are not on one."""
    n0, n1, n2 = (int(v) for v in shape.split("-"))
    itemsize = np.dtype(a.dtype).itemsize
    first = measure(entry, n0, n1, n2, 64, a.dtype, 1, 1)  # first transfer and handles stay out of the numbers
    if a.require_gpu and not first["gpu"]:
        print(json.dumps({"entry": name, "shape": shape, "device": first["device"], "gpu": False,
                          "failed": f"asked for a GPU, but its data are on {first['device']}: the backend fell "
                                    "back to the CPU"}), flush=True)
        return False
    # The m's asked for by name (a few sizes, each compiled once), or m_min, 2 m_min, ... up to m_max.
    ms = a.ms or list(itertools.takewhile(lambda m: m <= a.m_max, (a.m_min << k for k in itertools.count())))
    start = time.perf_counter()
    for m, next_m in zip(ms, ms[1:] + [None]):
        need = m * memory_per_example(n0, n1, n2, itemsize)
        free = entry.free_memory()
        if need > 0.6 * free:
            print(json.dumps({"entry": name, "shape": shape, "m": m, "stopped": "memory",
                              "need_bytes": need, "free_bytes": free}), flush=True)
            break
        try:
            record = measure(entry, n0, n1, n2, m, a.dtype, a.repeats, a.warmup)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            entry.release()
            print(json.dumps({"entry": name, "shape": shape, "m": m, "stopped": "out of memory",
                              "error": str(exc)[:200]}), flush=True)
            break
        print(json.dumps({"entry": name, "shape": shape, "dtype": a.dtype, **record}), flush=True)
        elapsed = time.perf_counter() - start
        if next_m is not None and elapsed + next_seconds(record, next_m, a.repeats, a.warmup) > a.budget:
            print(json.dumps({"entry": name, "shape": shape, "m": next_m, "stopped": "time budget"}), flush=True)
            break
    return True


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--entry", required=True)
    p.add_argument("--device", default=None)
    p.add_argument("--shape", required=True,
                   help="n0-n1-n2, or several comma-separated, measured in turn by this one process")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--m-min", type=int, required=True)
    p.add_argument("--m-max", type=int, required=True)
    p.add_argument("--ms", type=lambda text: sorted(int(v) for v in text.split(",")), default=None,
                   help="these m alone (comma-separated), instead of doubling from m-min to m-max")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--budget", type=float, default=20.0, help="seconds for each shape's sweep")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--require-gpu", action="store_true",
                   help="exit 3 where the entry's data land on the CPU (a GPU backend that fell back)")
    a = p.parse_args(argv)
    if a.entry == "torch-nn":  # the peer is plain PyTorch: its global switch is what its users set
        import torch

        torch.backends.cuda.matmul.allow_tf32 = a.tf32
        torch.backends.cudnn.allow_tf32 = a.tf32
    try:
        entry = make_entry(a.entry, a.device, a.dtype, a.lr, "tf32" if a.tf32 else "float32")
    except Exception as exc:  # the entry cannot run here: say why, once
        print(json.dumps({"entry": a.entry, "shape": a.shape, "unavailable": str(exc)}), flush=True)
        return 0
    for shape in a.shape.split(","):
        if not sweep(entry, a.entry, shape, a):
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
