"""Logged models list the distributions their types come from, pinned."""

from __future__ import annotations

import time
from importlib.metadata import version

import mlflow
import numpy as np
import pytest
from imblearn.over_sampling import RandomOverSampler
from imblearn.pipeline import Pipeline as ImbPipeline
from sklearn.linear_model import LogisticRegression

import tracked
from tracked import TrackedPipeline
from tracked.backends.mlflow import needs


class Balanced(TrackedPipeline):
    experiment = "requirements"
    trusted_types = (ImbPipeline, RandomOverSampler)  # skops trusts only what is declared

    def clf(self, X, y=None, stage="estimator"):
        self.operator = self.model = ImbPipeline(
            [("over", RandomOverSampler(random_state=0)), ("lr", LogisticRegression())]
        ).fit(X, y)
        return self.model


def requirements_of(uri):
    path = mlflow.pyfunc.get_model_dependencies(uri)
    with open(path) as file:
        return {line.strip() for line in file if line.strip()}


@pytest.mark.timeout(300)
def test_an_imbalanced_learn_model_requires_imbalanced_learn(tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0.8).astype(int)
    pipe = Balanced()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.clf(X, y)
    composed = requirements_of(f"runs:/{pipe.run_id}/pipeline")
    expected = {
        f"imbalanced-learn=={version('imbalanced-learn')}",
        f"scikit-learn=={version('scikit-learn')}",
        f"mlflow=={version('mlflow')}",
        f"skops=={version('skops')}",
        f"numpy=={version('numpy')}",
    }
    assert expected <= composed
    assert not any(line.startswith("tracked") for line in composed)
    loaded = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline")
    np.testing.assert_array_equal(pipe.model.predict(X), loaded.predict(X))


def test_requirements_come_from_the_types_held_and_are_cheap():
    model = ImbPipeline([("over", RandomOverSampler()), ("lr", LogisticRegression())])
    model.fit(np.arange(20.0).reshape(10, 2), [0] * 7 + [1] * 3)
    needs.requirements(needs.held_modules(model), ("mlflow",))  # warm: distributions read
    start = time.perf_counter()
    pinned = needs.requirements(needs.held_modules(model), ("mlflow", "scikit-learn", "skops"))
    elapsed = time.perf_counter() - start
    assert f"imbalanced-learn=={version('imbalanced-learn')}" in pinned
    assert not any(name.split("==")[0] in ("json", "copyreg", "builtins") for name in pinned)
    assert elapsed < 1.0  # MLflow's inference takes seconds
