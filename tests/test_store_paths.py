"""One store per session, wherever the process wanders: the store's URI and its artifact
location are resolved to absolute paths once, when the session opens."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

TESTS = Path(__file__).parent
ROOT = TESTS.parent

PROGRAM = """
import os, sys
from sklearn.datasets import load_iris
from pipelines import Iris
X, y = load_iris(return_X_y=True)
pipe = Iris()
with pipe:
    os.chdir(sys.argv[1])  # before the writer ever talked to the store
    pipe.train(X, y)
print(pipe.run_id)
"""


def run_wandering(start: Path, elsewhere: Path, **env: str) -> str:
    environment = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}",
        "TRACKED_SPOOL_DIR": str(start / "spool"),
        **env,
    }
    environment.pop("MLFLOW_TRACKING_URI", None)
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(elsewhere)],
        cwd=start,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    assert "TrackingWarning" not in done.stderr, done.stderr
    return done.stdout.split()[-1]


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("env", "database"),
    [({"MLFLOW_TRACKING_URI": "sqlite:///rel.db"}, "rel.db"), ({}, "mlflow.db")],
    ids=["relative-uri", "mlflow-default"],
)
def test_a_chdir_inside_the_session_moves_neither_the_database_nor_the_artifacts(
    tmp_path, env, database
):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir()
    elsewhere.mkdir()
    run_id = run_wandering(start, elsewhere, **env)
    assert [] == sorted(p.name for p in elsewhere.iterdir())  # no database, no mlruns
    client = MlflowClient(f"sqlite:///{start / database}")
    run = client.get_run(run_id)
    assert "FINISHED" == run.info.status
    assert str(start / "mlruns") in run.info.artifact_uri
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert 3 == len(children)
    model_files = list((start / "mlruns").rglob("MLmodel"))
    assert model_files, "the models were logged under the session's artifact root"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:///rel.db", "sqlite:///{cwd}/rel.db"),
        ("sqlite:///sub/rel.db?timeout=20", "sqlite:///{cwd}/sub/rel.db?timeout=20"),
        ("sqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///file:/abs/x.db?mode=ro&uri=true", "sqlite:///file:/abs/x.db?mode=ro&uri=true"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("./mlruns", "{cwd}/mlruns"),
        ("file:mlruns", "file://{cwd}/mlruns"),
        ("file:///abs/mlruns", "file:///abs/mlruns"),
        ("http://host:5000", "http://host:5000"),
        ("postgresql://u@host/db", "postgresql://u@host/db"),
        ("databricks", "databricks"),
    ],
)
def test_local_store_paths_are_made_absolute_and_others_are_kept(
    tmp_path, monkeypatch, uri, expected
):
    from tracked.backends.mlflow.client import absolute_store_uri

    monkeypatch.chdir(tmp_path)
    assert expected.format(cwd=tmp_path) == absolute_store_uri(uri)


def test_a_relative_mlflow_tracking_uri_still_nests_under_the_active_run(
    tmp_path, monkeypatch, iris
):
    import mlflow
    from pipelines import Iris

    monkeypatch.chdir(tmp_path)
    # Through the environment, not mlflow.set_tracking_uri: that also sets the variable for
    # good, and every later test would use this store.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///rel.db")
    with mlflow.start_run() as outer:
        with Iris() as pipe:
            pipe.preprocessing(iris[0], iris[2])
        run_id = pipe.run_id
    client = MlflowClient(f"sqlite:///{tmp_path / 'rel.db'}")
    assert outer.info.run_id == client.get_run(run_id).data.tags["mlflow.parentRunId"]
