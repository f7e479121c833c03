"""Data files read as written: no row dropped, every problem named by file, row and column."""

from __future__ import annotations

import encodings.aliases
import io
import os
import random
import re
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from numpy.lib import format as npy_format

from backprop_core import data_io
from backprop_core.cli import main
from backprop_core.data_io import available_memory, load_table
from backprop_core.errors import DataFileError, InvalidInputError


def csv_file(tmp_path, text, name="d.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def refused(path, fragment, **kw):
    with pytest.raises(DataFileError, match=fragment) as info:
        load_table(path, **kw)
    assert str(path) in str(info.value)
    return str(info.value)


# -- the header is decided, never guessed from a row that could be either --------------------

@pytest.mark.parametrize("text, target, X, y", [
    ("a,b,label\n1,2,0\n3,4,1\n5,6,0\n", "label", [[1, 2], [3, 4], [5, 6]], [0, 1, 0]),
    ("\ufeffa,b,label\n1,2,0\n3,4,1\n5,6,0\n", "a", [[2, 0], [4, 1], [6, 0]], [1, 3, 5]),
    ("\ufeff1,2,0\n3,4,1\n5,6,0\n", -1, [[1, 2], [3, 4], [5, 6]], [0, 1, 0]),
    ("1,2,0\n3,4,1\n5,6,0\n", "2", [[1, 2], [3, 4], [5, 6]], [0, 1, 0]),
    ("1,2,0\n3,4,1\n5,6,0\n", None, [[1, 2, 0], [3, 4, 1], [5, 6, 0]], None),
    ("\n a , b ,label\n\n1, 2 ,0\r\n3,4,1\n\n5,6,0", " label", [[1, 2], [3, 4], [5, 6]], [0, 1, 0]),
    ('"x, first","y",label\n1,2,0\n3,4,1\n5,6,0\n', 0, [[2, 0], [4, 1], [6, 0]], [1, 3, 5]),
])
def test_every_data_row_is_read(tmp_path, text, target, X, y):
    X_read, y_read = load_table(csv_file(tmp_path, text), target)
    assert X_read.dtype == np.float64
    np.testing.assert_array_equal(X_read, X)
    if y is None:
        assert y_read is None
    else:
        np.testing.assert_array_equal(y_read, y)


@pytest.mark.parametrize("first_row, cell", [
    ("1,,0", "column 2 ('') is empty"),
    ("1,2x,0", "column 2 ('2x') is not a number"),
    ("1,2,O", "column 3 ('O') is not a number"),
    ("a,b,3", "column 3 ('3') is a number"),
    ("nan,2,0", "column 1 ('nan') is not a number"),
])
def test_an_ambiguous_first_row_is_an_error_naming_the_cell(tmp_path, first_row, cell):
    message = refused(csv_file(tmp_path, f"{first_row}\n3,4,1\n5,6,0\n"), "row 1 is neither a header nor data", target=-1)
    assert cell in message and "header=True" in message and "header=False" in message


def test_header_true_takes_the_first_row_as_names_even_if_numeric(tmp_path):
    X, y = load_table(csv_file(tmp_path, "1,2,3\n4,5,6\n"), "3", header=True)
    np.testing.assert_array_equal(X, [[4, 5]])
    np.testing.assert_array_equal(y, [6])


def test_header_false_reads_the_first_row_as_data_and_names_its_bad_cell(tmp_path):
    X, y = load_table(csv_file(tmp_path, "1,2,yes\n3,4,no\n"), -1, header=False)
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
    assert y.tolist() == ["yes", "no"]
    refused(csv_file(tmp_path, "1,2x,0\n3,4,1\n"), r"row 1, column 2 \(index 1\): non-numeric cell '2x'",
            target=-1, header=False)


@pytest.mark.parametrize("header", [1, 0, "yes", None, "AUTO"])
def test_header_must_be_true_false_or_auto(tmp_path, header):
    with pytest.raises(InvalidInputError, match="header must be True, False or 'auto'"):
        load_table(csv_file(tmp_path, "a\n1\n"), header=header)


# -- every bad cell named by row (as the file counts lines) and column ------------------------

@pytest.mark.parametrize("text, target, fragment", [
    ("a,b,label\n1,2,0\n3,x,1\n", "label", r"row 3, column 'b': non-numeric cell 'x'"),
    ("a,b,label\n\n1,2,0\n\n3,,1\n", "label", r"row 5, column 'b': missing value \(empty cell\)"),
    ("a,b,label\n1,2,0\n3,inf,1\n", "label", r"row 3, column 'b': non-numeric cell 'inf'"),
    ("a,b,label\n1,2,0\n3,4,\n", "label", r"row 3, column 'label': missing label"),
    ("1,2,0\n3,4,1\n5,six,0\n", -1, r"row 3, column 2 \(index 1\): non-numeric cell 'six'"),
    ("a,b,label\n1,2,0\n3,4\n", "label", r"row 3 has 2 cells but row 1 has 3 \(ragged rows\)"),
    ("a,b,label\n1,2,0\n3,4,1,9\n", "label", r"row 3 has 4 cells but row 1 has 3 \(ragged rows\)"),
    ("a,b,label\n1,2,0\n", "klass", r"no target column 'klass'; columns are \['a', 'b', 'label'\]"),
    ("1,2,0\n", "label", r"no target column 'label' \(the file has no header row\)"),
    ("a,b,label\n1,2,0\n", 3, "has 3 columns; there is no column 3"),
    ("a,b,a\n1,2,0\n", "a", "2 columns named 'a'"),
    ("label\n1\n", "label", "no feature columns"),
    ("", None, "empty"),
    ("\n\n  \n", None, "empty"),
    ("a,b,label\n", "label", "header row but no data rows"),
])
def test_bad_cells_rows_and_columns_are_named(tmp_path, text, target, fragment):
    refused(csv_file(tmp_path, text), fragment, target=target)


@pytest.mark.parametrize("cell, why", [
    ("1_000", "underscore"),          # float() reads 1000: Python's digit separators, no CSV writer's
    ("\u0661\u0662", "non-ASCII"),    # Arabic-Indic digits: float() reads 12
    ("\uff11", "non-ASCII"),           # a full-width 1
])
def test_a_number_only_python_would_read_is_refused_by_row_and_column(tmp_path, cell, why):
    message = refused(csv_file(tmp_path, f"a,b,label\n1,2,0\n3,{cell},1\n"), r"row 3, column 'b'", target="label")
    assert repr(cell) in message and why in message
    message = refused(csv_file(tmp_path, f"a,b,label\n1,2,0\n3,4,{cell}\n"), r"row 3, column 'label'", target="label")
    assert repr(cell) in message and why in message


def test_numbers_as_csv_writers_write_them_are_read(tmp_path):
    X, y = load_table(csv_file(tmp_path, "a,b,label\n+1.5,-.5,0\n1.,1E+3,1\n 7 ,2.5e-3,1\n"), "label")
    np.testing.assert_array_equal(X, [[1.5, -0.5], [1.0, 1000.0], [7.0, 0.0025]])
    np.testing.assert_array_equal(y, [0, 1, 1])


@pytest.mark.parametrize("label", ["\x00", "yes\x00", "y\x00es"])
def test_a_nul_byte_in_a_label_is_named_by_row_and_column(tmp_path, label):
    # NumPy's strings drop trailing NULs: "yes\x00" would become "yes", "\x00" an empty label.
    path = csv_file(tmp_path, f"a,b,label\n1,2,yes\n3,4,{label}\n5,6,no\n")
    refused(path, r"row 3, column 'label': .*NUL", target="label")


def test_labels_are_returned_as_written(tmp_path):
    X, y = load_table(csv_file(tmp_path, "a,b,label\n1,2,yes\n3,4,no\n5,6, yes \n"), "label")
    assert y.dtype.kind == "U" and y.tolist() == ["yes", "no", "yes"]
    X, y = load_table(csv_file(tmp_path, "a,b,label\n1,2,0\n3,4,2\n5,6,-1.5\n"), "label")
    assert y.dtype == np.float64 and y.tolist() == [0, 2, -1.5]  # not checked for 0/1 here


# -- encodings ---------------------------------------------------------------------------------

def test_a_utf16_file_is_named_with_the_offset_and_reads_with_encoding(tmp_path):
    path = csv_file(tmp_path, "a,b,label\n1,2,0\n3,4,1\n", encoding="utf-16")
    message = refused(path, "not utf-8 text: .* at byte offset 0")
    assert "encoding='utf-16'" in message
    X, y = load_table(path, "label", encoding="utf-16")
    np.testing.assert_array_equal(X, [[1, 2], [3, 4]])


def test_a_latin1_file_is_named_with_the_offset_and_reads_with_encoding(tmp_path):
    path = csv_file(tmp_path, "caf\u00e9,b,label\n1,2,0\n3,4,1\n", encoding="latin-1")
    message = refused(path, r"not utf-8 text: byte b'\\xe9' at byte offset 3")
    assert "encoding=" in message
    X, y = load_table(path, "label", encoding="latin-1")
    np.testing.assert_array_equal(y, [0, 1])


def test_the_offset_counts_the_byte_order_mark(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbfab\xff,c\n1,2\n")
    refused(path, "at byte offset 5")


def test_an_unknown_encoding_is_named(tmp_path):
    with pytest.raises(InvalidInputError, match="unknown text encoding 'klingon'"):
        load_table(csv_file(tmp_path, "a\n1\n"), encoding="klingon")


@pytest.mark.parametrize("encoding", ["base64", "rot13", "zlib_codec", "hex", "uu_codec", "bz2_codec"])
def test_a_codec_that_is_not_a_text_encoding_is_named_with_the_file(tmp_path, encoding):
    refused(csv_file(tmp_path, "a,b,label\n1,2,0\n"), f"{encoding!r} is not a text encoding", encoding=encoding)


@pytest.mark.parametrize("encoding", ["punycode", "undefined"])
def test_a_text_encoding_that_cannot_decode_the_file_is_named_with_the_file(tmp_path, encoding):
    refused(csv_file(tmp_path, "a,b,label\n1,2,0\n"), f"cannot decode it as {encoding}", encoding=encoding)


ALL_CODECS = sorted(set(encodings.aliases.aliases.values()) | {"punycode", "undefined", "idna", "unicode_escape"})


@pytest.mark.parametrize("encoding", ALL_CODECS)
def test_every_codec_reads_the_file_or_says_why_not(tmp_path, encoding):
    path = tmp_path / "d.csv"
    path.write_bytes(b"a,b,label\n1,2,0\n3,4,\xff\xfe\x00\x80\\x\n")
    try:
        load_table(path, "label", encoding=encoding)
    except DataFileError as exc:
        assert str(path) in str(exc)
    except InvalidInputError as exc:  # a codec this Python does not have (mbcs off Windows)
        assert "unknown text encoding" in str(exc)


@pytest.mark.parametrize("encoding, fragment", [("base64", "'base64' is not a text encoding"),
                                                ("punycode", "cannot decode it as punycode")])
def test_the_command_line_says_a_wrong_codec_in_one_line(tmp_path, capsys, encoding, fragment):
    path = csv_file(tmp_path, "a,b,label\n1,2,0\n3,4,1\n")
    assert main(["train", "--data", str(path), "--target", "label", "--encoding", encoding]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and fragment in err and str(path) in err, err


# -- .npy and .npz ----------------------------------------------------------------------------

def npy_file(tmp_path, array, name="d.npy"):
    np.save(tmp_path / name, array, allow_pickle=False)
    return tmp_path / name


@pytest.mark.parametrize("dtype", [">f8", ">f4", "<f2", ">i4", "|u1", "|b1"])
def test_real_arrays_of_any_byte_order_are_read_as_native_float64(tmp_path, dtype):
    A = np.arange(12).reshape(4, 3) % 2
    X, y = load_table(npy_file(tmp_path, A.astype(dtype)))
    assert X.dtype == np.dtype("=f8") and y is None
    np.testing.assert_array_equal(X, A)
    np.savez(tmp_path / "d.npz", X=A.astype(dtype), y=np.arange(4).astype(dtype))
    X, y = load_table(tmp_path / "d.npz")
    assert X.dtype == np.dtype("=f8") and y.dtype.isnative
    np.testing.assert_array_equal(y, np.arange(4).astype(dtype))


def test_an_npy_target_column_is_split_off(tmp_path):
    A = np.array([[1.0, 2, 0], [3, 4, 1]])
    X, y = load_table(npy_file(tmp_path, A), -1)
    np.testing.assert_array_equal(X, A[:, :2])
    np.testing.assert_array_equal(y, [0, 1])
    refused(npy_file(tmp_path, A), "give target as a column index", target="label")


@pytest.mark.parametrize("X, fragment", [
    (np.ones((2, 2)) * (1 + 1j), "complex numbers"),
    (np.array([["a", "b"]]), "strings"),
    (np.array([[b"a", b"b"]]), "bytes"),
    (np.zeros((2, 2), dtype=[("a", "f8"), ("b", "f8")]), "structured records"),
    (np.array([[np.datetime64("2024-01-01")]]), "dates"),
    (np.ones(3), r"non-empty 2-D table .* shape \(3,\)"),
    (np.ones((0, 3)), "non-empty 2-D table"),
    (np.array([[1.0, 2.0], [3.0, np.nan]]), r"\[1, 1\] is nan"),
])
def test_arrays_that_are_not_real_tables_are_refused_with_the_reason(tmp_path, X, fragment):
    refused(npy_file(tmp_path, X), fragment)
    np.savez(tmp_path / "d.npz", X=X)
    refused(tmp_path / "d.npz", fragment)


def test_complex_labels_are_refused_not_truncated(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((2, 2)), y=np.array([1 + 2j, 0j]))
    refused(tmp_path / "d.npz", "complex numbers")


def test_labels_must_match_the_samples(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.ones((3, 2)), y=np.ones(2))
    refused(tmp_path / "d.npz", r"shape \(2,\); it needs one label")


def test_npz_names_its_arrays(tmp_path):
    np.savez(tmp_path / "d.npz", features=np.ones((3, 2)))
    refused(tmp_path / "d.npz", "no array named 'X'")
    np.savez(tmp_path / "e.npz", X=np.ones((3, 2)), labels=np.array(["a", "b", "a"]))
    X, y = load_table(tmp_path / "e.npz", "labels")
    assert y.tolist() == ["a", "b", "a"]
    refused(tmp_path / "e.npz", "no label array named 'klass'", target="klass")


def test_pickled_arrays_are_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pickle-ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    np.save(tmp_path / "d.npy", np.array([[Payload()]], dtype=object), allow_pickle=True)
    refused(tmp_path / "d.npy", "would need pickle")
    np.savez(tmp_path / "d.npz", X=np.array([[Payload()]], dtype=object))
    refused(tmp_path / "d.npz", "would need pickle")
    assert not marker.exists()


@pytest.mark.parametrize("name, content, fragment", [
    ("d.npy", b"", "empty or truncated"),
    ("d.npy", b"1,2,3\n", "no NumPy header"),
    ("d.npz", b"PK\x03\x04garbage", "cannot be read as a .npz"),
])
def test_damaged_array_files_are_named(tmp_path, name, content, fragment):
    (tmp_path / name).write_bytes(content)
    refused(tmp_path / name, fragment)


def test_a_truncated_npz_is_named(tmp_path):
    np.savez(tmp_path / "whole.npz", X=np.ones((50, 3)), y=np.ones(50))
    whole = (tmp_path / "whole.npz").read_bytes()
    for length in range(0, len(whole), 7):
        (tmp_path / "d.npz").write_bytes(whole[:length])
        refused(tmp_path / "d.npz", "d.npz")


def test_every_corruption_of_a_compressed_npz_is_named(tmp_path):
    np.savez_compressed(tmp_path / "whole.npz", X=np.random.default_rng(0).random((50, 3)), y=np.ones(50))
    whole = (tmp_path / "whole.npz").read_bytes()
    rng = random.Random(0)
    for _ in range(300):
        damaged = bytearray(whole)
        for _ in range(3):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        (tmp_path / "d.npz").write_bytes(bytes(damaged))
        try:
            load_table(tmp_path / "d.npz")
        except DataFileError as exc:  # a flipped byte in the data itself may still read: that is fine
            assert "d.npz" in str(exc)


def test_an_array_file_with_the_other_suffix_is_named(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((3, 2)))
    (tmp_path / "a.npz").write_bytes((tmp_path / "a.npy").read_bytes())
    refused(tmp_path / "a.npz", "is a .npy array, not a .npz archive: rename it to .npy")
    np.savez(tmp_path / "b.npz", X=np.ones((3, 2)))
    (tmp_path / "b.npy").write_bytes((tmp_path / "b.npz").read_bytes())
    refused(tmp_path / "b.npy", "is a .npz archive, not a .npy array: rename it to .npz")


def test_an_npz_member_that_is_not_an_array_is_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as archive:
        archive.writestr("X", b"1,2,3\n")
    refused(tmp_path / "d.npz", "array 'X' .*no NumPy header")


# -- an array is measured by its header before it is read -------------------------------------

# 2.4 EB of float64: more than any machine's memory, and more than a 57-bit address space maps,
# so that where nothing is refused in advance the allocation itself fails.
HUGE = (10**17, 3)


def header_only(shape, descr="<f8"):
    """The bytes of a .npy header declaring ``shape``, without the data."""
    stream = io.BytesIO()
    npy_format.write_array_header_1_0(stream, {"shape": shape, "fortran_order": False, "descr": descr})
    return stream.getvalue()


def npy_bytes(array):
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def npz_of_members(path, **members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(f"{name}.npy", content)
    return path


def needs_a_memory_figure():
    if available_memory() is None:
        pytest.skip("this system does not say how much memory is free, so no array is refused for its size")


def test_an_npy_larger_than_memory_is_refused_from_its_header(tmp_path):
    needs_a_memory_figure()
    (tmp_path / "d.npy").write_bytes(header_only(HUGE))
    refused(tmp_path / "d.npy", r"the array of shape \(100000000000000000, 3\) and dtype float64 needs 2\.4 EB, "
                                r"but .* of memory is available \(refused from its header")


@pytest.mark.parametrize("name, shape", [("X", HUGE), ("y", HUGE[:1])])
def test_an_npz_array_larger_than_memory_is_refused_from_its_header(tmp_path, name, shape):
    needs_a_memory_figure()
    members = {"X": npy_bytes(np.ones((3, 2))), "y": npy_bytes(np.ones(3)), name: header_only(shape)}
    refused(npz_of_members(tmp_path / "d.npz", **members),
            rf"array '{name}' of shape {re.escape(str(shape))} and dtype float64 needs .* of memory is available")


def test_a_compressed_npz_is_measured_before_it_is_decompressed(tmp_path):
    needs_a_memory_figure()
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("X.npy", "w", force_zip64=True) as member:
            member.write(header_only(HUGE, "|u1"))
            member.write(bytes(2**20))  # compresses to a kilobyte: the zip's size says nothing of the array's
    (tmp_path / "d.npz").write_bytes(stream.getvalue())
    # 3e17 bytes as stored, and 8 bytes a number once converted to float64 for the network.
    refused(tmp_path / "d.npz", r"array 'X' of shape \(100000000000000000, 3\) and dtype uint8 needs 2\.7 EB "
                                r"\(300\.0 PB as stored and 2\.4 EB as float64\)")


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_an_array_is_read_up_to_the_memory_available_and_refused_beyond(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(data_io, "available_memory", lambda: 8000)  # a machine with 8 kB free
    fits, too_big = np.ones((100, 10)), np.ones((100, 10), dtype=np.float32)  # 8 kB; 4 kB + 8 kB as float64
    for name, A in (("fits", fits), ("too_big", too_big)):
        if suffix == ".npy":
            np.save(tmp_path / f"{name}.npy", A)
        else:
            np.savez(tmp_path / f"{name}.npz", X=A)
    X, _ = load_table(tmp_path / f"fits{suffix}")
    np.testing.assert_array_equal(X, fits)
    refused(tmp_path / f"too_big{suffix}", r"of shape \(100, 10\) and dtype float32 needs 12\.0 kB \(4\.0 kB as stored "
                                           r"and 8\.0 kB as float64\), but 8\.0 kB of memory is available")


def test_running_out_of_memory_while_reading_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(data_io, "available_memory", lambda: None)  # nothing is refused in advance
    (tmp_path / "d.npy").write_bytes(header_only(HUGE))
    refused(tmp_path / "d.npy", "not enough memory to read it")
    npz_of_members(tmp_path / "d.npz", X=header_only(HUGE))
    refused(tmp_path / "d.npz", "not enough memory to read it")


def test_an_object_array_is_refused_from_its_header(tmp_path):
    (tmp_path / "d.npy").write_bytes(header_only((2, 2), "|O"))  # no pickle follows: never read
    refused(tmp_path / "d.npy", "would need pickle")


def test_the_command_line_says_an_array_too_large_in_one_line(tmp_path, capsys):
    needs_a_memory_figure()
    npz_of_members(tmp_path / "d.npz", X=header_only(HUGE), y=header_only(HUGE[:1]))
    assert main(["train", "--data", str(tmp_path / "d.npz")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "of memory is available" in err and "d.npz" in err, err


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="no data file at .*nope.csv"):
        load_table(tmp_path / "nope.csv")
    refused(tmp_path, "is a folder")


# -- properties: generated CSV text is read exactly, or refused with our own error -------------

HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]

numbers = st.floats(allow_nan=False, allow_infinity=False).map(repr) | st.integers().map(str)
oddities = (st.floats().map(repr)
            | st.sampled_from(["", " ", "yes", "no", "a", "1e", "--1", "0x1", "1_0", "\ufeff", "\u00e9", " 1 "])
            | st.text(alphabet=",\"'\r\n ;\t\x00\ufeff1.eE-+", max_size=6))
cells = st.one_of(numbers, numbers, numbers, oddities)  # mostly numbers, so that some texts read


@settings(max_examples=150, deadline=None, suppress_health_check=HEALTH)
@given(data=st.data(), width=st.integers(1, 4), header=st.sampled_from([True, False, "auto"]), bom=st.booleans())
def test_any_csv_text_is_read_or_refused_with_our_error(tmp_path, data, width, header, bom):
    target = data.draw(st.none() | st.integers(-width, width - 1) | st.sampled_from([5, "label", "a", "x"]))
    # Rows of one width, so that most texts get past the ragged-row check to the cells.
    rows = data.draw(st.lists(st.lists(cells, min_size=width, max_size=width), min_size=2, max_size=6))
    if data.draw(st.integers(0, 3)) == 0:
        rows.insert(data.draw(st.integers(0, len(rows))), data.draw(st.lists(cells, max_size=5)))
    text = ("\ufeff" if bom else "") + "\n".join(",".join(r) for r in rows)
    path = csv_file(tmp_path, text)
    try:
        X, y = load_table(path, target, header=header)
    except DataFileError as exc:
        event(f"refused: {str(exc).replace(str(path), '')[:30]}")  # --hypothesis-show-statistics shows the mix
        return
    event("read")
    assert X.dtype == np.float64 and X.ndim == 2 and X.shape[0] >= 1 and X.shape[1] >= 1
    assert np.isfinite(X).all()
    assert y is None or y.shape == (X.shape[0],)


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=HEALTH)
@given(data=st.data(), m=st.integers(1, 8), n=st.integers(1, 4), with_header=st.booleans(),
       blank_lines=st.booleans(), string_labels=st.booleans())
def test_a_generated_table_comes_back_exactly(tmp_path, data, m, n, with_header, blank_lines, string_labels):
    X = np.array(data.draw(st.lists(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64),
                                             min_size=n, max_size=n), min_size=m, max_size=m)))
    labels = data.draw(st.lists(names if string_labels else st.integers(0, 1), min_size=m, max_size=m))
    header = data.draw(st.lists(names, min_size=n + 1, max_size=n + 1, unique=True)) if with_header else None
    lines = [",".join(header)] if header else []
    for row, label in zip(X, labels):
        lines.append(",".join([*(repr(float(v)) for v in row), str(label)]))
        if blank_lines:
            lines.append("")
    target = header[-1] if header else -1
    path = csv_file(tmp_path, "\n".join(lines) + "\n")
    # A headerless file whose labels are words has a first row that is both: the caller says which.
    read_header = "auto" if header or not string_labels else False
    X_read, y_read = load_table(path, target, header=read_header)
    np.testing.assert_array_equal(X_read, X.reshape(m, n))
    assert y_read.tolist() == ([str(v) for v in labels] if string_labels else [float(v) for v in labels])


def test_a_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "d.csv")
    refused(tmp_path / "d.csv", "not a regular file")
