"""Habits of MLflow users: open runs, `mlflow run`, autolog, notebooks re-running cells."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pipelines import Iris
from sklearn.linear_model import LogisticRegression
from test_toggle import run_python

import tracked
from tracked import TrackedPipeline

DEMO = Path(__file__).parents[1] / "demo"


@pytest.fixture
def global_uri(tracking_uri, monkeypatch):
    """The test store as MLflow's own (fluent) tracking URI."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    return tracking_uri


class Unnamed(Iris):
    experiment = None  # follows the outer run's experiment


def train(pipe, iris):
    X_train, X_test, y_train, y_test = iris
    with pipe:
        pipe.train(X_train, y_train)
        pipe.predict(X_test, y_test)
    return pipe


def test_a_pipeline_inside_a_fluent_run_nests_under_it_in_its_experiment(global_uri, client, iris):
    experiment_id = client.create_experiment("notebook")
    with mlflow.start_run(experiment_id=experiment_id) as outer:
        pipe = train(Unnamed(), iris)
        assert outer.info.run_id == mlflow.active_run().info.run_id  # left untouched
    parent = client.get_run(pipe.run_id)
    assert outer.info.run_id == parent.data.tags["mlflow.parentRunId"]
    assert experiment_id == parent.info.experiment_id
    assert "FINISHED" == client.get_run(outer.info.run_id).info.status


def test_an_explicit_experiment_wins_over_the_outer_run_s(global_uri, client, iris):
    with mlflow.start_run(experiment_id=client.create_experiment("notebook")) as outer:
        pipe = train(Iris(), iris)
    parent = client.get_run(pipe.run_id)
    assert outer.info.run_id == parent.data.tags["mlflow.parentRunId"]
    assert "tests" == client.get_experiment(parent.info.experiment_id).name


def test_nest_under_active_run_false_keeps_the_parent_top_level(global_uri, client, iris):
    class TopLevel(Iris):
        nest_under_active_run = False

    with mlflow.start_run(experiment_id=client.create_experiment("notebook")):
        pipe = train(TopLevel(), iris)
    assert "mlflow.parentRunId" not in client.get_run(pipe.run_id).data.tags


def test_an_active_run_in_another_store_is_not_nested_under(global_uri, tmp_path, iris, new_store):
    from mlflow import MlflowClient

    other = new_store(tmp_path / "other.db")
    with mlflow.start_run():
        pipe = Iris()
        tracked.configure(pipe, tracking_uri=other)
        train(pipe, iris)
    assert "mlflow.parentRunId" not in MlflowClient(other).get_run(pipe.run_id).data.tags


@pytest.mark.slow
def test_mlflow_run_id_in_the_environment_is_nested_under(tracking_uri, client, tmp_path):
    outer = client.create_run(client.create_experiment("scheduled"))
    code = """
        from sklearn.datasets import load_iris
        from pipelines import Iris
        class Scheduled(Iris):
            experiment = None
        X, y = load_iris(return_X_y=True)
        with Scheduled() as pipe:
            pipe.train(X, y)
        print(pipe.run_id)
    """
    result = run_python(
        code, tmp_path, MLFLOW_RUN_ID=outer.info.run_id, MLFLOW_TRACKING_URI=tracking_uri
    )
    assert 0 == result.returncode, result.stderr
    parent = client.get_run(result.stdout.split()[-1])
    assert outer.info.run_id == parent.data.tags["mlflow.parentRunId"]
    assert outer.info.experiment_id == parent.info.experiment_id


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_mlflow_run_of_the_demo_project_nests_the_pipeline_under_the_project_run(
    tracking_uri, client, tmp_path
):
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    mlflow_cli = shutil.which("mlflow", path=env["PATH"])
    command = [mlflow_cli, "run", str(DEMO), "-P", "n_components=3", "--env-manager", "local"]
    command += ["--experiment-name", "iris-demo"]
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=150, check=False
    )
    assert 0 == result.returncode, result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("parent run id: ")]
    parent = client.get_run(line.split(": ")[1])
    project_run = client.get_run(parent.data.tags["mlflow.parentRunId"])
    assert "FINISHED" == project_run.info.status
    assert "3" == project_run.data.params["n_components"]
    assert "3" == parent.data.params["n_components"]
    assert "iris-demo" == client.get_experiment(parent.info.experiment_id).name


@pytest.fixture
def sklearn_autolog(global_uri):
    mlflow.sklearn.autolog(log_models=True, silent=True)
    try:
        yield
    finally:
        mlflow.sklearn.autolog(disable=True)


def test_autolog_does_not_double_a_stage_and_keeps_working_outside(sklearn_autolog, client, iris):
    X_train, _, y_train, _ = iris
    pipe = train(Iris(), iris)
    experiment_id = client.get_run(pipe.run_id).info.experiment_id
    runs = client.search_runs([experiment_id])
    assert 7 == len(runs)  # the parent and six stages: no autolog run
    assert all("tracked.pipeline" in r.data.tags or "tracked.stage" in r.data.tags for r in runs)
    models = client.search_logged_models(experiment_ids=[experiment_id])
    assert ["model", "pipeline"] == sorted(m.name for m in models)

    LogisticRegression(max_iter=500).fit(X_train, y_train)  # outside any stage
    autologged = [r for r in client.search_runs(["0"]) if "estimator_name" in r.data.tags]
    assert 1 == len(autologged)
    mlflow.end_run()


CELL = """
from sklearn.preprocessing import StandardScaler
from tracked import TrackedPipeline

class Notebook(TrackedPipeline):
    def scale(self, X, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        return self.operator.transform(X)
"""


def test_redefining_a_pipeline_in_a_rerun_cell_gives_one_run_per_call(memory):
    namespace: dict = {}
    exec(textwrap.dedent(CELL), namespace)
    first_class = namespace["Notebook"]
    exec(textwrap.dedent(CELL), namespace)  # the cell runs again
    second_class = namespace["Notebook"]
    assert first_class is not second_class

    for cls in (first_class, second_class):
        pipe = cls()
        tracked.configure(pipe, backend=memory)
        with pipe:
            pipe.scale(np.arange(6.0).reshape(3, 2))
        assert ["scale:fit"] == [c.name for c in memory.children(pipe.run_id)]
    assert isinstance(second_class(), TrackedPipeline)
