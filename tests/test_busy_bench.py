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
