"""End to end against a team server: ``mlflow server`` on PostgreSQL with proxied artifacts.

One server (and one database) for the module, started by the fixture and always stopped and
dropped afterwards. Needs the PostgreSQL server of tests/servers.py (127.0.0.1:5432).
"""

from __future__ import annotations

import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import mlflow
import mlflow.pyfunc
import numpy as np
import pipelines
import pytest
from mlflow import MlflowClient
from pipelines import CHILD_NAMES, Iris
from servers import MlflowServer, database_exists, database_name, postgres_database

import tracked
from tracked import TrackingWarning

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def team_server(tmp_path_factory):
    """A running MlflowServer on a fresh PostgreSQL database, for the whole module."""
    with postgres_database() as uri:
        name = database_name(uri)
        server = MlflowServer(
            uri,
            tmp_path_factory.mktemp("artifacts"),
            log_dir=tmp_path_factory.mktemp("server-log"),
        )
        with server:
            yield server
    assert not database_exists(name), f"database {name} outlived the module"


@pytest.fixture
def client(team_server):
    return MlflowClient(team_server.url)


def children_of(client, run_id):
    parent = client.get_run(run_id)
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )


def run_iris(tracking_uri, iris, **params):
    return pipelines.run_iris(iris, params, tracking_uri=tracking_uri)


def test_a_pipeline_is_tracked_and_its_model_loads_through_the_server(
    team_server, client, iris, monkeypatch
):
    _, X_test, _, y_test = iris
    pipe, predictions = run_iris(team_server.url, iris, n_components=3, C=0.5)

    parent = client.get_run(pipe.run_id)
    assert "FINISHED" == parent.info.status
    assert {"n_components": "3", "C": "0.5"} == parent.data.params
    assert float(np.mean(predictions == y_test)) == pytest.approx(parent.data.metrics["accuracy"])
    experiment = client.get_experiment(parent.info.experiment_id)
    assert "tests" == experiment.name
    assert experiment.artifact_location.startswith("mlflow-artifacts:")

    children = children_of(client, pipe.run_id)
    # Sub-millisecond stages share a start time: the store's order among them is arbitrary.
    assert sorted(CHILD_NAMES) == sorted(c.info.run_name for c in children)
    assert all("FINISHED" == c.info.status for c in children)

    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server.url)
    model = mlflow.pyfunc.load_model(f"runs:/{pipe.run_id}/pipeline")
    expected = pipe.predict(X_test)
    predicted = model.predict(X_test)
    assert expected.dtype == predicted.dtype
    np.testing.assert_array_equal(expected, predicted)
    # The artifacts went through the server's proxy into its artifacts folder.
    assert any(team_server.artifacts_dir.rglob("MLmodel"))


def test_four_threads_track_two_pipelines_each_without_mixing_runs(team_server, client, iris):
    threads, runs_per_thread = 4, 2
    X_train, X_test, y_train, y_test = iris
    start_together = threading.Barrier(threads)

    def settings(index):
        return {"n_components": 1 + index % 4, "C": (index + 1) / 20}

    def work(thread):
        start_together.wait(timeout=60)
        done = []
        for run in range(runs_per_thread):
            params = settings(thread * runs_per_thread + run)
            pipe = Iris(**params)
            tracked.configure(pipe, tracking_uri=team_server.url)
            with pipe:
                pipe.train(X_train, y_train)
                pipe.predict(X_test, y_test)
            done.append((pipe.run_id, params))
        return done

    # The configured filters stay: a TrackingWarning raises in its thread (and strict mode
    # raises TrackingError); both come back through result(). Anything else is recorded.
    with (
        warnings.catch_warnings(record=True) as caught,
        ThreadPoolExecutor(max_workers=threads) as pool,
    ):
        futures = [pool.submit(work, thread) for thread in range(threads)]
        results = [pair for future in futures for pair in future.result()]
    assert [] == [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]

    assert threads * runs_per_thread == len({run_id for run_id, _ in results})
    for run_id, params in results:
        parent = client.get_run(run_id)
        assert "FINISHED" == parent.info.status, run_id
        assert {k: str(v) for k, v in params.items()} == parent.data.params
        children = {c.info.run_name: c for c in children_of(client, run_id)}
        assert sorted(CHILD_NAMES) == sorted(children), run_id
        assert all("FINISHED" == c.info.status for c in children.values()), run_id
        assert str(params["n_components"]) == children["reduction:fit"].data.params["n_components"]
        assert str(params["C"]) == children["classification:fit"].data.params["C"]
        assert "accuracy" in parent.data.metrics


def test_a_postgres_database_is_dropped_on_exit_even_after_an_error_with_a_client_connected():
    import sqlalchemy

    with pytest.raises(RuntimeError, match="inside"), postgres_database() as uri:
        name = database_name(uri)
        assert re.fullmatch(r"tracked_test_[0-9a-f]{12}", name)
        assert database_exists(name)
        engine = sqlalchemy.create_engine(uri)
        connection = engine.connect()  # left open, as a server that failed to stop would
        assert 1 == connection.execute(sqlalchemy.text("SELECT 1")).scalar()
        raise RuntimeError("inside")
    try:
        assert not database_exists(name)
    finally:
        connection.invalidate()  # the server terminated it: nothing to give back to the pool
        engine.dispose()


def test_the_server_restarts_on_the_same_port_and_keeps_its_runs(team_server, client, iris):
    pipe, _ = run_iris(team_server.url, iris)
    url = team_server.url
    team_server.restart()
    assert url == team_server.url
    assert "FINISHED" == client.get_run(pipe.run_id).info.status
    again, _ = run_iris(team_server.url, iris)
    assert 6 == len(children_of(client, again.run_id))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_loky_sweep_logs_every_configuration_to_the_server(team_server, client, monkeypatch):
    import os
    from pathlib import Path

    from pipelines import train_and_score
    from test_sweep import GRID, assert_pipelines_complete

    import tracked

    tests = str(Path(__file__).parent)
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team_server.url)
    results = tracked.sweep(Iris, GRID, train_and_score, n_jobs=2, backend="loky", name="server")
    assert_pipelines_complete(client, results.run_id, len(results))
    assert results.best_run_id == client.get_run(results.run_id).data.tags["tracked.best_run_id"]
