"""Host-to-device uploads: finished ones, ones in flight on a side stream, and their pinned staging buffers."""

from __future__ import annotations

import threading

import numpy as np


class Ready:
    """An upload that has already finished."""

    def __init__(self, array):
        self.array = array

    def get(self):
        return self.array


class StreamUpload(Ready):
    """A host-to-device copy in flight on a side stream.

    ``get()`` calls ``wait(array)``, which makes the compute stream wait for the
    copy (an event), then hands the array over.
    """

    def __init__(self, array, wait):
        super().__init__(array)
        self._wait = wait

    def get(self):
        self._wait(self.array)
        return self.array


class PinnedStaging:
    """Pinned host buffers that uploads copy from, each reused only once its last copy has finished.

    A host chunk is copied once, into a pinned buffer (casting to the dtype on
    the way); the device copy reads that buffer asynchronously, so the buffer
    goes back to the pool only when the copy's event says it is done.
    ``allocate(shape, dtype)`` gives ``(buffer, numpy view of it)``;
    ``done(event)`` asks an event without waiting.
    """

    def __init__(self, allocate, done, spare: int = 4):
        self._allocate, self._done, self._spare = allocate, done, spare
        self._in_flight = []  # (event, (buffer, view)) of copies that may still read the buffer
        self._idle = {}  # (shape, dtype) -> [(buffer, view)] free to fill
        self._lock = threading.Lock()  # chunk workers may upload from several threads

    def fill(self, host, dtype):
        """``(buffer, view)`` holding ``host`` as ``dtype``."""
        dtype = np.dtype(dtype)
        key = (tuple(np.shape(host)), dtype.str)
        with self._lock:
            self._collect()
            idle = self._idle.get(key)
            staged = idle.pop() if idle else None
        if staged is None:
            staged = self._allocate(key[0], dtype)
        np.copyto(staged[1], host, casting="same_kind")
        return staged

    def reading(self, staged, event) -> None:
        """``staged`` is being read by the copy that ``event`` marks the end of."""
        with self._lock:
            self._in_flight.append((event, staged))

    def _collect(self):
        busy = []
        for event, staged in self._in_flight:
            if not self._done(event):
                busy.append((event, staged))
                continue
            idle = self._idle.setdefault((staged[1].shape, staged[1].dtype.str), [])
            if len(idle) < self._spare:
                idle.append(staged)
        self._in_flight = busy
