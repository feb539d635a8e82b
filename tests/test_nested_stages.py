"""A stage that calls other stages: each records what it did, nested under its caller."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import TrackedPipeline


class Orchestrated(TrackedPipeline):
    experiment = "nested"

    def scale(self, X, y=None, stage="transformer"):
        self.operator = self.scaler = StandardScaler().fit(X)
        return self.scaler.transform(X)

    def clf(self, X, y=None, stage="estimator"):
        self.operator = self.model = LogisticRegression(max_iter=1000).fit(X, y)
        return self.model.predict(X)

    def train(self, X, y=None, stage="estimator"):
        return self.clf(self.scale(X), y)


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)) * np.array([1.0, 50.0, 0.01]) + np.array([0, 300, 2])
    y = (X[:, 0] + X[:, 1] / 50 + rng.normal(scale=0.5, size=120) > 6).astype(int)
    return X, y


def _runs(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_inner_stages_nest_under_the_calling_stage_which_records_only_its_own_work(
    tracking_uri, client
):
    X, y = _data()
    pipe = Orchestrated()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.train(X, y)
    true_training_accuracy = accuracy_score(y, pipe.model.predict(pipe.scaler.transform(X)))

    runs = {run.info.run_name: run for run in _runs(client, "nested")}
    parent = client.get_run(pipe.run_id)
    outer, scale, clf = runs["train:fit"], runs["scale:fit"], runs["clf:fit"]
    # The hierarchy the MLflow UI shows: parent > train > (scale, clf).
    assert pipe.run_id == outer.data.tags["mlflow.parentRunId"]
    assert outer.info.run_id == scale.data.tags["mlflow.parentRunId"]
    assert outer.info.run_id == clf.data.tags["mlflow.parentRunId"]
    assert "train" == clf.data.tags["tracked.parent_stage"]
    # The inner calls as what they are.
    assert "sklearn.preprocessing._data.StandardScaler" == scale.data.tags["tracked.operator"]
    assert "sklearn.linear_model._logistic.LogisticRegression" == clf.data.tags["tracked.operator"]
    assert "1000" == clf.data.params["max_iter"]
    assert clf.outputs.model_outputs  # the model, logged once: by the stage that fitted it
    # The outer stage assigned no operator: no operator, params, model or metrics of its own.
    assert "tracked.operator" not in outer.data.tags
    assert "nested_stages" == outer.data.tags["tracked.phase_basis"]
    assert {} == outer.data.params
    assert not outer.outputs.model_outputs
    assert {"duration_s"} == set(outer.data.metrics)
    # The parent's training metrics are the ones computed on what the classifier saw.
    assert true_training_accuracy == pytest.approx(parent.data.metrics["training_accuracy"])
    assert true_training_accuracy == pytest.approx(clf.data.metrics["training_accuracy"])


def test_a_calling_stage_that_assigns_its_own_operator_records_that_operator():
    from tracked.testing import MemoryBackend

    backend = MemoryBackend()

    class Own(Orchestrated):
        def train(self, X, y=None, stage="estimator"):
            Xs = self.scale(X)
            self.operator = self.final = LogisticRegression(C=0.5, max_iter=500).fit(Xs, y)
            return self.final.predict(Xs)

    Own.backend = backend
    X, y = _data()
    with Own() as pipe:
        pipe.train(X, y)
    [outer] = [run for run in backend.children(pipe.run_id) if run.name == "train:fit"]
    [scale] = backend.children(outer.run_id)
    assert "scale:fit" == scale.name
    assert "0.5" == outer.params["C"]
    assert "sklearn.linear_model._logistic.LogisticRegression" == outer.tags["tracked.operator"]
    assert outer.models  # its own fitted operator
    # Its operator saw the scaled data, not the stage's input: it is not scored on the input.
    assert not any(key.startswith("training_") for key in outer.metrics)


def test_a_prediction_through_a_calling_stage_is_inference_with_nested_inference_runs():
    from tracked.testing import MemoryBackend

    backend = MemoryBackend()

    class Predicting(Orchestrated):
        def transform(self, X, y=None, stage="transformer"):
            self.operator = self.scaler
            return self.scaler.transform(X)

        def classify(self, X, y=None, stage="estimator"):
            self.operator = self.model
            return self.model.predict(X)

        def predict(self, X, y=None, stage="estimator"):
            return self.classify(self.transform(X), y)

    Predicting.backend = backend
    X, y = _data()
    with Predicting() as pipe:
        pipe.train(X, y)
        pipe.predict(X, y)
    top = [run.name for run in backend.children(pipe.run_id)]
    assert ["train:fit", "predict:inference"] == top
    [outer] = [run for run in backend.children(pipe.run_id) if run.name == "predict:inference"]
    assert ["transform:inference", "classify:inference"] == [
        run.name for run in backend.children(outer.run_id)
    ]


def test_composed_models_of_inner_calls_keep_their_own_steps(tracking_uri, client):
    class Twice(Orchestrated):
        def train(self, X, y=None, stage="estimator"):
            self.clf(self.scale(X), y)
            return self.clf(self.scale(X), y)

    X, y = _data()
    pipe = Twice()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.train(X, y)
    parent = client.get_run(pipe.run_id)
    steps = sorted(output.step for output in parent.outputs.model_outputs)
    assert [0, 1] == steps


def test_nested_runs_keep_their_hierarchy_through_the_spool_and_tracked_sync(
    tracking_uri, client, spool_dir
):
    import contextlib
    import io

    from servers import free_port

    from tracked import TrackingWarning
    from tracked.cli import main as tracked_cli

    X, y = _data()
    pipe = Orchestrated()
    tracked.configure(
        pipe, tracking_uri=f"http://127.0.0.1:{free_port()}"
    )  # nobody listens: all is spooled
    with pytest.warns(TrackingWarning, match="is away"), pipe:
        pipe.train(X, y)
    local_id = pipe.run_id
    assert local_id.startswith("local-")

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = tracked_cli(["sync", "--spool", str(spool_dir), "--tracking-uri", tracking_uri])
    assert 0 == code, err.getvalue()

    runs = {run.info.run_name: run for run in _runs(client, "nested")}
    outer = runs["train:fit"]
    parent_id = outer.data.tags["mlflow.parentRunId"]
    assert local_id == client.get_run(parent_id).data.tags["tracked.local_run_id"]
    assert outer.info.run_id == runs["scale:fit"].data.tags["mlflow.parentRunId"]
    assert outer.info.run_id == runs["clf:fit"].data.tags["mlflow.parentRunId"]
