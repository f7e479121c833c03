"""The command line, run as a user runs it: the installed ``backprop-core`` in a subprocess.

Expected values come from elsewhere than the command under test: the data
sets and the estimator used from Python, NumPy arithmetic, package metadata.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

import backprop_core as bc
from backprop_core.backends import register_backend, unregister_backend
from backprop_core.backends.numpy_backend import NumpyBackend
from backprop_core.datasets import blobs, flower

from conftest import COMMAND


def run(*args, cwd=None, env=None, **kwargs):
    environment = {**os.environ, **(env or {})}
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=environment, timeout=300, **kwargs)


def one_line_error(out, fragment):
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert fragment in out.stderr, out.stderr


def nothing_trained(out):
    assert "training " not in out.stdout and "Cost after" not in out.stdout, out.stdout


def cross_entropy(P1, y):
    """The lecture's cost of probabilities P1 = P(class 1) for labels y in {0, 1}."""
    return float(-np.mean(y * np.log(P1) + (1 - y) * np.log(1 - P1)))


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


def xor_rows(m=200, seed=0, labels=(0, 1)):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 2))
    y = np.where(X[:, 0] * X[:, 1] > 0, labels[1], labels[0])
    return X, y, [(f"{p:.5f}", f"{q:.5f}", t) for (p, q), t in zip(X, y)]


# -- train: the lecture's run and its summary ---------------------------------------

def test_train_prints_the_lectures_cost_lines_and_a_training_accuracy():
    out = run("train", "--iterations", "3000")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("Cost")] == [
        f"Cost after iteration {i}" for i in (0, 1000, 2000, 3000)]
    accuracy = next(line for line in lines if line.startswith("training accuracy:"))
    assert float(accuracy.split()[2].rstrip("%")) >= 88
    assert any(line.startswith("final cost (all the data):") for line in lines)
    assert "examples/s (numpy on cpu, float64)" in lines[-1]


def test_train_keeps_the_lectures_values_beside_the_estimators_practitioner_defaults(tmp_path):
    from backprop_core.estimator import LECTURE

    out = run("train", "--json", "--save", "m.npz", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["iterations"] == 10000
    fitted = bc.BackpropClassifier.load(tmp_path / "m.npz").fitted_params_
    assert {name: fitted[name] for name in LECTURE} == LECTURE


def test_full_batch_examples_per_second_count_m_per_iteration():
    summary = json.loads(run("train", "--iterations", "2000", "--json").stdout)
    assert summary["mode"] == "whole batch" and summary["iterations"] == 2000
    assert summary["examples_per_second"] * summary["seconds"] == pytest.approx(400 * 2000, rel=1e-9)


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_mini_batch_summary_counts_epochs_and_examples_not_updates():
    summary = json.loads(run("train", "--batch-size", "64", "--epochs", "300", "--lr", "0.5", "--json").stdout)
    assert summary["mode"] == "mini-batch" and summary["batch_size"] == 64
    assert summary["epochs"] == 300 and summary["updates"] == 300 * 7  # ceil(400 / 64) = 7 updates an epoch
    assert summary["examples_per_second"] * summary["seconds"] == pytest.approx(300 * 400, rel=1e-9)
    assert summary["training_accuracy"] >= 0.88


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_mini_batch_final_cost_is_the_cost_on_all_the_data(tmp_path):
    from backprop_core import BackpropClassifier

    out = run("train", "--batch-size", "64", "--epochs", "50", "--lr", "0.5", "--json",
              "--save", tmp_path / "m.npz")
    X, Y = flower()
    P1 = BackpropClassifier.load(tmp_path / "m.npz").predict_proba(X.T)[:, 1]
    assert json.loads(out.stdout)["final_cost"] == pytest.approx(cross_entropy(P1, Y[0]), rel=1e-9)


def test_mini_batch_progress_counts_epochs():
    out = run("train", "--batch-size", "64", "--epochs", "50", "--lr", "0.5")
    lines = [line for line in out.stdout.splitlines() if line.startswith("Cost after")]
    assert [int(line.split()[3].rstrip(":")) for line in lines] == list(range(0, 51, 5))
    assert lines[-1].endswith("(all the data)") and lines[0].endswith("(one batch)")


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
@pytest.mark.filterwarnings("ignore::FutureWarning")  # scikit-learn's notes on LogisticRegressionCV's defaults
def test_baseline_is_fitted_first_and_reported_beside_the_network():
    from sklearn.linear_model import LogisticRegressionCV

    out = run("train", "--iterations", "3000", "--baseline")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith("logistic regression (the baseline): training accuracy")
    X, Y = flower()
    expected = LogisticRegressionCV(scoring="accuracy").fit(X.T, Y[0]).score(X.T, Y[0])
    summary = json.loads(run("train", "--iterations", "3000", "--baseline", "--json").stdout)
    assert summary["baseline_training_accuracy"] == pytest.approx(expected)
    assert summary["baseline_training_accuracy"] < 0.6 < 0.88 <= summary["training_accuracy"]


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_standardize_rescues_the_blobs(tmp_path):
    plain = json.loads(run("train", "--dataset", "blobs", "--json").stdout)
    scaled = json.loads(run("train", "--dataset", "blobs", "--standardize", "--json").stdout)
    assert plain["training_accuracy"] < 0.75 and scaled["training_accuracy"] > 0.95
    assert scaled["standardize"] is True


def test_the_unsafe_scale_is_told_once_in_option_words():
    out = run("sweep", "--dataset", "blobs", "--hidden", "1", "2", "--iterations", "50")
    assert out.returncode == 0, out.stderr
    (warning,) = out.stderr.strip().splitlines()
    assert warning.startswith("backprop-core: warning: The features' scale (a mean square of 51.2")
    assert "makes --lr 1.2 unsafe" in warning and "(--standardize) or use --lr 0.156 or less" in warning
    assert "learning_rate=" not in warning and "BackpropClassifier" not in warning


def test_a_diverged_run_names_the_options_that_fix_it():
    out = run("train", "--lr", "1e6", "--iterations", "1000")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("backprop-core: error: training diverged: the cost went from 0.6931 to ")
    assert line.endswith("use --lr 1.88 or less, or --standardize") and "learning_rate=" not in line
    assert len(line) < 200


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_a_standardized_model_predicts_through_predict_as_in_python(tmp_path):
    from backprop_core import BackpropClassifier

    out = run("train", "--dataset", "blobs", "--standardize", "--iterations", "2000", "--save", tmp_path / "b.npz")
    assert out.returncode == 0, out.stderr
    X, Y = blobs()
    np.save(tmp_path / "x.npy", X.T)
    out = run("predict", tmp_path / "b.npz", "--data", tmp_path / "x.npy")
    column = [int(v) for v in out.stdout.split()[1:]]
    np.testing.assert_array_equal(column, BackpropClassifier.load(tmp_path / "b.npz").predict(X.T))


def test_train_on_a_csv_with_header_and_target(tmp_path):
    _, _, rows = xor_rows()
    path = write_csv(tmp_path / "d.csv", ["a", "b", "label"], rows)
    out = run("train", "--data", path, "--target", "label", "--hidden", "6", "--iterations", "3000", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["training_accuracy"] > 0.9


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_every_builtin_dataset_trains():
    for name in ("noisy_circles", "noisy_moons", "blobs", "gaussian_quantiles"):
        out = run("train", "--dataset", name, "--hidden", "8", "--iterations", "2000", "--lr", "0.5", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["training_accuracy"] > 0.75, name


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_chunked_full_batch_lands_where_the_whole_batch_does():
    chunked = json.loads(run("train", "--chunk-size", "100", "--workers", "2", "--iterations", "1000", "--json").stdout)
    whole = json.loads(run("train", "--iterations", "1000", "--json").stdout)
    assert chunked["final_cost"] == pytest.approx(whole["final_cost"], rel=1e-9)


def test_workers_beyond_the_cores_and_chunks_are_lowered_saying_so():
    out = run("train", "--iterations", "10", "--workers", "200", "--parallel", "processes", "--chunk-size", "100",
              "--json")
    assert out.returncode == 0, out.stderr
    assert out.stderr.startswith("backprop-core: warning: 200 workers asked for, ") and \
        len(out.stderr.splitlines()) == 1, out.stderr


# -- stopped early: what was trained is kept, saved and reported ----------------------------

@pytest.mark.slow  # interrupts a training process
@pytest.mark.parametrize("signum, status, said, reason", [
    pytest.param(signal.SIGINT, 130, "interrupted", "interrupted", id="ctrl-c"),
    pytest.param(signal.SIGTERM, 143, "terminated (SIGTERM)", "terminated", id="sigterm"),  # timeout, kill, systemd
])
def test_a_stop_saves_the_kept_parameters_and_prints_the_summary(tmp_path, children, signum, status, said, reason):
    from backprop_core import BackpropClassifier

    process = children([*COMMAND, "train", "--iterations", "100000000", "--save", tmp_path / "m.npz"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "Cost after iteration 1000:" not in seen:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        seen += line
    process.send_signal(signum)
    rest, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert err.startswith(f"backprop-core: training {said} after ") and len(err.splitlines()) == 1, err
    kept = int(err.split("after ")[1].split()[0])
    assert f"training stopped ({reason}); the model keeps the parameters of iteration {kept:,}" in rest
    assert f"model saved to {tmp_path / 'm.npz'} (the parameters of iteration {kept:,})" in rest
    assert "training accuracy:" in rest
    assert BackpropClassifier.load(tmp_path / "m.npz").n_iter_ == kept >= 1000
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"], "a temporary file was left"


def test_divergence_saves_the_parameters_of_the_lowest_cost_read(tmp_path):
    from backprop_core import BackpropClassifier

    out = run("train", "--lr", "1e12", "--activation", "relu", "--iterations", "3000", "--save", tmp_path / "m.npz")
    one_line_error(out, "use --lr 1.88 or less")
    assert "training stopped (diverged)" in out.stdout and "100 iterations (whole batch)" in out.stdout  # to the NaN and "training accuracy:" in out.stdout
    assert f"model saved to {tmp_path / 'm.npz'} (the parameters of iteration 0)" in out.stdout
    model = BackpropClassifier.load(tmp_path / "m.npz")
    assert all(np.isfinite(p).all() for p in model.parameters_.values())


# -- outputs checked before any work ----------------------------------------------------

@pytest.mark.parametrize("option, path, message", [
    ("--save", "missing/m.npz", "folder missing does not exist"),
    ("--save", ".", "is a folder"),
    ("--save", "/proc/m.npz", "cannot write in folder /proc"),
    ("--plot", "f.pgn", "matplotlib cannot write .pgn files"),
    ("--plot", "missing/f.png", "folder missing does not exist"),
    ("--save", "", "--save is empty; give a file name"),
    ("--plot", "", "--plot is empty; give a file name"),
    ("--save", "nodir/", "--save nodir/ ends with /, which names a folder"),
    ("--save", "-", "--save -: standard output is not used here"),
    ("--plot", "-", "--plot -: standard output is not used here"),
    ("--save", "m" * 300 + ".npz", "is 304 bytes long, more than the 255 this system allows; give a shorter name"),
    ("--plot", "p" * 300 + ".png", "is 304 bytes long, more than the 255 this system allows; give a shorter name"),
    ("--data", "", "--data is empty; give a .csv, .npy or .npz file"),  # never the built-in flower
    ("--data", "-", "--data -: standard input is not used here"),
])
def test_train_output_paths_are_checked_before_training(tmp_path, option, path, message):
    out = run("train", option, path, cwd=tmp_path)
    one_line_error(out, message)
    nothing_trained(out)


def test_train_refuses_to_overwrite_its_data(tmp_path):
    _, _, rows = xor_rows()
    path = write_csv(tmp_path / "d.csv", ["a", "b", "label"], rows)
    out = run("train", "--data", path, "--target", "label", "--save", path)
    one_line_error(out, "would overwrite the input")
    assert path.read_text().startswith("a,b,label")


def test_a_save_that_fails_after_training_names_the_file_after_the_summary(tmp_path, monkeypatch, capsys):
    import errno

    from backprop_core import cli

    def full_disk(f, **arrays):  # the write itself fails, as on a full disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("numpy.savez", full_disk)
    status = cli.main(["train", "--iterations", "50", "--save", str(tmp_path / "m.npz")])
    out, err = capsys.readouterr()
    assert status == 2
    assert "training accuracy" in out and "model saved" not in out
    assert err.strip() == f"backprop-core: error: cannot save {tmp_path / 'm.npz'}: No space left on device"


def test_a_file_error_names_the_file_once_whatever_its_name():
    import errno

    from backprop_core.cli import _file_error

    said = "cannot save a: No space left on device"  # "a" is in the system's words too
    assert str(_file_error(OSError(errno.ENOSPC, "No space left on device"), "a", "save")) == said
    assert str(_file_error(OSError(errno.ENOSPC, said), "a", "save")) == said  # the library's, kept as it is
    assert str(_file_error(FileNotFoundError("no data file at d.csv"), "d.csv", "read")) == "no data file at d.csv"


def test_predict_output_path_is_checked_before_loading(tmp_path):
    one_line_error(run("predict", "missing.npz", "--data", "missing.csv", "--output", tmp_path), "is a folder")


@pytest.mark.parametrize("option, path, message", [
    ("--output", "", "--output is empty; give a file name"),
    ("--output", "out/", "--output out/ ends with /, which names a folder"),
    ("--data", "", "--data is empty; give a .csv, .npy or .npz file"),
    ("--data", "-", "--data -: standard input is not used here"),
])
def test_predict_paths_are_checked_before_loading(tmp_path, option, path, message):
    given = {"--data": "missing.csv", **{option: path}}
    out = run("predict", "missing.npz", *[part for pair in given.items() for part in pair], cwd=tmp_path)
    one_line_error(out, message)
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full (a device that is always full) here")
def test_predictions_that_cannot_be_written_name_the_file(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["a", "b", "label"], xor_rows()[2])
    assert run("train", "--data", path, "--target", "label", "--iterations", "10", "--save",
               tmp_path / "m.npz").returncode == 0
    out = run("predict", tmp_path / "m.npz", "--data", path, "--target", "label", "--output", "/dev/full")
    one_line_error(out, "error: cannot write /dev/full: No space left on device")


class _BuggyBackend(NumpyBackend):
    """NumPy whose steps fail as a bug in the library would: an OSError that no file the user named caused."""

    name = "numpy-with-a-bug"

    def compile(self, fn):
        def step(*args):
            raise FileNotFoundError(2, "No such file or directory", "/internal/state")

        return step


def test_a_bug_shows_its_traceback_not_a_one_line_user_error(monkeypatch):
    from backprop_core import cli

    register_backend(_BuggyBackend.name, _BuggyBackend)
    try:
        with pytest.raises(FileNotFoundError, match="/internal/state"):  # the interpreter prints its traceback
            cli.main(["train", "--backend", _BuggyBackend.name, "--iterations", "5"])
    finally:
        unregister_backend(_BuggyBackend.name)


@pytest.mark.parametrize("args, message", [
    (["--epochs", "3"], "give --batch-size too"),
    (["--batch-size", "8", "--iterations", "10"], "give --epochs instead"),
    (["--batch-size", "8", "--chunk-size", "10"], "--chunk-size applies to the chunks of a full-batch step"),
    (["--batch-size", "8", "--workers", "2"], "--workers applies to the chunks of a full-batch step"),
    (["--batch-size", "8", "--parallel", "threads"], "--parallel applies to the chunks of a full-batch step"),
    (["--data", "d.csv", "--m", "100"], "--m chooses a built-in dataset; it does not apply"),
    (["--data", "d.csv", "--m", "100", "--data-seed", "1"], "--m and --data-seed choose a built-in dataset"),
    (["--dataset", "blobs", "--data-seed", "-1"], "--data-seed must be a non-negative integer, got -1"),
    (["--save", "same.png", "--plot", "same.png"], "--save and --plot both name same.png"),
    (["--header", "yes"], "apply to a CSV given with --data"),
    (["--target", "label"], "the built-in datasets have their labels"),
    (["--backend", "tensorflow"], "unknown backend 'tensorflow'"),
])
def test_train_options_are_checked_before_training(args, message):
    out = run("train", *args)
    one_line_error(out, message)
    nothing_trained(out)


def test_argparse_mistakes_are_one_line_too():
    one_line_error(run("train", "--lr", "-1"), "must be a positive number written with the digits 0-9, got -1")


@pytest.mark.parametrize("option, value", [
    ("--iterations", "1_0"), ("--iterations", "\u0661\u0660"), ("--hidden", "\u0968"), ("--lr", "\u0661.\u0665"),
    ("--seed", "1_0"), ("--seed", "\u0661"), ("--m", "1_000"),
])
def test_numbers_in_options_are_read_as_the_csv_reader_reads_them(option, value):
    # Python's int() takes "1_0" as 10 and "\u0661\u0660" (Arabic-Indic) as 10; the CSV reader refuses both
    out = run("train", option, value)
    one_line_error(out, f"argument {option}: must be ")
    assert f"written with the digits 0-9, got {value}" in out.stderr
    nothing_trained(out)


def test_a_chunk_size_beyond_the_data_is_one_chunk_of_all_of_them():
    out = run("train", "--iterations", "10", "--chunk-size", str(10**30), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["iterations"] == 10


def test_hidden_units_beyond_memory_are_one_line():
    one_line_error(run("train", "--iterations", "10", "--hidden", str(10**30)),
                   "hidden units: the weights of a 2-1000000000000000000000000000000-1 network alone would take")


def test_finite_data_beyond_float32_are_named_as_such_not_as_nan(tmp_path):
    X, _, rows = xor_rows()
    path = write_csv(tmp_path / "d.csv", ["a", "b", "label"], [(f"{float(p) * 1e300}", q, t) for p, q, t in rows])
    out = run("train", "--data", path, "--target", "label", "--dtype", "float32", "--iterations", "10")
    one_line_error(out, "X holds finite values too large for float32 (its largest magnitude is ")
    assert "train in float64 (--dtype float64)" in out.stderr and "NaN" not in out.stderr


def test_features_whose_variance_overflows_are_standardized(tmp_path):
    X, _, rows = xor_rows()
    path = write_csv(tmp_path / "d.csv", ["a", "b", "label"],
                     [(f"{1e160 + float(p) * 1e158}", f"{float(q) * 1e158}", t) for p, q, t in rows])
    out = run("train", "--data", path, "--target", "label", "--standardize", "--hidden", "6", "--iterations",
              "3000", "--json")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert json.loads(out.stdout)["training_accuracy"] > 0.9


def test_utf16_named_for_a_utf8_file_says_so_not_no_data_rows(tmp_path):
    path = write_csv(tmp_path / "d.csv", ["a", "b", "label"], xor_rows()[2])
    if path.stat().st_size % 2:  # an even count of bytes decodes as UTF-16 without an error of its own
        path.write_text(path.read_text() + "\n")
    out = run("train", "--data", path, "--target", "label", "--encoding", "utf-16")
    one_line_error(out, "is not utf-16 text: its line breaks decode as other characters")
    assert "--encoding utf-8" in out.stderr


def test_a_dataset_too_big_for_memory_is_refused_before_it_is_made():
    one_line_error(run("train", "--m", str(10**13)), "choose a smaller --m")


def test_bytes_per_point_bound_what_making_each_dataset_takes():
    import tracemalloc

    from backprop_core.cli import DATASET_BYTES_PER_POINT
    from backprop_core.datasets import DATASETS

    peaks = {}
    for name, make in DATASETS.items():
        tracemalloc.start()
        make(m=200_000)
        peaks[name] = tracemalloc.get_traced_memory()[1] / 200_000
        tracemalloc.stop()
    assert max(peaks.values()) <= DATASET_BYTES_PER_POINT <= 1.25 * max(peaks.values()), peaks


def test_sweep_plot_of_more_than_two_features_is_refused_before_training(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(*np.round(rng.standard_normal(3), 4), int(rng.random() > 0.5)) for _ in range(50)]
    path = write_csv(tmp_path / "d.csv", ["a", "b", "c", "label"], rows)
    out = run("sweep", "--data", path, "--target", "label", "--plot", tmp_path / "s.png")
    one_line_error(out, "needs two features and two classes; ")
    assert "hidden units" not in out.stdout


def test_jax_float64_names_the_environment_variable():
    pytest.importorskip("jax", reason="jax is not installed")
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    out = subprocess.run([*COMMAND, "train", "--backend", "jax", "--dtype", "float64"], capture_output=True,
                         text=True, env=env, timeout=300)
    one_line_error(out, "JAX_ENABLE_X64=1")
    nothing_trained(out)


def test_a_dtype_the_device_lacks_is_one_line_in_option_words():
    pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    from backprop_core.backends import get_backend

    if "no_float64" not in get_backend("array_api_strict").devices():
        pytest.skip("this version of array-api-strict has no device without float64")
    out = subprocess.run([*COMMAND, "train", "--backend", "array_api_strict", "--device", "no_float64",
                          "--dtype", "float64"], capture_output=True, text=True, timeout=300)
    one_line_error(out, "has no float64 (it computes in float32); use --dtype float32")
    nothing_trained(out)


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_jax_float64_trains_with_the_environment_variable():
    pytest.importorskip("jax", reason="jax is not installed")
    out = run("train", "--backend", "jax", "--dtype", "float64", "--iterations", "20", "--json",
              env={"JAX_ENABLE_X64": "1"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["dtype"] == "float64"


# -- standard streams: closed or full, they lose output, not work ---------------------------

def test_a_pipe_closed_by_head_stops_the_output_not_the_training(tmp_path, children):
    process = children([*COMMAND, "train", "--iterations", "20000", "--save", str(tmp_path / "m.npz")],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with process.stderr:
        process.stdout.readline()
        process.stdout.close()  # what head does after its first line
        err = process.stderr.read()
        process.wait(timeout=120)
    assert err == "" and process.returncode == 1  # Python's convention for a closed pipe
    assert (tmp_path / "m.npz").exists()


def test_a_full_disk_under_standard_output_is_one_line(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("this system has no /dev/full")
    with open("/dev/full", "w") as full:
        out = subprocess.run([*COMMAND, "train", "--iterations", "2000", "--save", str(tmp_path / "m.npz")],
                             stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "backprop-core: error: cannot write to standard output: [Errno 28] No space left on device"]
    assert (tmp_path / "m.npz").exists()


def test_a_closed_stderr_pipe_gives_no_traceback():
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = subprocess.run([*COMMAND, "train", "--backend", "tensorflow"], stdout=subprocess.PIPE,
                             stderr=write_end, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert out.returncode == 2 and out.stdout == ""


def test_a_closed_stderr_descriptor_gives_no_traceback():
    # The shell closes descriptor 2 (2>&-) before the program starts, as a user's shell would.
    command = " ".join(shlex.quote(part) for part in [*COMMAND, "train", "--backend", "tensorflow"])
    out = subprocess.run(["bash", "-c", f"exec {command} 2>&-"], stdout=subprocess.PIPE, text=True, timeout=300)
    assert out.returncode == 2 and out.stdout == ""


def test_the_progress_bar_leaves_its_last_line_on_a_terminal(children):
    pytest.importorskip("tqdm", reason="tqdm is not installed")
    import pty

    main_end, terminal = pty.openpty()
    process = children([*COMMAND, "train", "--iterations", "3000"], stdout=subprocess.PIPE, stderr=terminal,
                       text=True)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main_end, 4096)
        except OSError:  # the terminal is gone: the program has ended
            break
        if not chunk:
            break
        shown += chunk
    process.communicate(timeout=120)
    os.close(main_end)
    last = shown.decode().replace("\r\n", "\n").split("\r")[-1]
    assert "3000/3000" in last and "cost=" in last, last


# -- data files -----------------------------------------------------------------------

@pytest.mark.parametrize("content, target, message", [
    ("a,b,label\n1,2,0\n3,4,1\n", "klass", "no target column 'klass'"),
    ("a,b,label\n1,2,0\n3,x,1\n", "label", "non-numeric cell 'x'"),
    ("a,b,label\n1,2,0\n3,4\n", "label", "ragged"),
])
def test_bad_csv_files(tmp_path, content, target, message):
    (tmp_path / "d.csv").write_text(content)
    one_line_error(run("train", "--data", tmp_path / "d.csv", "--target", target), message)


def test_an_ambiguous_first_row_is_explained_in_option_words(tmp_path):
    (tmp_path / "d.csv").write_text("x1,2.5,0\n" + "".join(f"{i},{i / 2},{i % 2}\n" for i in range(20)))
    out = run("train", "--data", tmp_path / "d.csv", "--target", "2", "--iterations", "10")
    one_line_error(out, "pass --header yes if row 1 names the columns, --header no if it is data")
    assert "header=" not in out.stderr


def test_header_yes_reads_a_first_row_of_names_with_a_number(tmp_path):
    (tmp_path / "d.csv").write_text("x1,2.5,y\n" + "".join(f"{i},{i / 2},{i % 2}\n" for i in range(20)))
    out = run("train", "--data", tmp_path / "d.csv", "--target", "y", "--header", "yes", "--iterations", "10",
              "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["m"] == 20


def test_an_encoding_error_is_explained_in_option_words_and_encoding_reads_it(tmp_path):
    (tmp_path / "d.csv").write_bytes("café,b,label\n1,2,0\n3,4,1\n".encode("latin-1"))
    out = run("train", "--data", tmp_path / "d.csv", "--target", "label")
    one_line_error(out, "pass --encoding with the file's encoding, for example --encoding latin-1")
    out = run("train", "--data", tmp_path / "d.csv", "--target", "label", "--encoding", "latin-1",
              "--iterations", "10", "--json")
    assert out.returncode == 0, out.stderr


def test_complex_data_is_refused_in_one_line(tmp_path):
    np.savez(tmp_path / "c.npz", X=np.ones((4, 2)) * (1 + 2j), y=np.array([0, 1, 0, 1]))
    one_line_error(run("train", "--data", tmp_path / "c.npz"), "complex numbers")


def test_missing_file_and_missing_labels(tmp_path):
    one_line_error(run("train", "--data", tmp_path / "nope.csv", "--target", "y"), "no data file")
    np.save(tmp_path / "x.npy", np.ones((4, 2)))
    one_line_error(run("train", "--data", tmp_path / "x.npy"), "no labels")


# -- predict ----------------------------------------------------------------------------

@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_saved_flower_predicts_through_predict_as_in_python(tmp_path):
    from backprop_core import BackpropClassifier

    out = run("train", "--iterations", "2000", "--save", tmp_path / "flower.npz")
    assert f"model saved to {tmp_path / 'flower.npz'}" in out.stdout
    X, Y = flower()
    np.savez(tmp_path / "data.npz", X=X.T, y=Y[0])
    out = run("predict", tmp_path / "flower.npz", "--data", tmp_path / "data.npz", "--proba",
              "--output", tmp_path / "pred.csv")
    assert out.returncode == 0, out.stderr
    table = np.genfromtxt(tmp_path / "pred.csv", delimiter=",", names=True)
    expected = BackpropClassifier.load(tmp_path / "flower.npz")
    np.testing.assert_array_equal(table["prediction"], expected.predict(X.T))
    np.testing.assert_allclose(table["probability"], expected.predict_proba(X.T)[:, 1], rtol=1e-5)
    assert f"accuracy on {tmp_path / 'data.npz'}: {100 * expected.score(X.T, Y[0]):.1f}%" in out.stdout


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_string_labels_are_written_as_the_model_has_them(tmp_path):
    _, y, rows = xor_rows(labels=("cat", "dog"))
    path = write_csv(tmp_path / "d.csv", ["a", "b", "animal"], rows)
    assert run("train", "--data", path, "--target", "animal", "--hidden", "6", "--iterations", "3000",
               "--save", tmp_path / "m.npz").returncode == 0
    out = run("predict", tmp_path / "m.npz", "--data", path, "--target", "animal", "--proba")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "prediction,probability"
    predicted = np.array([line.split(",")[0] for line in lines[1:]])
    P_dog = np.array([float(line.split(",")[1]) for line in lines[1:]])
    np.testing.assert_array_equal(predicted, np.where(P_dog > 0.5, "dog", "cat"))
    assert np.mean(predicted == y) > 0.9


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_multiclass_writes_every_class_probability_named_by_class(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 2))
    y = np.digitize(X[:, 0], [-0.5, 0.5])  # classes 0, 1, 2 by bands of the first feature
    path = write_csv(tmp_path / "d.csv", ["a", "b", "band"], [(f"{p:.5f}", f"{q:.5f}", t) for (p, q), t in zip(X, y)])
    assert run("train", "--data", path, "--target", "band", "--iterations", "2000", "--lr", "0.5",
               "--save", tmp_path / "m.npz").returncode == 0
    out = run("predict", tmp_path / "m.npz", "--data", path, "--target", "band", "--proba")
    lines = out.stdout.splitlines()
    assert lines[0] == "prediction,probability_0,probability_1,probability_2"
    P = np.array([[float(v) for v in line.split(",")[1:]] for line in lines[1:]])
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-5)
    assert [line.split(",")[0] for line in lines[1:]] == [str(k) for k in P.argmax(axis=1)]


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_predict_reads_a_csv_without_header(tmp_path):
    _, _, rows = xor_rows()
    path = write_csv(tmp_path / "d.csv", ["a", "b", "label"], rows)
    run("train", "--data", path, "--target", "label", "--iterations", "100", "--save", tmp_path / "m.npz")
    (tmp_path / "new.csv").write_text("0.5,0.5\n-0.5,0.5\n")
    out = run("predict", tmp_path / "m.npz", "--data", tmp_path / "new.csv", "--header", "no")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 3


# -- plots ------------------------------------------------------------------------------

@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_plots_are_written_on_agg_whatever_the_environment_asks(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    from PIL import Image

    env = {"MPLBACKEND": "TkAgg", "DISPLAY": ""}  # an interactive backend with no display to open
    out = run("train", "--iterations", "500", "--baseline", "--plot", tmp_path / "f.png", env=env)
    assert out.returncode == 0, out.stderr
    assert f"plot written to {tmp_path / 'f.png'}" in out.stdout
    with Image.open(tmp_path / "f.png") as im:
        assert im.size == (1650, 450)  # three panels: the baseline, the network, the cost


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_sweep_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    out = run("sweep", "--hidden", "1", "4", "--iterations", "2000", "--plot", tmp_path / "s.png")
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:3]]
    assert [r[0] for r in rows] == ["1", "4"]
    assert float(rows[1][1].rstrip("%")) > float(rows[0][1].rstrip("%"))
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


# -- backends, help, version --------------------------------------------------------------

def test_backends_answers_from_package_metadata_without_importing_libraries():
    code = ("import sys; from backprop_core.cli import main; status = main(['backends', '--json']); "
            "print(sorted(m for m in ('torch', 'jax', 'cupy', 'dask', 'array_api_strict') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    rows_text, imported = out.stdout.strip().rsplit("\n", 1)
    assert imported == "[]"
    rows = {r["backend"]: r for r in json.loads(rows_text)}
    assert {"numpy", "cupy", "torch", "jax", "array_api_strict", "dask"} <= set(rows)
    assert rows["numpy"]["version"] == version("numpy") and rows["numpy"]["usable"] is True
    if importlib.util.find_spec("cupy") is None:
        assert rows["cupy"]["installed"] is False and "pip install" in rows["cupy"]["reason"]


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_backends_probe_says_where_each_installed_library_runs():
    pytest.importorskip("torch", reason="torch is not installed")
    rows = {r["backend"]: r for r in json.loads(run("backends", "--probe", "--json").stdout)}
    assert rows["torch"]["usable"] is True and "cpu" in rows["torch"]["devices"]
    assert rows["torch"]["version"] == version("torch")


def test_backends_table_lists_every_backend():
    out = run("backends")
    assert out.returncode == 0, out.stderr
    names = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    assert {"numpy", "cupy", "torch", "jax", "array_api_strict"} <= set(names)


@pytest.mark.parametrize("command", ["train", "sweep", "predict", "backends"])
def test_help_has_examples(command):
    out = run(command, "--help")
    assert out.returncode == 0 and "examples:" in out.stdout


def test_version_is_the_installed_distributions():
    out = run("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"backprop-core {version('backprop-core')}"
