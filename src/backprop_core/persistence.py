"""Saving and loading trained parameters: saves that cannot lose a model, loads that trust nothing.

A model file is a NumPy ``.npz`` archive (a zip, written uncompressed; stored
or deflated members are read) of exactly five members: ``W1`` (n1, n0), ``b1`` (n1, 1), ``W2`` (n2, n1), ``b2`` (n2, 1), each
a float32 or float64 array, and ``__meta__``, a 0-d unicode array holding one
JSON object (the format string and the estimator's hyperparameters).

Saving writes a new file under an unpredictable name beside the target and
renames it over the target in one step, so a reader sees the old model or the
new one, never half of one.  Loading checks the archive's structure and every
array's declared header before reading a byte of data, then checks values,
shapes and metadata.  Pickle is never used, and the metadata is only returned:
nothing read from a file decides what the program connects to or runs.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import struct
import tempfile
import tokenize
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy

from .activations import ACTIVATIONS
from .errors import InvalidInputError, ModelFileError
from .parameters import NAMES
from .validation import NUMERIC_LABEL_DTYPES, check_parameters, is_label_dtype_name

FORMAT = "backprop-core/1"

#: The four parameter arrays together may declare at most this many bytes of data.
MAX_ARRAY_BYTES = 1 << 30
#: The metadata JSON may be at most this many characters long ...
MAX_METADATA_CHARS = 10_000_000
#: ... and nest objects and lists at most this deep (the estimator's needs 3).
MAX_METADATA_DEPTH = 8
#: Longest .npy header read (NumPy's own default for untrusted files).
MAX_HEADER_CHARS = 10_000
#: Deflate cannot shrink data by more than about 1032:1; a member claiming more is a lie.
MAX_DEFLATE_RATIO = 1032
#: The fitted classes, as the fixed-width array they load into, may take at most this many
#: bytes: no more than the metadata member itself may (a short text of one long class and
#: many short ones would otherwise pad out to far more).
MAX_CLASSES_BYTES = 4 * MAX_METADATA_CHARS

_META = "__meta__"
# .npy versions read: the header length's struct format, and NumPy's reader of the header.
_HEADER_READERS = {(1, 0): ("<H", npy.read_array_header_1_0), (2, 0): ("<I", npy.read_array_header_2_0)}
_MEMBERS = frozenset(f"{name}.npy" for name in (*NAMES, _META))


class _Problem(Exception):
    """What is wrong with a model, in words; the caller names the file."""


# -- what the metadata may hold --------------------------------------------------------

def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _is_str(v):
    return isinstance(v, str)


def _is_none(v):
    return v is None


def _either(*tests):
    return lambda v: any(test(v) for test in tests)


def _one_of(*values):
    # type() as well as ==, so that True is not taken for 1.
    return lambda v: any(type(v) is type(x) and v == x for x in values)


def _is_history(v):
    return isinstance(v, list) and all(
        isinstance(h, list) and len(h) == 2 and _is_int(h[0]) and h[0] >= 0 and _is_number(h[1]) for h in v)


#: The estimator's hyperparameters (``BackpropClassifier.get_params()``) and the JSON types
#: each may have.  Only types are checked: the estimator checks ranges when it fits.
HYPERPARAMETERS = {
    "hidden_units": (_is_int, "an integer"),
    "activation": (_is_str, "a string"),
    "learning_rate": (_is_number, "a finite number"),
    "num_iterations": (_is_int, "an integer"),
    "backend": (_is_str, "a string"),
    "device": (_either(_is_str, _is_int, _is_none), "a string, an integer or null"),
    "dtype": (_one_of(None, "float32", "float64"), '"float32", "float64" or null'),
    "seed": (_either(_is_int, _is_none), "an integer or null"),
    "init": (_is_str, "a string"),
    "cost_every": (_is_int, "an integer"),
    "batch_size": (_either(_is_int, _is_none), "an integer or null"),
    "epochs": (_either(_is_int, _is_none), "an integer or null"),
    "chunk_size": (_either(_is_int, _one_of("auto", None)), 'an integer, "auto" or null'),
    "workers": (_either(_is_int, _is_none), "an integer or null"),
    "parallel": (_one_of("auto", "threads", "processes"), '"auto", "threads" or "processes"'),
    "stream": (_one_of(True, False, "auto"), 'true, false or "auto"'),
    "fused": (_one_of(True, False, "auto"), 'true, false or "auto"'),
    "early_stopping": (_one_of(True, False), "true or false"),
    "validation_fraction": (_is_number, "a finite number"),
    "n_iter_no_change": (_is_int, "an integer"),
    "tol": (_is_number, "a finite number"),
    "verbose": (_either(_one_of(True, False), _is_int), "true, false or an integer"),
    "iteration_timeout": (_is_number, "a finite number"),
    "standardize": (_one_of(True, False), "true or false"),
}


def _is_label_list(v):
    return isinstance(v, list) and len(v) > 0 and all(
        isinstance(c, (str, bool)) or _is_number(c) for c in v)


#: The NumPy dtype strings (``dtype.str``) classes may be written with: booleans, signed and
#: unsigned integers, floats, fixed-width unicode.  Only these are ever made into a dtype.
_CLASSES_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248]|U[1-9][0-9]{0,8})")


def _is_classes_dtype(v):
    return isinstance(v, str) and _CLASSES_DTYPE.fullmatch(v) is not None


def _is_name_list(v):
    return isinstance(v, list) and all(isinstance(n, str) for n in v)


def _is_number_list(v, positive=False):
    return isinstance(v, list) and len(v) > 0 and all(_is_number(x) and (x > 0 or not positive) for x in v)


def _is_hyperparameters(v):
    return isinstance(v, dict)  # its entries are checked one by one, to name the bad one


#: ``required`` of the fields a fitted model records together (``BackpropClassifier.fit`` since
#: it fits labels): a file has all of them or, written before, none.
LABELS = "with the labels"

#: Top-level metadata keys: (required, test, what it must be).  The estimator reads the
#: required ones (``BackpropClassifier.load``); any other key is refused.  Beyond its type,
#: every field is checked against the others and the weights (:func:`_check_model`).
METADATA = {
    "format": (True, _one_of(FORMAT), f"{FORMAT!r}"),
    "params": (True, _is_hyperparameters, "an object of hyperparameters"),
    "dtype": (True, _one_of("float32", "float64"), '"float32" or "float64"'),
    "y_ndim": (False, _one_of(1, 2), "1 or 2"),
    "n_iter": (True, lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "cost_history": (True, _is_history, "a list of [iteration, finite cost] pairs"),
    "estimator": (False, _is_str, "a string"),
    "n_features_in": (False, lambda v: _is_int(v) and v > 0, "a positive integer"),
    "n_outputs": (False, lambda v: _is_int(v) and v > 0, "a positive integer"),
    "classes": (LABELS, _is_label_list, "a non-empty list of labels (strings, numbers or booleans)"),
    "classes_dtype": (LABELS, _is_classes_dtype, 'the NumPy dtype string of booleans, integers, floats or '
                      'unicode ("|b1", "<i8", "|u1", "<f8", "<U5", ...)'),
    "target_type": (LABELS, _one_of("binary", "multiclass", "multilabel-indicator"),
                    '"binary", "multiclass" or "multilabel-indicator"'),
    "label_dtype": (LABELS, lambda v: isinstance(v, str) and is_label_dtype_name(v),
                    f"one of {', '.join(NUMERIC_LABEL_DTYPES)} or a unicode dtype such as '<U5'"),
    "activation": (LABELS, _one_of(*ACTIVATIONS), f"one of {', '.join(ACTIVATIONS)}"),
    "output": (LABELS, _one_of("sigmoid", "softmax"), '"sigmoid" or "softmax"'),
    "feature_names_in": (False, _either(_is_none, _is_name_list), "a list of strings or null"),
    "feature_mean": (False, _either(_is_none, _is_number_list), "a list of finite numbers or null"),
    "feature_scale": (False, _either(_is_none, lambda v: _is_number_list(v, positive=True)),
                      "a list of positive finite numbers or null"),
}


def classes_of(meta: dict) -> np.ndarray:
    """The fitted classes (k,) a checked model file records, in the dtype its ``classes_dtype`` names.

    Fixed-width strings are made as wide as the longest class, whatever wider width the
    file declares, so the array is bounded by the file's own text.
    """
    try:
        return _classes(meta)
    except _Problem as problem:  # load_parameters has refused such a file already
        raise InvalidInputError(str(problem)) from None


# -- saving ----------------------------------------------------------------------------

def save_parameters(path, parameters_host: dict, meta: dict) -> None:
    """Write host (NumPy) parameters and a ``meta`` dict to ``path``, replacing it atomically.

    ``parameters_host``: W1 (n1, n0), b1 (n1, 1), W2 (n2, n1), b2 (n2, 1), float32 or float64.
    ``meta``: JSON-serialisable; NumPy scalars and arrays of numbers are written as numbers
    and lists.  Whatever would not load back (NaN weights, a key the format does not know)
    is refused with :class:`InvalidInputError` before anything is written.
    """
    target = os.fspath(path)
    try:
        if not isinstance(meta, dict):
            raise _Problem(f"meta must be a dict, not {type(meta).__name__}")
        parameters = _host_parameters(parameters_host)
        text = _metadata_text({**meta, "format": FORMAT})
        _check_model(parameters, _parse_metadata(text))
    except _Problem as problem:
        raise InvalidInputError(f"not saving {target}: {problem}") from None
    _replace_atomically(target, lambda f: np.savez(f, **parameters, **{_META: np.array(text)}))


def _host_parameters(parameters_host) -> dict:
    if not isinstance(parameters_host, dict) or set(parameters_host) != set(NAMES):
        raise _Problem(f"parameters must be a dict with exactly the keys {NAMES}")
    return {name: np.asarray(parameters_host[name]) for name in NAMES}


def _plain(value):
    """NumPy scalars and numeric arrays as the JSON numbers and lists they hold."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value.tolist()
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    raise TypeError(f"a {type(value).__name__} cannot be written as JSON")


def _metadata_text(meta: dict) -> str:
    try:
        return json.dumps(meta, default=_plain, allow_nan=False)
    except (TypeError, ValueError) as exc:  # ValueError: NaN or infinity, which JSON lacks
        raise _Problem(f"metadata cannot be written as JSON: {exc}") from None


def _replace_atomically(target: str, write) -> None:
    """Call ``write(file)`` on a new file beside ``target``, then rename it over ``target``.

    mkstemp creates the file with O_EXCL under a random name, so a link planted
    in the folder is never followed; os.replace renames in one step, so
    concurrent saves leave the last one whole; a link AT the target is replaced,
    its own target untouched.  On any failure the temporary file is removed and
    the old model stays as it was.
    """
    folder = os.path.dirname(target) or os.curdir
    mode = _mode_for(target)
    try:
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(target)[:64]}.", suffix=".tmp")
    except OSError as exc:  # name the file being saved, not the temporary one
        raise type(exc)(exc.errno, f"cannot save {target}: {exc.strerror} (in folder {folder})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.chmod(temporary, mode)
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _mode_for(target: str) -> int:
    """The permission bits the saved file gets: the old file's, or those open() gives a new one."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode) & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # Linux shows the umask; elsewhere it can only be read by setting it (briefly, process-wide).
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable, where the OS lets a folder be opened and synced."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- loading ---------------------------------------------------------------------------

def load_parameters(path) -> tuple[dict, dict]:
    """Read ``(parameters_host, meta)`` written by :func:`save_parameters`.

    ``parameters_host``: W1 (n1, n0), b1 (n1, 1), W2 (n2, n1), b2 (n2, 1), finite, native
    byte order, float32 or float64 as saved.  ``meta``: the checked metadata (see
    ``METADATA`` and ``HYPERPARAMETERS``), returned and never acted on.

    Raises FileNotFoundError for a missing file and :class:`ModelFileError`, naming the
    file and what is wrong, for every file that is not a sound model.
    """
    name = os.fspath(path)
    try:
        mode = os.stat(name).st_mode
        if not stat.S_ISREG(mode):  # opening a pipe could wait forever
            raise _Problem("it is a folder" if stat.S_ISDIR(mode) else "it is not a regular file")
        with open(name, "rb") as f:
            parameters, text = _read_archive(f)
        meta = _parse_metadata(text)
        _check_model(parameters, meta)
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file at {name}") from None
    except _Problem as problem:
        raise ModelFileError(f"{name} is not a usable backprop-core model file: {problem}") from None
    except OSError as exc:
        raise ModelFileError(f"{name} cannot be read: {exc.strerror or exc}") from None
    return parameters, meta


# Whatever a damaged archive or header makes zipfile, zlib, struct or NumPy raise.
_DAMAGE = (zipfile.BadZipFile, zlib.error, struct.error, EOFError, ValueError, TypeError, KeyError,
           IndexError, OverflowError, NotImplementedError, RuntimeError, SyntaxError, UnicodeError,
           tokenize.TokenError)  # NumPy re-tokenizes a header that does not parse, as Python 2 wrote them


def _read_archive(f) -> tuple[dict, str]:
    """The four arrays and the metadata text, every declared size checked before reading."""
    if os.fstat(f.fileno()).st_size == 0:
        raise _Problem("the file is empty")
    if f.read(4) != b"PK\x03\x04":
        raise _Problem("it is not a zip archive (a .npz model file is one)")
    f.seek(0)
    try:
        with zipfile.ZipFile(f) as archive:
            infos = archive.infolist()
            _check_members([info.filename for info in infos])
            headers = {info.filename[:-4]: _declared_array(archive, info) for info in infos}
            total = sum(headers[name][3] for name in NAMES)
            if total > MAX_ARRAY_BYTES:
                raise _Problem(f"its arrays declare {total} bytes, more than the limit of {MAX_ARRAY_BYTES}")
            arrays = {info.filename[:-4]: _read_data(archive, info, *headers[info.filename[:-4]])
                      for info in infos}
        text = str(arrays[_META][()])  # NumPy checks the code points here
    except _DAMAGE as exc:
        raise _Problem(f"the archive is damaged or truncated ({type(exc).__name__}: {exc})") from None
    return {name: arrays[name] for name in NAMES}, text


def _check_members(names: list) -> None:
    if len(names) != len(set(names)):
        raise _Problem(f"the archive names a member twice: {sorted(names)}")
    if set(names) != _MEMBERS:
        unknown, missing = sorted(set(names) - _MEMBERS), sorted(_MEMBERS - set(names))
        raise _Problem(f"its members must be exactly {sorted(_MEMBERS)}"
                       + (f"; unknown: {unknown}" if unknown else "") + (f"; missing: {missing}" if missing else ""))


def _declared_array(archive, info) -> tuple:
    """``(shape, fortran_order, dtype, nbytes, header_length)`` from the member's .npy header."""
    what = info.filename
    if info.flag_bits & 0x1:
        raise _Problem(f"{what} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise _Problem(f"{what} is stored uncompressed but declares {info.compress_size} bytes "
                           f"packed and {info.file_size} unpacked")
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        if info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1):
            raise _Problem(f"{what} claims to unpack {info.compress_size} bytes into {info.file_size}, "
                           "more than deflate can (a zip bomb?)")
    else:
        raise _Problem(f"{what} uses zip compression method {info.compress_type}; "
                       "only stored or deflated members are read")
    limit = MAX_ARRAY_BYTES if what != f"{_META}.npy" else 4 * MAX_METADATA_CHARS
    if info.file_size > limit + MAX_HEADER_CHARS + 16:
        raise _Problem(f"{what} declares {info.file_size} bytes, more than the limit of {limit}")
    with archive.open(info) as member:
        version = npy.read_magic(member)
        if version not in _HEADER_READERS:
            raise _Problem(f"{what} is .npy version {version}; versions 1.0 and 2.0 are read")
        length_format, read_header = _HEADER_READERS[version]
        # The header's length is checked before the header is read: it could claim gigabytes.
        length_field = member.read(struct.calcsize(length_format))
        (length,) = struct.unpack(length_format, length_field)
        if length > MAX_HEADER_CHARS:
            raise _Problem(f"{what} has a .npy header of {length} bytes, more than the limit of {MAX_HEADER_CHARS}")
        header = io.BytesIO(length_field + member.read(length))
        shape, fortran_order, dtype = read_header(header, max_header_size=MAX_HEADER_CHARS)
        header_length = member.tell()
    if what == f"{_META}.npy":
        if dtype.kind != "U" or shape != ():
            raise _Problem(f"{what} must be a 0-d unicode array, not {dtype} of shape {shape}")
    else:
        if dtype.kind != "f" or dtype.itemsize not in (4, 8):
            raise _Problem(f"{what} has dtype {dtype}; parameters are float32 or float64")
        if len(shape) != 2 or min(shape) < 1:
            raise _Problem(f"{what} has shape {shape}; parameters are non-empty 2-D arrays")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limit:
        raise _Problem(f"{what} declares {nbytes} bytes of data, more than the limit of {limit}")
    if header_length + nbytes != info.file_size:
        raise _Problem(f"{what} declares shape {shape} of {dtype} ({nbytes} bytes) "
                       f"but holds {info.file_size - header_length} bytes of data")
    return shape, fortran_order, dtype, nbytes, header_length


def _read_data(archive, info, shape, fortran_order, dtype, nbytes, header_length) -> np.ndarray:
    """The member's data as a new, writable array in native byte order (its CRC checked)."""
    with archive.open(info) as member:
        member.seek(header_length)
        data = member.read(nbytes)
        if len(data) != nbytes or member.read(1):
            raise _Problem(f"{info.filename} holds {len(data)} bytes of data, not the {nbytes} declared")
    flat = np.frombuffer(data, dtype=dtype)
    return flat.reshape(shape, order="F" if fortran_order else "C").astype(dtype.newbyteorder("="), order="C")


def _parse_metadata(text: str) -> dict:
    if len(text) > MAX_METADATA_CHARS:
        raise _Problem(f"its metadata is {len(text)} characters long, more than the limit of {MAX_METADATA_CHARS}")
    try:
        meta = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          object_pairs_hook=_object_without_duplicates)
    except RecursionError:
        raise _Problem("its metadata is nested too deeply") from None
    except ValueError as exc:  # json.JSONDecodeError, and the hooks' refusals
        raise _Problem(f"its metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise _Problem(f"its metadata must be a JSON object, not {_json_kind(meta)}")
    if _depth(meta) > MAX_METADATA_DEPTH:
        raise _Problem(f"its metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    return meta


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def _object_without_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError(f"a key appears twice among {sorted(keys)}")
    return dict(pairs)


def _json_kind(value) -> str:
    kinds = {list: "a list", str: "a string", bool: "a boolean", type(None): "null", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def _depth(value) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:  # iterative: the depth is not yet known to be small
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


# -- the checks shared by saving and loading ---------------------------------------------

def _check_model(parameters: dict, meta: dict) -> None:
    """Parameters finite, shapes consistent with each other and with the metadata; metadata typed,
    and what the estimator reads (labels, output layer, features) consistent with itself and the weights."""
    for name, A in parameters.items():
        if A.dtype.kind != "f" or A.dtype.itemsize not in (4, 8):
            raise _Problem(f"{name} has dtype {A.dtype}; parameters are float32 or float64")
        if A.ndim != 2 or A.size == 0:
            raise _Problem(f"{name} has shape {A.shape}; parameters are non-empty 2-D arrays")
        bad = int(A.size - np.count_nonzero(np.isfinite(A)))
        if bad:
            raise _Problem(f"{name} holds {bad} NaN or infinite value(s)")
    try:
        n0, n1, n2 = check_parameters(parameters)
    except ValueError as exc:
        raise _Problem(str(exc)) from None
    _check_metadata(meta)
    recorded = {"n_features_in": (meta.get("n_features_in"), n0, "n0, the columns of W1"),
                "n_outputs": (meta.get("n_outputs"), n2, "n2, the rows of W2"),
                "params.hidden_units": (meta["params"].get("hidden_units"), n1, "n1, the rows of W1")}
    for key, (value, actual, what) in recorded.items():
        if value is not None and value != actual:
            raise _Problem(f"metadata {key} is {value} but {what} is {actual}")
    if any(meta_key in meta for meta_key, (required, _, _) in METADATA.items() if required == LABELS):
        _check_labels(meta, n2)
    else:
        _check_unlabelled(meta, n2)
    _check_features(meta, n0)


def _check_metadata(meta: dict) -> None:
    unknown = sorted(set(meta) - set(METADATA))
    if unknown:
        raise _Problem(f"its metadata has unknown key(s) {unknown}; known: {sorted(METADATA)}")
    labelled = [key for key, (required, _, _) in METADATA.items() if required == LABELS and key in meta]
    for key, (required, test, what) in METADATA.items():
        if key not in meta:
            if required is True:
                raise _Problem(f"its metadata has no {key!r}")
            if required == LABELS and labelled:
                raise _Problem(f"its metadata has no {key!r}, which a fitted model records with "
                               f"{', '.join(labelled)}")
        elif not test(meta[key]):
            raise _Problem(f"metadata {key} must be {what}, not {_shown(meta[key])}")
    unknown = sorted(set(meta["params"]) - set(HYPERPARAMETERS))
    if unknown:
        raise _Problem(f"its metadata names unknown hyperparameter(s) {unknown}; known: {sorted(HYPERPARAMETERS)}")
    for key, value in meta["params"].items():
        test, what = HYPERPARAMETERS[key]
        if not test(value):
            raise _Problem(f"hyperparameter {key} must be {what}, not {_shown(value)}")


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


# -- what the estimator reads, checked against itself and the weights --------------------

def _check_labels(meta: dict, n2: int) -> None:
    """The classes, target type and output layer as scikit-learn's type implies them, and W2's n2 rows.

    binary: 2 classes, one sigmoid row; multiclass: k >= 3 classes, a softmax over k rows;
    multilabel-indicator: classes 0 .. k-1, one sigmoid row per label.
    """
    classes, target, output = _classes(meta), meta["target_type"], meta["output"]
    k = classes.shape[0]
    if target == "binary" and k != 2:
        raise _Problem(f"target_type binary has 2 classes, but classes holds {k}")
    if target == "multiclass" and k < 3:
        raise _Problem(f"target_type multiclass has at least 3 classes (2 are binary), but classes holds {k}")
    if target == "multilabel-indicator":
        if classes.dtype.kind not in "iu" or classes.tolist() != list(range(k)):
            raise _Problem(f"target_type multilabel-indicator has classes 0, 1, .., k-1 (one per output), "
                           f"not {_shown(meta['classes'])}")
        if meta["label_dtype"] not in NUMERIC_LABEL_DTYPES:
            raise _Problem(f"label_dtype of a multilabel-indicator is one of {', '.join(NUMERIC_LABEL_DTYPES)}, "
                           f"not {meta['label_dtype']!r}")
    wanted = "softmax" if target == "multiclass" else "sigmoid"
    if output != wanted:
        raise _Problem(f"target_type {target} is trained with a {wanted} output, but output is {output!r}")
    rows = 1 if target == "binary" else k
    if n2 != rows:
        raise _Problem(f"target_type {target} with {k} classes has {rows} output row{'s' * (rows > 1)}, "
                       f"but W2 has {n2}")
    y_ndim = 2 if target == "multilabel-indicator" else 1
    if meta.get("y_ndim", y_ndim) != y_ndim:
        raise _Problem(f"metadata y_ndim is {meta['y_ndim']} but target_type {target} is {y_ndim}-D")


def _check_unlabelled(meta: dict, n2: int) -> None:
    """A file written before labels were fitted: 0/1 labels, the sigmoid output, the activation of params."""
    if meta.get("y_ndim", 1) == 1 and n2 != 1:
        raise _Problem(f"metadata y_ndim is 1 (one output{'' if 'y_ndim' in meta else ', as a file without it'}) "
                       f"but W2 has {n2} rows")
    activation = meta["params"].get("activation", "tanh")
    if activation not in ACTIVATIONS:
        raise _Problem(f"hyperparameter activation, which the weights were trained with, must be one of "
                       f"{', '.join(ACTIVATIONS)}, not {_shown(activation)}")


def _classes(meta: dict) -> np.ndarray:
    """``classes`` as an array of ``classes_dtype``: each value of that kind, sorted and distinct."""
    values, text = meta["classes"], meta["classes_dtype"]
    body = _CLASSES_DTYPE.fullmatch(text).group(1)  # only what the allowlist matched becomes a dtype
    kind = body[0]
    fits = {"b": lambda c: isinstance(c, bool), "i": _is_int, "u": _is_int, "U": _is_str,
            "f": lambda c: _is_number(c) and not isinstance(c, bool)}[kind]
    unfit = [c for c in values if not fits(c)]
    if unfit:
        raise _Problem(f"classes of dtype {text} cannot hold {_shown(unfit[0])}")
    if kind == "U":
        longest = max(len(c) for c in values)
        if longest > int(body[1:]):
            raise _Problem(f"classes_dtype {text} would cut the longest class ({longest} characters) short")
        dtype = np.dtype(f"U{max(longest, 1)}")
    else:
        dtype = np.dtype(body).newbyteorder("=")
    if len(values) * dtype.itemsize > MAX_CLASSES_BYTES:
        raise _Problem(f"its {len(values)} classes take {len(values) * dtype.itemsize} bytes as {dtype}, "
                       f"more than the limit of {MAX_CLASSES_BYTES}")
    if kind in "iu":
        info = np.iinfo(dtype)
        outside = [c for c in values if not info.min <= c <= info.max]
        if outside:
            raise _Problem(f"classes of dtype {text} cannot hold {outside[0]}")
    with np.errstate(over="ignore"):
        classes = np.asarray(values, dtype=dtype)
    if kind == "f" and not np.all(np.isfinite(classes)):
        raise _Problem(f"classes of dtype {text} cannot hold {_shown(values)}: it overflows")
    if kind == "U" and classes.tolist() != values:  # NumPy drops trailing NULs
        raise _Problem(f"classes {_shown(values)} are not kept whole by a NumPy unicode array")
    if np.unique(classes).shape[0] != classes.shape[0]:
        raise _Problem(f"classes must be distinct, as fit records them: {_shown(values)}")
    if np.any(classes[1:] < classes[:-1]):
        raise _Problem(f"classes must be sorted, as fit records them: {_shown(values)}")
    return classes


def _check_features(meta: dict, n0: int) -> None:
    """Feature names, one per column of W1; feature_mean and feature_scale exactly where standardize is."""
    names = meta.get("feature_names_in")
    if names is not None and len(names) != n0:
        raise _Problem(f"feature_names_in has {len(names)} names for a model of {n0} features "
                       "(n0, the columns of W1)")
    mean, scale = meta.get("feature_mean"), meta.get("feature_scale")
    standardize = meta["params"].get("standardize", False)
    if (mean is None) != (scale is None):
        raise _Problem("it has one of feature_mean and feature_scale without the other")
    if standardize and mean is None:
        raise _Problem("hyperparameter standardize is true but feature_mean and feature_scale are missing")
    if not standardize and mean is not None:
        raise _Problem("it has feature_mean and feature_scale but hyperparameter standardize is not true")
    if mean is not None and not len(mean) == len(scale) == n0:
        raise _Problem(f"feature_mean has {len(mean)} and feature_scale {len(scale)} entries "
                       f"for a model of {n0} features")
