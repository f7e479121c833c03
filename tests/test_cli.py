"""The command line, run as a user runs it (a subprocess), on the numpy backend."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "backprop_core.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def one_line_error(out, fragment):
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert fragment in out.stderr, out.stderr


def test_train_prints_costs_and_accuracy():
    out = run("train", "--iterations", "3000", "--hidden", "4")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [l.split(":")[0] for l in lines if l.startswith("Cost")] == [
        f"Cost after iteration {i}" for i in (0, 1000, 2000, 3000)]
    assert lines[-1].startswith("accuracy:") and "examples/s" in lines[-1] and "numpy on cpu" in lines[-1]
    assert float(lines[-1].split()[1].rstrip("%")) >= 88


def test_train_json_save_plot_and_predict(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    from PIL import Image

    model, png = tmp_path / "flower.npz", tmp_path / "flower.png"
    out = run("train", "--iterations", "2000", "--json", "--save", str(model), "--plot", str(png))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["accuracy"] >= 0.88 and summary["iterations"] == 2000 and summary["backend"] == "numpy"
    assert summary["examples_per_second"] > 0 and np.isfinite(summary["final_cost"])
    with Image.open(png) as im:
        assert im.size == (1100, 450)
    # The saved model predicts the same through `predict` as in Python.
    from backprop_core import BackpropClassifier
    from backprop_core.datasets import flower

    X, Y = flower()
    np.savez(tmp_path / "data.npz", X=X.T, y=Y[0])
    out = run("predict", str(model), "--data", str(tmp_path / "data.npz"), "--proba",
              "--output", str(tmp_path / "pred.csv"))
    assert out.returncode == 0, out.stderr
    table = np.genfromtxt(tmp_path / "pred.csv", delimiter=",", names=True)
    expected = BackpropClassifier.load(model)
    np.testing.assert_array_equal(table["prediction"], expected.predict(X.T))
    np.testing.assert_allclose(table["probability"], expected.predict_proba(X.T)[:, 1], rtol=1e-5)
    assert f"{100 * summary['accuracy']:.1f}%" in out.stderr


def test_train_on_a_csv_with_header_and_target(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    lines = ["a,b,label"] + [f"{p:.5f},{q:.5f},{t}" for (p, q), t in zip(X, y)]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    out = run("train", "--data", str(tmp_path / "d.csv"), "--target", "label", "--hidden", "6",
              "--iterations", "3000", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["accuracy"] > 0.9


@pytest.mark.parametrize("content, target, message", [
    ("a,b,label\n1,2,0\n3,4,1\n", "klass", "no target column 'klass'"),
    ("a,b,label\n1,2,0\n3,x,1\n", "label", "non-numeric cell 'x'"),
    ("a,b,label\n1,2,0.5\n3,4,1.7\n", "label", "continuous"),
    ("a,b,label\n1,2,0\n3,4\n", "label", "ragged"),
])
def test_bad_csv_files(tmp_path, content, target, message):
    (tmp_path / "d.csv").write_text(content)
    one_line_error(run("train", "--data", str(tmp_path / "d.csv"), "--target", target), message)


def test_missing_file_and_missing_labels(tmp_path):
    one_line_error(run("train", "--data", str(tmp_path / "nope.csv"), "--target", "y"), "no data file")
    np.save(tmp_path / "x.npy", np.ones((4, 2)))
    one_line_error(run("train", "--data", str(tmp_path / "x.npy")), "no labels")


def test_every_builtin_dataset_trains():
    for name in ("noisy_circles", "noisy_moons", "blobs", "gaussian_quantiles"):
        out = run("train", "--dataset", name, "--hidden", "8", "--iterations", "2000", "--lr", "0.5", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["accuracy"] > 0.75, name


def test_sweep_table_and_plot(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed")
    out = run("sweep", "--hidden", "1", "4", "--iterations", "2000", "--plot", str(tmp_path / "s.png"))
    assert out.returncode == 0, out.stderr
    rows = [l.split() for l in out.stdout.splitlines()[1:]]
    assert [r[0] for r in rows] == ["1", "4"]
    assert float(rows[1][1].rstrip("%")) > float(rows[0][1].rstrip("%"))
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_backends_lists_every_backend():
    out = run("backends")
    assert out.returncode == 0, out.stderr
    names = [l.split()[0] for l in out.stdout.splitlines()[1:]]
    assert {"numpy", "cupy", "torch", "jax", "array_api_strict"} <= set(names)
    numpy_line = next(l for l in out.stdout.splitlines() if l.startswith("numpy"))
    assert " yes " in numpy_line


@pytest.mark.parametrize("command", ["train", "sweep", "predict", "backends"])
def test_help_has_examples(command):
    out = run(command, "--help")
    assert out.returncode == 0 and "examples:" in out.stdout


def test_user_errors_are_one_line_without_traceback():
    one_line_error(run("train", "--backend", "tensorflow"), "unknown backend 'tensorflow'")
    out = run("train", "--lr", "-1")
    assert out.returncode == 2 and "positive" in out.stderr
    one_line_error(run("train", "--lr", "1e12", "--activation", "relu", "--iterations", "3000"),
                   "smaller learning rate")
    one_line_error(run("predict", "missing.npz", "--data", "missing.csv"), "no model file")


def test_train_minibatch_and_chunk_options():
    out = run("train", "--batch-size", "64", "--epochs", "300", "--lr", "0.5", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["iterations"] == 300 * 7 and summary["accuracy"] >= 0.88
    out = run("train", "--chunk-size", "100", "--workers", "2", "--iterations", "1000", "--json")
    assert out.returncode == 0, out.stderr
    plain = json.loads(run("train", "--iterations", "1000", "--json").stdout)
    assert json.loads(out.stdout)["final_cost"] == pytest.approx(plain["final_cost"], rel=1e-9)
