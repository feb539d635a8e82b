"""Case 4: the same workflow and the same content, logged by hand with ``MlflowClient``.

What a careful user would write without tracked: the demo's steps as plain scikit-learn
calls, each followed by explicit-run-id ``MlflowClient`` calls that record what tracked
records -- one parent run (params, evaluation metrics, the composed ``pipeline`` model, the
verification tag) and six child runs (tags, ``duration_s``, the operator's params on fit,
training / evaluation metrics on the classifier, the classifier as ``model``).

Models are logged *the way tracked does it* (tracked/backends/mlflow.py ``log_model``):
``create_logged_model`` in the run's experiment, ``log_outputs``, ``mlflow.sklearn.save_model``
in the skops format with explicit pip requirements into a temporary folder,
``log_model_artifacts``, ``finalize_logged_model(READY)``. One step is left out: tracked first
asks skops which types in the model it does not trust (to list them in the MLmodel file); for
StandardScaler, PCA and LogisticRegression the answer is none, so the file is the same.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from cases.common import Options, Split, load_data, paired_overhead, setup_seconds

EXPERIMENT = "iris-demo"
PASSES = 10
PARENT_RUN_TAG = "mlflow.parentRunId"


def run(mode: str, options: Options) -> dict[str, Any]:
    import mlflow  # noqa: F401 - a hand-written script imports mlflow up front

    data = load_data(options.rows)
    if mode == "workflow":
        return workflow(options, data)
    if mode == "overhead":
        client = connect(options.store)
        return paired_overhead(
            lambda: HandLogged(*client).run_pass(data),
            lambda: HandLogged(None, None).run_pass(data),
            options.passes or PASSES,
        )
    msg = f"client has no mode {mode!r}"
    raise ValueError(msg)


def workflow(options: Options, data: Split) -> dict[str, Any]:
    setup = setup_seconds(options)
    started = time.perf_counter()
    client, experiment_id = connect(options.store)
    workflow_run = HandLogged(client, experiment_id)
    workflow_run.run_pass(data)
    seconds = time.perf_counter() - started
    parent = workflow_run.parent
    children = client.search_runs([experiment_id], f"tags.`{PARENT_RUN_TAG}` = '{parent}'")
    return {
        "workflow_s": seconds,
        "setup_s": setup,
        "accuracy": workflow_run.accuracy,
        "child_runs": len(children),
        "models": len(client.search_logged_models([experiment_id])),
    }


def connect(store: str) -> tuple[Any, str]:
    """The client and the id of the experiment (created if missing)."""
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return client, experiment.experiment_id
    return client, client.create_experiment(EXPERIMENT)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class HandLogged:
    """One train + predict pass of the demo's workflow; with a client, logged by hand.

    ``run_pass`` returns the seconds of each step *including* its logging, so that a pass
    without a client is the untracked baseline of the same calls.
    """

    def __init__(self, client: Any, experiment_id: str | None, n_components=2, C=1.0) -> None:
        self.client = client
        self.experiment_id = experiment_id
        self.n_components = n_components
        self.C = C
        self.parent: str | None = None
        self.times: dict[str, float] = {}
        self.fitted: list[tuple[str, Any]] = []
        self.example: Any = None
        self.accuracy = float("nan")

    def run_pass(self, data: Split) -> dict[str, float]:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        if self.client is not None:
            self.start_parent()
        X_train, y_train, X_test, y_test = data.X_train, data.y_train, data.X_test, data.y_test
        self.example = X_train[:5].copy()
        scaler = StandardScaler()
        pca = PCA(n_components=self.n_components, random_state=0)
        classifier = LogisticRegression(C=self.C, max_iter=1000)
        fit, inference = "fit", "inference"

        X = self.step("preprocessing", "transformer", fit, scaler,
                      partial(scaler.fit_transform, X_train, y_train))  # fmt: skip
        X = self.step("reduction", "transformer", fit, pca,
                      partial(pca.fit_transform, X, y_train))  # fmt: skip
        self.step("classification", "estimator", fit, classifier,
                  partial(classifier.fit, X, y_train), X, y_train)  # fmt: skip
        X = self.step("preprocessing", "transformer", inference, scaler,
                      partial(scaler.transform, X_test))  # fmt: skip
        X = self.step("reduction", "transformer", inference, pca,
                      partial(pca.transform, X))  # fmt: skip
        predictions = self.step("classification", "estimator", inference, classifier,
                                partial(classifier.predict, X), X, y_test)  # fmt: skip
        self.accuracy = float((predictions == y_test).mean())
        if self.client is not None:
            self.client.set_terminated(self.parent, status="FINISHED", end_time=now_ms())
        return self.times

    def start_parent(self) -> None:
        from mlflow.entities import Param

        run = self.client.create_run(
            self.experiment_id,
            run_name="IrisPipeline",
            tags={"tracked.pipeline": "hand-written", "tracked.version": "none"},
        )
        self.parent = run.info.run_id
        params = [Param("n_components", str(self.n_components)), Param("C", str(self.C))]
        self.client.log_batch(self.parent, params=params, synchronous=True)

    def step(
        self,
        stage: str,
        kind: str,
        phase: str,
        operator: Any,
        compute: Callable[[], Any],
        X: Any = None,
        y: Any = None,
    ) -> Any:
        """Run one step, then (with a client) log it as a child run of the parent."""
        start_ms = now_ms()
        started = time.perf_counter()
        result = compute()
        duration = time.perf_counter() - started
        if phase == "fit":
            self.fitted.append((stage, operator))
        if self.client is not None:
            self.log_step(stage, kind, phase, operator, start_ms, duration, X, y)
        self.times[f"{stage}:{phase}"] = time.perf_counter() - started
        return result

    def log_step(self, stage, kind, phase, operator, start_ms, duration, X, y) -> None:
        from mlflow.entities import Metric, Param, RunTag
        from sklearn.pipeline import Pipeline

        client, parent = self.client, self.parent
        operator_name = f"{type(operator).__module__}.{type(operator).__qualname__}"
        tags = {
            PARENT_RUN_TAG: parent,
            "tracked.stage": stage,
            "tracked.kind": kind,
            "tracked.phase": phase,
            "tracked.operator": operator_name,
        }
        child = client.create_run(
            self.experiment_id, start_time=start_ms, tags=tags, run_name=f"{stage}:{phase}"
        ).info.run_id
        params = []
        if phase == "fit":
            params = [Param(k, str(v)) for k, v in operator.get_params(deep=True).items()]
        metrics = [Metric("duration_s", duration, start_ms, 0)]
        evaluation = []
        if kind == "estimator" and y is not None:
            prefix = "training_" if phase == "fit" else ""
            stamp = now_ms()
            scores = classification_metrics(y, operator.predict(X))
            evaluation = [Metric(prefix + k, v, stamp, 0) for k, v in scores.items()]
        client.log_batch(child, metrics=metrics + evaluation, params=params, synchronous=True)
        if kind == "estimator" and phase == "fit":
            log_model(client, self.experiment_id, child, "model", operator)
        if evaluation:
            client.log_batch(parent, metrics=evaluation, synchronous=True)
        if kind == "estimator" and phase == "fit":
            composed = Pipeline(list(self.fitted))
            log_model(client, self.experiment_id, parent, "pipeline", composed, self.example)
        if kind == "estimator" and phase == "inference":
            tags = [RunTag("tracked.pipeline_verified", "true")]
            client.log_batch(parent, tags=tags, synchronous=True)
        client.set_terminated(child, status="FINISHED", end_time=start_ms + round(duration * 1e3))


def classification_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """The evaluation set tracked logs for a classifier."""
    from sklearn import metrics

    return {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "f1_macro": float(metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "precision_macro": float(
            metrics.precision_score(y_true, y_pred, average="macro", zero_division=0)
        ),
        "recall_macro": float(
            metrics.recall_score(y_true, y_pred, average="macro", zero_division=0)
        ),
    }


@functools.cache
def pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "scikit-learn", "skops")]


def log_model(
    client: Any, experiment_id: str, run_id: str, name: str, model: Any, example: Any = None
) -> str:
    """Log a scikit-learn model as ``runs:/<run_id>/<name>``, the call sequence tracked uses."""
    import mlflow.sklearn
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model, infer_signature

    signature = None if example is None else infer_signature(example, model.predict(example))
    logged = client.create_logged_model(
        experiment_id=experiment_id, name=name, source_run_id=run_id
    )
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    with tempfile.TemporaryDirectory(prefix="hand-model-") as tmp:
        path = os.path.join(tmp, name)
        mlflow.sklearn.save_model(
            model,
            path,
            mlflow_model=Model(
                artifact_path=logged.artifact_location,
                model_uuid=logged.model_id,
                run_id=run_id,
                model_id=logged.model_id,
            ),
            serialization_format="skops",
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
        )
        client.log_model_artifacts(logged.model_id, path)
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    return f"models:/{logged.model_id}"
