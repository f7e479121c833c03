"""NumPy on the CPU: the default backend, always available."""

from __future__ import annotations

import array_api_compat
import numpy as np

from ._base import Backend, InvalidDeviceError, cpu_cores


class NumpyBackend(Backend):
    name = "numpy"
    library = "numpy"
    install_hint = "pip install numpy"
    is_array = staticmethod(array_api_compat.is_numpy_array)
    # NumPy's element-wise functions run on one thread: chunks on every core are
    # about 3x faster at large m (bench/results/cpu-2026-11-27).
    chunks_by_default = True

    @property
    def default_workers(self):
        return cpu_cores()

    def _namespace(self):
        import array_api_compat.numpy as xp

        return xp

    def resolve_device(self, spec):
        if spec not in (None, "cpu"):
            raise InvalidDeviceError(f"backend 'numpy' runs on the CPU only: device None or 'cpu', not {spec!r}")
        return "cpu"

    def context(self):
        # A diverging run overflows long before its cost is next read; the loop
        # reports that itself (TrainingDivergedError), so NumPy's per-operation
        # overflow warnings would only be noise.
        return np.errstate(over="ignore", invalid="ignore")

    def random_normal(self, shape, dtype, seed):
        # Drawn in the dtype itself (NumPy's float32 sampler), as the runs recorded so far were.
        return np.random.default_rng(seed).standard_normal(shape, dtype=dtype)
