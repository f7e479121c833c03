"""Saving and loading trained parameters without pickle.

The file is a NumPy ``.npz`` archive: the four parameter arrays as float
arrays, plus the hyperparameters as a JSON string.  Loading uses
``allow_pickle=False``, so opening a file never executes code, and the arrays
are plain host arrays, so a model trained on a GPU loads on a CPU.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .errors import ModelFileError

from .parameters import NAMES

FORMAT = "backprop-core/1"
_META = "__meta__"


def save_parameters(path, parameters_host: dict, meta: dict) -> None:
    """Write host (NumPy) parameters and a JSON-serialisable ``meta`` dict to ``path``."""
    meta = {"format": FORMAT, **meta}
    arrays = {k: np.asarray(v) for k, v in parameters_host.items()}
    # Write to a temporary name first so a failed save never truncates a good file.
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays, **{_META: np.array(json.dumps(meta))})
    os.replace(tmp, path)


def load_parameters(path) -> tuple[dict, dict]:
    """Read ``(parameters_host, meta)`` written by :func:`save_parameters`."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file at {path}") from None
    except (OSError, ValueError) as exc:  # not a zip, or pickled content we refuse to run
        raise ModelFileError(f"{path} is not a readable backprop-core model file: {exc}") from None
    if not isinstance(data, np.lib.npyio.NpzFile) or _META not in data.files:
        raise ModelFileError(f"{path} is not a backprop-core model file (no metadata)")
    try:
        with data:
            meta = json.loads(str(data[_META]))
            params = {k: data[k] for k in NAMES}
    except (KeyError, ValueError) as exc:
        raise ModelFileError(f"{path} is not a readable backprop-core model file: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} has format {meta.get('format')!r}; this version reads {FORMAT!r}")
    return params, meta
