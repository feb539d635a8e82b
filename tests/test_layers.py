"""The package's layers (pyproject's import-linter contracts): imports only go down, no
cycles inside a layer, and mlflow is imported by the MLflow backend alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(lint).exists():
        pytest.skip("import-linter is not installed: pip install -e '.[test]'")
    done = subprocess.run(
        [lint, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == done.returncode, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_importing_tracked_neither_imports_mlflow_nor_installs_process_hooks():
    program = (
        "import atexit, logging, sys  # logging registers its own exit handler\n"
        "before = atexit._ncallbacks()\n"
        "import tracked\n"
        "print('mlflow' in sys.modules, atexit._ncallbacks() - before)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "False 0" == done.stdout.strip()
