"""Sparse data (SciPy sparse arrays and matrices, any format) is composed, verified,
digested, previewed and recorded like dense data."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import MultinomialNB
from sklearn.preprocessing import MaxAbsScaler
from sklearn.svm import LinearSVC

import tracked
from tracked import TrackedPipeline
from tracked.core.sparse import same
from tracked.recording.composition.compose import head
from tracked.recording.data import summarize, to_csv

WORDS = ["spam", "offer", "win", "cash", "meeting", "report", "lunch", "project", "team"]


def texts(n=120, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    docs = [
        " ".join(rng.choice(WORDS[:4] if label else WORDS[4:], size=6)) + f" w{i % 7}"
        for i, label in enumerate(labels)
    ]
    return docs, labels


class Text(TrackedPipeline):
    """Raw strings in, a sparse tf-idf matrix between the stages."""

    experiment = "sparse"
    classifier = LinearSVC

    def vectorize(self, docs, train=True, stage="transformer"):
        if train:
            self.vectorizer = TfidfVectorizer().fit(docs)
        self.operator = self.vectorizer
        return self.vectorizer.transform(docs)

    def classify(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = self.classifier().fit(X, y)
            self.operator = self.model
            return self.model
        self.operator = self.model
        return self.model.predict(X)


class Scaled(TrackedPipeline):
    """A sparse matrix in, scaled, classified."""

    experiment = "sparse"

    def scale(self, X, train=True, stage="transformer"):
        if train:
            self.scaler = MaxAbsScaler().fit(X)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def classify(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression(max_iter=500).fit(X, y)
            self.operator = self.model
            return self.model
        self.operator = self.model
        return self.model.predict(X)


def sparse_data(kind, n=80, seed=1):
    rng = np.random.default_rng(seed)
    dense = rng.random((n, 30)) * (rng.random((n, 30)) < 0.2) * 10
    y = (dense[:, 0] + dense[:, 1] > 1).astype(int)
    return getattr(sp, kind)(dense), y


@pytest.mark.parametrize(
    "kind", ["csr_matrix", "csc_matrix", "coo_matrix", "csr_array", "coo_array"]
)
def test_a_sparse_workflow_is_composed_and_verified_in_every_format(memory, kind):
    X, y = sparse_data(kind)
    pipe = Scaled()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.classify(pipe.scale(X), y)
        predicted = pipe.classify(pipe.scale(X, train=False), train=False)
    parent = memory.get(pipe.run_id)
    assert "pipeline" in parent.models
    np.testing.assert_array_equal(predicted, parent.models["pipeline"].predict(X))
    assert "true" == parent.tags["tracked.pipeline_verified"]
    scale, classify = memory.children(pipe.run_id)[:2]
    assert scale.tags["tracked.output_digest"] == classify.tags["tracked.input_digest"]


@pytest.mark.parametrize("classifier", [LinearSVC, MultinomialNB])
def test_a_text_workflow_gets_a_composed_model_that_takes_raw_strings(memory, classifier):
    docs, labels = texts()

    class Chosen(Text):
        pass

    Chosen.classifier = classifier
    pipe = Chosen()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.classify(pipe.vectorize(docs), labels)
        predicted = pipe.classify(pipe.vectorize(docs, train=False), train=False)
    parent = memory.get(pipe.run_id)
    np.testing.assert_array_equal(predicted, parent.models["pipeline"].predict(docs))
    assert "true" == parent.tags["tracked.pipeline_verified"]


def test_the_digest_of_sparse_data_is_its_content_in_any_format():
    X, _ = sparse_data("csr_matrix")
    digests = {
        summarize(getattr(sp, kind)(X)).digest for kind in ("csr_matrix", "csc_array", "coo_matrix")
    }
    assert 1 == len(digests)
    changed = X.copy()
    changed[0, 0] = 123.0
    assert summarize(changed).digest not in digests
    summary = summarize(X)
    assert ("sparse", (80, 30), "float64") == (summary.kind, summary.shape, summary.dtype)
    assert summary.nbytes == X.data.nbytes + X.indices.nbytes + X.indptr.nbytes


def test_a_sparse_preview_lists_the_nonzeros_of_its_first_rows():
    X = sp.coo_array(np.array([[0.0, 2.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert b"row,column,value\n0,1,2.5\n1,0,1.0\n" == to_csv(summarize(X).head)


def test_sparse_and_dense_values_compare_row_block_by_row_block():
    X, _ = sparse_data("csr_matrix", n=50)
    assert same(X, X.toarray())
    assert same(sp.csc_array(X), X)
    other = X.toarray()
    other[49, 3] += 1e-3
    assert not same(X, other)
    assert not same(X, X[:49])
    assert 3 == head(sp.coo_matrix(X), 3).shape[0]
    assert "coo" == head(sp.coo_matrix(X), 3).format


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("container", [list, pd.Series], ids=["list", "series"])
def test_a_text_workflow_in_mlflow_has_a_servable_model_lineage_and_previews(
    tracking_uri, client, monkeypatch, container
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    docs, labels = texts()
    docs = container(docs)
    pipe = Text()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.classify(pipe.vectorize(docs), labels)
        predicted = pipe.classify(pipe.vectorize(docs[:30], train=False), train=False)
    model = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline")
    # The signature is a 1-D object tensor: the served model takes an array of documents.
    np.testing.assert_array_equal(predicted, model.predict(np.asarray(docs[:30])))
    # A one-column frame of documents would be iterated by its column name: one prediction.
    np.testing.assert_array_equal(predicted, model.predict(pd.Series(list(docs[:30]))))
    parent = client.get_run(pipe.run_id)
    assert "true" == parent.data.tags["tracked.pipeline_verified"]
    runs = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{pipe.run_id}'"
    )
    by_name = {run.info.run_name: run for run in runs}
    vectorize, classify = by_name["vectorize:fit"], by_name["classify:fit"]
    assert (
        vectorize.data.tags["tracked.output_digest"] == classify.data.tags["tracked.input_digest"]
    )
    path = client.download_artifacts(vectorize.info.run_id, "output_preview.csv")
    with open(path) as file:
        lines = file.read().splitlines()
    assert "row,column,value" == lines[0]
    assert {int(line.split(",")[0]) for line in lines[1:]} == set(range(20))
    [dataset] = classify.inputs.dataset_inputs
    assert '"features_shape": [120, ' in dataset.dataset.profile


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_sparse_model_in_mlflow_takes_sparse_input(tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    X, y = sparse_data("csr_array")

    class Stored(Scaled):
        log_input_example = True

    pipe = Stored()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.classify(pipe.scale(X), y)
    pipe.tracking = False
    expected = pipe.classify(pipe.scale(X, train=False), train=False)
    model = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline")
    np.testing.assert_array_equal(expected, model.predict(sp.csr_matrix(X)))
    info = mlflow.models.get_model_info(f"runs:/{pipe.run_id}/pipeline")
    assert info.saved_input_example_info is not None
