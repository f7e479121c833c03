"""Built-in datasets, seeded and made on the host with NumPy."""

from __future__ import annotations

import numpy as np

from .errors import InvalidInputError


def flower(m: int = 400, petals: float = 4.0, noise: float = 0.2, seed=1, *, course: bool = False):
    """The lecture's two-class "flower": X (2, m) float64, Y (1, m) uint8.

    For class j in {0, 1}, m/2 points: t = linspace(3.12 j, 3.12 (j+1)) + noise,
    r = a sin(4 t) + noise, point = (r sin t, r cos t), label j.

    The noise comes from ``numpy.random.default_rng(seed)``; with ``course=True``
    from NumPy's legacy generator as the course drew it (``np.random.seed(seed)``,
    then ``randn`` for t and r of each class in turn), so ``flower(course=True)``
    is the course's own data set, point for point (NumPy's global state is left alone).
    """
    if m < 2 or m % 2:
        raise InvalidInputError(f"flower needs an even number of points m >= 2, got {m!r}")
    if course:
        standard_normal = np.random.RandomState(seed).randn
    else:
        standard_normal = np.random.default_rng(seed).standard_normal
    N = m // 2
    X = np.zeros((m, 2))
    Y = np.zeros((m, 1), dtype=np.uint8)
    for j in range(2):
        ix = slice(N * j, N * (j + 1))
        t = np.linspace(j * 3.12, (j + 1) * 3.12, N) + standard_normal(N) * noise
        r = petals * np.sin(4 * t) + standard_normal(N) * noise
        X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]
        Y[ix] = j
    return X.T, Y.T


# The lecture's four companions to the flower, each X (2, m) float64, Y (1, m) uint8.
def noisy_circles(m: int = 200, factor: float = 0.5, noise: float = 0.3, seed=1):
    """Two concentric circles (radius 1 and ``factor``) with Gaussian noise."""
    rng = _rng(m, seed)
    outer = m // 2
    t = np.concatenate([np.linspace(0, 2 * np.pi, outer, endpoint=False),
                        np.linspace(0, 2 * np.pi, m - outer, endpoint=False)])
    radius = np.r_[np.ones(outer), np.full(m - outer, factor)]
    X = np.stack([radius * np.cos(t), radius * np.sin(t)]) + rng.standard_normal((2, m)) * noise
    return X, np.r_[np.zeros(outer), np.ones(m - outer)].astype(np.uint8)[None, :]


def noisy_moons(m: int = 200, noise: float = 0.2, seed=1):
    """Two interleaving half circles with Gaussian noise."""
    rng = _rng(m, seed)
    top = m // 2
    t0, t1 = np.linspace(0, np.pi, top), np.linspace(0, np.pi, m - top)
    X = np.stack([np.r_[np.cos(t0), 1 - np.cos(t1)], np.r_[np.sin(t0), 0.5 - np.sin(t1)]])
    X = X + rng.standard_normal((2, m)) * noise
    return X, np.r_[np.zeros(top), np.ones(m - top)].astype(np.uint8)[None, :]


def blobs(m: int = 200, centers: int = 6, spread: float = 1.0, seed=5):
    """Gaussian blobs around ``centers`` random centres; the label is the blob index mod 2."""
    rng = _rng(m, seed)
    C = rng.uniform(-10, 10, size=(2, centers))
    which = np.arange(m) % centers
    X = C[:, which] + rng.standard_normal((2, m)) * spread
    return X, (which % 2).astype(np.uint8)[None, :]


def gaussian_quantiles(m: int = 200, cov: float = 0.5, seed=1):
    """One Gaussian cloud split into two classes by the median of the squared distance to its centre."""
    rng = _rng(m, seed)
    X = rng.standard_normal((2, m)) * np.sqrt(cov)
    r2 = np.sum(X * X, axis=0)
    return X, (r2 > np.median(r2)).astype(np.uint8)[None, :]


def _rng(m, seed):
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 2:
        raise InvalidInputError(f"a dataset needs m >= 2 points, got {m!r}")
    return np.random.default_rng(seed)


def synthetic(n0: int, m: int, *, backend="numpy", device=None, dtype=None, seed=0):
    """A learnable two-class problem with n0 features, made directly on the backend's device.

    X is standard normal (n0, m); Y (1, m) is 1 where a fixed random direction
    and the first feature agree in sign, an XOR-like rule a hidden layer must learn.
    The data never exist on the host, so a GPU run at m = 10^8 needs no host copy.
    """
    from .backends import get_backend

    if isinstance(n0, bool) or not isinstance(n0, (int, np.integer)) or n0 < 1:
        raise InvalidInputError(f"n0 must be a positive integer, got {n0!r}")
    _rng(m, seed)
    backend = get_backend(backend, device)
    dtype = dtype or backend.default_dtype
    X = backend.random_normal((n0, m), dtype, seed)
    w = backend.asarray(np.random.default_rng(seed + 1).standard_normal((1, n0)), dtype)
    xp = backend.xp
    Y = xp.astype(((w @ X) * X[0:1, ...]) > 0, X.dtype)
    return X, Y


DATASETS = {"flower": flower, "noisy_circles": noisy_circles, "noisy_moons": noisy_moons,
            "blobs": blobs, "gaussian_quantiles": gaussian_quantiles}
