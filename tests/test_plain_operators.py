"""Operators that are not scikit-learn estimators: their task, params and state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression

from tracked import TrackedPipeline, configure
from tracked.core.params import operator_params

rng = np.random.default_rng(5)
X = rng.normal(size=(90, 3))
Y = (X[:, 0] > 0).astype(int)
TARGET = X @ [1.0, -2.0, 0.5] + rng.normal(scale=0.1, size=90)


class Data:
    """What statsmodels keeps in ``model.data``: arrays behind an object."""

    def __init__(self, endog, exog):
        self.endog, self.exog = endog, exog


class OLSLike:
    """Holds its training data as public attributes, as ``statsmodels.api.OLS(y, X)`` does."""

    def __init__(self, endog, exog, missing="none"):
        self.endog = endog
        self.exog = exog
        self.wexog = exog
        self.pinv_wexog = np.linalg.pinv(exog)
        self.data = Data(endog, exog)
        self.k_constant = 0
        self.missing = missing
        self.weights = 1.0
        self._init_keys = ["missing"]

    def fit(self):
        self.params = self.pinv_wexog @ self.endog
        self.nobs = float(len(self.endog))
        return self

    def predict(self, exog):
        return exog @ self.params


class LogitResult:
    """A statsmodels-like ``Logit(...).fit()`` result: ``predict`` gives P(y = 1)."""

    def __init__(self, params):
        self.params = params
        self.converged = True
        self.method = "newton"

    def predict(self, exog):
        return 1.0 / (1.0 + np.exp(-(exog @ self.params)))


class Thresholds:
    """A hand-written classifier without ``classes_`` or scikit-learn tags."""

    def __init__(self, column=0):
        self.column = column

    def fit(self, X, y):
        self.cut = float(np.median(X[:, self.column]))
        return self

    def predict(self, X):
        return (X[:, self.column] > self.cut).astype(int)


class Untagged(BaseEstimator):
    """A scikit-learn estimator without a classifier/regressor mixin."""

    def fit(self, X, y):
        self.cut_ = float(np.median(X[:, 0]))
        return self

    def predict(self, X):
        return (X[:, 0] > self.cut_).astype(int)


class Plain(TrackedPipeline):
    experiment = "plain"

    def __init__(self, kind="ols"):
        self.kind = kind

    def model(self, X, y=None, train=True, stage="estimator"):
        if train:
            if self.kind == "ols":
                self.fitted = OLSLike(y, X).fit()
            elif self.kind == "logit":
                weights = LogisticRegression().fit(X, y).coef_[0]
                self.fitted = LogitResult(weights)
            elif self.kind == "thresholds":
                self.fitted = Thresholds().fit(X, y)
            else:
                self.fitted = Untagged().fit(X, y)
        self.operator = self.fitted
        return self.fitted.predict(X)


def children(client, pipe):
    parent = client.get_run(pipe.run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return {run.info.run_name: run for run in runs}


def tracked(kind, tracking_uri, y):
    pipe = Plain(kind)
    configure(pipe, tracking_uri=tracking_uri)
    with pytest.warns(Warning) as caught, pipe:  # not scikit-learn: no model, no composition
        pipe.model(X, y)
        predictions = pipe.model(X, y, train=False)
    assert all("not a scikit-learn estimator" in str(w.message) for w in caught)
    return pipe, predictions


def test_an_ols_like_operator_logs_settings_never_its_training_data(tracking_uri, client):
    pipe, _ = tracked("ols", tracking_uri, TARGET)
    runs = children(client, pipe)
    fit = runs["model:fit"]
    assert {"k_constant": "0", "missing": "none", "weights": "1.0", "nobs": "90.0"} == (
        fit.data.params
    )
    assert "r2" in runs["model:inference"].data.metrics  # measurements: a regression
    path = client.download_artifacts(fit.info.run_id, "fitted_attributes.json")
    with open(path) as file:
        state = json.load(file)
    assert {"summary": {"type": "ndarray", "shape": [90, 3]}} == state["exog"]
    assert {"summary": {"type": "ndarray", "shape": [3]}} == state["params"]
    assert 90.0 == state["nobs"]
    assert state["data"].endswith(".Data>")


def test_a_logit_result_predicting_probabilities_is_scored_as_a_classifier(tracking_uri, client):
    pipe, probabilities = tracked("logit", tracking_uri, Y)
    inference = children(client, pipe)["model:inference"].data.metrics
    assert "r2" not in inference
    labels = (probabilities >= 0.5).astype(int)
    assert metrics.accuracy_score(Y, labels) == pytest.approx(inference["accuracy"])
    assert metrics.roc_auc_score(Y, probabilities) == pytest.approx(inference["roc_auc"])
    assert metrics.log_loss(Y, probabilities) == pytest.approx(inference["log_loss"])


@pytest.mark.parametrize("kind", ["thresholds", "untagged"])
@pytest.mark.filterwarnings("ignore:the operator of stage Plain.model:tracked.TrackingWarning")
@pytest.mark.filterwarnings("ignore:no composed `pipeline` model:tracked.TrackingWarning")
def test_an_estimator_without_classes_predicting_labels_is_a_classifier(kind, memory):
    pipe = Plain(kind)
    configure(pipe, backend=memory)
    with pipe:
        pipe.model(X, Y)
        predictions = pipe.model(X, Y, train=False)
    inference = memory.children(pipe.run_id)[-1]
    assert "r2" not in inference.metrics
    assert metrics.accuracy_score(Y, predictions) == pytest.approx(inference.metric("accuracy"))
    assert "confusion_matrix.png" in inference.artifacts


def test_plain_objects_yield_their_public_settings():
    class Settings:
        __slots__ = ("alpha", "hidden")

        def __init__(self):
            self.alpha = 0.5
            self.hidden = np.int64(3)

    class Thing(Settings):
        __slots__ = ("__dict__",)

    thing = Thing()
    thing.name = "short"
    thing.sizes = (64, 32)
    thing.flag = np.bool_(True)
    thing.text = "x" * 251  # a text, not a setting
    thing.matrix = np.ones((2, 2))
    thing.frame_like = Data(1, 2)
    thing.learned_ = 1.0  # fitted, not a setting
    thing._private = 1
    thing.callback = print
    assert {
        "alpha": "0.5",
        "hidden": "3",
        "name": "short",
        "sizes": "(64, 32)",
        "flag": "True",
    } == operator_params(thing)


def test_a_plain_dict_operator_logs_its_scalar_items(memory):
    class Configured(TrackedPipeline):
        def route(self, X, stage="transformer"):
            self.operator = {
                "alpha": 0.1,
                "kernel": "rbf",
                "weights": np.ones(3),
                "nested": {"depth": 3, "table": [[1, 2], [3, 4]]},
            }
            return X

    pipe = Configured()
    configure(pipe, backend=memory)
    with pipe:
        pipe.route(X)
    assert {"alpha": "0.1", "kernel": "rbf", "nested__depth": "3"} == dict(
        memory.children(pipe.run_id)[0].params
    )


def test_an_array_held_by_a_scikit_learn_param_is_named_not_written(memory):
    params = operator_params(KMeans(n_clusters=2, init=np.zeros((2, 3)), n_init=1))
    assert "<ndarray of shape (2, 3)>" == params["init"]


def test_classes_are_not_logged_as_metrics(memory):
    class Fit(TrackedPipeline):
        def clf(self, X, y=None, stage="estimator"):
            self.operator = LogisticRegression().fit(X, y)
            return self.operator

    pipe = Fit()
    configure(pipe, backend=memory)
    with pipe:
        pipe.clf(X, np.where(Y == 1, 3, 7))
    run = memory.children(pipe.run_id)[0]
    assert "fitted.classes_" not in run.metrics
    assert "fitted.n_iter_" in run.metrics  # measurements still are
    assert [3, 7] == json.loads(run.artifacts["fitted_attributes.json"])["classes_"]


def test_a_lambda_operator_is_not_a_fit_on_every_call(memory):
    class Functions(TrackedPipeline):
        def double(self, X, stage="transformer"):
            self.operator = lambda data: data * 2
            return self.operator(X)

    pipe = Functions()
    configure(pipe, backend=memory)
    with pipe:
        pipe.double(X)
        pipe.double(X)
    assert ["double:inference", "double:inference"] == [
        run.name for run in memory.children(pipe.run_id)
    ]


class Scaler:
    """A callable object with settings, made once in the pipeline's ``__init__``."""

    def __init__(self, factor=2.0, mode="linear"):
        self.factor = factor
        self.mode = mode

    def __call__(self, data):
        return data * self.factor


def test_an_operator_made_in_init_logs_its_params_on_its_first_call_only(memory):
    class Prepared(TrackedPipeline):
        fold_after = None  # three calls, three runs

        def __init__(self):
            self.scaler = Scaler(factor=3.0)

        def scale(self, X, stage="transformer"):
            self.operator = self.scaler
            return self.operator(X)

    pipe = Prepared()
    configure(pipe, backend=memory)
    with pipe:
        pipe.scale(X)
        pipe.scale(X)
        pipe.scaler = Scaler(factor=4.0)  # another operator: its first call logs its params
        pipe.scale(X)
    runs = memory.children(pipe.run_id)
    assert ["scale:inference"] * 3 == [run.name for run in runs]
    assert [
        {"factor": "3.0", "mode": "linear"},
        {},
        {"factor": "4.0", "mode": "linear"},
    ] == [dict(run.params) for run in runs]
