"""``tracked.pipeline_verified`` speaks of the model that was logged, not of live objects."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tracked import TrackedPipeline, TrackingWarning


class Refittable(TrackedPipeline):
    """The scaler is refitted in place (the same object) when ``train`` is set."""

    experiment = "verified"

    def __init__(self):
        self.scaler = StandardScaler()

    def scale(self, X, train=True, stage="transformer"):
        if train:
            self.scaler.fit(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression().fit(X, y)
        self.operator = self.model
        return self.model if train else self.model.predict(X)


def data(seed, shift=0.0, n=200):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) + shift
    y = (X[:, 0] - shift + 0.5 * X[:, 1] > 0).astype(int)
    return X, y


def test_a_transformer_refitted_after_the_model_was_logged_is_not_verified_with_the_reason(
    tracking_uri, client, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    A, y = data(0)
    B, _ = data(1, shift=3.0)
    pipe = Refittable()
    pipe.tracking_uri = tracking_uri
    with pipe:
        pipe.clf(pipe.scale(A), y)
        pipe.scale(B)  # refitted in place, after the composed model was logged
        with pytest.warns(TrackingWarning, match="refitted after the model was logged"):
            predicted = pipe.clf(pipe.scale(A, train=False), train=False)
    logged = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline").predict(A)
    assert not np.array_equal(predicted, logged)  # the workflow has moved on
    tags = client.get_run(pipe.run_id).data.tags
    assert "false" == tags["tracked.pipeline_verified"]
    assert (
        "'scale' was refitted after the model was logged"
        in tags["tracked.pipeline_verified_reason"]
    )


def test_a_pass_that_agrees_with_the_logged_model_is_verified(tracking_uri, client, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    A, y = data(0)
    B, _ = data(1, shift=3.0)
    pipe = Refittable()
    pipe.tracking_uri = tracking_uri
    with pipe:
        pipe.clf(pipe.scale(A), y)
        pipe.scale(B)
        pipe.clf(pipe.scale(A), y)  # the estimator fitted again: a new composed model
        predicted = pipe.clf(pipe.scale(B, train=False), train=False)
    logged = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline").predict(B)
    np.testing.assert_array_equal(predicted, logged)
    tags = client.get_run(pipe.run_id).data.tags
    assert "true" == tags["tracked.pipeline_verified"]
    assert "" == tags["tracked.pipeline_verified_reason"]


def test_the_composed_model_is_a_snapshot_of_the_operators(memory):
    A, y = data(0)
    pipe = Refittable()
    pipe.backend = memory
    with pipe:
        pipe.clf(pipe.scale(A), y)
        composed = pipe._last_session().composer.latest
        pipe.scale(A * 10)
    assert composed.model.steps[0][1] is not pipe.scaler
    np.testing.assert_allclose(A.mean(axis=0), composed.model.steps[0][1].mean_)


def test_a_pass_agreeing_with_a_composed_model_that_was_never_logged_is_not_verified(
    memory, monkeypatch
):
    monkeypatch.setenv("TRACKED_STRICT", "0")
    original = memory.log_model

    def refuse_the_composed_model(run_id, name, model, **kwargs):
        if name == "pipeline":
            raise ValueError("the model store refuses it")
        return original(run_id, name, model, **kwargs)

    monkeypatch.setattr(memory, "log_model", refuse_the_composed_model)
    A, y = data(0)
    pipe = Refittable()
    pipe.backend = memory
    pipe.synchronous = True
    with pytest.warns(TrackingWarning, match="the model store refuses it"), pipe:
        pipe.clf(pipe.scale(A), y)
        pipe.clf(pipe.scale(A, train=False), train=False)
    tags = memory.get(pipe.run_id).tags
    assert "false" == tags["tracked.pipeline_verified"]
    assert "could not be logged" in tags["tracked.pipeline_verified_reason"]
