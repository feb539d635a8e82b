"""Stages called in loops: a pass of transformers fitted once and an estimator learning
batch after batch (``partial_fit``) is composed like a one-pass workflow."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import StandardScaler

from tracked import TrackedPipeline


class Batches(TrackedPipeline):
    """Scaler and PCA fitted on the first batch, the classifier updated on every batch."""

    def scale(self, X, stage="transformer"):
        if not hasattr(self, "scaler"):
            self.scaler = StandardScaler().fit(X)
        self.operator = self.scaler
        return self.operator.transform(X)

    def reduce(self, X, stage="transformer"):
        if not hasattr(self, "pca"):
            self.pca = PCA(n_components=2, random_state=0).fit(X)
        self.operator = self.pca
        return self.operator.transform(X)

    def learn(self, X, y, stage="estimator"):
        if not hasattr(self, "clf"):
            self.clf = SGDClassifier(random_state=0)
        self.operator = self.clf
        self.operator.partial_fit(X, y, classes=[0, 1])
        return self

    def classify(self, X, y=None, stage="estimator"):
        self.operator = self.clf
        return self.operator.predict(X)


def data(rows=200):
    rng = np.random.RandomState(0)
    X = rng.rand(rows, 4)
    return X, (X[:, 0] + X[:, 1] > 1).astype(int)


def test_a_partial_fit_loop_after_a_first_fitted_batch_is_composed_every_time(memory):
    X, y = data()
    pipe = Batches()
    pipe.backend = memory
    with pipe:
        for batch in range(4):
            rows = slice(batch * 50, (batch + 1) * 50)
            pipe.learn(pipe.reduce(pipe.scale(X[rows])), y[rows])
    [parent] = memory.parents()
    assert 4 == [name for name, _, _ in parent.logged_models].count("pipeline")
    composed = parent.models["pipeline"]
    expected = pipe.clf.predict(pipe.pca.transform(pipe.scaler.transform(X)))
    assert expected.tolist() == composed.predict(X).tolist()


def test_transforming_the_test_set_before_fitting_still_composes(memory):
    """The common order: both sets transformed first, then the estimator fitted."""
    X, y = data()
    pipe = Batches()
    pipe.backend = memory
    with pipe:
        train = pipe.reduce(pipe.scale(X[:150]))
        test = pipe.reduce(pipe.scale(X[150:]))
        pipe.learn(train, y[:150])
        predicted = pipe.classify(test)
    [parent] = memory.parents()
    assert predicted.tolist() == parent.models["pipeline"].predict(X[150:]).tolist()
