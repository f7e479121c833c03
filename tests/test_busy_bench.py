"""bench/busy.py: the busy-machine comparison reads its fits into the right ratios and verdicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import busy  # noqa: E402


def _fits(seconds_by_condition, case="breast-cancer"):
    return [{"kind": "fit", "case": case, "condition": name, "round": r, "seconds": s, "plan": "p",
             "load_at_start": 0.5}
            for name, samples in seconds_by_condition.items() for r, s in enumerate(samples)]


def test_the_table_gives_medians_ratios_and_verdicts():
    fits = _fits({"quiet": [1.0, 1.2, 0.8], "busy": [1.4, 1.3, 9.0], "quiet, OPENBLAS_NUM_THREADS=1": [1.0],
                  "busy, OPENBLAS_NUM_THREADS=1": [1.3, 1.3, 1.3]})
    text = busy.table(fits, 1000)
    assert "| breast cancer, 569 x 30 | 1 (0.8-1.2) | 1.4 (1.3-9) | 1 (1-1) | 1.3 (1.3-1.3) | 1.40x | 1.08x |" in text
    assert "busy is 1.40x quiet (target at most 1.5x: met), 1.08x the variable set by hand " \
           "(target at most 1x: NOT met)" in text


def test_a_busy_fit_over_one_and_a_half_quiet_ones_misses_the_target():
    text = busy.table(_fits({"quiet": [1.0], "busy": [1.6], "quiet, OPENBLAS_NUM_THREADS=1": [1.0],
                             "busy, OPENBLAS_NUM_THREADS=1": [2.0]}), 1000)
    assert "busy is 1.60x quiet (target at most 1.5x: NOT met), 0.80x the variable set by hand " \
           "(target at most 1x: met)" in text


@pytest.mark.slow  # four fresh interpreters
def test_a_small_run_writes_its_table_and_records(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "busy.py"), "--cases", "breast-cancer", "--repeats", "1",
                          "--iterations", "5", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    records = (tmp_path / "busy.jsonl").read_text().splitlines()
    assert len(records) == 1 + len(busy.CONDITIONS)  # the environment, then a fit per condition
    assert "busy / quiet" in (tmp_path / "busy.md").read_text()


import busy_ab  # noqa: E402


def test_the_ab_table_gives_each_codes_busy_over_quiet():
    fits = [{"kind": "fit", "case": "160k", "code": code, "busy": loaded, "round": r, "seconds": s, "plan": "p",
             "load_at_start": 0.5}
            for code, loaded, samples in (("baseline", False, [20, 21, 19]), ("baseline", True, [40, 38, 39]),
                                          ("this", False, [20, 20, 22]), ("this", True, [28, 27, 30]))
            for r, s in enumerate(samples)]
    text = busy_ab.table(fits)
    assert "| make_classification, 160,000 x 20 | baseline | 20 (19-21) | 39 (38-40) | 1.95x |" in text
    assert "| make_classification, 160,000 x 20 | this | 20 (20-22) | 28 (27-30) | 1.40x |" in text


@pytest.mark.slow  # four fresh interpreters
def test_a_small_ab_run_against_this_trees_own_code_writes_its_table(tmp_path):
    source = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run([sys.executable, str(BENCH / "busy_ab.py"), "--baseline", str(source), "--cases",
                          "breast-cancer", "--repeats", "1", "--iterations", "5", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len((tmp_path / "busy_ab.jsonl").read_text().splitlines()) == 1 + 4  # the environment, 2 codes x 2
    assert "| breast cancer, 569 x 30 | this |" in (tmp_path / "busy_ab.md").read_text()


def test_a_baseline_without_the_package_is_refused(tmp_path):
    out = subprocess.run([sys.executable, str(BENCH / "busy_ab.py"), "--baseline", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "holds no backprop_core package" in out.stderr
