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


def test_importing_tracked_loads_only_what_defining_a_class_needs():
    """At most 25 of tracked's modules, and none of the store's or the pictures' libraries
    beyond what scikit-learn imported already: the capture machinery and the delivery layer
    load with the first tracked call."""
    program = (
        "import sys, sklearn\n"
        "before = set(sys.modules)\n"
        "import tracked\n"
        "new = {m.split('.')[0] for m in sys.modules if m not in before}\n"
        "heavy = ('mlflow', 'skops', 'matplotlib', 'sqlalchemy', 'cloudpickle', 'pandas')\n"
        "print(len([m for m in sys.modules if m.split('.')[0] == 'tracked']))\n"
        "print(sorted(m for m in heavy if m in new))\n"
        "print('tracked.delivery.writer' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    count, heavy, writer = done.stdout.split("\n")[:3]
    assert int(count) <= 25, count
    assert "[]" == heavy
    assert "False" == writer
