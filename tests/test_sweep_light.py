"""A light sweep: every configuration with its params, evaluation metrics and composed model;
pictures, files, datasets and stage models for the best configuration only."""

from __future__ import annotations

import mlflow
import pytest
from pipelines import Iris, train_and_score

import tracked
from tracked.core.names import LEFT_OUT_TAG

GRID = {"n_components": [2], "C": [0.01, 1.0, 0.1]}
PICTURES = {"confusion_matrix.png", "confusion_matrix.json", "roc_curve.png", "pr_curve.png"}


def stage_runs(client, parent_id):
    experiment = client.get_run(parent_id).info.experiment_id
    runs = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=100
    )
    return {run.info.run_name: run for run in runs}


def artifact_names(client, run_id):
    return {a.path for a in client.list_artifacts(run_id)}


def test_only_the_best_configuration_has_pictures_files_datasets_and_stage_models(
    tracking_uri, client, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    results = tracked.sweep(Iris, GRID, train_and_score, n_jobs=2, backend="threading")
    parents = stage_runs(client, results.run_id)
    assert 3 == len(parents)
    experiment = client.get_run(results.run_id).info.experiment_id
    models = client.search_logged_models(experiment_ids=[experiment])
    model_runs = {(m.name, m.source_run_id) for m in models}
    best_id = results.best_run_id
    assert best_id in {parent.info.run_id for parent in parents.values()}
    for parent in parents.values():
        # Every configuration: params, evaluation metrics, a loadable composed model.
        run_id = parent.info.run_id
        assert {"n_components", "C"} <= set(parent.data.params)
        assert 0 < parent.data.metrics["accuracy"] <= 1
        model = mlflow.sklearn.load_model(f"runs:/{run_id}/pipeline")
        assert str(model.steps[-1][1].C) == parent.data.params["C"]
        stages = stage_runs(client, run_id)
        assert 6 == len(stages)
        assert {"FINISHED"} == {stage.info.status for stage in stages.values()}
        assert {"C"} <= set(stages["classification:fit"].data.params)
        inference = stages["classification:inference"]
        pictures = PICTURES & artifact_names(client, inference.info.run_id)
        fit_model = ("model", stages["classification:fit"].info.run_id) in model_runs
        datasets = client.get_run(stages["preprocessing:fit"].info.run_id).inputs.dataset_inputs
        if run_id == best_id:
            assert PICTURES == pictures
            assert fit_model
            assert datasets
            assert inference.data.tags[LEFT_OUT_TAG].startswith("nothing")
        else:
            assert set() == pictures
            assert not fit_model
            assert not datasets
            assert "pictures" in inference.data.tags[LEFT_OUT_TAG]
            assert "model" in stages["classification:fit"].data.tags[LEFT_OUT_TAG]


def test_a_sweep_that_is_not_light_draws_every_configuration_s_pictures(memory):
    class Remembered(Iris):
        backend = memory

    results = tracked.sweep(
        Remembered, {"C": [0.1, 1.0]}, train_and_score, backend="threading", light=False
    )
    for parent in memory.children(results.run_id):
        stages = {run.name: run for run in memory.children(parent.run_id)}
        assert PICTURES <= set(stages["classification:inference"].artifacts)
        assert LEFT_OUT_TAG not in stages["classification:inference"].tags


def test_a_pipeline_outside_a_sweep_keeps_its_pictures(memory, iris):
    class Remembered(Iris):
        backend = memory

    X_train, X_test, y_train, y_test = iris
    with tracked.group("by hand", backend=memory), Remembered() as pipe:
        pipe.train(X_train, y_train)
        pipe.predict(X_test, y_test)
    stages = {run.name: run for run in memory.children(pipe.run_id)}
    assert PICTURES <= set(stages["classification:inference"].artifacts)


def test_a_best_configuration_whose_pictures_cannot_be_drawn_warns(memory, monkeypatch):
    from tracked.recording.evaluation import plots

    monkeypatch.setenv("TRACKED_STRICT", "0")

    class Remembered(Iris):
        backend = memory

    def broken(self):
        raise RuntimeError("no pictures today")

    monkeypatch.setattr(plots.Pictures, "render", broken)
    with pytest.warns(tracked.TrackingWarning, match="no pictures today"):
        results = tracked.sweep(Remembered, {"C": [0.1, 1.0]}, train_and_score, backend="threading")
    assert 2 == len(results)
    best = {run.name: run for run in memory.children(results.best_run_id)}
    assert "model" in best["classification:fit"].models  # the other parts are logged
