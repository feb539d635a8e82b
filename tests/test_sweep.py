"""Many runs at once: groups, threads, processes, joblib and Dask sweeps."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import mlflow
import pytest
from pipelines import Iris, train_and_score
from sklearn.model_selection import ParameterGrid

import tracked
from tracked import TrackedPipeline

TESTS = Path(__file__).parent
GRID = {"n_components": [1, 2, 3], "C": [0.1, 1.0]}


@pytest.fixture
def workers_see_tests(monkeypatch):
    """Worker processes import the test pipelines by name."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)


def runs_under(client, run_id):
    experiment = client.get_run(run_id).info.experiment_id
    return client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000
    )


def assert_pipelines_complete(client, group_run_id, expected_count):
    """Every pipeline run under the group: FINISHED, six stage runs, its own params."""
    parents = runs_under(client, group_run_id)
    assert expected_count == len(parents)
    for parent in parents:
        assert "FINISHED" == parent.info.status
        children = runs_under(client, parent.info.run_id)
        assert 6 == len(children)
        assert {"FINISHED"} == {child.info.status for child in children}
        [reduce_fit] = [c for c in children if c.info.run_name == "reduction:fit"]
        [classify_fit] = [c for c in children if c.info.run_name == "classification:fit"]
        assert parent.data.params["n_components"] == reduce_fit.data.params["n_components"]
        assert parent.data.params["C"] == classify_fit.data.params["C"]
    assert "FINISHED" == client.get_run(group_run_id).info.status
    return parents


def test_instances_created_in_a_group_nest_under_it_and_others_do_not(memory, iris):
    class Grouped(Iris):
        experiment = None
        backend = memory

    outside = Grouped()
    with tracked.group("campaign", experiment="campaign", backend=memory) as group:
        inside = Grouped(C=0.5)
    for pipe in (inside, outside):
        X_train, _, y_train, _ = iris
        with pipe:
            pipe.preprocessing(X_train, y_train)
    assert group.run_id == memory.get(inside.run_id).parent_run_id
    assert "campaign" == memory.get(inside.run_id).experiment  # the group's experiment
    assert memory.get(outside.run_id).parent_run_id is None
    assert "FINISHED" == memory.get(group.run_id).status
    assert "campaign" == memory.get(group.run_id).tags["tracked.group"]


def test_a_group_wins_over_an_active_mlflow_run(tracking_uri, client, iris, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    X_train, _, y_train, _ = iris
    with mlflow.start_run() as outer, tracked.group("inner", experiment="tests") as group:
        pipe = Iris()
        with pipe:
            pipe.preprocessing(X_train, y_train)
    assert group.run_id == client.get_run(pipe.run_id).data.tags["mlflow.parentRunId"]
    assert outer.info.run_id == client.get_run(group.run_id).data.tags["mlflow.parentRunId"]


def test_a_failing_block_fails_the_group_run(memory):
    with pytest.raises(ZeroDivisionError), tracked.group("g", backend=memory) as group:
        1 / 0  # noqa: B018
    assert "FAILED" == memory.get(group.run_id).status


@pytest.mark.timeout(180)
def test_sixteen_threads_of_five_runs_each_stay_apart(tracking_uri, client, iris):
    X_train, _, y_train, _ = iris
    errors = []

    def work(pipes):
        try:
            for pipe in pipes:
                with pipe:  # two stages a run keep 80 runs quick on sqlite's single writer
                    pipe.reduction(pipe.preprocessing(X_train, y_train), y_train)
        except BaseException as exc:  # surfaced below: a thread's failure fails the test
            errors.append(exc)

    with tracked.group("threads", experiment="tests", tracking_uri=tracking_uri) as group:
        # Instances join the group where they are created: here, then handed to threads.
        batches = [
            [Iris(n_components=1 + (t + r) % 4, C=float(1 + t)) for r in range(5)]
            for t in range(16)
        ]
        threads = [threading.Thread(target=work, args=(batch,)) for batch in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)
    assert [] == errors
    parents = runs_under(client, group.run_id)
    assert 80 == len({p.info.run_id for p in parents})
    for parent in parents:
        assert "FINISHED" == parent.info.status
        children = {c.info.run_name: c for c in runs_under(client, parent.info.run_id)}
        assert ["preprocessing:fit", "reduction:fit"] == sorted(children)
        assert (
            parent.data.params["n_components"]
            == children["reduction:fit"].data.params["n_components"]
        )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_loky_sweep_with_two_workers_tags_the_best_configuration(
    tracking_uri, client, workers_see_tests, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    results = tracked.sweep(Iris, GRID, train_and_score, n_jobs=2, backend="loky", name="loky")
    grid = list(ParameterGrid(GRID))
    assert len(grid) == len(results)
    assert_pipelines_complete(client, results.run_id, len(grid))
    group = client.get_run(results.run_id)
    assert "loky" == group.info.run_name
    best = max(range(len(grid)), key=lambda i: results[i])
    assert results[best] == pytest.approx(group.data.metrics["best.accuracy"])
    assert max(results) == results.best_metric["accuracy"]
    best_run = client.get_run(group.data.tags["tracked.best_run_id"])
    assert results[best] == pytest.approx(best_run.data.metrics["accuracy"])
    assert {f"best.{k}": str(v) for k, v in results.best_params.items()} == group.data.params


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_sweep_on_a_local_dask_cluster(tracking_uri, client, workers_see_tests, monkeypatch):
    distributed = pytest.importorskip("dask.distributed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        results = tracked.sweep(Iris, GRID, train_and_score, n_jobs=2, backend="dask")
    assert_pipelines_complete(client, results.run_id, len(ParameterGrid(GRID)))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_instances_shipped_to_multiprocessing_workers_log_into_the_group(
    tracking_uri, client, workers_see_tests, method
):
    with tracked.group(method, experiment="tests", tracking_uri=tracking_uri) as group:
        pipes = [Iris(n_components=n) for n in (1, 2)]
        with multiprocessing.get_context(method).Pool(2) as pool:
            outcomes = pool.map(_train_in_child_closed, pipes)
    assert all(0 < accuracy <= 1 for accuracy, _ in outcomes)
    assert_pipelines_complete(client, group.run_id, 2)


def _train_in_child_closed(pipe):
    """Pool workers exit without running atexit handlers: close the run explicitly."""
    with pipe:
        accuracy = train_and_score(pipe)
    return accuracy, pipe.run_id


def test_an_untracked_class_sweeps_without_a_group(memory):
    class Off(Iris):
        tracking = False
        backend = memory

    results = tracked.sweep(Off, {"C": [0.1, 1.0]}, train_and_score, backend="threading")
    assert 2 == len(results)
    assert results.run_id is None
    assert {} == memory.runs


def test_sweep_results_come_back_in_grid_order(memory):
    class Echo(TrackedPipeline):
        backend = memory

        def __init__(self, k=0):
            self.k = k

    results = tracked.sweep(Echo, {"k": [3, 1, 2]}, lambda pipe: pipe.k, backend="threading")
    assert [3, 1, 2] == list(results)
    assert 3 == len(memory.children(results.run_id))


def test_a_sweep_with_joblib_s_defaults_runs_every_configuration(memory):
    class Echo(TrackedPipeline):
        backend = memory

        def __init__(self, k=0):
            self.k = k

    results = tracked.sweep(Echo, {"k": [1, 2]}, lambda pipe: pipe.k * 10)
    assert [10, 20] == list(results)


def test_a_group_does_nothing_while_the_environment_switches_tracking_off(memory, monkeypatch):
    monkeypatch.setenv("TRACKED_ENABLED", "0")
    with tracked.group("off", backend=memory) as group:
        pipe = Iris()
    tracked.configure(pipe, backend=memory)
    assert group.run_id is None
    assert {} == memory.runs
    assert pipe.run_id is None


def test_a_sweep_shows_a_progress_bar_when_asked(memory, capsys):
    class Echo(TrackedPipeline):
        backend = memory

        def __init__(self, k=0):
            self.k = k

    tracked.sweep(Echo, {"k": [1, 2]}, lambda pipe: pipe.k, backend="threading", progress=True)
    assert "sweep" in capsys.readouterr().err
