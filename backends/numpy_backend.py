"""NumPy on the CPU: the default backend, always available."""

from __future__ import annotations

from ._base import Backend, BackendUnavailableError, cpu_cores


class NumpyBackend(Backend):
    name = "numpy"
    library = "numpy"
    install_hint = "pip install numpy"
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
        if spec not in (None, "cpu", 0):
            raise BackendUnavailableError(f"backend 'numpy' runs on the CPU only, not on device {spec!r}")
        return "cpu"

    def version(self):
        import numpy

        return numpy.__version__

    def owns(self, x):
        from array_api_compat import is_numpy_array

        return is_numpy_array(x)

    def device_of(self, x):
        return "cpu"

    def asarray(self, host, dtype):
        import numpy as np

        return np.asarray(host, dtype=dtype)

    def context(self):
        # A diverging run overflows long before its cost is next read; the loop
        # reports that itself (TrainingDivergedError), so NumPy's per-operation
        # overflow warnings would only be noise.
        import numpy as np

        return np.errstate(over="ignore", invalid="ignore")

    def random_normal(self, shape, dtype, seed):
        import numpy as np

        return np.random.default_rng(seed).standard_normal(shape, dtype=dtype)
