"""Built-in datasets and the on-device synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest

from backprop_core import datasets


@pytest.mark.parametrize("name", sorted(datasets.DATASETS))
def test_shapes_labels_and_seeding(name):
    make = datasets.DATASETS[name]
    X, Y = make(m=200)
    assert X.shape == (2, 200) and Y.shape == (1, 200) and Y.dtype == np.uint8
    assert set(np.unique(Y)) == {0, 1}
    X2, _ = make(m=200)
    np.testing.assert_array_equal(X, X2)
    X3, _ = make(m=200, seed=99)
    assert not np.array_equal(X, X3)


def test_flower_follows_the_formula_without_noise():
    X, Y = datasets.flower(m=400, noise=0.0)
    t = np.linspace(0, 3.12, 200)
    r = 4 * np.sin(4 * t)
    np.testing.assert_allclose(X[:, :200], np.stack([r * np.sin(t), r * np.cos(t)]))
    assert np.all(Y[0, :200] == 0) and np.all(Y[0, 200:] == 1)


def test_bad_sizes():
    with pytest.raises(ValueError, match="even number"):
        datasets.flower(m=401)
    with pytest.raises(ValueError, match="m >= 2"):
        datasets.noisy_moons(m=1)


def test_synthetic_is_made_on_the_backends_device(backend):
    X, Y = datasets.synthetic(5, 1000, backend=backend.name, device=backend.requested_device, seed=3)
    assert backend.holds(X) and backend.holds(Y)  # its library, on its device (compared as objects)
    assert X.shape == (5, 1000) and Y.shape == (1, 1000)
    y = backend.to_numpy(Y)
    assert set(np.unique(y)) == {0.0, 1.0} and 0.3 < y.mean() < 0.7
    X2, _ = datasets.synthetic(5, 1000, backend=backend.name, device=backend.requested_device, seed=3)
    np.testing.assert_array_equal(backend.to_numpy(X), backend.to_numpy(X2))

