"""The cost of ``import tracked`` in a process that has already imported scikit-learn.

The scikit-learn modules are the ones demo/iris.py imports. Also reports whether the import
loaded any part of mlflow (it must not).
"""

from __future__ import annotations

import time
from typing import Any

from cases.common import Options, mlflow_imported


def run(mode: str, options: Options) -> dict[str, Any]:
    if mode != "import":
        msg = f"import has no mode {mode!r}"
        raise ValueError(msg)
    import sklearn.datasets
    import sklearn.decomposition
    import sklearn.linear_model
    import sklearn.model_selection
    import sklearn.preprocessing  # noqa: F401 - the demo's imports, before the clock starts

    started = time.perf_counter()
    import tracked  # noqa: F401

    seconds = time.perf_counter() - started
    return {"import_ms": seconds * 1e3, "mlflow_imported": mlflow_imported()}
