"""Reading the user's own data: CSV (with a label column), .npy and .npz.

Every problem is a :class:`DataFileError` naming the file and, in a CSV, the
row (counted from 1, as a user counts the file's lines) and the column (its
name, or for a file without a header its number counted from 1 and its 0-based
index).  Nothing is dropped silently: a first row that is neither clearly a
header nor clearly data is an error, not a guess.  Labels are returned as they
are (numbers or strings); which labels a model accepts is the estimator's call.
An array file is measured by its header before it is read: an array larger than
the memory available is refused, not decompressed until the machine gives out.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from .backends import host_free_memory
from .errors import DataFileError, InvalidInputError

_UTF8_BOM = codecs.BOM_UTF8
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class Table:
    """What a data file holds: X (m, n) float64, y (m,) or None, and ``columns``, the n names of
    X's columns where the file names them (a CSV header; the label column left out), else None."""

    X: np.ndarray
    y: np.ndarray | None
    columns: list | None


def load_table(path, target=None, *, header="auto", encoding="utf-8"):
    """``(X, y)`` of :func:`read_table`, without the columns' names."""
    table = read_table(path, target, header=header, encoding=encoding)
    return table.X, table.y


def read_table(path, target=None, *, header="auto", encoding="utf-8") -> Table:
    """A :class:`Table` with samples as rows: X (m, n) float64; y (m,) or None; the columns' names.

    CSV: ``target`` names the label column (a header name, or a 0-based index,
    negative from the end); without it every column is a feature.  ``header``:
    True (the first non-blank row names the columns), False (it is data) or
    "auto" (a header when every cell of that row is non-numeric, data when
    every cell is numeric, else an error naming the cell).  ``encoding`` is the
    text encoding; a UTF-8 byte-order mark is dropped.  y holds float64 numbers
    when every label is a number, else the labels as strings.

    .npy: one 2-D array; ``target`` (a column index) picks the label column.
    .npz: the features are the array ``X``; the labels the array ``y`` (or the
    array named by ``target``), if there is one.  Complex, string and object
    features are refused; big-endian arrays are read in native byte order.
    An array larger than :func:`available_memory` is refused from its header,
    before it is read.
    """
    if header not in (True, False, "auto") or not isinstance(header, (bool, str)):
        raise InvalidInputError(f"header must be True, False or 'auto', got {header!r}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no data file at {path}")
    if path.is_dir():
        raise DataFileError(f"{path} is a folder, not a data file")
    if not path.is_file():  # a pipe or a device: reading it could wait forever
        raise DataFileError(f"{path} is not a regular file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            return Table(*_load_npz(path, target), columns=None)
        if suffix == ".npy":
            return Table(*_load_npy(path, target), columns=None)
        return _load_csv(path, target, header, encoding)
    except MemoryError:
        # What no header foretells: a CSV's text, the finiteness check, other programs taking memory meanwhile.
        raise DataFileError(f"{path}: not enough memory to read it ({_free_memory_words()})") from None


def available_memory():
    """Bytes of memory available now for a new array, or None where the system does not say.

    Linux's MemAvailable (free memory and the page cache it would give back), as
    the command line measures it; elsewhere the free pages ``os.sysconf`` counts.
    """
    free = host_free_memory()
    if free is not None:
        return free
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows), or no such name (macOS)
        return None


def bytes_in_words(n) -> str:
    """``n`` bytes in words: "2.4 GB", "512.0 kB", "300 bytes"."""
    for unit, scale in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


def _free_memory_words() -> str:
    free = available_memory()
    return "the free memory is unknown" if free is None else f"{bytes_in_words(free)} of memory is available"


# -- CSV -------------------------------------------------------------------------------

def _load_csv(path, target, header, encoding):
    rows = _read_rows(path, _decode(path, encoding))
    if not rows:
        raise DataFileError(f"{path} is empty (no rows)")
    first_line, first = rows[0]
    if header == "auto":
        header = _looks_like_header(path, first_line, first)
    names = [c.strip() for c in first] if header else None
    data = rows[1:] if header else rows
    if not data:
        raise DataFileError(f"{path} has a header row but no data rows")
    width = len(first)
    for line, cells in data:
        if len(cells) != width:
            raise DataFileError(f"{path}: row {line} has {len(cells)} cells but row {first_line} has {width} "
                                "(ragged rows)")
    label = None if target is None else _column_index(path, target, width, names)
    features = [j for j in range(width) if j != label]
    if not features:
        raise DataFileError(f"{path} has no feature columns besides the label column")
    X = np.array([[_feature(path, line, cells[j], j, names) for j in features] for line, cells in data],
                 dtype=np.float64)
    y = None if label is None else _labels(path, [(line, cells[label]) for line, cells in data], label, names)
    return Table(X, y, None if names is None else [names[j] for j in features])


_ENCODING_HINT = "pass encoding= with the file's encoding, for example encoding='latin-1' or 'utf-16'"


def _decode(path, encoding) -> str:
    try:
        codec = codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise InvalidInputError(f"unknown text encoding {encoding!r}") from None
    raw = path.read_bytes()
    if codec.name == "utf-8" and raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM):]  # cut here, so an error's byte offset counts from the file's start
        offset = len(_UTF8_BOM)
    else:
        offset = 0
    try:
        text = raw.decode(codec.name)
    except UnicodeDecodeError as exc:
        at = offset + exc.start
        hint = ("it starts with a UTF-16 byte-order mark: pass encoding='utf-16'" if raw.startswith(_UTF16_BOMS)
                else _ENCODING_HINT)
        raise DataFileError(f"{path} is not {codec.name} text: byte {raw[exc.start:exc.start + 1]!r} "
                            f"at byte offset {at} cannot be decoded; {hint}") from None
    except UnicodeError as exc:  # a decoder that names no byte (punycode, undefined)
        reason = exc.__cause__ or exc  # Python 3.11 wraps the decoder's own error in "decoding with ... failed"
        raise DataFileError(f"{path}: cannot decode it as {codec.name}: {reason}; {_ENCODING_HINT}") from None
    except LookupError:  # codecs also holds bytes-to-bytes ones (base64, zlib_codec, rot13)
        raise DataFileError(f"{path}: {encoding!r} is not a text encoding (it does not turn bytes into text); "
                            f"{_ENCODING_HINT}") from None
    if b"\n" in raw and "\n" not in text and "\r" not in text:  # utf-16 read from UTF-8 bytes: one long line
        raise DataFileError(f"{path} is not {codec.name} text: its line breaks decode as other characters, "
                            "so it would read as one row; pass encoding= with the file's encoding, for example "
                            "encoding='utf-8'")
    return text[1:] if text.startswith("\ufeff") else text


def _read_rows(path, text) -> list:
    """``[(line number, cells)]`` of the non-blank rows."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        for cells in reader:
            if cells and not (len(cells) == 1 and not cells[0].strip()):
                rows.append((reader.line_num, cells))
    except csv.Error as exc:
        raise DataFileError(f"{path}: row {reader.line_num + 1} cannot be read as CSV: {exc}") from None
    return rows


def _looks_like_header(path, line, cells) -> bool:
    numeric = [_number(c) is not None for c in cells]
    if all(numeric):
        return False
    if not any(numeric):
        return True
    # Name the cells that disagree with the rest of the row: the typo or the gap.
    mostly_numbers = sum(numeric) > len(cells) / 2
    j = next(j for j, is_number in enumerate(numeric) if is_number != mostly_numbers)
    if mostly_numbers:
        kind, others = ("is empty" if not cells[j].strip() else "is not a number"), "numbers"
    else:
        kind, others = "is a number", "not numbers"
    raise DataFileError(
        f"{path}: row {line} is neither a header nor data: its cell in column {j + 1} ({cells[j]!r}) {kind} "
        f"but most of the others are {others}; pass header=True if row {line} names the columns, "
        "header=False if it is data, or fix the cell")


def _column_index(path, target, width, names) -> int:
    if names is not None and isinstance(target, str) and target.strip() in names:
        if names.count(target.strip()) > 1:
            raise DataFileError(f"{path} has {names.count(target.strip())} columns named {target!r}")
        return names.index(target.strip())
    col = _index(target)
    if col is None:
        columns = f"; columns are {names}" if names is not None else " (the file has no header row)"
        raise DataFileError(f"{path} has no target column {target!r}{columns}")
    if not -width <= col < width:
        raise DataFileError(f"{path} has {width} columns; there is no column {target!r}")
    return col % width


def _index(target):
    """``target`` as an integer column index, or None when it is not one."""
    if isinstance(target, bool):
        return None
    if isinstance(target, (int, np.integer)):
        return int(target)
    if isinstance(target, str):
        try:
            return int(target.strip())
        except ValueError:
            return None
    return None


def _column_name(j, names) -> str:
    if names is not None and names[j]:
        return f"column {names[j]!r}"
    return f"column {j + 1} (index {j})"


#: A number as CSV writers write it, in ASCII digits.  float() reads more: "1_000" (Python's digit
#: separators) and digits of other scripts ("\u0661\u0662"), which no writer means as a number.
#: The command line reads its options' numbers, and finds its cells' numbers, by this one rule.
PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _number(cell: str):
    """The finite number written in ``cell`` (blanks around it allowed), or None."""
    text = cell.strip()
    if not PLAIN_NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _lenient(cell: str):
    """Why ``cell``, which Python's float() reads, is not a number as a CSV writes it; else None."""
    try:
        float(cell)
    except ValueError:
        return None
    if "_" in cell:
        return "it has an underscore, a digit separator that Python reads but no CSV writer writes"
    if not cell.isascii():
        return "it has non-ASCII characters (digits of another script); write the number in ASCII digits"
    return None


def _feature(path, line, cell, j, names) -> float:
    value = _number(cell)
    if value is None:
        where = f"{path}: row {line}, {_column_name(j, names)}"
        if not cell.strip():
            raise DataFileError(f"{where}: missing value (empty cell)")
        why = _lenient(cell)
        if why:
            raise DataFileError(f"{where}: cell {cell!r} is not written as a plain number: {why}")
        raise DataFileError(f"{where}: non-numeric cell {cell!r} (features must be finite numbers)")
    return value


def _labels(path, cells, j, names) -> np.ndarray:
    """(m,) float64 when every label is a number, else (m,) str."""
    for line, cell in cells:
        where = f"{path}: row {line}, {_column_name(j, names)}"
        if not cell.strip():
            raise DataFileError(f"{where}: missing label (empty cell)")
        if "\x00" in cell:  # NumPy's strings drop trailing NULs: "yes\x00" would become "yes", "\x00" empty
            raise DataFileError(f"{where}: label {cell!r} holds a NUL byte (\\x00)")
        why = _lenient(cell)
        if why:
            raise DataFileError(f"{where}: label {cell!r} is not written as a plain number: {why}")
    values = [_number(cell) for _, cell in cells]
    if all(v is not None for v in values):
        return np.array(values, dtype=np.float64)
    return np.array([cell.strip() for _, cell in cells], dtype=str)


# -- .npy and .npz ---------------------------------------------------------------------

# Whatever NumPy, zipfile or zlib raise for a damaged, truncated or unusual file (zipfile:
# RuntimeError for an encrypted member, NotImplementedError for a compression it lacks).
_DAMAGE = (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError, zlib.error, RuntimeError)

# How np.load tells an archive (one with files, or an empty one) from a .npy.
_ZIP_STARTS = (b"PK\x03\x04", b"PK\x05\x06")


def _load_npy(path, target):
    try:
        with open(path, "rb") as f:
            if f.read(4) in _ZIP_STARTS:
                raise DataFileError(f"{path} is a .npz archive, not a .npy array: rename it to .npz")
            f.seek(0)
            A = _read_array(path, f, "the array")
    except DataFileError:
        raise
    except _DAMAGE as exc:
        raise DataFileError(f"{path} cannot be read as a .npy array: {_reason(exc)}") from None
    A = _features(path, A, "the array")
    if target is None:
        return A, None
    col = _index(target)
    if col is None:
        raise DataFileError(f"{path} has no column names; give target as a column index, not {target!r}")
    if not -A.shape[1] <= col < A.shape[1]:
        raise DataFileError(f"{path} has {A.shape[1]} columns; there is no column {target!r}")
    col %= A.shape[1]
    X = np.delete(A, col, axis=1)
    if X.shape[1] == 0:
        raise DataFileError(f"{path} has no feature columns besides the label column")
    return X, A[:, col]


def _load_npz(path, target):
    label_name = "y" if target is None else str(target)
    try:
        with open(path, "rb") as f:
            if f.read(len(npy_format.MAGIC_PREFIX)) == npy_format.MAGIC_PREFIX:
                raise DataFileError(f"{path} is a .npy array, not a .npz archive: rename it to .npy")
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                # np.savez names a member "X.npy" and np.load calls it "X"; read both spellings, as np.load does.
                members = {(name[:-4] if name.endswith(".npy") else name): name for name in archive.namelist()}
                if "X" not in members:
                    raise DataFileError(f"{path} has no array named 'X' (it has {list(members)})")
                if target is not None and label_name not in members:
                    raise DataFileError(f"{path} has no label array named {label_name!r} (it has {list(members)})")
                with archive.open(members["X"]) as member:
                    X = _read_array(path, member, "array 'X'")
                y = None
                if label_name in members:
                    with archive.open(members[label_name]) as member:
                        y = _read_array(path, member, f"array {label_name!r}")
    except DataFileError:
        raise
    except _DAMAGE as exc:
        raise DataFileError(f"{path} cannot be read as a .npz archive: {_reason(exc)}") from None
    X = _features(path, X, "array 'X'")
    if y is not None:
        y = _label_array(path, y, label_name, X.shape[0])
    return X, y


def _read_array(path, f, what) -> np.ndarray:
    """The array in the .npy stream ``f``, read only once its header shows that it fits in memory."""
    start = f.read(len(npy_format.MAGIC_PREFIX))
    if not start:
        raise EOFError("empty")
    if start != npy_format.MAGIC_PREFIX:
        raise DataFileError(f"{path}: {what} has no NumPy header (it is not a .npy array)")
    f.seek(0)
    version = npy_format.read_magic(f)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise DataFileError(f"{path}: {what} is in NumPy file format {version[0]}.{version[1]}, which this "
                            f"NumPy ({np.__version__}) cannot read")
    # Format 3.0 is 2.0 with a UTF-8 header (for field names): shape and dtype read the same.
    read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
    shape, _, dtype = read_header(f)
    if dtype.hasobject:
        raise DataFileError(f"{path}: {what} holds Python objects, which would need pickle to read "
                            "(refused: pickle can run code)")
    if any(n < 0 for n in shape):
        raise DataFileError(f"{path}: {what} declares the impossible shape {shape}")
    _check_fits(path, what, shape, dtype)
    f.seek(0)
    return npy_format.read_array(f, allow_pickle=False)


def _check_fits(path, what, shape, dtype) -> None:
    """Refuse an array whose reading would need more than the memory available now."""
    free = available_memory()
    if free is None:
        return
    stored = math.prod(shape) * dtype.itemsize
    # Numbers are then converted to native float64: a second copy, unless they are that already.
    as_float64 = math.prod(shape) * 8 if dtype.kind in "biuf" and dtype != np.float64 else 0
    if stored + as_float64 > free:
        words = bytes_in_words
        parts = f" ({words(stored)} as stored and {words(as_float64)} as float64)" if as_float64 else ""
        raise DataFileError(f"{path}: {what} of shape {shape} and dtype {dtype} needs {words(stored + as_float64)}"
                            f"{parts}, but {words(free)} of memory is available (refused from its header, before "
                            "reading it)")


def _reason(exc) -> str:
    text = str(exc)
    if isinstance(exc, EOFError) or text.startswith("EOF"):
        return "it is empty or truncated"
    return f"{type(exc).__name__}: {text}"


def _features(path, A, what) -> np.ndarray:
    """``A`` as a finite float64 (m, n) array, or an error saying why not."""
    _check_kind(path, A, what)
    if A.ndim != 2 or A.shape[0] == 0 or A.shape[1] == 0:
        raise DataFileError(f"{path}: {what} must be a non-empty 2-D table (samples as rows), got shape {A.shape}")
    A = A.astype(np.float64, copy=False)  # also native byte order; no second copy of a float64 table
    finite = np.isfinite(A)
    if not finite.all():
        i, j = np.argwhere(~finite)[0]
        raise DataFileError(f"{path}: {what}[{i}, {j}] is {A[i, j]}; features must be finite numbers")
    return A


def _check_kind(path, A, what) -> None:
    kind = A.dtype.kind
    reasons = {"c": "complex numbers (the network works on real numbers; pass the real part if that is meant)",
               "U": "strings", "S": "bytes", "O": "Python objects", "V": "structured records",
               "M": "dates", "m": "time spans"}
    if kind in reasons:
        raise DataFileError(f"{path}: {what} holds {reasons[kind]} (dtype {A.dtype}); it must hold real numbers")


def _label_array(path, y, what, m) -> np.ndarray:
    if y.dtype.kind in "US":
        y = y.astype(str)
    else:
        _check_kind(path, y, f"array {what!r}")
        y = y.astype(np.float64, copy=False)
    if y.ndim not in (1, 2) or y.shape[0] != m:
        raise DataFileError(f"{path}: array {what!r} has shape {y.shape}; it needs one label (row) for each "
                            f"of the {m} samples in 'X'")
    return y
