"""The fused step on CuPy arrays: the generated source compiled once, launched twice per iteration.

A call queues two kernels on the current stream and returns at once: it reads
nothing back from the device (the cost comes back as a 0-d array), so a loop of
calls never waits for the GPU.  Each call writes a fresh output buffer (from
CuPy's memory pool), so parameters an earlier call returned stay as they were:
the training loop keeps the last parameters whose cost was finite.
"""

from __future__ import annotations

import numbers

import numpy as np

from ...errors import InvalidInputError, InvalidTypeError
from ...validation import check_shapes
from .cuda import BLOCK, VARIANTS, finalize_threads, grid_size, kernel_source, max_grid
from .limits import check_activation, check_dtype, check_shape, fused_support
from .scalar import PARAMETERS

#: Compiled modules by source text: one compilation per (shape, activation, dtype)
#: in a process (CuPy also keeps the binaries on disk across processes).
_MODULES = {}


def _module(text: str):
    import cupy

    if text not in _MODULES:
        _MODULES[text] = cupy.RawModule(code=text)
    return _MODULES[text]


class FusedStep:
    """One full-batch iteration on CuPy arrays as two launches.

    ``fused(params, X, Y, with_cost) -> (params, J)``: params ``{"W1", "b1",
    "W2", "b2"}`` (CuPy arrays of ``dtype``), X (n0, m) and Y (n2, m) in any
    memory layout; returns new parameters (views of one buffer this call
    allocated) and, when ``with_cost``, the cost of the parameters that went
    in as a 0-d array (otherwise None).  Calls share a scratch buffer, so
    they must come from one stream.
    """

    def __init__(self, n0, n1, n2, activation, learning_rate, dtype, device=None):
        self.shape = check_shape(n0, n1, n2)
        applies, why = fused_support(*self.shape)
        if not applies:
            raise InvalidInputError(why)
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real):
            raise InvalidTypeError(f"learning_rate must be a real number, not {type(learning_rate).__name__}")
        self.learning_rate = float(learning_rate)
        self.activation = check_activation(activation)
        self.dtype = check_dtype(dtype)
        self.source = kernel_source(*self.shape, self.activation, self.dtype)

        from ...backends import get_backend

        # The backend says why CuPy cannot run here (not installed, no GPU, no such device).
        self.device = get_backend("cupy", device).device
        import cupy

        self._cupy = cupy
        self._real = np.dtype(self.dtype).type
        with self.device:
            module = _module(self.source.text)
            self._partial = {v: module.get_function(self.source.kernel("partial", v)) for v in VARIANTS}
            self._finalize = {v: module.get_function(self.source.kernel("finalize", v)) for v in VARIANTS}
            self._multiprocessors = self.device.attributes["MultiProcessorCount"]
            # The grid fills the device once; its size fixes the order of the sums (and so the bits).
            self._per_multiprocessor = {
                v: cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(k.kernel.ptr, BLOCK, 0)
                for v, k in self._partial.items()}
            most = max(self.source.accumulators[v] * max_grid(self._multiprocessors, self._per_multiprocessor[v])
                       for v in VARIANTS)
            self._block_sums = cupy.empty(most, dtype=self.dtype)
        self._last = None

    # -- one iteration -------------------------------------------------------------------
    def prepare(self, a):
        """``a`` as the step reads it: as it is (the kernel reads any memory layout)."""
        return a

    def __call__(self, params: dict, X, Y, with_cost: bool):
        count = self._check_data(X, Y)
        p = self._flat(params)
        variant = "cost" if with_cost else "step"
        grid = grid_size(count, self._multiprocessors, self._per_multiprocessor[variant])
        data = {"X": X, "Y": Y}
        values = {"m": count, "learning_rate": self.learning_rate}
        examples = [arg for name in self.source.example_inputs for arg in (data[name], *self._strides(data[name]))]
        scalars = [self._real(values[name]) for name in self.source.scalar_inputs]
        with self.device:
            out = self._cupy.empty(self.source.output_size, dtype=self.dtype)
            self._partial[variant]((grid,), (BLOCK,), (
                *examples, np.int64(count), *scalars, p, self._block_sums))
            self._finalize[variant]((1,), (finalize_threads(self.source.accumulators[variant]),), (
                self._block_sums, np.int32(grid), *scalars, p, out))
        new = {}
        for name in PARAMETERS:
            offset, shape = self.source.offsets[name]
            new[name] = out[offset:offset + int(np.prod(shape))].reshape(shape)
        self._last = (out, dict(new))
        return new, (out[self.source.offsets["J"][0]] if with_cost else None)

    # -- arguments -----------------------------------------------------------------------
    def _strides(self, a) -> tuple:
        return tuple(np.int64(s // a.itemsize) for s in a.strides)

    def _check_data(self, X, Y) -> int:
        n0, _, n2 = self.shape
        for name, a, rows in (("X", X, n0), ("Y", Y, n2)):
            if not isinstance(a, self._cupy.ndarray):
                raise InvalidTypeError(f"{name} must be a CuPy array, not {type(a).__name__}")
            if a.ndim != 2 or a.shape[0] != rows:
                raise InvalidInputError(f"{name} must have shape ({rows}, m), not {a.shape}")
            if a.dtype != self.dtype:
                raise InvalidInputError(f"{name} is {a.dtype}; this fused step computes in {self.dtype}")
            if a.device.id != self.device.id:
                raise InvalidInputError(f"{name} lives on GPU {a.device.id}; this fused step runs on GPU {self.device.id}")
            if any(s % a.itemsize for s in a.strides):
                raise InvalidInputError(f"{name}'s strides {a.strides} are not whole elements")
        check_shapes(X, Y)  # the same m in both, and at least one example
        return X.shape[1]

    def _flat(self, params: dict):
        """The parameters as one buffer: the last output itself when they are its views."""
        if not isinstance(params, dict):
            raise InvalidTypeError(f"params must be a dict of {PARAMETERS}, not {type(params).__name__}")
        if self._last is not None:
            buffer, views = self._last
            if all(params.get(name) is views[name] for name in PARAMETERS):
                return buffer  # the loop's usual case: what the last call returned
        parts = []
        with self.device:
            for name in PARAMETERS:
                shape = self.source.offsets[name][1]
                a = params.get(name)
                if a is None:
                    raise InvalidInputError(f"the parameters lack {name}")
                if tuple(a.shape) != shape:
                    raise InvalidInputError(f"{name} has shape {tuple(a.shape)}, expected {shape}")
                parts.append(self._cupy.asarray(a, dtype=self.dtype).ravel())
            return self._cupy.concatenate(parts)
