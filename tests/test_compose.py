"""The whole fitted workflow as one servable, registrable model named `pipeline`."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pipelines
import pytest
from pipelines import Iris, Regression
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from test_toggle import run_python

import tracked
from tracked import TrackedPipeline, TrackingWarning

DEMO = Path(__file__).parents[1] / "demo"


@pytest.fixture
def loader_uri(tracking_uri, monkeypatch):
    """Make MLflow's loaders (which use its global URI) read the test's store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    return tracking_uri


def trained_iris(tracking_uri, iris, **attributes):
    return pipelines.run_iris(iris, tracking_uri=tracking_uri, **attributes)[0]


def test_the_composed_model_predicts_exactly_as_the_stage_chain(loader_uri, iris):
    _, X_test, _, _ = iris
    pipe = trained_iris(loader_uri, iris)
    expected = pipe.predict(X_test)

    for uri in (f"runs:/{pipe.run_id}/pipeline", pipe.model_uri):
        predicted = mlflow.pyfunc.load_model(uri).predict(X_test)
        assert expected.dtype == predicted.dtype
        np.testing.assert_array_equal(expected, predicted)
    model = mlflow.sklearn.load_model(pipe.model_uri)
    assert ["preprocessing", "reduction", "classification"] == [n for n, _ in model.steps]


def test_a_regressor_workflow_round_trips_too(loader_uri):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 4))
    y = X @ [0.5, -1.0, 2.0, 0.0] + 3
    pipe = Regression()
    tracked.configure(pipe, tracking_uri=loader_uri)
    with pipe:
        pipe.regress(pipe.scale(X[:100]), y[:100])
    pipe.tracking = False
    expected = pipe.regress(pipe.scale(X[100:], train=False), train=False)
    predicted = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline").predict(X[100:])
    assert expected.dtype == predicted.dtype
    np.testing.assert_array_equal(expected, predicted)


@pytest.mark.slow
def test_the_model_loads_where_no_pipeline_class_is_importable(loader_uri, iris, tmp_path):
    _, X_test, _, _ = iris
    pipe = trained_iris(loader_uri, iris)
    code = f"""
        import json, sys
        import numpy as np
        import mlflow
        assert "pipelines" not in sys.modules
        try:
            import pipelines
        except ImportError:
            pass
        else:
            raise SystemExit("the test pipelines must not be importable here")
        rows = json.loads({json.dumps(X_test.tolist())!r})
        model = mlflow.pyfunc.load_model("runs:/{pipe.run_id}/pipeline")
        print(json.dumps(model.predict(np.array(rows)).tolist()))
    """
    result = run_python(code, tmp_path, PYTHONPATH="", MLFLOW_TRACKING_URI=loader_uri)
    assert 0 == result.returncode, result.stderr
    assert pipe.predict(X_test).tolist() == json.loads(result.stdout.strip().splitlines()[-1])


def test_a_later_fit_pass_logs_a_newer_version_that_runs_uri_resolves_to(loader_uri, iris):
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=loader_uri)
    with pipe:
        pipe.train(X_train, y_train)
        first_uri = pipe.model_uri
        pipe.C = 0.01
        pipe.train(X_train, y_train)
    assert first_uri != pipe.model_uri
    newest = mlflow.sklearn.load_model(f"runs:/{pipe.run_id}/pipeline")
    np.testing.assert_array_equal(pipe.classifier.coef_, newest.steps[-1][1].coef_)
    first = mlflow.sklearn.load_model(first_uri)
    assert 1.0 == first.steps[-1][1].C


def test_registered_versions_have_the_parent_as_source_and_metric_tags(loader_uri, client, iris):
    first = trained_iris(loader_uri, iris, registered_model_name="iris-classifier")
    second = trained_iris(loader_uri, iris, registered_model_name="iris-classifier")

    versions = sorted(
        client.search_model_versions("name = 'iris-classifier'"), key=lambda v: int(v.version)
    )
    assert ["1", "2"] == [str(v.version) for v in versions]
    assert [first.run_id, second.run_id] == [v.run_id for v in versions]
    accuracy = client.get_run(second.run_id).data.metrics["accuracy"]
    assert accuracy == pytest.approx(float(versions[1].tags["accuracy"]))
    loaded = mlflow.pyfunc.load_model("models:/iris-classifier/2")
    _, X_test, _, _ = iris
    np.testing.assert_array_equal(second.predict(X_test), loaded.predict(X_test))


def test_a_registration_failure_is_a_warning_not_an_error(tracking_uri, iris, monkeypatch):
    monkeypatch.setenv("TRACKED_STRICT", "0")
    with pytest.warns(TrackingWarning, match="could not register the model as"):
        pipe = trained_iris(tracking_uri, iris, registered_model_name="bad/name%")
    assert pipe.model_uri is not None


def test_without_a_fitted_estimator_no_composed_model_is_logged_and_it_is_said(
    memory, iris, caplog
):
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, backend=memory)
    with caplog.at_level(logging.WARNING, logger="tracked"), pipe:
        pipe.reduction(pipe.preprocessing(X_train, y_train), y_train)
    assert pipe.model_uri is None
    assert "pipeline" not in memory.get(pipe.run_id).models
    assert "no estimator stage was fitted" in caplog.text


def test_the_memory_backend_keeps_the_composed_model_with_an_input_example(memory, iris):
    X_train, X_test, y_train, _ = iris

    class WithExample(Iris):
        log_input_example = True

    pipe = WithExample()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.train(X_train, y_train)
    pipe.tracking = False
    [(name, model, example)] = memory.get(pipe.run_id).logged_models
    assert "pipeline" == name
    np.testing.assert_array_equal(X_train[:5], example)
    np.testing.assert_array_equal(pipe.predict(X_test), model.predict(X_test))


class Sliced(TrackedPipeline):
    """The estimator stage drops columns itself: the composition cannot even predict."""

    def scale(self, X, y=None, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        return self.operator.transform(X)

    def classify(self, X, y=None, stage="estimator"):
        self.operator = LogisticRegression().fit(X[:, :2], y)
        return self.operator


class Shifted(Sliced):
    """The transformer stage returns more than its operator's transform()."""

    def scale(self, X, y=None, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        return self.operator.transform(X) + 1.0

    def classify(self, X, y=None, stage="estimator"):
        self.operator = LogisticRegression().fit(X, y)
        return self.operator


class Doubled(TrackedPipeline):
    """The estimator's prediction branch does more than predict(): seen only at inference."""

    def scale(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler().fit(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def classify(self, X, y=None, predict=False, stage="estimator"):
        if predict:
            self.operator = self.model
            return self.model.predict(X * 3.0)
        self.model = self.operator = LogisticRegression().fit(X, y)
        return self.model


def warnings_of(pipe, call):
    with pytest.warns(TrackingWarning) as caught:
        call()
    pipe.close()
    return "\n".join(str(w.message) for w in caught)


def test_a_composition_that_cannot_predict_is_never_logged(memory, iris):
    X_train, _, y_train, _ = iris
    pipe = Sliced()
    tracked.configure(pipe, backend=memory)
    messages = warnings_of(pipe, lambda: pipe.classify(pipe.scale(X_train), y_train))
    assert "the composed model cannot predict on the first stage's input" in messages
    assert "Sliced.classify is not evaluated" in messages  # the operator saw other columns
    assert pipe.model_uri is None
    assert "pipeline" not in memory.get(pipe.run_id).models


def test_transformers_that_do_not_reproduce_the_estimator_input_are_never_composed(memory, iris):
    X_train, _, y_train, _ = iris
    pipe = Shifted()
    tracked.configure(pipe, backend=memory)
    messages = warnings_of(pipe, lambda: pipe.classify(pipe.scale(X_train), y_train))
    assert "do not reproduce the input of stage 'classify'" in messages
    assert pipe.model_uri is None


def test_a_prediction_pass_that_disagrees_with_the_composed_model_is_flagged(memory, iris):
    X_train, X_test, y_train, _ = iris
    pipe = Doubled()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.classify(pipe.scale(X_train), y_train)
        with pytest.warns(TrackingWarning, match="predicts differently from the stages' own"):
            pipe.classify(pipe.scale(X_test, train=False), predict=True)
    assert "false" == memory.get(pipe.run_id).tags["tracked.pipeline_verified"]


def test_a_faithful_prediction_pass_marks_the_composed_model_verified(memory, iris):
    X_train, X_test, y_train, y_test = iris
    pipe = Iris()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.train(X_train, y_train)
        pipe.predict(X_test, y_test)
    assert "true" == memory.get(pipe.run_id).tags["tracked.pipeline_verified"]


class Apply(BaseEstimator):
    """A scikit-learn estimator that transforms with apply(), not transform()."""

    def fit(self, X):
        self.offset_ = np.mean(X)
        return self

    def apply(self, X):
        return X - self.offset_


class Custom(TrackedPipeline):
    def shift(self, X, y=None, stage="transformer"):
        self.operator = Apply().fit(X)
        return self.operator.apply(X)

    def classify(self, X, y=None, stage="estimator"):
        self.operator = LogisticRegression().fit(X, y)
        return self.operator


def test_an_operator_without_transform_skips_the_composed_model_with_the_reason(memory, iris):
    X_train, _, y_train, _ = iris
    pipe = Custom()
    tracked.configure(pipe, backend=memory)
    with pytest.warns(TrackingWarning, match=r"stage 'shift' has no transform\(\)"):
        pipe.classify(pipe.shift(X_train), y_train)
    pipe.close()
    assert pipe.model_uri is None


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_served_model_answers_rest_calls_like_the_pipeline(loader_uri, iris):
    sys.path.insert(0, str(DEMO))
    try:
        from serve import free_port, serve_and_check
    finally:
        sys.path.remove(str(DEMO))
    _, X_test, _, _ = iris
    pipe = trained_iris(loader_uri, iris)
    served = serve_and_check(
        f"runs:/{pipe.run_id}/pipeline", loader_uri, X_test.tolist(), free_port(), timeout=150
    )
    assert pipe.predict(X_test).tolist() == served


def test_cloudpickle_is_used_when_chosen_knowingly(loader_uri, iris):
    _, X_test, _, _ = iris
    pipe = trained_iris(loader_uri, iris, serialization_format="cloudpickle")
    flavor = mlflow.models.get_model_info(pipe.model_uri).flavors["sklearn"]
    assert "cloudpickle" == flavor["serialization_format"]
    loaded = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline")
    np.testing.assert_array_equal(pipe.predict(X_test), loaded.predict(X_test))
