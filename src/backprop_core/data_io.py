"""Reading the user's own data: CSV (with a target column), .npy and .npz."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .errors import DataFileError


def load_table(path, target: str | None = None):
    """Returns ``(X, y)`` with samples as rows: X (m, n) float64, y (m,) or None.

    CSV: a header row is detected (any non-numeric cell in the first row);
    ``target`` names the label column (or its 0-based index); without one the
    last column is the label when ``target`` is None and ``with_labels``.
    .npz: arrays ``X`` and ``y`` (y optional).  .npy: one 2-D array, the last
    column the label when ``target`` is given as ``-1``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no data file at {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            if "X" not in data.files:
                raise DataFileError(f"{path} has no array named 'X' (it has {data.files})")
            X = data["X"]
            y = data["y"] if "y" in data.files else None
        return _check(X, y, path)
    if suffix == ".npy":
        A = np.load(path, allow_pickle=False)
        if target is None:
            return _check(A, None, path)
        col = _column_index(target, A.shape[1] if A.ndim == 2 else 0, None, path)
        return _check(np.delete(A, col, axis=1), A[:, col], path)
    return _load_csv(path, target)


def _load_csv(path, target):
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise DataFileError(f"{path} is empty")
    header = None
    if any(not _is_number(c) for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise DataFileError(f"{path} has a header but no data rows")
    width = len(header) if header else len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise DataFileError(f"{path}: row {i + 1 + bool(header)} has {len(r)} cells, expected {width} (ragged rows)")
    try:
        A = np.array([[float(c) for c in r] for r in rows])
    except ValueError:
        bad = next((i, c) for i, r in enumerate(rows) for c in r if not _is_number(c))
        raise DataFileError(f"{path}: row {bad[0] + 1 + bool(header)} has a non-numeric cell {bad[1]!r}") from None
    if target is None:
        return _check(A, None, path)
    col = _column_index(target, width, header, path)
    return _check(np.delete(A, col, axis=1), A[:, col], path)


def _column_index(target, width, header, path):
    if header and target in header:
        return header.index(target)
    try:
        col = int(target)
    except (TypeError, ValueError):
        names = f"; columns are {header}" if header else " (the file has no header row)"
        raise DataFileError(f"{path} has no target column {target!r}{names}") from None
    if not -width <= col < width:
        raise DataFileError(f"{path} has {width} columns; there is no column {target!r}")
    return col % width


def _check(X, y, path):
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise DataFileError(f"{path}: features must form a non-empty 2-D table, got shape {X.shape}")
    if y is not None:
        y = np.asarray(y).reshape(-1) if np.asarray(y).ndim <= 1 else np.asarray(y)
        if not np.all(np.isin(y, (0, 1))):
            raise DataFileError(f"{path}: labels must be 0 or 1; found {sorted(set(np.unique(y).tolist()))[:5]}")
    return X.astype(np.float64), y


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
