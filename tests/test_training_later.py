"""Training metrics predicted by the writer: a fit whose operator holds its training data
(a nearest-neighbours model) costs the caller no prediction, and its ``training_`` metrics
arrive as scikit-learn computes them, live or replayed from the spool."""

from __future__ import annotations

import contextlib
import io
import threading

import numpy as np
import pytest
from mlflow import MlflowClient
from servers import free_port
from sklearn import metrics
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

import tracked
from tracked import TrackedPipeline, TrackingWarning
from tracked.cli import main as tracked_cli
from tracked.recording.evaluation.deferred import TrainingScores
from tracked.spool.entries import StagePayload

rng = np.random.default_rng(5)
X = rng.normal(size=(2000, 5))
Y = (X[:, 0] + 0.3 * rng.normal(size=2000) > 0).astype(int)


class Neighbours(TrackedPipeline):
    experiment = "training-later"

    def __init__(self, model=KNeighborsClassifier):
        self.model = model

    def fit(self, X, y=None, stage="estimator"):
        self.operator = self.model(algorithm="brute")
        return self.operator.fit(X, y)


def fit_run(client, pipe):
    parent = client.get_run(pipe.run_id)
    [run] = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'"
    )
    return run


def expected(model, X, y, prefix="training_"):
    fitted = model(algorithm="brute").fit(X, y)
    predicted = fitted.predict(X)
    if model is KNeighborsRegressor:
        return {
            f"{prefix}r2": metrics.r2_score(y, predicted),
            f"{prefix}rmse": metrics.root_mean_squared_error(y, predicted),
            f"{prefix}mae": metrics.mean_absolute_error(y, predicted),
        }
    wanted = {
        f"{prefix}accuracy": metrics.accuracy_score(y, predicted),
        f"{prefix}f1_macro": metrics.f1_score(y, predicted, average="macro"),
        f"{prefix}precision_macro": metrics.precision_score(y, predicted, average="macro"),
        f"{prefix}recall_macro": metrics.recall_score(y, predicted, average="macro"),
    }
    if len(fitted.classes_) == 2:
        proba = fitted.predict_proba(X)
        wanted[f"{prefix}roc_auc"] = metrics.roc_auc_score(y, proba[:, 1])
        wanted[f"{prefix}log_loss"] = metrics.log_loss(y, proba)
    return wanted


@pytest.fixture
def calls(monkeypatch):
    """``(thread, rows)`` of every predict and predict_proba of a KNeighborsClassifier."""
    seen: list[tuple[threading.Thread, int]] = []
    for method in ("predict", "predict_proba"):
        original = getattr(KNeighborsClassifier, method)

        def spy(self, X, original=original):
            seen.append((threading.current_thread(), len(X)))
            return original(self, X)

        monkeypatch.setattr(KNeighborsClassifier, method, spy)
    return seen


def test_the_writer_predicts_the_training_metrics_of_a_knn_fit(tracking_uri, client, calls):
    pipe = Neighbours()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.fit(X, Y)
        on_fit = [rows for thread, rows in calls if rows == len(X)]
        assert [] == on_fit  # the call returned before anything predicted on the training set
    on_training_set = [thread for thread, rows in calls if rows == len(X)]
    assert len(on_training_set) >= 2  # predict and predict_proba (which predict may call)
    assert {"tracked-writer"} == {thread.name for thread in on_training_set}
    logged = fit_run(client, pipe).data.metrics
    assert expected(KNeighborsClassifier, X, Y) == pytest.approx(
        {key: value for key, value in logged.items() if key.startswith("training_")}
    )
    assert expected(KNeighborsClassifier, X, Y)["training_accuracy"] < 1  # not a tautology


def test_a_regressor_and_a_multiclass_fit_score_as_scikit_learn_does(tracking_uri, client):
    labels = np.digitize(X[:, 1], [-0.5, 0.5])  # three classes: no binary metrics
    for model, y in ((KNeighborsRegressor, X[:, 0] + X[:, 1]), (KNeighborsClassifier, labels)):
        pipe = Neighbours(model)
        tracked.configure(pipe, tracking_uri=tracking_uri)
        with pipe:
            pipe.fit(X, y)
        logged = fit_run(client, pipe).data.metrics
        wanted = expected(model, X, y)
        assert wanted == pytest.approx({k: v for k, v in logged.items() if "training_" in k})


def test_a_spooled_knn_fit_replays_with_its_training_metrics(tracking_uri, spool_dir):
    pipe = Neighbours()
    tracked.configure(
        pipe, tracking_uri=f"http://127.0.0.1:{free_port()}"
    )  # nobody listens: all is spooled
    with pytest.warns(TrackingWarning, match="is away"), pipe:
        pipe.fit(X, Y)
    assert 1 == len([p for p in spool_dir.iterdir() if p.is_dir()])
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = tracked_cli(["sync", "--spool", str(spool_dir), "--tracking-uri", tracking_uri])
    assert 0 == code, err.getvalue()
    client = MlflowClient(tracking_uri)
    [child] = client.search_runs(
        [client.get_experiment_by_name(pipe.experiment).experiment_id],
        filter_string="tags.mlflow.parentRunId != ''",
    )
    logged = {k: v for k, v in child.data.metrics.items() if k.startswith("training_")}
    assert expected(KNeighborsClassifier, X, Y) == pytest.approx(logged)


def test_a_full_spool_keeps_no_training_data_and_says_the_metrics_are_not_kept():
    later = TrainingScores(model=None, X=X, y_true=Y, task="classifier", step=0, timestamp=0)
    payload = StagePayload(scores=later)
    assert ["training metrics"] == payload.parts()
    assert payload.light().scores is None


def test_a_dataframe_is_copied_for_the_writer(tracking_uri, client, calls):
    """A DataFrame becomes another array inside the model: the record carries a copy of
    it, made before the call returns (the caller may change its frame afterwards)."""
    import pandas as pd

    frame = pd.DataFrame(X)
    pipe = Neighbours()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.fit(frame, Y)
        frame.iloc[:, :] = 0.0  # after the call: not what was fitted, nor what is scored
    on_training_set = [thread.name for thread, rows in calls if rows == len(X)]
    assert len(on_training_set) >= 2
    assert {"tracked-writer"} == set(on_training_set)
    logged = fit_run(client, pipe).data.metrics
    assert expected(KNeighborsClassifier, X, Y) == pytest.approx(
        {key: value for key, value in logged.items() if key.startswith("training_")}
    )


class Outer(Neighbours):
    def train(self, X, y=None, stage="estimator"):
        return self.fit(X, y)


def test_a_fit_called_by_another_stage_is_scored_on_the_caller(tracking_uri, client, calls):
    """Its record waits for the calling stage's, to be pickled once that stage returns:
    by then the operator may have been fitted again."""
    pipe = Outer()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.train(X, Y)
    on_training_set = [thread for thread, rows in calls if rows == len(X)]
    assert len(on_training_set) >= 2
    assert {threading.main_thread()} == set(on_training_set)


def _jitter(X):
    return X + np.random.normal(scale=1e-3, size=np.shape(X))  # draws from the global RNG


def test_a_pipeline_holding_a_function_is_scored_on_the_caller_and_gives_the_state_back():
    """A FunctionTransformer's function may draw from the global generator: the writer
    never predicts with it (it would draw on another thread, at any time)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from tracked.testing import MemoryBackend

    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)

    class Jittered(TrackedPipeline):
        def train(self, X, y=None, stage="estimator"):
            steps = (FunctionTransformer(_jitter), KNeighborsClassifier())
            self.operator = make_pipeline(*steps).fit(X, y)
            return self

    def next_draw(tracking):
        np.random.seed(42)
        pipe = Jittered()
        pipe.tracking, pipe.backend = tracking, MemoryBackend()  # writes in the call
        with pipe:
            pipe.train(X, y)
            return np.random.rand()

    assert next_draw(False) == next_draw(True)
