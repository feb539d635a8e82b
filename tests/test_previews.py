"""Previews are bounded in bytes and columns, not only rows, and show only array-like data."""

from __future__ import annotations

import csv
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import tracked
from tracked import TrackedPipeline
from tracked.recording.data import PREVIEW_BYTES, PREVIEW_COLUMNS

PREVIEW_TAG = "tracked.output_preview"


class Outputs(TrackedPipeline):
    """A transformer stage that returns whatever ``make`` builds from its input."""

    experiment = "previews"

    def __init__(self, make=None):
        self.make = make

    def shape(self, X, y=None, stage="transformer"):
        self.operator = FunctionTransformer(self.make).fit(X)
        return self.operator.transform(X)


def stage_run(client, pipe):
    parent = client.get_run(pipe.run_id)
    (run,) = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'"
    )
    return run


def artifact_names(client, run):
    return {item.path for item in client.list_artifacts(run.info.run_id)}


def preview_of(client, run):
    path = client.download_artifacts(run.info.run_id, "output_preview.csv")
    with open(path, "rb") as file:
        return file.read()


def wide(X):
    return np.tile(X[:, :1], (1, 50_000))


def long_text(X):
    return pd.DataFrame({"text": ["x" * 10_000] * len(X), "n": np.arange(len(X))})


def run_stage(tracking_uri, make, X):
    pipe = Outputs(make)
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.shape(X)
    return pipe


def test_a_wide_output_s_preview_keeps_100_columns_and_says_so(tracking_uri, client):
    X = np.arange(10 * 4, dtype=float).reshape(10, 4)
    pipe = run_stage(tracking_uri, wide, X)
    run = stage_run(client, pipe)
    content = preview_of(client, run)
    assert len(content) <= PREVIEW_BYTES
    rows = list(csv.reader(content.decode().splitlines()))
    assert 11 == len(rows)
    assert PREVIEW_COLUMNS == len(rows[0])
    note = run.data.tags[PREVIEW_TAG]
    assert f"the first {PREVIEW_COLUMNS} of 50000 columns" in note
    assert "of 10 rows" in note


def test_long_text_cells_are_cut_to_whole_rows_under_the_byte_bound(tracking_uri, client):
    X = np.zeros((30, 2))
    pipe = run_stage(tracking_uri, long_text, X)
    run = stage_run(client, pipe)
    content = preview_of(client, run)
    assert len(content) <= PREVIEW_BYTES
    rows = list(csv.reader(content.decode().splitlines()))
    assert ["text", "n"] == rows[0]
    kept = len(rows) - 1
    assert 0 < kept < 20
    assert [str(i) for i in range(kept)] == [row[1] for row in rows[1:]]
    assert f"{kept} of 20 rows" in run.data.tags[PREVIEW_TAG]


def test_a_narrow_output_s_preview_has_no_note(tracking_uri, client):
    X = np.arange(40, dtype=float).reshape(20, 2)
    pipe = run_stage(tracking_uri, None, X)
    run = stage_run(client, pipe)
    assert PREVIEW_TAG not in run.data.tags
    assert 21 == len(preview_of(client, run).decode().splitlines())


class ReturnsEstimators(TrackedPipeline):
    experiment = "previews"

    def fit_all(self, X, y=None, stage="estimator"):
        self.model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
        self.operator = self.model
        return self.model  # a Pipeline: numpy would make an array of its steps

    def fit_many(self, X, y=None, stage="estimator"):
        self.models = [LogisticRegression().fit(X, y), LogisticRegression(C=0.1).fit(X, y)]
        self.operator = self.models[0]
        return self.models


@pytest.mark.parametrize("method", ["fit_all", "fit_many"])
def test_a_stage_returning_estimators_gets_no_preview_of_their_reprs(
    tracking_uri, client, iris, method
):
    X_train, _, y_train, _ = iris
    pipe = ReturnsEstimators()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        getattr(pipe, method)(X_train, y_train)
    run = stage_run(client, pipe)
    assert "output_preview.csv" not in artifact_names(client, run)
    assert "tracked.output_digest" not in run.data.tags


def duplicated(X):
    return pd.DataFrame(X[:, :3], columns=["a", "a", "b"])


def test_an_output_with_repeated_column_names_feeds_a_dataset_with_a_schema(tracking_uri, client):
    class Twice(TrackedPipeline):
        experiment = "previews"

        def first(self, X, y=None, stage="transformer"):
            self.operator = FunctionTransformer(duplicated).fit(X)
            return self.operator.transform(X)

        def second(self, X, y=None, stage="transformer"):
            self.operator = FunctionTransformer().fit(np.asarray(X))
            return self.operator.transform(np.asarray(X))

    pipe = Twice()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.second(pipe.first(np.arange(12.0).reshape(4, 3)))
    parent = client.get_run(pipe.run_id)
    (run,) = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}' and attributes.run_name = "
        "'second:fit'",
    )
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.schema, "no schema for a frame with repeated column names"
    schema = json.loads(dataset.dataset.schema)["mlflow_colspec"]
    assert ["a", "a.1", "b"] == [column["name"] for column in schema]
