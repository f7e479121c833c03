"""Columns matched by name, and strings from files that reach a terminal or a spreadsheet.

A model records the names of the columns it was trained on where they exist (a
data frame's, a CSV header's); prediction puts named columns in the trained
order, refuses missing and unknown ones by name, and takes unnamed ones by
position, saying so.  Class and column names read from files are printed
escaped, and CSV cells a spreadsheet would run are neutralised.  Expected
answers come from the data in the trained order, never from the command under test.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import warnings
import zipfile

import numpy as np
import pytest

import backprop_core as bc
from backprop_core.errors import InvalidInputError, ModelFileError

from conftest import COMMAND, lecture

try:
    import pandas as pd
except ImportError:  # the data-frame tests say so where they skip
    pd = None

needs_pandas = pytest.mark.skipif(pd is None, reason="pandas is not installed: no data frame to name columns")


def skewed(m=200, seed=0):
    """Features a, b, c (m, 3) and 0/1 labels that weigh them unequally, so that columns taken in
    the wrong order give other answers."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 3))
    return X, (X[:, 0] - 2 * X[:, 1] + 0.5 * X[:, 2] > 0).astype(int)


@pytest.fixture(scope="module")
def framed():
    X, y = skewed()
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    return lecture(max_iter=300, random_state=0).fit(frame, y), frame, y


# -- the estimator: data frames ----------------------------------------------------------------

@needs_pandas
def test_a_frame_with_its_columns_in_another_order_gives_the_answers_of_the_trained_order(framed):
    model, frame, y = framed
    shuffled = frame[["c", "a", "b"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matched, not merely tolerated with a warning
        assert np.array_equal(model.predict_proba(shuffled), model.predict_proba(frame))
        assert np.array_equal(model.predict(shuffled), model.predict(frame))
        assert model.score(shuffled, y) == model.score(frame, y)
    # Taken by position, the same values would give other answers: the order matters here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert not np.allclose(model.predict_proba(shuffled.to_numpy()), model.predict_proba(frame))


@needs_pandas
@pytest.mark.parametrize("change, fragments", [
    (lambda f: f[["a", "c"]], ["missing 'b'"]),
    (lambda f: f.assign(d=1.0), ["not in the model 'd'"]),
    (lambda f: f.rename(columns={"a": "z"}), ["missing 'a'", "not in the model 'z'"]),
])
def test_a_frame_missing_a_column_or_with_an_unknown_one_is_refused_naming_it(framed, change, fragments):
    model, frame, y = framed
    for method in (model.predict, model.predict_proba, lambda X: model.score(X, y)):
        with pytest.raises(InvalidInputError) as info:
            method(change(frame))
        assert isinstance(info.value, ValueError)  # what scikit-learn raises for names that do not match
        for fragment in fragments:
            assert fragment in str(info.value), str(info.value)


@needs_pandas
def test_a_frame_naming_a_column_twice_is_refused(framed):
    model, frame, _ = framed
    twice = pd.DataFrame(frame.to_numpy(), columns=["a", "b", "b"])
    # scikit-learn reads names through narwhals, which refuses them itself; without it, column_order does.
    with pytest.raises(ValueError, match="'b'.* (more than once|2 times)"):
        model.predict(twice)


@needs_pandas
def test_an_array_is_taken_by_position_with_scikit_learns_warning(framed):
    model, frame, _ = framed
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        P = model.predict_proba(frame.to_numpy())
    assert np.array_equal(P, model.predict_proba(frame))


@needs_pandas
def test_a_saved_model_matches_columns_by_name_when_loaded(framed, tmp_path):
    model, frame, _ = framed
    model.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as z:  # the file itself, read without the loader
        meta = json.loads(str(np.lib.format.read_array(z.open("__meta__.npy"))[()]))
    assert meta["feature_names_in"] == ["a", "b", "c"]
    loaded = bc.BackpropClassifier.load(tmp_path / "m.npz")
    assert np.array_equal(loaded.predict_proba(frame[["b", "c", "a"]]), model.predict_proba(frame))
    with pytest.raises(InvalidInputError, match="missing 'c'"):
        loaded.predict(frame[["a", "b"]])


def test_a_model_file_written_without_column_names_loads_and_takes_columns_by_position(tmp_path):
    X, y = skewed()
    model = lecture(max_iter=100, random_state=0).fit(X, y)
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("__meta__")[()]))
    del meta["feature_names_in"]  # as files written before names were recorded
    np.savez(tmp_path / "old.npz", **arrays, __meta__=np.array(json.dumps(meta)))
    old = bc.BackpropClassifier.load(tmp_path / "old.npz")
    assert not hasattr(old, "feature_names_in_")
    assert np.array_equal(old.predict_proba(X), model.predict_proba(X))


def test_a_model_file_naming_a_column_twice_is_refused(tmp_path):
    X, y = skewed()
    lecture(max_iter=20, random_state=0).fit(X, y).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("__meta__")[()])) | {"feature_names_in": ["a", "b", "a"]}
    np.savez(tmp_path / "twice.npz", **arrays, __meta__=np.array(json.dumps(meta)))
    with pytest.raises(ModelFileError, match="feature_names_in names .*a.* more than once"):
        bc.BackpropClassifier.load(tmp_path / "twice.npz")


# -- the command line ---------------------------------------------------------------------------

def run(*args, cwd):
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})


def write_csv(path, header, X, y=None, order=(0, 1, 2), label_at=None):
    """X's columns in ``order`` under ``header``, the labels inserted at ``label_at`` (None: no label column)."""
    rows = []
    for i in range(X.shape[0]):
        cells = [f"{X[i, j]:.6f}" for j in order]
        if label_at is not None:
            cells.insert(label_at, str(y[i]))
        rows.append(",".join(cells))
    path.write_text("\n".join(([",".join(header)] if header else []) + rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model trained by the command line on a CSV headed a,b,c,label, and what Python predicts."""
    folder = tmp_path_factory.mktemp("columns")
    X, y = skewed()
    write_csv(folder / "train.csv", ["a", "b", "c", "label"], X, y, label_at=3)
    out = run("train", "--data", "train.csv", "--target", "label", "--iterations", "300", "--save", "m.npz",
              "--quiet", cwd=folder)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # named columns: nothing to warn about
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # an array given to a model with names
        P = bc.BackpropClassifier.load(folder / "m.npz").predict_proba(X)[:, 1]
    return folder, X, y, P


def probabilities(out):
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "prediction,probability"
    return np.array([float(line.split(",")[1]) for line in lines[1:]])


def test_train_records_the_csv_headers_names(trained):
    folder, *_ = trained
    with zipfile.ZipFile(folder / "m.npz") as z:
        meta = json.loads(str(np.lib.format.read_array(z.open("__meta__.npy"))[()]))
    assert meta["feature_names_in"] == ["a", "b", "c"]


@pytest.mark.parametrize("header, order, label_at", [
    (["a", "b", "c", "label"], (0, 1, 2), 3),
    (["c", "label", "a", "b"], (2, 0, 1), 1),  # reordered, the label column among them and left out by name
])
def test_predict_matches_columns_by_name(trained, tmp_path, header, order, label_at):
    folder, X, y, P = trained
    data = write_csv(tmp_path / "new.csv", header, X, y, order=order, label_at=label_at)
    out = run("predict", folder / "m.npz", "--data", data, "--target", "label", "--proba", cwd=tmp_path)
    np.testing.assert_allclose(probabilities(out), P, rtol=1e-4, atol=1e-5)  # the CSV rounds X to 6 places
    accuracy = 100 * np.mean((P > 0.5) == y)
    assert out.stderr.strip() == f"accuracy on {data}: {accuracy:.1f}%"


@pytest.mark.parametrize("header, target, fragments", [
    (["a", "x", "label"], "label", ["missing 'b', 'c'", "not in the model 'x'"]),
    (["a", "b", "c", "d", "label"], "label", ["not in the model 'd'"]),
    (["a", "b", "c", "label"], None, ["not in the model 'label'", "name it with --target"]),
])
def test_predict_refuses_missing_and_unknown_columns_naming_them(trained, tmp_path, header, target, fragments):
    folder, X, y, _ = trained
    width = len(header) - 1
    data = tmp_path / "new.csv"
    rows = [",".join(["0.5"] * width + ["1"]) for _ in range(3)]
    data.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")
    out = run("predict", folder / "m.npz", "--data", data, *(["--target", target] if target else []), cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stdout == "", out.stderr
    for fragment in fragments:
        assert fragment in out.stderr, out.stderr


def test_a_file_without_names_is_taken_by_position_saying_so_once(trained, tmp_path):
    folder, X, y, P = trained
    data = write_csv(tmp_path / "new.csv", None, X, y, label_at=3)
    out = run("predict", folder / "m.npz", "--data", data, "--target", "3", "--header", "no", "--proba",
              cwd=tmp_path)
    np.testing.assert_allclose(probabilities(out), P, rtol=1e-4, atol=1e-5)
    warned = [line for line in out.stderr.splitlines() if "warning" in line]
    assert len(warned) == 1 and "taken by position as the model's 'a', 'b', 'c'" in warned[0], out.stderr


def test_a_header_without_distinct_names_records_none_and_says_so(tmp_path):
    X, y = skewed(m=40)
    write_csv(tmp_path / "train.csv", ["a", "a", "c", "label"], X, y, label_at=3)
    out = run("train", "--data", "train.csv", "--target", "label", "--iterations", "20", "--save", "m.npz",
              "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("warning") == 1 and "records no column names" in out.stderr, out.stderr
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        meta = json.loads(str(np.lib.format.read_array(z.open("__meta__.npy"))[()]))
    assert meta["feature_names_in"] is None


# -- strings from files: a terminal, a spreadsheet ---------------------------------------------

def model_with_classes(folder, classes):
    """A binary model whose two classes are ``classes`` (fitted from Python), and data to predict."""
    X, _ = skewed()
    y = np.where(X[:, 0] - 2 * X[:, 1] > 0, classes[1], classes[0])
    lecture(max_iter=200, random_state=0).fit(X, y).save(folder / "m.npz")
    write_csv(folder / "new.csv", None, X[:20])
    return folder / "m.npz", folder / "new.csv"


CONTROL = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]


def test_class_names_with_terminal_escapes_are_printed_escaped(tmp_path):
    retitle, clear = "\x1b]0;owned\x07", "\x1b[2J\x1b[H"
    model, data = model_with_classes(tmp_path, [clear, retitle])
    out = run("predict", model, "--data", data, "--header", "no", "--proba", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not any(c in out.stdout + out.stderr for c in CONTROL if c != "\n"), repr(out.stdout[:200])
    cells = {line.split(",")[0] for line in out.stdout.splitlines()[1:]}
    assert cells == {r"\x1b[2J\x1b[H", r"\x1b]0;owned\x07"}, cells


def test_a_column_name_with_a_terminal_escape_is_escaped_in_the_error(trained, tmp_path):
    folder, *_ = trained
    data = tmp_path / "new.csv"
    data.write_text("a,b,\x1b[2Jc,label\n1,2,3,0\n", encoding="utf-8")
    out = run("predict", folder / "m.npz", "--data", data, "--target", "label", cwd=tmp_path)
    assert out.returncode == 2 and "\x1b" not in out.stderr, repr(out.stderr)
    assert r"not in the model '\x1b[2Jc'" in out.stderr, out.stderr


def test_a_lone_surrogate_class_name_is_written_escaped(tmp_path):
    model, data = model_with_classes(tmp_path, ["a", "b"])
    with np.load(model) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays.pop("__meta__")[()])) | {"classes": ["a", "\ud800"]}
    np.savez(tmp_path / "surrogate.npz", **arrays, __meta__=np.array(json.dumps(meta)))
    out = run("predict", "surrogate.npz", "--data", data, "--header", "no", "--output", "p.csv", cwd=tmp_path)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    cells = (tmp_path / "p.csv").read_text(encoding="utf-8").splitlines()
    assert cells[0] == "prediction" and len(cells) == 21
    assert set(cells[1:]) == {"a", r"\ud800"}, set(cells[1:])


@pytest.mark.parametrize("classes, written", [
    (["=HYPERLINK(\"http://203.0.113.7\")", "ok"], ["'=HYPERLINK(\"http://203.0.113.7\")", "ok"]),
    (["+cmd", "@SUM(A1)"], ["'+cmd", "'@SUM(A1)"]),
    (["-x", "\tlead"], ["'-x", r"'\tlead"]),  # a tab is also escaped: it is not printable
    ([-3, 2], ["-3", "2"]),  # numbers are numbers
    (["-2.5e-3", "+7"], ["-2.5e-3", "+7"]),
    # Digits of other scripts are no number here, as the CSV reader and the options refuse them: text, quoted
    (["-\u0661\u0662", "+\uff11"], ["'-\u0661\u0662", "'+\uff11"]),
])
def test_cells_a_spreadsheet_would_run_are_neutralised(tmp_path, classes, written):
    model, data = model_with_classes(tmp_path, classes)
    out = run("predict", model, "--data", data, "--header", "no", "--output", "p.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "p.csv", newline="", encoding="utf-8") as f:
        cells = {row[0] for row in list(csv.reader(f))[1:]}
    assert cells == set(written), cells
