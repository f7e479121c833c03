"""Built-in datasets, seeded and made on the host with NumPy."""

from __future__ import annotations

import numpy as np


def flower(m: int = 400, petals: float = 4.0, noise: float = 0.2, seed=1):
    """The lecture's two-class "flower": X (2, m) float64, Y (1, m) uint8.

    For class j in {0, 1}, m/2 points: t = linspace(3.12 j, 3.12 (j+1)) + noise,
    r = a sin(4 t) + noise, point = (r sin t, r cos t), label j.
    """
    if m < 2 or m % 2:
        raise ValueError(f"flower needs an even number of points m >= 2, got {m!r}")
    rng = np.random.default_rng(seed)
    N = m // 2
    X = np.zeros((m, 2))
    Y = np.zeros((m, 1), dtype=np.uint8)
    for j in range(2):
        ix = slice(N * j, N * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + rng.standard_normal(N) * noise
        r = petals * np.sin(4 * t) + rng.standard_normal(N) * noise
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        Y[ix] = j
    return X.T, Y.T
