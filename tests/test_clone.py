"""``sklearn.base.clone`` keeps an instance's own settings, and a clone's run ends like others."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pipelines import Classifier
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.model_selection import cross_val_score

import tracked
from tracked.core.settings import Settings, overrides


@pytest.fixture(scope="module")
def data():
    return load_iris(return_X_y=True)


def pipeline_runs(client, experiment="clones"):
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs(
        [found.experiment_id], filter_string="tags.`tracked.pipeline` LIKE '%'"
    )


def test_a_clone_keeps_the_instance_s_own_settings(memory):
    pipe = Classifier(C=0.3)
    pipe.tracking = False
    tracked.configure(pipe, strict=False)
    tracked.configure(pipe, backend=memory)
    twin = clone(pipe)
    assert (False, 0.3) == (twin.tracking, twin.C)
    assert {"strict": False, "backend": memory} == overrides(twin)  # TRACKED_STRICT aside
    assert twin is not pipe
    # Settings left to the class stay the class's: nothing is pinned on the clone.
    assert "scoring" not in vars(twin)


def test_a_clone_keeps_the_evaluation_and_model_settings_set_on_the_instance(memory):
    pipe = Classifier(C=0.3)
    tracked.configure(pipe, pos_label=1)
    tracked.configure(pipe, max_tuning_runs=None)
    tracked.configure(pipe, log_input_example=True)
    settings = Settings.of(clone(pipe))
    assert (1, None, True) == (
        settings.pos_label,
        settings.max_tuning_runs,
        settings.log_input_example,
    )


def test_cross_validating_an_untracked_instance_logs_nothing(tracking_uri, client, data):
    X, y = data
    pipe = Classifier()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    pipe.tracking = False
    scores = cross_val_score(pipe, X, y, cv=3)
    assert 3 == len(scores) and not np.isnan(scores).any()
    assert [] == pipeline_runs(client)


def test_clones_made_inside_a_run_nest_under_it_and_end_with_it(tracking_uri, client, data):
    X, y = data
    pipe = Classifier()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.fit(X, y)
        scores = cross_val_score(pipe, X, y, cv=3)
    assert not np.isnan(scores).any()
    runs = pipeline_runs(client)
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [pipe.run_id] == [r.info.run_id for r in top]
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == pipe.run_id]
    assert 3 == len(nested)
    # Ended when the owner's run ended, not left RUNNING until the interpreter exits.
    assert {"FINISHED"} == {r.info.status for r in nested}
    assert "FINISHED" == client.get_run(pipe.run_id).info.status


def test_a_clone_made_outside_a_run_has_its_own_top_level_run(tracking_uri, client, data):
    X, y = data
    pipe = Classifier()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    twin = clone(pipe)
    with twin:
        twin.fit(X, y)
    run = client.get_run(twin.run_id)
    assert "mlflow.parentRunId" not in run.data.tags
    assert "FINISHED" == run.info.status
    assert Settings.of(twin).tracking_uri == tracking_uri


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_clones_shipped_to_workers_log_under_the_run_they_were_cloned_in(
    tracking_uri, client, data
):
    X, y = data
    pipe = Classifier()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.fit(X, y)
        scores = cross_val_score(pipe, X, y, cv=2, n_jobs=2)
    assert not np.isnan(scores).any()
    runs = pipeline_runs(client)
    assert [pipe.run_id] == [r.info.run_id for r in runs]
    found = client.get_experiment_by_name("clones")

    def stage_runs():
        return client.search_runs(
            [found.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'"
        )

    # The workers' own writers write in the background: wait (bounded) for their records.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        copies = [r for r in stage_runs() if r.data.tags.get("tracked.copy") == "true"]
        if len(copies) >= 8:
            break
        time.sleep(1)
    # Each fold's clone fitted and predicted: scale and classify, fit and inference.
    assert 8 == len(copies)
    assert {"FINISHED"} == {r.info.status for r in stage_runs()}
    assert [pipe.run_id] == [r.info.run_id for r in pipeline_runs(client)]
    assert "FINISHED" == client.get_run(pipe.run_id).info.status
