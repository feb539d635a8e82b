"""Trust is declared, not inferred (issue 16, point 8): a skops model lists in its MLmodel
file (``skops_trusted_types``) only scikit-learn's and NumPy's own types and those the
pipeline class declares in ``trusted_types``; functions of ``os``, ``subprocess``,
``builtins`` and the like are never trusted; a model needing more is not logged, with a
warning that lists the types and the attribute that would allow them.
"""

from __future__ import annotations

import os
import warnings

import mlflow
import numpy as np
import pytest
import yaml
from imblearn.over_sampling import RandomOverSampler
from imblearn.pipeline import Pipeline as ImbPipeline
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import FunctionTransformer

import tracked
from tracked import PipelineDefinitionError, TrackedPipeline, TrackingWarning

IMBLEARN_TYPES = {
    "imblearn.pipeline.Pipeline",
    "imblearn.over_sampling._random_over_sampler.RandomOverSampler",
}


def data():
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(60, 3)))
    return X, (X[:, 0] > 0.8).astype(int)


class Balanced(TrackedPipeline):
    experiment = "trust"
    strict = False  # the refusal is a warning, as for any user

    def clf(self, X, y=None, stage="estimator"):
        self.operator = ImbPipeline(
            [("over", RandomOverSampler(random_state=0)), ("lr", LogisticRegression())]
        ).fit(X, y)
        return self.operator.predict(X)


class DeclaredBalanced(Balanced):
    trusted_types = (ImbPipeline, "imblearn.over_sampling._random_over_sampler.RandomOverSampler")


class Shelling(TrackedPipeline):
    """A transformer holding ``os.system``, then a classifier: composed, the model holds it."""

    experiment = "trust"

    def shape(self, X, y=None, stage="transformer"):
        self.operator = FunctionTransformer(
            np.log1p, inverse_func=os.system, check_inverse=False
        ).fit(X)
        return self.operator.transform(X)

    def clf(self, X, y=None, stage="estimator"):
        self.operator = LogisticRegression().fit(X, y)
        return self.operator.predict(X)

    def train(self, X, y):
        return self.clf(self.shape(X), y)


@pytest.fixture(autouse=True)
def warn_as_users_see_it(monkeypatch):
    """The refusal is a warning, as users get it (the suite runs strict)."""
    monkeypatch.delenv("TRACKED_STRICT", raising=False)


def run(pipe_class, tracking_uri):
    pipe = pipe_class()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    X, y = data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pipe:
            (pipe.train if hasattr(pipe, "train") else pipe.clf)(X, y)
    return pipe, [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]


def mlmodel_files(root):
    return [p for p in root.rglob("MLmodel")]


@pytest.mark.timeout(300)
def test_undeclared_types_keep_the_model_out_and_say_which_and_how(tracking_uri, tmp_path):
    _, messages = run(Balanced, tracking_uri)
    refusals = [m for m in messages if "is not logged" in m]
    assert refusals, messages
    for name in IMBLEARN_TYPES:
        assert name in refusals[0]
    assert "trusted_types" in refusals[0]
    assert [] == mlmodel_files(tmp_path)  # neither the stage's model nor the composed one


@pytest.mark.timeout(300)
def test_declared_types_and_only_they_are_trusted_and_the_model_loads(tracking_uri, tmp_path):
    pipe, messages = run(DeclaredBalanced, tracking_uri)
    assert [] == [m for m in messages if "is not logged" in m]
    assert 2 == len(mlmodel_files(tmp_path))  # the stage's model and the composed one
    for path in mlmodel_files(tmp_path):
        flavor = yaml.safe_load(path.read_text())["flavors"]["sklearn"]
        assert "skops" == flavor["serialization_format"]
        assert set(flavor["skops_trusted_types"]) <= IMBLEARN_TYPES | {
            t for t in flavor["skops_trusted_types"] if t.split(".")[0] in ("sklearn", "numpy")
        }
    loaded = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline")
    X, _ = data()
    np.testing.assert_array_equal(pipe.operator.predict(X), loaded.predict(X))


@pytest.mark.timeout(300)
def test_a_function_of_os_is_never_trusted(tracking_uri, tmp_path):
    pipe, messages = run(Shelling, tracking_uri)
    refusals = [m for m in messages if "is not logged" in m]
    assert refusals, messages
    assert "posix.system" in refusals[0] or "nt.system" in refusals[0]
    assert "never trusted" in refusals[0]
    for path in mlmodel_files(tmp_path):
        assert "system" not in path.read_text()
    client = MlflowClient(tracking_uri)
    assert "FINISHED" == client.get_run(pipe.run_id).info.status


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("imblearn.pipeline.Pipeline", "must be a tuple"),
        ((os.system,), "never trusted"),
        (("posix.system",), "never trusted"),
        (("subprocess.Popen",), "never trusted"),
        ((42,), "neither a class"),
        (("Pipeline",), "not a 'module.Name'"),
    ],
)
def test_trusted_types_are_checked_at_class_definition(value, words):
    with pytest.raises(PipelineDefinitionError, match=words):

        class Bad(TrackedPipeline):
            trusted_types = value

            def fit(self, X, y=None, stage="estimator"):
                return self
