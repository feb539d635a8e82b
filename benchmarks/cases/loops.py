"""Cases 7-9: loops of one stage, each against its untracked twin in the same process.

- ``partial_fit``: ``SGDClassifier.partial_fit`` on 200 batches of 1000 x 20 (ground truth
  given, so every call is evaluated on its batch).
- ``predict_loop``: one fit of a ``LogisticRegression`` on 1000 x 20, then 2000 single-row
  predictions without ground truth (a serving loop).
- ``knn_fit``: one fit of ``KNeighborsClassifier(algorithm="brute")`` on 40,000 x 30 (ground
  truth given, so the fit is evaluated on its training data).
- ``wide_frame`` / ``long_frame``: a pandas DataFrame workflow of 1000 x 20,000 / 1,000,000 x
  20 floats: ``StandardScaler`` (pandas output) then ``LogisticRegression``, fitted, then a
  prediction pass given ground truth; four calls, compared by their sum (``calls_ratio``, the
  caller's time).

The twin is an instance of the same class with ``tracking = False``; it runs first (it also
warms scikit-learn's imports), then the tracked instance, each inside ``with pipe:``. Every
stage call is timed on the caller's thread; the i-th tracked call is paired with the i-th
untracked one. The tracked total includes what tracking pays once (mlflow's import in the
writer, opening the store) and the ``with`` exit (the parent run ends, the writer drains).
``--quick`` shrinks the counts so that a smoke test runs in seconds.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cases.common import Options, setup_seconds

EXPERIMENT = "bench-loops"
#: Per case: (full, quick) sizes.
SIZES = {
    "partial_fit": {"full": {"calls": 200, "batch": 1000}, "quick": {"calls": 8, "batch": 100}},
    "predict_loop": {"full": {"calls": 2000, "train": 1000}, "quick": {"calls": 30, "train": 200}},
    "knn_fit": {"full": {"train_rows": 40_000}, "quick": {"train_rows": 2_000}},
    "wide_frame": {
        "full": {"frame_rows": 1000, "frame_columns": 20_000},
        "quick": {"frame_rows": 50, "frame_columns": 2000},
    },
    "long_frame": {
        "full": {"frame_rows": 1_000_000, "frame_columns": 20},
        "quick": {"frame_rows": 20_000, "frame_columns": 20},
    },
}
FEATURES = {"partial_fit": 20, "predict_loop": 20, "knn_fit": 30}


def pipeline_classes() -> dict[str, type]:
    """The three pipeline classes (defined on call: ``import tracked`` only in the child)."""
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    from tracked import TrackedPipeline

    class Incremental(TrackedPipeline):
        """One estimator stage that learns batch by batch."""

        experiment = EXPERIMENT

        def learn(self, X, y=None, stage="estimator"):
            if not hasattr(self, "classifier"):
                self.classifier = SGDClassifier(random_state=0)
            self.operator = self.classifier
            self.classifier.partial_fit(X, y, classes=[0, 1])
            return self.classifier

    class Serving(TrackedPipeline):
        """Fit once, then predict row by row."""

        experiment = EXPERIMENT

        def classify(self, X, y=None, train=False, stage="estimator"):
            if train:
                self.classifier = LogisticRegression(max_iter=1000)
                self.operator = self.classifier
                return self.classifier.fit(X, y)
            self.operator = self.classifier
            return self.classifier.predict(X)

    class Neighbours(TrackedPipeline):
        """One brute-force nearest-neighbours fit."""

        experiment = EXPERIMENT

        def fit_neighbours(self, X, y=None, stage="estimator"):
            self.classifier = KNeighborsClassifier(algorithm="brute")
            self.operator = self.classifier
            return self.classifier.fit(X, y)

    class Frames(TrackedPipeline):
        """Scale (pandas output), classify: a DataFrame workflow."""

        experiment = EXPERIMENT

        def scale(self, X, y=None, train=True, stage="transformer"):
            if train:
                self.scaler = StandardScaler().set_output(transform="pandas").fit(X)
            self.operator = self.scaler
            return self.scaler.transform(X)

        def classify(self, X, y=None, train=True, stage="estimator"):
            if train:
                self.classifier = LogisticRegression(max_iter=100)
                self.operator = self.classifier
                return self.classifier.fit(X, y)
            self.operator = self.classifier
            return self.classifier.predict(X)

    return {
        "partial_fit": Incremental,
        "predict_loop": Serving,
        "knn_fit": Neighbours,
        "wide_frame": Frames,
        "long_frame": Frames,
    }


def run(mode: str, options: Options) -> dict[str, Any]:
    if mode != "loop":
        msg = f"loop cases have no mode {mode!r}"
        raise ValueError(msg)
    sizes = SIZES[options.case]["quick" if options.quick else "full"]
    data = make_data(options.case, sizes)
    pipeline_class = pipeline_classes()[options.case]
    loop = LOOPS[options.case]
    setup = setup_seconds(options)

    off = pipeline_class()
    off.tracking = False
    untracked = timed_loop(off, loop, data, sizes)
    on = pipeline_class()
    on.tracking_uri = options.store
    tracked = timed_loop(on, loop, data, sizes)
    figures = compare(untracked, tracked)
    figures.update(setup_s=setup, **sizes, **recorded(options.store, on.run_id))
    return figures


def make_data(case: str, sizes: dict[str, int]) -> dict[str, Any]:
    if case in FRAME_CASES:
        return frame_data(sizes["frame_rows"], sizes["frame_columns"])
    from sklearn.datasets import make_classification

    rows = {
        "partial_fit": sizes.get("calls", 0) * sizes.get("batch", 0),
        "predict_loop": sizes.get("train", 0) + sizes.get("calls", 0),
        "knn_fit": sizes.get("train_rows", 0),
    }[case]
    X, y = make_classification(n_samples=rows, n_features=FEATURES[case], random_state=0)
    return {"X": X, "y": y}


FRAME_CASES = ("wide_frame", "long_frame")


def frame_data(rows: int, columns: int) -> dict[str, Any]:
    """A float frame of ``rows`` x ``columns`` (named ``f0``...) and a target from it."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(rows, columns)), columns=[f"f{i}" for i in range(columns)])
    y = (X["f0"] + 0.5 * rng.normal(size=rows) > 0).astype(int).to_numpy()
    return {"X": X, "y": y}


def frame_loop(pipe: Any, data: dict[str, Any], sizes: dict[str, int], timed) -> None:
    X, y = data["X"], data["y"]
    timed(pipe.classify, timed(pipe.scale, X, y), y)
    timed(pipe.classify, timed(pipe.scale, X, train=False), y, train=False)


Loop = Callable[[Any, dict[str, Any], dict[str, int], Callable[..., Any]], None]


def partial_fit_loop(pipe: Any, data: dict[str, Any], sizes: dict[str, int], timed) -> None:
    batch = sizes["batch"]
    for index in range(sizes["calls"]):
        rows = slice(index * batch, (index + 1) * batch)
        timed(pipe.learn, data["X"][rows], data["y"][rows])


def predict_loop(pipe: Any, data: dict[str, Any], sizes: dict[str, int], timed) -> None:
    train = sizes["train"]
    pipe.classify(data["X"][:train], data["y"][:train], train=True)  # not a loop call
    for row in range(train, train + sizes["calls"]):
        timed(pipe.classify, data["X"][row : row + 1])


def knn_loop(pipe: Any, data: dict[str, Any], sizes: dict[str, int], timed) -> None:
    timed(pipe.fit_neighbours, data["X"], data["y"])


LOOPS: dict[str, Loop] = {
    "partial_fit": partial_fit_loop,
    "predict_loop": predict_loop,
    "knn_fit": knn_loop,
    "wide_frame": frame_loop,
    "long_frame": frame_loop,
}


def timed_loop(pipe: Any, loop: Loop, data: dict[str, Any], sizes: dict[str, int]) -> dict:
    """Seconds of the whole ``with pipe:`` block, of its exit, and of every loop call."""
    calls: list[float] = []

    def timed(stage: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = stage(*args, **kwargs)
        calls.append(time.perf_counter() - started)
        return result

    started = time.perf_counter()
    with pipe:
        loop(pipe, data, sizes, timed)
        exiting = time.perf_counter()
    ended = time.perf_counter()
    return {"total_s": ended - started, "exit_s": ended - exiting, "calls": calls}


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank, so p99 of 200 calls is the second largest)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered)) - 1))
    return ordered[rank]


def compare(untracked: dict[str, Any], tracked: dict[str, Any]) -> dict[str, Any]:
    """Totals, their ratio, and per-call figures (ms) of both and of their difference."""
    off, on = untracked["calls"], tracked["calls"]
    diffs = [a - b for a, b in zip(on, off, strict=True)]
    ms = 1e3
    return {
        "loop_calls": len(on),
        "untracked_s": untracked["total_s"],
        "tracked_s": tracked["total_s"],
        "ratio": tracked["total_s"] / untracked["total_s"],
        "exit_s": tracked["exit_s"],
        "untracked_exit_s": untracked["exit_s"],
        "calls_ratio": sum(on) / sum(off),
        "call_ms": {
            "untracked_median": statistics.median(off) * ms,
            "untracked_p99": quantile(off, 0.99) * ms,
            "tracked_median": statistics.median(on) * ms,
            "tracked_p99": quantile(on, 0.99) * ms,
            "tracked_max": max(on) * ms,
            "overhead_median": statistics.median(diffs) * ms,
            "overhead_p99": quantile(diffs, 0.99) * ms,
        },
    }


def recorded(store: str, run_id: str | None) -> dict[str, Any]:
    """What the store holds (read after the clock stopped): runs, logged models, and the
    bytes of artifacts under the child's folder (MLflow's ``./mlruns``)."""
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=50_000)
    models: dict[str, int] = {}
    token = None
    while True:
        page = client.search_logged_models(experiments, max_results=1000, page_token=token)
        for model in page:
            models[model.name] = models.get(model.name, 0) + 1
        token = page.token
        if not token:
            break
    artifacts = Path(os.getcwd()) / "mlruns"
    size = sum(p.stat().st_size for p in artifacts.rglob("*") if p.is_file())
    return {
        "spooled_stage_records": spooled_stage_records(),
        "runs": len(runs),
        "child_runs": sum(1 for r in runs if r.data.tags.get("mlflow.parentRunId") == run_id),
        "models": sum(models.values()),
        "models_by_name": models,
        "artifact_mb": size / 1e6,
    }


def spooled_stage_records() -> int:
    """Stage records left in the spool (``TRACKED_SPOOL_DIR``, the child's folder): written
    when the ``with`` exit stopped waiting at its bound (``TRACKED_EXIT_TIMEOUT``)."""
    root = Path(os.environ.get("TRACKED_SPOOL_DIR", "spool"))
    left = 0
    for folder in root.glob("*/"):
        entries = _lines(folder / "entries.jsonl")
        done = {e["seq"] for e in _lines(folder / "progress.jsonl") if e.get("step") == -1}
        left += sum(1 for e in entries if e.get("kind") == "stage" and e["seq"] not in done)
    return left


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
