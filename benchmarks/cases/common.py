"""What the cases share: options, data, the demo's pipeline class and paired timing.

Nothing heavy is imported at module level: the ``import`` case measures ``import tracked``
in a process that has imported only scikit-learn.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "iris.py"

#: The stage calls of one train + predict pass, in order, named as tracked names child runs.
STAGE_CALLS = (
    "preprocessing:fit",
    "reduction:fit",
    "classification:fit",
    "preprocessing:inference",
    "reduction:inference",
    "classification:inference",
)


@dataclass(frozen=True)
class Options:
    """What the parent asked of one child process."""

    store: str  # sqlite:///<tmpdir>/mlflow.db, the child's own store (cwd is <tmpdir>)
    rows: int | None = None  # None: iris; else make_classification rows
    passes: int | None = None  # overhead mode: timed passes (None: the case's default)
    started: float = 0.0  # time.perf_counter() when the child process began
    case: str = ""  # the case's name (a module may run several cases)
    quick: bool = False  # loop cases: small counts, for a smoke test


@dataclass(frozen=True)
class Split:
    X_train: Any
    X_test: Any
    y_train: Any
    y_test: Any


def load_data(rows: int | None) -> Split:
    """The demo's iris split, or ``rows`` synthetic rows with 20 features (same split)."""
    from sklearn.datasets import load_iris, make_classification
    from sklearn.model_selection import train_test_split

    if rows is None:
        X, y = load_iris(return_X_y=True)
    else:
        X, y = make_classification(n_samples=rows, n_features=20, random_state=0)
    return Split(*train_test_split(X, y, test_size=0.2, random_state=42))


def iris_pipeline_class() -> type:
    """``IrisPipeline`` from demo/iris.py: the canonical workflow, not a copy of it."""
    spec = importlib.util.spec_from_file_location("iris_demo", DEMO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["iris_demo"] = module
    spec.loader.exec_module(module)
    return module.IrisPipeline


def run_demo(pipe: Any, data: Split) -> tuple[float, float]:
    """The demo's workflow (``with pipe: train; predict``): seconds and accuracy.

    The ``with`` exit ends the parent run: that is the flush/close of a tracked pass.
    """
    started = time.perf_counter()
    with pipe:
        pipe.train(data.X_train, data.y_train)
        predictions = pipe.predict(data.X_test, data.y_test)
    seconds = time.perf_counter() - started
    return seconds, float((predictions == data.y_test).mean())


def timed_stage_pass(pipe: Any, data: Split) -> dict[str, float]:
    """One train + predict pass, calling the stages one by one: seconds per stage call."""
    times: dict[str, float] = {}

    def timed(name: str, stage: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = stage(*args, **kwargs)
        times[name] = time.perf_counter() - started
        return result

    X = timed("preprocessing:fit", pipe.preprocessing, data.X_train, data.y_train)
    X = timed("reduction:fit", pipe.reduction, X, data.y_train)
    timed("classification:fit", pipe.classification, X, data.y_train)
    X = timed("preprocessing:inference", pipe.preprocessing, data.X_test, train=False)
    X = timed("reduction:inference", pipe.reduction, X, train=False)
    timed("classification:inference", pipe.classification, X, data.y_test, predict=True)
    return times


def paired_overhead(
    on: Callable[[], dict[str, float]], off: Callable[[], dict[str, float]], passes: int
) -> dict[str, Any]:
    """Median extra time per call of ``on`` over ``off``, passes alternating in one process.

    Each callable runs one pass and returns seconds per named call. One untimed warm-up pass
    of each comes first (imports, the first model logged, caches): cold costs belong to the
    workflow figure, not to the per-call one. The order alternates (on off, off on, ...) so
    that drift hits both alike. The i-th call of a tracked pass is paired with the i-th call
    of the untracked pass next to it.
    """
    on()
    off()
    diffs: dict[str, list[float]] = {}
    pass_diffs: list[float] = []
    for index in range(passes):
        if index % 2:
            off_times, on_times = off(), on()
        else:
            on_times, off_times = on(), off()
        for name, seconds in on_times.items():
            diffs.setdefault(name, []).append(seconds - off_times[name])
        pass_diffs.append(sum(on_times.values()) - sum(off_times.values()))
    every = [d for values in diffs.values() for d in values]
    return {
        "overhead_ms": statistics.median(every) * 1e3,
        "pass_overhead_ms": statistics.median(pass_diffs) * 1e3,
        "per_call_ms": {name: statistics.median(v) * 1e3 for name, v in diffs.items()},
        "calls": len(every),
    }


def mlflow_imported() -> bool:
    """Whether any part of mlflow is loaded in this process."""
    return any(name == "mlflow" or name.startswith("mlflow.") for name in sys.modules)


def setup_seconds(options: Options) -> float:
    """Seconds from the child's start until now (imports, data): called as the workflow starts."""
    return time.perf_counter() - options.started
