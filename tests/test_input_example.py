"""``log_input_example``: raw rows are stored with the composed model only when asked, and
then bounded in size; the signature is logged either way."""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import tracked
from tracked import PipelineDefinitionError, TrackedPipeline
from tracked.recording.composition.compose import EXAMPLE_BYTES, bounded_example


class Plain(TrackedPipeline):
    experiment = "examples"

    def clf(self, X, y=None, stage="estimator"):
        self.operator = self.model = LogisticRegression(max_iter=50).fit(X, y)
        return self.model


def data(columns=4, n=40):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, columns))
    return X, (X[:, 0] > 0).astype(int)


def model_info(pipe, tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    return mlflow.models.get_model_info(f"runs:/{pipe.run_id}/pipeline")


def test_by_default_no_rows_are_stored_but_the_signature_is(tracking_uri, monkeypatch):
    X, y = data()
    pipe = Plain()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.clf(X, y)
    info = model_info(pipe, tracking_uri, monkeypatch)
    assert info.saved_input_example_info is None
    assert info.signature is not None
    assert [-1, 4] == list(info.signature.inputs.inputs[0].shape)


def test_log_input_example_stores_the_first_rows(tracking_uri, monkeypatch):
    X, y = data()

    class WithExample(Plain):
        log_input_example = True

    pipe = WithExample()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.clf(X, y)
    info = model_info(pipe, tracking_uri, monkeypatch)
    assert info.saved_input_example_info is not None
    example = mlflow.models.Model.load(info.model_uri).load_input_example()
    np.testing.assert_allclose(X[:5], np.asarray(example))


def test_a_wide_example_is_cut_to_the_rows_that_fit_and_it_is_said(memory, caplog):
    X, y = data(columns=2000)

    class Wide(Plain):
        log_input_example = True

    pipe = Wide()
    tracked.configure(pipe, backend=memory)
    with caplog.at_level(logging.WARNING, logger="tracked"), pipe:
        pipe.clf(X, y)
    [(_, _, example)] = memory.get(pipe.run_id).logged_models
    assert 1 == len(example)
    assert "cut to 1 of 5 rows" in caplog.text


def test_bounded_examples_fit_in_the_limit_or_are_dropped():
    X, _ = data(columns=100)
    kept, note = bounded_example(X[:5])
    assert kept is not None
    np.testing.assert_array_equal(X[:5], kept)
    assert note is None
    wide, note = bounded_example(data(columns=EXAMPLE_BYTES)[0][:5])
    assert wide is None
    assert "no example is stored" in note


def test_log_input_example_must_be_a_bool():
    with pytest.raises(PipelineDefinitionError, match="log_input_example must be bool"):

        class Bad(Plain):
            log_input_example = "yes"
