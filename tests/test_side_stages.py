"""Stages whose output reaches no estimator (analysis branches) do not block composition."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import TrackedPipeline


class WithAnalysis(TrackedPipeline):
    """scale -> clf, with a clustering of the scaled data on the side."""

    experiment = "side"

    def scale(self, X, stage="transformer"):
        self.operator = self.scaler = StandardScaler().fit(X)
        return self.scaler.transform(X)

    def cluster(self, X, stage="transformer"):
        self.operator = self.kmeans = KMeans(n_clusters=3, n_init=2, random_state=0).fit(X)
        return self.kmeans.transform(X)

    def reduce(self, X, stage="transformer"):
        self.operator = self.pca = PCA(n_components=2).fit(X)
        return self.pca.transform(X)

    def clf(self, X, y=None, stage="estimator"):
        self.operator = self.model = LogisticRegression().fit(X, y)
        return self.model


def data(n=150):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    return X, (X[:, 0] + X[:, 2] > 0).astype(int)


@pytest.mark.parametrize(
    "workflow",
    [
        "scaled = p.scale(X); p.cluster(scaled); p.clf(scaled, y)",
        "p.cluster(X); p.clf(p.scale(X), y)",
        "scaled = p.scale(X); p.reduce(p.cluster(scaled)); p.clf(scaled, y)",
    ],
    ids=["branch-off-a-stage", "branch-off-the-input", "a-side-chain"],
)
def test_the_composed_model_holds_the_stages_whose_data_reached_the_estimator(
    memory, caplog, workflow
):
    X, y = data()
    p = WithAnalysis()
    tracked.configure(p, backend=memory)
    with caplog.at_level(logging.WARNING, logger="tracked"), p:
        exec(workflow, {"p": p, "X": X, "y": y})
    model = memory.get(p.run_id).models["pipeline"]
    assert ["scale", "clf"] == [name for name, _ in model.steps]
    np.testing.assert_array_equal(p.model.predict(p.scaler.transform(X)), model.predict(X))
    assert "composed" not in caplog.text


def test_a_transformer_feeding_the_estimator_through_another_is_kept_in_data_order(memory):
    X, y = data()
    p = WithAnalysis()
    tracked.configure(p, backend=memory)
    with p:
        reduced_input = p.scale(X)
        p.cluster(X)
        p.clf(p.reduce(reduced_input), y)
    model = memory.get(p.run_id).models["pipeline"]
    assert ["scale", "reduce", "clf"] == [name for name, _ in model.steps]
