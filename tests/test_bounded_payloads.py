"""Bounded payloads (issue 16 point 6): scores and pictures travel as what they need, huge
values are cut when captured, deep nesting is said plainly.

A 100,000-row inference with ground truth spools no more than a 5,000-row one (pictures hold
at most 5,000 rows; the metrics are computed at capture, exactly, on every row); a 50 MB param
never reaches the spool whole; a hyperparameter nested 2,000 levels deep is cut with a warning
that says so, and the rest of the record is written.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from servers import free_port
from sklearn import metrics
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.linear_model import LogisticRegression, Ridge

import tracked
from tracked import TrackedPipeline, TrackingWarning
from tracked.backends.mlflow.keys import MAX_PARAM_VALUE_LENGTH, KeyNotes
from tracked.core.params import NESTING_LIMIT, flatten
from tracked.recording.evaluation.plots import SCATTER_POINTS
from tracked.spool.sync import sync
from tracked.testing import strict

ROWS = 100_000
PICTURE_ROWS_TAG = "tracked.picture_rows"


class Bounded(TrackedPipeline):
    """One estimator stage: fit on a few rows, predict on many (given ground truth)."""

    experiment = "bounded"

    def __init__(self, task="classifier", note=None):
        self.task = task
        self.note = note

    def model(self, X, y=None, predict=False, stage="estimator"):
        if not predict:
            self.est = LogisticRegression(max_iter=500) if self.task == "classifier" else Ridge()
            self.operator = self.est
            return self.est.fit(X, y)
        self.operator = self.est
        return self.est.predict(X)


def data(task: str, rows: int):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(rows, 4))
    noise = rng.normal(scale=0.5, size=rows)
    if task == "classifier":
        return X, (X[:, 0] + noise > 0).astype(int)
    return X, X @ np.array([1.0, -2.0, 0.5, 3.0]) + noise


def spooled(task: str, rows: int) -> tuple[Bounded, Path]:
    """A fit on 500 rows and an inference on ``rows`` rows with the store away; the
    session's spool folder."""
    X, y = data(task, rows)
    pipe = Bounded(task)
    tracked.configure(pipe, tracking_uri=f"http://127.0.0.1:{free_port()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        with pipe:
            pipe.model(X[:500], y[:500])
            pipe.model(X, y, predict=True)
    return pipe, Path(os.environ["TRACKED_SPOOL_DIR"]) / pipe.run_id


def stage_run(client: MlflowClient, local_id: str, phase: str):
    """The synced child run of ``phase`` under the parent run spooled as ``local_id``."""
    experiment = client.get_experiment_by_name(Bounded.experiment).experiment_id
    [parent] = client.search_runs([experiment], f"tags.`tracked.local_run_id` = '{local_id}'")
    query = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    [child] = client.search_runs([experiment], f"{query} and tags.`tracked.phase` = '{phase}'")
    return child


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir())


def expected_metrics(task: str, model, X, y) -> dict[str, float]:
    """scikit-learn's metrics on every row."""
    y_pred = model.predict(X)
    if task == "regressor":
        return {
            "r2": metrics.r2_score(y, y_pred),
            "rmse": metrics.root_mean_squared_error(y, y_pred),
            "mae": metrics.mean_absolute_error(y, y_pred),
        }
    proba = model.predict_proba(X)
    return {
        "accuracy": metrics.accuracy_score(y, y_pred),
        "f1_macro": metrics.f1_score(y, y_pred, average="macro"),
        "precision_macro": metrics.precision_score(y, y_pred, average="macro"),
        "recall_macro": metrics.recall_score(y, y_pred, average="macro"),
        "roc_auc": metrics.roc_auc_score(y, proba[:, 1]),
        "log_loss": metrics.log_loss(y, proba),
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "pictures"),
    [
        ("classifier", {"confusion_matrix.png", "roc_curve.png", "pr_curve.png"}),
        ("regressor", {"predicted_vs_actual.png", "residuals.png"}),
    ],
)
def test_a_100k_row_inference_spools_what_5000_rows_would_and_its_metrics_stay_exact(
    task, pictures, tracking_uri, client
):
    _, small = spooled(task, SCATTER_POINTS)
    pipe, big = spooled(task, ROWS)
    # Bounded by what 5,000 rows spool (the confusion counts and the tag may add a little).
    assert folder_bytes(big) <= folder_bytes(small) + 8_000, (
        folder_bytes(big),
        folder_bytes(small),
    )

    assert sync(Path(os.environ["TRACKED_SPOOL_DIR"]), tracking_uri=tracking_uri).ok
    inference = stage_run(client, pipe.run_id, "inference")
    X, y = data(task, ROWS)
    expected = expected_metrics(task, pipe.est, X, y)
    assert expected == pytest.approx(
        {name: inference.data.metrics[name] for name in expected}, rel=1e-12
    )
    assert f"{SCATTER_POINTS} of {ROWS}" == inference.data.tags[PICTURE_ROWS_TAG]
    drawn = {a.path for a in client.list_artifacts(inference.info.run_id)}
    assert pictures <= drawn
    if task == "classifier":
        path = client.download_artifacts(inference.info.run_id, "confusion_matrix.json")
        counts = json.loads(Path(path).read_text())["matrix"]
        exact = metrics.confusion_matrix(y, pipe.est.predict(X)).tolist()
        assert exact == counts  # counted on every row, not on the sample


def test_at_most_5000_rows_keep_the_deferred_scores_and_no_picture_tag(memory):
    X, y = data("regressor", 300)
    pipe = Bounded("regressor")
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.model(X, y)
        pipe.model(X, y, predict=True)
    inference = memory.children(pipe.run_id)[-1]
    assert PICTURE_ROWS_TAG not in inference.tags
    assert metrics.r2_score(y, pipe.est.predict(X)) == pytest.approx(inference.metric("r2"))


def test_capture_draws_nothing_from_random_state_the_user_can_observe(memory):
    X, y = data("regressor", 20_000)
    pipe = Bounded("regressor")
    tracked.configure(pipe, backend=memory)
    user = np.random.RandomState(11)
    np.random.seed(5)
    with pipe:
        pipe.model(X[:500], y[:500])
        pipe.model(X, y, predict=True)
    assert "5000 of 20000" == memory.children(pipe.run_id)[-1].tags[PICTURE_ROWS_TAG]
    untouched_user, untouched_global = np.random.RandomState(11), np.random.RandomState(5)
    assert untouched_user.random_sample() == user.random_sample()
    assert untouched_global.random_sample() == np.random.random_sample()


# -- huge values ----------------------------------------------------------------------------------


def test_a_50_mb_param_is_cut_when_read_and_the_cut_is_noted(tracking_uri, client, spool_dir):
    huge = "x" * (50 * 2**20)
    X, y = data("regressor", 50)
    pipe = Bounded("regressor", note=huge)
    tracked.configure(pipe, tracking_uri=f"http://127.0.0.1:{free_port()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        with pipe:
            pipe.model(X, y)
    folder = spool_dir / pipe.run_id
    assert (folder / "entries.jsonl").stat().st_size < 100_000
    assert sync(spool_dir, tracking_uri=tracking_uri).ok
    experiment = client.get_experiment_by_name(Bounded.experiment).experiment_id
    [parent] = client.search_runs([experiment], f"tags.`tracked.local_run_id` = '{pipe.run_id}'")
    logged = parent.data.params["note"]
    assert MAX_PARAM_VALUE_LENGTH == len(logged) and logged.endswith("...")
    path = client.download_artifacts(parent.info.run_id, KeyNotes.ARTIFACT)
    notes = json.loads(Path(path).read_text())
    kept = notes["truncated"]["params"]["note"]
    assert kept.startswith("x" * MAX_PARAM_VALUE_LENGTH) and kept.endswith("...")
    assert len(kept) < 100_000


# -- deep nesting ---------------------------------------------------------------------------------


def nested(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for level in range(levels):
        value = {f"l{level}": value}
    return value


class Configured(RegressorMixin, BaseEstimator):
    """A regressor with a (deeply) nested configuration among its hyperparameters."""

    def __init__(self, config=None, alpha=1.0):
        self.config = config
        self.alpha = alpha

    def fit(self, X, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, X):
        return np.full(len(X), self.mean_)


class Deep(TrackedPipeline):
    """A pipeline whose ``config`` hyperparameter may be nested deep; ``inner`` is the
    configuration its estimator gets."""

    experiment = "deep"

    def __init__(self, config=None, inner=None):
        self.config = config
        self.inner = inner

    def model(self, X, y=None, stage="estimator"):
        self.operator = Configured(config=self.inner, alpha=0.5).fit(X, y)
        return self.operator


def test_a_pipeline_hyperparameter_nested_2000_levels_is_cut_with_a_clear_warning(memory):
    X, y = data("regressor", 50)
    pipe = Deep(config=nested(2000), inner={"depth": {"small": 1}})
    tracked.configure(pipe, backend=memory)
    with pytest.warns(TrackingWarning) as caught, pipe:
        pipe.model(X, y)
    said = [str(w.message) for w in caught]
    assert [f"pipeline Deep: params nested deeper than {NESTING_LIMIT} levels are cut"] == [
        m.split(" (")[0] for m in said
    ]
    parent = memory.get(pipe.run_id)
    assert "FINISHED" == parent.status
    [(name, value)] = [(k, v) for k, v in parent.params.items() if k.startswith("config__")]
    assert NESTING_LIMIT == name.count("__") and "nested deeper" in value
    assert "1" == parent.params["inner__depth__small"]
    [child] = memory.children(pipe.run_id)
    assert {"alpha": "0.5", "config__depth__small": "1"} == child.params
    assert child.models  # the fitted model is recorded


def test_an_estimator_param_nested_2000_levels_names_the_stage_and_keeps_the_rest(memory):
    """The estimator holds the deep configuration: its params are cut with a warning naming
    the stage; copying or pickling it fails on the recursion limit, which the warnings say
    (nothing about the tracking backend), and the run is still written."""
    X, y = data("regressor", 50)
    pipe = Deep(inner=nested(2000))
    tracked.configure(pipe, backend=memory)
    with strict(False), pytest.warns(TrackingWarning) as caught, pipe:
        pipe.model(X, y)
    said = [str(w.message) for w in caught]
    cut = f"stage Deep.model: params nested deeper than {NESTING_LIMIT} levels are cut"
    assert any(m.startswith(cut) for m in said), said
    assert not any("connect" in m or "tracking backend" in m for m in said), said
    [child] = memory.children(pipe.run_id)
    assert "0.5" == child.params["alpha"]
    assert "FINISHED" == child.status == memory.get(pipe.run_id).status


def test_a_self_referencing_param_is_cut_at_the_nesting_limit():
    loop: dict = {}
    loop["again"] = loop
    with pytest.warns(TrackingWarning, match="nested deeper than"):
        flat = flatten({"loop": loop}, where="stage X.y")
    [(name, value)] = flat.items()
    assert NESTING_LIMIT == name.count("__")
    assert "cut" in value
