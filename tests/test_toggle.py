"""Switching tracking off: on the class, on the instance, from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from pipelines import Iris

import tracked

TESTS = Path(__file__).parent


def train_and_predict(pipe, iris):
    X_train, X_test, y_train, y_test = iris
    with pipe:
        pipe.train(X_train, y_train)
        return pipe.predict(X_test, y_test)


def untracked_predictions(iris):
    class Off(Iris):
        tracking = False

    return train_and_predict(Off(), iris)


def test_tracking_off_on_the_class_records_nothing_and_predicts_the_same(memory, iris):
    class Off(Iris):
        tracking = False
        backend = memory

    pipe = Off()
    predictions = train_and_predict(pipe, iris)
    assert [] == list(memory.runs)
    assert pipe.run_id is None
    np.testing.assert_array_equal(untracked_predictions(iris), predictions)


def test_tracking_off_on_the_instance_records_nothing(memory, iris):
    pipe = Iris()
    tracked.configure(pipe, backend=memory)
    pipe.tracking = False
    predictions = train_and_predict(pipe, iris)
    assert [] == list(memory.runs)
    assert pipe.run_id is None
    np.testing.assert_array_equal(untracked_predictions(iris), predictions)


def test_tracked_and_untracked_runs_predict_identically(memory, iris):
    pipe = Iris()
    tracked.configure(pipe, backend=memory)
    np.testing.assert_array_equal(untracked_predictions(iris), train_and_predict(pipe, iris))
    assert 7 == len(memory.runs)


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF"])
def test_the_environment_switches_tracking_off_whatever_the_class_says(
    memory, iris, monkeypatch, value
):
    monkeypatch.setenv("TRACKED_ENABLED", value)
    pipe = Iris()
    tracked.configure(pipe, backend=memory)
    pipe.tracking = True
    train_and_predict(pipe, iris)
    assert [] == list(memory.runs)
    assert pipe.run_id is None


def test_an_unknown_environment_value_warns_and_is_ignored(memory, iris, monkeypatch):
    from tracked import TrackingWarning

    monkeypatch.setenv("TRACKED_ENABLED", "perhaps")
    with pytest.warns(TrackingWarning, match="TRACKED_ENABLED='perhaps' is not understood"):
        pipe = Iris()
    tracked.configure(pipe, backend=memory)
    train_and_predict(pipe, iris)
    assert 7 == len(memory.runs)


def run_python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(TESTS), **env}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("setup", "env"),
    [
        ("Iris.tracking = False", {}),
        ("pipe_attrs = {'tracking': False}", {}),
        ("", {"TRACKED_ENABLED": "0"}),
    ],
    ids=["class", "instance", "environment"],
)
def test_with_tracking_off_mlflow_is_never_imported_and_no_store_is_made(tmp_path, setup, env):
    code = f"""
        import sys
        from sklearn.datasets import load_iris
        from pipelines import Iris
        pipe_attrs = {{}}
        {setup}
        X, y = load_iris(return_X_y=True)
        pipe = Iris()
        for name, value in pipe_attrs.items():
            setattr(pipe, name, value)
        with pipe:
            pipe.train(X, y)
            pipe.predict(X, y)
        pipe.close()
        assert pipe.run_id is None
        print("mlflow imported:", "mlflow" in sys.modules)
    """
    result = run_python(code, tmp_path, **env)
    assert result.returncode == 0, result.stderr
    assert "mlflow imported: False" in result.stdout
    assert [] == sorted(p.name for p in tmp_path.iterdir())


def test_importing_tracked_does_not_import_mlflow_or_scikit_learn(tmp_path):
    result = run_python(
        "import sys, tracked; print(sorted(m for m in ('mlflow', 'sklearn') if m in sys.modules))",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "[]" == result.stdout.strip()
