"""The command line, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "backprop_core.cli", *args], capture_output=True, text=True)


def test_train_prints_costs_and_accuracy():
    out = run("train", "--iterations", "3000", "--hidden", "4")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [l.split(":")[0] for l in lines if l.startswith("Cost")] == [
        f"Cost after iteration {i}" for i in (0, 1000, 2000, 3000)]
    accuracy = float(lines[-1].split()[1].rstrip("%"))
    assert accuracy >= 88


def test_train_options():
    out = run("train", "--iterations", "50", "--activation", "relu", "--lr", "0.5", "--seed", "3",
              "--backend", "numpy", "--dtype", "float32")
    assert out.returncode == 0, out.stderr
    assert "(relu)" in out.stdout


def test_user_errors_are_one_line_without_traceback():
    out = run("train", "--backend", "tensorflow")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert "unknown backend 'tensorflow'" in out.stderr and "Traceback" not in out.stderr
    out = run("train", "--lr", "-1")
    assert out.returncode == 2 and "positive" in out.stderr


def test_divergence_is_reported():
    out = run("train", "--lr", "1e12", "--activation", "relu", "--iterations", "3000")
    assert out.returncode == 2
    assert "smaller learning rate" in out.stderr
