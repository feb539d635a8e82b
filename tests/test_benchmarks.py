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
    command += ["--skip-scaling", "--passes", "2", "--json", str(out)]
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


@pytest.mark.slow
def test_loop_cases_in_quick_mode_report_a_row_and_ratio_per_case(tmp_path):
    """The three loop cases with --quick counts: each child reports its loop's calls, both
    totals and their ratio, per-call figures, and what the store holds; the report has a
    row per case and no loop targets (quick counts measure nothing)."""
    out = tmp_path / "results.json"
    cases = ("partial_fit", "predict_loop", "knn_fit")
    command = [sys.executable, str(RUN), "--cases", ",".join(cases), "--repeats", "1"]
    command += ["--skip-scaling", "--quick", "--json", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert 0 == done.returncode, done.stderr[-3000:]
    results = json.loads(out.read_text())
    expected_calls = {"partial_fit": 8, "predict_loop": 30, "knn_fit": 1}
    for case, calls in expected_calls.items():
        loop = results["cases"][case]["loop"]
        assert calls == loop["loop_calls"]["median"], case
        for figure in ("untracked_s", "tracked_s", "ratio", "exit_s", "call_ms.tracked_p99"):
            assert loop[figure]["median"] > 0, (case, figure)
        assert 1 == loop["ratio"]["n"], case
        assert loop["runs"]["median"] >= 2, case  # the parent run and at least one stage run
        assert loop["models"]["median"] >= 1, case
        assert loop["artifact_mb"]["median"] > 0, case
    table = [line for line in done.stdout.splitlines() if line.startswith(("| 7.", "| 8.", "| 9."))]
    assert 3 == len(table), done.stdout
    assert "QUICK counts" in done.stdout
    assert "predict x2000: caller overhead" not in done.stdout  # no targets from quick counts


def test_every_function_the_sweep_profile_budgets_for_exists():
    """A moved or renamed module would leave its line of the budget at 0 ms without a word:
    each ``file:function`` is found in tracked, the demo or MLflow."""
    import ast
    import re

    import mlflow

    root = RUN.parents[1]
    text = (root / "benchmarks" / "profile_sweep.py").read_text()
    budget = ast.literal_eval(re.search(r"^BUDGET = (\[.*?^\])", text, re.M | re.S).group(1))
    folders = (root / "tracked", root / "demo", Path(mlflow.__file__).parent)
    sources = [path for folder in folders for path in folder.rglob("*.py")]
    missing = [
        key
        for _, key in budget
        if not any(
            path.as_posix().endswith(key.split(":")[0])
            and re.search(rf"^\s*def {key.split(':')[1]}\b", path.read_text(), re.M)
            for path in sources
        )
    ]
    assert [] == missing
