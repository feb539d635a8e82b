"""The package's layers: ``import tracked`` stays light. The import-linter contracts
(imports only go down, no cycles inside a layer, mlflow only in the MLflow backend) are a step
of .ci/checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
