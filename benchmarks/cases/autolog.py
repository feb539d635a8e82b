"""Case 5: ``mlflow.sklearn.autolog()`` on the equivalent scikit-learn ``Pipeline``.

StandardScaler -> PCA(2) -> LogisticRegression, as the demo's stages; ``fit`` then ``score``
on the test split, autolog with its default settings (so the model is logged, and MLflow
infers its pip requirements). The workflow time runs from ``autolog()`` to the end of
``score`` plus ``mlflow.flush_async_logging()``; ``import mlflow`` is setup, before it.

``overhead``: ``fit`` and ``score`` timed with autolog on and off (``autolog(disable=True)``
reverts MLflow's patches), alternating passes in one process. These are whole-pipeline calls:
each covers three of tracked's stage calls.
"""

from __future__ import annotations

import time
from typing import Any

from cases.common import Options, Split, load_data, paired_overhead, setup_seconds

#: Autolog's fit costs seconds (it infers pip requirements in a subprocess): few passes.
PASSES = 3


def run(mode: str, options: Options) -> dict[str, Any]:
    import mlflow
    import mlflow.sklearn

    mlflow.set_tracking_uri(options.store)
    data = load_data(options.rows)
    if mode == "workflow":
        return workflow(options, data)
    if mode == "overhead":
        return overhead(options, data)
    msg = f"autolog has no mode {mode!r}"
    raise ValueError(msg)


def make_pipeline() -> Any:
    """The demo's workflow as one scikit-learn Pipeline."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("preprocessing", StandardScaler()),
            ("reduction", PCA(n_components=2, random_state=0)),
            ("classification", LogisticRegression(C=1.0, max_iter=1000)),
        ]
    )


def workflow(options: Options, data: Split) -> dict[str, Any]:
    import mlflow

    setup = setup_seconds(options)
    started = time.perf_counter()
    mlflow.sklearn.autolog()
    model = make_pipeline()
    model.fit(data.X_train, data.y_train)
    accuracy = model.score(data.X_test, data.y_test)
    mlflow.flush_async_logging()
    seconds = time.perf_counter() - started
    client = mlflow.MlflowClient(options.store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {
        "workflow_s": seconds,
        "setup_s": setup,
        "accuracy": float(accuracy),
        "runs": len(client.search_runs(experiments)),
        "models": len(client.search_logged_models(experiments)),
    }


def overhead(options: Options, data: Split) -> dict[str, Any]:
    import mlflow

    def one_pass(enabled: bool) -> dict[str, float]:
        mlflow.sklearn.autolog(disable=not enabled)
        model = make_pipeline()
        started = time.perf_counter()
        model.fit(data.X_train, data.y_train)
        fitted = time.perf_counter()
        model.score(data.X_test, data.y_test)
        scored = time.perf_counter()
        mlflow.flush_async_logging()
        return {"fit": fitted - started, "score": scored - fitted}

    return paired_overhead(
        lambda: one_pass(True), lambda: one_pass(False), options.passes or PASSES
    )
