"""The benchmark harness runs end to end (benchmarks/run.py, in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.mark.slow
def test_untracked_and_tracked_cases_report_positive_figures(tmp_path):
    """One repetition of two cases writes JSON with wall time, RSS and workflow time > 0."""
    out = tmp_path / "results.json"
    command = [sys.executable, str(RUN), "--cases", "untracked,tracked", "--repeats", "1"]
    command += ["--skip-scaling", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert 0 == done.returncode, done.stderr[-3000:]
    results = json.loads(out.read_text())
    for case in ("untracked", "tracked"):
        workflow = results["cases"][case]["workflow"]
        for figure in ("wall_s", "peak_rss_mb", "workflow_s"):
            assert workflow[figure]["median"] > 0, (case, figure)
    assert 6 == results["cases"]["tracked"]["workflow"]["child_runs"]["median"]
    assert results["cases"]["tracked"]["overhead"]["overhead_ms"]["median"] > 0
    assert results["cases"]["untracked"]["overhead"]["off_ns"]["median"] > 0
    assert "| 2. tracked, default settings |" in done.stdout
    assert "### Targets" in done.stdout
