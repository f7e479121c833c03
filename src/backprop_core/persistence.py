"""Saving and loading trained parameters: saves that cannot lose a model, loads that trust nothing.

A model file is a NumPy ``.npz`` archive (a zip, written uncompressed; stored
or deflated members are read) of exactly five members: ``W1`` (n1, n0), ``b1`` (n1, 1), ``W2`` (n2, n1), ``b2`` (n2, 1), each
a float32 or float64 array, and ``__meta__``, a 0-d unicode array holding one
JSON object (the format string and the estimator's hyperparameters).

Saving writes a new file under an unpredictable name beside the target and
renames it over the target in one step (:func:`backprop_core.atomic.replace_atomically`,
which also removes what saves killed midway left), so a reader sees the old
model or the new one, never half of one.  Loading checks the archive's structure and every
array's declared header before reading a byte of data, then checks values,
shapes and metadata (:func:`backprop_core.model_schema.check_model`, which
saving runs too).  Pickle is never used, and the metadata is only returned:
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
import tokenize
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy

from .atomic import replace_atomically
from .errors import InvalidInputError, ModelFileError
from .model_schema import FORMAT, MAX_METADATA_BYTES, MAX_METADATA_CHARS, Problem, check_layout, check_model
from .parameters import NAMES

#: The four parameter arrays together may declare at most this many bytes of data.
MAX_ARRAY_BYTES = 1 << 30
#: The metadata JSON (at most model_schema.MAX_METADATA_CHARS characters long) may nest objects
#: and lists at most this deep (the estimator's needs 3).
MAX_METADATA_DEPTH = 8
#: ... and hold at most this many items: objects and lists (their opening brackets) and the
#: commas between values.  A cost history takes 3 a reading, so 333,333 readings fit; a list of
#: empty objects (2 items each, 64-byte dicts once parsed) fits in about 35 MB.
MAX_METADATA_ITEMS = 1_000_000
#: Longest .npy header read (NumPy's own default for untrusted files).
MAX_HEADER_CHARS = 10_000
#: Deflate cannot shrink data by more than about 1032:1; a member claiming more is a lie.
MAX_DEFLATE_RATIO = 1032

_META = "__meta__"
# .npy versions read: the header length's struct format, and NumPy's reader of the header.
_HEADER_READERS = {(1, 0): ("<H", npy.read_array_header_1_0), (2, 0): ("<I", npy.read_array_header_2_0)}
_MEMBERS = frozenset(f"{name}.npy" for name in (*NAMES, _META))


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
            raise Problem(f"meta must be a dict, not {type(meta).__name__}")
        parameters = _host_parameters(parameters_host)
        text = _metadata_text({**meta, "format": FORMAT})
        check_model(parameters, _parse_metadata(text))
    except Problem as problem:
        raise InvalidInputError(f"not saving {target}: {problem}") from None
    replace_atomically(target, lambda f: np.savez(f, **parameters, **{_META: np.array(text)}), verb="save")


def _host_parameters(parameters_host) -> dict:
    if not isinstance(parameters_host, dict) or set(parameters_host) != set(NAMES):
        raise Problem(f"parameters must be a dict with exactly the keys {NAMES}")
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
        raise Problem(f"metadata cannot be written as JSON: {exc}") from None


# -- loading ---------------------------------------------------------------------------

def load_parameters(path) -> tuple[dict, dict]:
    """Read ``(parameters_host, meta)`` written by :func:`save_parameters`.

    ``parameters_host``: W1 (n1, n0), b1 (n1, 1), W2 (n2, n1), b2 (n2, 1), finite, native
    byte order, float32 or float64 as saved.  ``meta``: the checked metadata (see
    ``model_schema.METADATA`` and ``HYPERPARAMETERS``), returned and never acted on.

    Raises FileNotFoundError for a missing file and :class:`ModelFileError`, naming the
    file and what is wrong, for every file that is not a sound model.
    """
    name = os.fspath(path)
    try:
        mode = os.stat(name).st_mode
        if not stat.S_ISREG(mode):  # opening a pipe could wait forever
            raise Problem("it is a folder" if stat.S_ISDIR(mode) else "it is not a regular file")
        with open(name, "rb") as f:
            parameters, text = _read_archive(f)
        meta = _parse_metadata(text)
        check_model(parameters, meta)
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file at {name}") from None
    except Problem as problem:
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
        raise Problem("the file is empty")
    if f.read(4) != b"PK\x03\x04":
        raise Problem("it is not a zip archive (a .npz model file is one)")
    f.seek(0)
    try:
        with zipfile.ZipFile(f) as archive:
            infos = archive.infolist()
            _check_members([info.filename for info in infos])
            headers = {info.filename[:-4]: _declared_array(archive, info) for info in infos}
            total = sum(headers[name][3] for name in NAMES)
            if total > MAX_ARRAY_BYTES:
                raise Problem(f"its arrays declare {total} bytes, more than the limit of {MAX_ARRAY_BYTES}")
            arrays = {info.filename[:-4]: _read_data(archive, info, *headers[info.filename[:-4]])
                      for info in infos}
        text = str(arrays[_META][()])  # NumPy checks the code points here
    except _DAMAGE as exc:
        raise Problem(f"the archive is damaged or truncated ({type(exc).__name__}: {exc})") from None
    return {name: arrays[name] for name in NAMES}, text


def _check_members(names: list) -> None:
    if len(names) != len(set(names)):
        raise Problem(f"the archive names a member twice: {sorted(names)}")
    if set(names) != _MEMBERS:
        unknown, missing = sorted(set(names) - _MEMBERS), sorted(_MEMBERS - set(names))
        raise Problem(f"its members must be exactly {sorted(_MEMBERS)}"
                       + (f"; unknown: {unknown}" if unknown else "") + (f"; missing: {missing}" if missing else ""))


def _declared_array(archive, info) -> tuple:
    """``(shape, fortran_order, dtype, nbytes, header_length)`` from the member's .npy header."""
    what = info.filename
    if info.flag_bits & 0x1:
        raise Problem(f"{what} is encrypted")
    if info.compress_type == zipfile.ZIP_STORED:
        if info.compress_size != info.file_size:
            raise Problem(f"{what} is stored uncompressed but declares {info.compress_size} bytes "
                          f"packed and {info.file_size} unpacked")
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        if info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1):
            raise Problem(f"{what} claims to unpack {info.compress_size} bytes into {info.file_size}, "
                          "more than deflate can (a zip bomb?)")
    else:
        raise Problem(f"{what} uses zip compression method {info.compress_type}; "
                      "only stored or deflated members are read")
    limit = MAX_ARRAY_BYTES if what != f"{_META}.npy" else MAX_METADATA_BYTES
    if info.file_size > limit + MAX_HEADER_CHARS + 16:
        raise Problem(f"{what} declares {info.file_size} bytes, more than the limit of {limit}")
    with archive.open(info) as member:
        version = npy.read_magic(member)
        if version not in _HEADER_READERS:
            raise Problem(f"{what} is .npy version {version}; versions 1.0 and 2.0 are read")
        length_format, read_header = _HEADER_READERS[version]
        # The header's length is checked before the header is read: it could claim gigabytes.
        length_field = member.read(struct.calcsize(length_format))
        (length,) = struct.unpack(length_format, length_field)
        if length > MAX_HEADER_CHARS:
            raise Problem(f"{what} has a .npy header of {length} bytes, more than the limit of {MAX_HEADER_CHARS}")
        header = io.BytesIO(length_field + member.read(length))
        shape, fortran_order, dtype = read_header(header, max_header_size=MAX_HEADER_CHARS)
        header_length = member.tell()
    if what == f"{_META}.npy":
        if dtype.kind != "U" or shape != ():
            raise Problem(f"{what} must be a 0-d unicode array, not {dtype} of shape {shape}")
    else:
        check_layout(what, dtype, shape)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > limit:
        raise Problem(f"{what} declares {nbytes} bytes of data, more than the limit of {limit}")
    if header_length + nbytes != info.file_size:
        raise Problem(f"{what} declares shape {shape} of {dtype} ({nbytes} bytes) "
                      f"but holds {info.file_size - header_length} bytes of data")
    return shape, fortran_order, dtype, nbytes, header_length


def _read_data(archive, info, shape, fortran_order, dtype, nbytes, header_length) -> np.ndarray:
    """The member's data as a new, writable array in native byte order (its CRC checked)."""
    with archive.open(info) as member:
        member.seek(header_length)
        data = member.read(nbytes)
        if len(data) != nbytes or member.read(1):
            raise Problem(f"{info.filename} holds {len(data)} bytes of data, not the {nbytes} declared")
    flat = np.frombuffer(data, dtype=dtype)
    return flat.reshape(shape, order="F" if fortran_order else "C").astype(dtype.newbyteorder("="), order="C")


def _parse_metadata(text: str) -> dict:
    if len(text) > MAX_METADATA_CHARS:
        raise Problem(f"its metadata is {len(text)} characters long, more than the limit of {MAX_METADATA_CHARS}")
    _check_structure(text)
    try:
        meta = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          object_pairs_hook=_object_without_duplicates)
    except ValueError as exc:  # json.JSONDecodeError, and the hooks' refusals
        raise Problem(f"its metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise Problem(f"its metadata must be a JSON object, not {_json_kind(meta)}")
    return meta


# A JSON string, escapes and all (unrolled, so that the scan is linear); outside strings, only
# the brackets are left to count nesting by.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


def _check_structure(text: str) -> None:
    """The metadata's count of values and its nesting, read from the raw text before json.loads
    makes a single object: millions of empty objects would cost seconds and gigabytes to parse.

    Brackets and commas inside strings are text, so strings are blanked first, by JSON's own
    rules; a text that is not JSON is left for json.loads to name.
    """
    bare = _JSON_STRING.sub('""', text)
    containers = bare.count("[") + bare.count("{")
    items = containers + bare.count(",")
    if items > MAX_METADATA_ITEMS:
        raise Problem(f"its metadata holds {items:,} items (objects, lists and commas between values), "
                      f"more than the limit of {MAX_METADATA_ITEMS:,}")
    brackets = np.frombuffer(_NOT_BRACKETS.sub("", bare).encode("ascii"), dtype=np.uint8)
    opens = (brackets == ord("[")) | (brackets == ord("{"))
    depth = np.cumsum(np.where(opens, np.int8(1), np.int8(-1)), dtype=np.int32)
    if depth.size and int(depth.max()) > MAX_METADATA_DEPTH:
        raise Problem(f"its metadata nests deeper than {MAX_METADATA_DEPTH} levels")


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

