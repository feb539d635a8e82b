"""Models holding classes and functions defined in the user's script (``__main__``) load and
predict identically in a fresh process started elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

SCRIPT = """
    import json
    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer
    from tracked import TrackedPipeline


    def double_first(X):
        X = np.array(X, dtype=float, copy=True)
        X[:, 0] *= 2
        return X


    class Shift(TransformerMixin, BaseEstimator):
        def __init__(self, by=1.5):
            self.by = by

        def fit(self, X, y=None):
            self.mean_ = np.asarray(X).mean(axis=0)
            return self

        def transform(self, X):
            return np.asarray(X) - self.mean_ + self.by


    class Script(TrackedPipeline):
        experiment = "script"

        def shift(self, X, train=True, stage="transformer"):
            if train:
                self.shifter = Shift().fit(X)
            self.operator = self.shifter
            return self.shifter.transform(X)

        def double(self, X, train=True, stage="transformer"):
            if train:
                self.doubler = FunctionTransformer(double_first).fit(X)
            self.operator = self.doubler
            return self.doubler.transform(X)

        def classify(self, X, y=None, train=True, stage="estimator"):
            if train:
                self.model = LogisticRegression().fit(X, y)
            self.operator = self.model
            return self.model if train else self.model.predict(X)


    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    pipe = Script()
    with pipe:
        pipe.classify(pipe.double(pipe.shift(X)), y)
        predicted = pipe.classify(pipe.double(pipe.shift(X, train=False), train=False), train=False)
    print(json.dumps({"run": pipe.run_id, "X": X.tolist(), "predicted": predicted.tolist()}))
"""

LOAD = """
    import json, sys
    import numpy as np
    import mlflow
    job = json.loads(open(sys.argv[1]).read())
    model = mlflow.pyfunc.load_model(f"runs:/{job['run']}/pipeline")
    print(json.dumps(model.predict(np.array(job["X"])).tolist()))
"""


def flavor_of(run_id: str, uri: str, monkeypatch, name: str = "pipeline") -> dict:
    """The sklearn flavour entry of the MLmodel file of ``runs:/<run_id>/<name>``."""
    import mlflow.models

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow's runs:/ resolution reads it
    return mlflow.models.get_model_info(f"runs:/{run_id}/{name}").flavors["sklearn"]


def python(args, cwd, **env):
    environment = {**os.environ, **env}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_model_of_script_defined_classes_loads_and_predicts_in_a_fresh_process_elsewhere(
    tmp_path, monkeypatch, new_store
):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    uri = new_store(tmp_path / "mlflow.db")
    (here / "train.py").write_text(textwrap.dedent(SCRIPT))
    trained = python(
        ["train.py"], here, PYTHONPATH=str(ROOT), MLFLOW_TRACKING_URI=uri, TRACKED_STRICT="1"
    )
    assert 0 == trained.returncode, trained.stderr
    job = json.loads(trained.stdout.strip().splitlines()[-1])
    (elsewhere / "job.json").write_text(json.dumps(job))
    (elsewhere / "load.py").write_text(textwrap.dedent(LOAD))
    # No tracked, no script on the path: only what the model itself holds.
    loaded = python(["load.py", "job.json"], elsewhere, PYTHONPATH="", MLFLOW_TRACKING_URI=uri)
    assert 0 == loaded.returncode, loaded.stderr
    assert job["predicted"] == json.loads(loaded.stdout.strip().splitlines()[-1])
    assert "cloudpickle, which stores them by value" in trained.stderr  # said, with the fix

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    assert "true" == client.get_run(job["run"]).data.tags["tracked.pipeline_verified"]
    assert "cloudpickle" == flavor_of(job["run"], uri, monkeypatch)["serialization_format"]


def test_script_and_side_modules_are_told_apart_from_installed_ones():
    from tracked.backends.mlflow import needs

    local = needs.local_modules({"__main__", "sklearn.base", "numpy", "json", "my_helpers"})
    assert {"__main__", "my_helpers"} == local


def test_a_model_of_importable_classes_keeps_the_skops_format(tracking_uri, iris, monkeypatch):
    import pipelines

    pipe = pipelines.run_iris(iris, tracking_uri=tracking_uri)[0]
    assert "skops" == flavor_of(pipe.run_id, tracking_uri, monkeypatch)["serialization_format"]


@pytest.mark.parametrize("module_name", ["helpers_beside_the_script", "__mp_main__"])
def test_classes_of_a_module_beside_the_script_are_stored_by_value(module_name, monkeypatch):
    """A module no distribution provides (a file next to the script, or the script imported
    as ``__mp_main__`` by a spawn worker) cannot be imported where the model is loaded."""
    import types

    import cloudpickle
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from tracked.backends.mlflow import needs

    module = types.ModuleType(module_name)
    exec(
        textwrap.dedent("""
            import numpy as np
            from sklearn.base import BaseEstimator, TransformerMixin

            class Square(TransformerMixin, BaseEstimator):
                def fit(self, X, y=None):
                    return self

                def transform(self, X):
                    return np.asarray(X) ** 2
        """),
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, module_name, module)
    X = np.arange(12.0).reshape(6, 2)
    model = make_pipeline(module.Square(), LogisticRegression()).fit(X, [0, 0, 0, 1, 1, 1])
    local = needs.local_modules(needs.held_modules(model))
    assert {module_name} == local
    with needs.pickled_by_value(local):
        data = cloudpickle.dumps(model)
    monkeypatch.delitem(sys.modules, module_name)  # as in a process started elsewhere
    np.testing.assert_array_equal(model.predict(X), cloudpickle.loads(data).predict(X))
    assert not cloudpickle.cloudpickle._PICKLE_BY_VALUE_MODULES  # the registry is left clean
