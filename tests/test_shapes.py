"""Capture is bounded whatever the shape of the data: a wide frame, a long frame, sparse
matrices and polars frames are digested from their buffers within a byte budget, previewed
and sampled within bounds, and recorded with their datasets (a wide schema cut, with a note)."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tracked import TrackedPipeline
from tracked.backends.mlflow.datasets import dataset_input
from tracked.backends.mlflow.keys import MAX_DATASET_SCHEMA_LENGTH
from tracked.recording.composition import compose as _compose
from tracked.recording.data import (
    HEAD_BYTES,
    HEAD_COLUMNS,
    PREVIEW_BYTES,
    PREVIEW_COLUMNS,
    PREVIEW_ROWS,
    WHOLE_HASH_BYTES,
    preview,
    summarize,
)


class Wide(TrackedPipeline):
    experiment = "shapes"

    def scale(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler().set_output(transform="pandas").fit(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def classify(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression(max_iter=30).fit(X, y)
            self.operator = self.model
            return self.model
        self.operator = self.model
        return self.model.predict(X)


def wide_frame(rows=200, columns=20_000, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.normal(size=(rows, columns)), columns=[f"c{i}" for i in range(columns)]
    )
    return frame, (frame["c0"] > 0).astype(int).to_numpy()


@pytest.fixture(scope="module")
def wide():
    return wide_frame()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_wide_frame_workflow_keeps_its_datasets_with_a_schema_note(tracking_uri, client, wide):
    X, y = wide
    pipe = Wide()
    with pipe:
        pipe.classify(pipe.scale(X), y)
        pipe.classify(pipe.scale(X, train=False), y, train=False)
    children = client.search_runs(
        [client.get_run(pipe.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'",
    )
    assert 4 == len(children)
    for run in children:
        (given,) = run.inputs.dataset_inputs  # never dropped
        assert len(given.dataset.schema) <= MAX_DATASET_SCHEMA_LENGTH
        tags = {tag.key: tag.value for tag in given.tags}
        assert f"the first {HEAD_COLUMNS} of 20000 columns" in tags["tracked.schema_note"]
        assert '"num_columns": 20000' in given.dataset.profile
    parent = client.get_run(pipe.run_id)
    assert "true" == parent.data.tags["tracked.pipeline_verified"]
    model = mlflow.sklearn.load_model(f"runs:/{pipe.run_id}/pipeline")
    np.testing.assert_array_equal(pipe.model.predict(pipe.scaler.transform(X)), model.predict(X))


def test_a_schema_too_long_even_for_its_head_is_cut_until_it_fits():
    names = [
        f"a_rather_long_column_name_that_repeats_itself_{i:05d}" * 25 for i in range(HEAD_COLUMNS)
    ]
    frame = pd.DataFrame(np.zeros((3, HEAD_COLUMNS)), columns=names)
    summary = summarize(frame)
    made = dataset_input(summary, context="fit", name="x")
    assert len(made.dataset.schema) <= MAX_DATASET_SCHEMA_LENGTH
    tags = {tag.key: tag.value for tag in made.tags}
    assert f"of {HEAD_COLUMNS} columns" in tags["tracked.schema_note"]


def test_a_wide_frame_s_summary_is_bounded_in_columns_and_bytes(wide):
    X, _ = wide
    summary = summarize(X)
    assert (200, 20_000) == summary.shape
    assert 20_000 == len(summary.columns)
    assert (PREVIEW_ROWS, HEAD_COLUMNS) == summary.head.shape
    assert summary.head.memory_usage(index=False).sum() <= HEAD_BYTES
    assert X.memory_usage(index=False).sum() == summary.nbytes
    shown = preview(summary)
    assert f"the first {PREVIEW_COLUMNS} of 20000 columns" in shown.note
    head, columns = shown.content
    assert PREVIEW_COLUMNS == head.shape[1] == len(columns)


@pytest.mark.parametrize("where", [(0, 0), (199, 19_999), (100, 12_345)])
def test_a_wide_frame_s_digest_follows_its_sampled_values(wide, where):
    X, _ = wide
    digest = summarize(X).digest
    assert digest == summarize(X.copy()).digest  # equal data, another object
    row, column = where
    changed = X.copy()
    changed.iat[row, column] += 1.0
    # The first and the last row are always read; a row in between is read when sampled.
    rows, columns = _sampled(X)
    if (rows is None or row in rows) and (columns is None or column in columns):
        assert digest != summarize(changed).digest


def _sampled(frame):
    from tracked.recording.data import sample_positions

    return sample_positions(frame.shape[0], frame.shape[1], 8)


def test_small_frames_are_hashed_whole_so_any_change_shows():
    frame = pd.DataFrame({"a": np.arange(500.0), "b": list("xyz" * 166 + "xy"), "c": range(500)})
    digest = summarize(frame).digest
    for column, value in (("a", -1.0), ("b", "w"), ("c", 7)):
        changed = frame.copy()
        changed.loc[250, column] = value
        assert digest != summarize(changed).digest, column
    assert digest == summarize(frame.copy()).digest
    renamed = frame.rename(columns={"a": "z"})
    assert digest != summarize(renamed).digest


def test_a_long_frame_is_digested_from_a_bounded_sample():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(1_000_000, 20)), columns=[f"f{i}" for i in range(20)])
    digest = summarize(frame).digest
    assert digest == summarize(frame.copy()).digest
    changed = frame.copy()
    changed.iat[-1, 19] = 42.0  # the last row is part of every sample
    assert digest != summarize(changed).digest
    rows, columns = _sampled(frame)
    assert columns is None and len(rows) * 20 * 8 <= WHOLE_HASH_BYTES


def test_a_frame_s_digest_does_not_render_it_as_text(monkeypatch, wide):
    X, _ = wide

    def refused(*args, **kwargs):
        raise AssertionError("to_csv called while digesting")

    monkeypatch.setattr(pd.DataFrame, "to_csv", refused)
    summarize(X)


def test_composition_samples_of_wide_data_are_cut_in_bytes(wide):
    X, _ = wide
    sample = _compose._sample(X, _compose.SAMPLE_ROWS)
    assert sample.memory_usage(index=False).sum() <= _compose.SAMPLE_BYTES
    assert len(sample) >= _compose.EXAMPLE_ROWS
    narrow = _compose._sample(X.iloc[:, :10], _compose.SAMPLE_ROWS)
    assert _compose.SAMPLE_ROWS == len(narrow)


def test_a_wide_array_s_head_and_digest_are_bounded():
    X = np.random.default_rng(2).normal(size=(300, 50_000))
    summary = summarize(X)
    assert (PREVIEW_ROWS, HEAD_COLUMNS) == summary.head.shape
    changed = X.copy()
    changed[0, 0] += 1
    assert summary.digest != summarize(changed).digest
    assert summary.digest == summarize(X.copy(order="F")).digest


def test_a_wide_sparse_matrix_s_head_preview_and_digest_are_bounded():
    # Dense first rows (200,000 nonzeros in 20 rows), sparse after: over every budget.
    rng = np.random.default_rng(3)
    top = rng.random((20, 50_000)) * (rng.random((20, 50_000)) < 0.2)
    where = (rng.integers(0, 1980, 100_000), rng.integers(0, 50_000, 100_000))
    rest = sp.coo_matrix((rng.random(100_000), where), shape=(1980, 50_000))
    X = sp.vstack([sp.csr_matrix(top), rest], format="csr")
    summary = summarize(X)
    assert summary.head.nnz <= HEAD_BYTES // 16
    shown = preview(summary)
    assert len(shown.content) <= PREVIEW_BYTES
    assert "row,column,value" in shown.note
    for kind in ("tocsc", "tocoo"):
        assert summary.digest == summarize(getattr(X, kind)()).digest, kind
    changed = X.copy()
    changed.data[0] += 1.0  # a value of the first row, part of every sample
    assert summary.digest != summarize(changed).digest


def test_a_wide_polars_frame_is_summarised_by_columns_and_within_bounds():
    rng = np.random.default_rng(4)
    data = {f"c{i}": rng.normal(size=50) for i in range(5_000)}
    frame = pl.DataFrame(data)
    summary = summarize(frame)
    assert (50, 5_000) == summary.shape
    assert (PREVIEW_ROWS, HEAD_COLUMNS) == summary.head.shape
    assert summary.digest == summarize(frame.clone()).digest
    changed = frame.with_columns(pl.col("c4999") + 1)
    assert summary.digest != summarize(changed).digest
    assert f"the first {PREVIEW_COLUMNS} of 5000 columns" in preview(summary).note


def test_a_series_and_a_list_of_rows_are_digested_by_value():
    series = pd.Series(np.arange(10_000.0), name="s")
    assert summarize(series).digest == summarize(series.copy()).digest
    assert summarize(series).digest != summarize(series + 1).digest
    rows = [[1, "a"], [2, "b"]]
    assert summarize(rows).digest != summarize([[1, "a"], [2, "c"]]).digest
