"""bench/defaults.py runs end to end in its quick mode and writes what it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_defaults_comparison_runs_end_to_end(tmp_path):
    script = Path(__file__).resolve().parents[1] / "bench" / "defaults.py"
    out = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path), "--machine", "test"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "defaults.jsonl").read_text().splitlines()]
    assert {(r["data"], r["estimator"]) for r in rows} == {
        (d, e) for d in ("iris", "wine") for e in ("MLPClassifier()", "BackpropClassifier()")}
    for r in rows:
        assert 0.5 < r["accuracy"] <= 1 and r["log_loss"] > 0 and r["fit_seconds"] > 0 and len(r["accuracy_folds"]) == 5
    table = (tmp_path / "defaults.md").read_text()
    assert "| iris | 150 |" in table and "| wine | 178 |" in table and "load average" in table
