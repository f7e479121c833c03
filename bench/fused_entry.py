"""The bench entry of the fused CUDA kernel (backprop_core.lowering.cuda_fused) on CuPy arrays.

Same methods as the entries of ``worker.py``; ``worker.make_entry`` builds it
for the entry name ``cupy:fused``.  Shapes over the kernel's accumulator limit
are not started (``worker.applies`` asks the kernel; the library itself would run
the array-API path there, which the ``cupy`` entry already measures).
"""

from __future__ import annotations

import numpy as np


class FusedEntry:
    """One full-batch step as two kernel launches generated from the equations (tanh)."""

    def __init__(self, name, device, dtype, lr):
        from backprop_core.backends import get_backend

        self.backend = get_backend("cupy", device)
        self.backend.device  # noqa: B018 - probes the GPU now, so a machine without one says so once
        self.dtype, self.lr = dtype, lr
        self.fused = self.X = self.Y = self.params = None

    def load(self, X, Y, params):
        from backprop_core.lowering.cuda_fused import FusedStep

        (n1, n0), n2 = params["W1"].shape, params["W2"].shape[0]
        self.fused = FusedStep(n0, n1, n2, "tanh", self.lr, self.dtype, device=self.backend.device.id)
        self.X, self.Y = self.backend.asarray(X, self.dtype), self.backend.asarray(Y, self.dtype)
        self.params = self.backend.parameters_from_host(params, self.dtype)
        self.backend.synchronize(self.X)

    def step(self):
        self.params, _ = self.fused(self.params, self.X, self.Y, False)
        self.backend.synchronize(*self.params.values())

    def cost(self):
        _, J = self.fused(self.params, self.X, self.Y, True)
        return float(J)

    def host_params(self):
        return {k: np.array(self.backend.to_numpy(v)) for k, v in self.params.items()}

    def free_memory(self):
        return self.backend.free_memory()

    def release(self):
        self.fused = self.X = self.Y = self.params = None
