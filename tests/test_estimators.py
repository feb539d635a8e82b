"""A pipeline used as a scikit-learn estimator: each clone's parent run ends when the clone
is done with, and a search's clones are grouped under one run."""

from __future__ import annotations

import gc

import pipelines
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    cross_val_score,
    cross_validate,
)

import tracked

X, Y = load_iris(return_X_y=True)
GRID = {"C": [0.01, 0.1, 1.0, 10.0]}


class Estimator(pipelines.Classifier):
    """Two stages behind scikit-learn's fit and predict (tests/pipelines.py's Classifier)."""

    experiment = "estimators"
    # What the lifecycle needs, without the stages' heavy parts: the tests stay fast.
    log_models = False
    log_datasets = False
    log_pictures = False
    log_outputs = "none"


def use(how, estimator):
    """Run scikit-learn's ``how`` over ``estimator``; return (result, parent runs expected)."""
    if how == "grid":
        return GridSearchCV(estimator, GRID, cv=3).fit(X, Y), 4 * 3 + 1
    if how == "randomized":
        search = RandomizedSearchCV(estimator, GRID, n_iter=3, cv=3, random_state=0)
        return search.fit(X, Y), 3 * 3 + 1
    if how == "cross_validate":
        return cross_validate(estimator, X, Y, cv=3, return_estimator=True), 3
    return cross_val_score(estimator, X, Y, cv=3), 3


def experiment_runs(client):
    found = client.get_experiment_by_name("estimators")
    return client.search_runs([found.experiment_id], max_results=1000)


@pytest.mark.slow  # a real store and up to 13 clones' runs: up to ~15 s on a busy machine
@pytest.mark.timeout(240)
@pytest.mark.parametrize("how", ["grid", "randomized", "cross_validate", "cross_val_score"])
def test_clones_end_finished_and_are_grouped_under_one_run(how, tracking_uri, client):
    estimator = Estimator()
    tracked.configure(estimator, tracking_uri=tracking_uri)
    result, expected = use(how, estimator)
    best_run = result.best_estimator_.run_id if hasattr(result, "best_estimator_") else None
    # The search (and the estimators cross_validate returns) done with: collected.
    del result
    gc.collect()
    assert tracked.flush()

    runs = experiment_runs(client)
    assert [] == [r.info.run_name for r in runs if r.info.status != "FINISHED"]
    [group] = [r for r in runs if "tracked.clones_of" in r.data.tags]
    assert "test_estimators.Estimator" == group.data.tags["tracked.clones_of"]
    parents = [r for r in runs if "tracked.pipeline" in r.data.tags]
    assert expected == len(parents)
    assert {group.info.run_id} == {r.data.tags["mlflow.parentRunId"] for r in parents}
    assert "mlflow.parentRunId" not in group.data.tags
    if best_run is not None:
        # The refit's run is one of the group's, and its id is the store's.
        assert best_run in {r.info.run_id for r in parents}
    # The user's own estimator was never fitted: it has no run.
    assert estimator.run_id is None


def test_the_refit_s_run_stays_open_while_the_search_holds_it(memory):
    estimator = Estimator()
    tracked.configure(estimator, backend=memory)
    search = GridSearchCV(estimator, GRID, cv=3).fit(X, Y)
    gc.collect()
    assert tracked.flush()
    best = memory.get(search.best_estimator_.run_id)
    group = memory.get(best.parent_run_id)
    # Its predictions go in it: open, like its group; every fold's clone has ended.
    assert ("RUNNING", "RUNNING") == (best.status, group.status)
    folds = [run for run in memory.children(group.run_id) if run.run_id != best.run_id]
    assert 12 == len(folds)
    assert {"FINISHED"} == {run.status for run in folds}

    search.best_estimator_.close()
    assert tracked.flush()
    assert ("FINISHED", "FINISHED") == (best.status, group.status)


def test_an_instance_s_run_ends_when_it_is_garbage_collected(memory):
    estimator = Estimator()
    tracked.configure(estimator, backend=memory)
    estimator.fit(X, Y)
    estimator.predict(X)
    run_id = estimator.run_id
    assert "RUNNING" == memory.get(run_id).status
    del estimator
    gc.collect()
    assert tracked.flush()
    run = memory.get(run_id)
    assert "FINISHED" == run.status
    assert ["scale:fit", "classify:fit", "scale:inference", "classify:inference"] == [
        child.name for child in memory.children(run_id)
    ]


def test_the_next_fit_of_an_instance_opens_a_new_run_and_ends_the_last(memory):
    estimator = Estimator()
    tracked.configure(estimator, backend=memory)
    estimator.fit(X, Y)
    estimator.predict(X)
    first = estimator.run_id
    estimator.fit(X[:100], Y[:100])
    second = estimator.run_id
    assert tracked.flush()
    assert first != second
    assert ("FINISHED", "RUNNING") == (memory.get(first).status, memory.get(second).status)
    assert ["scale:fit", "classify:fit"] == [run.name for run in memory.children(second)]


def test_fits_inside_a_with_block_stay_in_its_run(memory):
    estimator = Estimator()
    tracked.configure(estimator, backend=memory)
    with estimator:
        estimator.fit(X, Y)
        estimator.fit(X[:100], Y[:100])
    [run] = memory.parents()
    assert 4 == len(memory.children(run.run_id))
    assert "FINISHED" == run.status


def test_a_fit_that_calls_its_base_s_fit_is_one_fit(memory):
    class Refined(Estimator):
        def fit(self, X, y):
            self.scale(X)  # a stage before the base's fit: one run all the same
            return super().fit(X, y)

    estimator = Refined()
    tracked.configure(estimator, backend=memory)
    estimator.fit(X, Y)
    [run] = memory.parents()
    assert ["scale:fit", "scale:fit", "classify:fit"] == [
        child.name for child in memory.children(run.run_id)
    ]


def test_clones_of_a_search_against_a_store_that_is_away_each_wait_in_the_spool(
    tracking_uri, client, spool_dir
):
    from servers import free_port

    from tracked import TrackingWarning

    estimator = Estimator()
    tracked.configure(estimator, tracking_uri=f"http://127.0.0.1:{free_port()}")  # nobody listens
    with pytest.warns(TrackingWarning, match="is away"):
        scores = cross_val_score(estimator, X, Y, cv=3)
        gc.collect()
        tracked.flush()
    assert 3 == len(scores)
    # No group run could be made: each clone's run waits in the spool as a top-level run.
    assert 3 == len([folder for folder in spool_dir.iterdir() if folder.is_dir()])
