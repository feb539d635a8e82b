"""Phase (fit or inference) for estimators outside scikit-learn's conventions, and for
pipelines that keep their state in ``__slots__``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tracked import TrackedPipeline, TrackingWarning
from tracked.recording.phase import decide_phase, snapshot


class BoosterLike(ClassifierMixin, BaseEstimator):
    """Fitted state as LightGBM keeps it: the only public fitted attribute is
    ``fitted_ = True`` (the same object after every refit); the real state is private."""

    def __init__(self, shrink=1.0):
        self.shrink = shrink

    def fit(self, X, y):
        X = np.asarray(X, dtype=float)
        self._classes = np.unique(y)
        self._Booster = {"centers": np.stack([X[y == c].mean(axis=0) for c in self._classes])}
        self._n_features = X.shape[1]
        self.fitted_ = True
        return self

    @property
    def classes_(self):
        return self._classes

    def predict(self, X):
        X = np.asarray(X, dtype=float)
        centers = self._Booster["centers"] * self.shrink
        distances = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        return self._classes[distances.argmin(axis=1)]


class Boosted(TrackedPipeline):
    experiment = "phase"

    def __init__(self, shrink=1.0):
        self.shrink = shrink
        self.model = BoosterLike(shrink)

    def clf(self, X, y=None, train=True, stage="estimator"):
        self.operator = self.model
        if train:
            self.model.fit(X, y)
        return self.model.predict(X)


def _data(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    X[y == 1] += 1.5
    return X, y


def _child(client, parent_id):
    exp = client.get_run(parent_id).info.experiment_id
    [run] = client.search_runs([exp], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    return run


def test_a_refit_that_only_changes_private_state_is_a_fit_in_a_new_session(tracking_uri, client):
    pipe = Boosted()
    pipe.tracking_uri = tracking_uri
    with pipe:
        pipe.clf(*_data(0))
    first = pipe.run_id
    with pipe:  # a new session: the same estimator object, refitted
        pipe.clf(*_data(1))
    second = pipe.run_id
    assert first != second

    child = _child(client, second)
    assert "clf:fit" == child.info.run_name
    assert "fit" == child.data.tags["tracked.phase"]
    assert "state_changed" == child.data.tags["tracked.phase_basis"]
    assert "1.0" == child.data.params["shrink"]
    assert child.outputs.model_outputs  # the refitted model is logged
    parent = client.get_run(second)
    assert "training_accuracy" in parent.data.metrics
    assert "accuracy" not in parent.data.metrics  # training data is never an evaluation
    assert "accuracy" not in child.data.metrics


def test_a_prediction_leaves_the_private_state_alone_and_is_inference():
    from tracked.testing import MemoryBackend

    backend = MemoryBackend()
    pipe = Boosted()
    pipe.backend = backend
    X, y = _data(0)
    with pipe:
        pipe.clf(X, y)
        pipe.clf(X, y, train=False)
    fit, inference = backend.children(pipe.run_id)
    assert ("clf:fit", "clf:inference") == (fit.name, inference.name)
    assert "state_unchanged" == inference.tags["tracked.phase_basis"]
    assert "accuracy" in backend.get(pipe.run_id).metrics


def test_a_refit_in_place_of_a_private_array_is_a_fit():
    class InPlace:
        def __init__(self):
            self._weights = np.zeros(5)

        def fit(self, X, y):
            self._weights[:] = np.arange(5.0)  # same array object, new values
            return self

    class Holder:
        pass

    holder = Holder()
    holder.op = InPlace()
    before = snapshot(holder)
    holder.op.fit(None, None)
    assert ("fit", "state_changed") == decide_phase(before, holder.op)


def test_an_operator_whose_state_cannot_be_read_is_not_silently_inference():
    from tracked.testing import MemoryBackend

    class Opaque:
        __slots__ = ()

        def predict(self, X):
            return np.zeros(len(X))

    class P(TrackedPipeline):
        backend = MemoryBackend()

        def __init__(self):
            self.op = Opaque()

        def clf(self, X, y=None, stage="estimator"):
            self.operator = self.op
            return self.op.predict(X)

    pipe = P()
    with pipe, pytest.warns(TrackingWarning, match="cannot be told"):
        pipe.clf(np.zeros((3, 1)))
    [run] = P.backend.children(pipe.run_id)
    assert "state_unreadable" == run.tags["tracked.phase_basis"]


class Slotted(TrackedPipeline):
    __slots__ = ("m", "sc")

    def scale(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.sc = StandardScaler().fit(X)
        self.operator = self.sc
        return self.sc.transform(X)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.m = LogisticRegression().fit(X, y)
        self.operator = self.m
        return self.m.predict(X)


def test_a_pipeline_keeping_its_operators_in_slots_records_predictions_as_inference(
    tracking_uri, client
):
    X, y = _data(0)
    pipe = Slotted()
    pipe.tracking_uri = tracking_uri
    with pipe:
        pipe.clf(pipe.scale(X, y), y)
        pipe.clf(pipe.scale(X, train=False), y, train=False)
    exp = client.get_run(pipe.run_id).info.experiment_id
    runs = client.search_runs(
        [exp],
        filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    assert {"scale:fit", "clf:fit", "scale:inference", "clf:inference"} == {
        run.info.run_name for run in runs
    }
    assert 1 == sum(bool(run.outputs.model_outputs) for run in runs)
    parent = client.get_run(pipe.run_id)
    assert "accuracy" in parent.data.metrics
