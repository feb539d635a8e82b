"""Search CV operators get what MLflow's autolog records: best params and score, the results
table, and child runs for the best candidates, nested under the stage's run."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.experimental import enable_halving_search_cv  # noqa: F401 - enables the import
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, RandomizedSearchCV

import tracked
from tracked import PipelineDefinitionError, TrackedPipeline

X, Y = load_iris(return_X_y=True)
GRID = {"C": [0.01, 0.1, 1.0, 10.0], "fit_intercept": [True, False]}


def search_of(kind):
    model = LogisticRegression(max_iter=500)
    if kind == "grid":
        return GridSearchCV(model, GRID, cv=3)
    if kind == "randomized":
        return RandomizedSearchCV(model, GRID, n_iter=6, cv=3, random_state=0)
    return HalvingGridSearchCV(model, GRID, cv=3, random_state=0, min_resources=30)


class Tuned(TrackedPipeline):
    experiment = "search"

    def __init__(self, kind="grid"):
        self.kind = kind

    def tune(self, X, y=None, stage="estimator"):
        self.search = self.operator = search_of(self.kind).fit(X, y)
        return self.search


def runs_under(client, run_id):
    experiment = client.get_run(run_id).info.experiment_id
    return client.search_runs(
        [experiment],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        order_by=["attributes.start_time ASC"],
    )


@pytest.mark.parametrize("kind", ["grid", "randomized", "halving"])
def test_a_search_records_best_params_score_results_and_best_candidates(kind, tracking_uri, client):
    pipe = Tuned(kind)
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.tune(X, Y)
    search = pipe.search
    [stage] = runs_under(client, pipe.run_id)
    assert "tune:fit" == stage.info.run_name
    for name, value in search.best_params_.items():
        assert str(value) == stage.data.params[f"best_{name}"]
    assert search.best_score_ == pytest.approx(stage.data.metrics["best_cv_score"])

    path = client.download_artifacts(stage.info.run_id, "cv_results.csv")
    with open(path) as file:
        rows = list(csv.DictReader(io.StringIO(file.read())))
    assert len(search.cv_results_["params"]) == len(rows)
    assert [str(v) for v in search.cv_results_["mean_test_score"]] == [
        row["mean_test_score"] for row in rows
    ]

    candidates = runs_under(client, stage.info.run_id)
    ranks = search.cv_results_["rank_test_score"]
    best = sorted(range(len(ranks)), key=lambda i: (ranks[i], i))[:5]
    assert len(candidates) == 5
    assert {f"tune:candidate-{i}" for i in best} == {run.info.run_name for run in candidates}
    for run in candidates:
        index = int(run.data.tags["tracked.candidate"])
        expected = search.cv_results_["params"][index]
        assert {name: str(value) for name, value in expected.items()} == run.data.params
        assert search.cv_results_["mean_test_score"][index] == pytest.approx(
            run.data.metrics["mean_test_score"]
        )
        assert "FINISHED" == run.info.status


def test_max_tuning_runs_sets_how_many_candidates_get_a_run(memory):
    class All(Tuned):
        max_tuning_runs = None

    class NoneOfThem(Tuned):
        max_tuning_runs = 0

    counts = []
    for cls in (All, NoneOfThem):
        pipe = cls()
        tracked.configure(pipe, backend=memory)
        with pipe:
            pipe.tune(X, Y)
        [stage] = memory.children(pipe.run_id)
        counts.append(len(memory.children(stage.run_id)))
    assert [len(pipe.search.cv_results_["params"]), 0] == counts


@pytest.mark.parametrize("value", [-1, 2.5, "5", True])
def test_max_tuning_runs_must_be_a_count(value):
    with pytest.raises(PipelineDefinitionError, match="max_tuning_runs must be None or a count"):
        type("Bad", (TrackedPipeline,), {"max_tuning_runs": value})


def test_a_multimetric_search_ranks_candidates_by_its_refit_metric(memory):
    class Multi(TrackedPipeline):
        def tune(self, X, y=None, stage="estimator"):
            self.operator = GridSearchCV(
                LogisticRegression(max_iter=500),
                GRID,
                cv=3,
                scoring={"acc": "accuracy", "f1": "f1_macro"},
                refit="f1",
            ).fit(X, y)
            return self.operator

    pipe = Multi()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.tune(X, Y)
    [stage] = memory.children(pipe.run_id)
    results = pipe.operator.cv_results_
    ranks = np.asarray(results["rank_test_f1"])
    best = sorted(range(len(ranks)), key=lambda i: (ranks[i], i))[:5]
    candidates = memory.children(stage.run_id)
    assert [f"tune:candidate-{i}" for i in best] == [run.name for run in candidates]
    assert {"mean_test_acc", "mean_test_f1", "rank_test_f1"} <= set(candidates[0].metrics)
    assert pipe.operator.best_score_ == pytest.approx(stage.metric("best_cv_score"))


def test_a_large_results_table_is_logged_whole(memory):
    """cv_results.csv is a table of record: the preview's byte bound does not cut it."""
    from sklearn.dummy import DummyClassifier

    class Wide(TrackedPipeline):
        def tune(self, X, y=None, stage="estimator"):
            grid = {"random_state": list(range(400)), "strategy": ["prior"]}
            self.operator = GridSearchCV(DummyClassifier(), grid, cv=2).fit(X, y)
            return self.operator

    pipe = Wide()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.tune(X, Y)
    [stage] = memory.children(pipe.run_id)
    content = stage.artifacts["cv_results.csv"]
    assert len(content) > 64 * 1024
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert len(pipe.operator.cv_results_["params"]) == len(rows)
