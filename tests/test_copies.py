"""A copy that logs under its owner's parent run never touches the owner's model or metrics."""

from __future__ import annotations

import copy
import pickle

import mlflow
import pytest
from pipelines import Iris

import tracked


def children_of(client, run_id):
    parent = client.get_run(run_id)
    return client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )


@pytest.mark.parametrize(
    "make_copy", [copy.deepcopy, copy.copy, lambda p: pickle.loads(pickle.dumps(p))]
)
def test_a_copy_refitted_inside_the_owner_s_run_leaves_its_model_and_metrics_alone(
    tracking_uri, client, iris, make_copy
):
    X_train, X_test, y_train, y_test = iris
    owner = Iris(C=0.5)
    tracked.configure(owner, tracking_uri=tracking_uri)
    with owner:
        owner.train(X_train, y_train)
        owner.predict(X_test, y_test)
        twin = make_copy(owner)
        twin.C = 100.0
        twin.train(X_train[:40], y_train[:40])
        twin.predict(X_test, y_test)
        twin.close()
    parent = client.get_run(owner.run_id)
    assert "0.5" == parent.data.params["C"]

    # runs:/<owner>/pipeline is the owner's model, and so is owner.model_uri.
    served = mlflow.sklearn.load_model(f"runs:/{owner.run_id}/pipeline")
    assert 0.5 == served.steps[-1][1].C
    assert 0.5 == mlflow.sklearn.load_model(owner.model_uri).steps[-1][1].C
    # The copy's own composed model is on its own estimator run, and its uri says so.
    assert twin.model_uri is not None and twin.model_uri != owner.model_uri
    assert 100.0 == mlflow.sklearn.load_model(twin.model_uri).steps[-1][1].C

    # One evaluation on the owner's parent run, at step 0: the owner's.
    history = client.get_metric_history(owner.run_id, "accuracy")
    assert [0] == [m.step for m in history]
    owner_children = {c.info.run_name: c for c in children_of(client, owner.run_id)}
    own_inference = [
        c
        for c in children_of(client, owner.run_id)
        if c.info.run_name == "classification:inference" and "tracked.copy" not in c.data.tags
    ]
    (own,) = own_inference
    assert history[0].value == own.data.metrics["accuracy"]
    assert "classification:fit" in owner_children

    # The copy's stage runs are under the owner's run, marked, with their own metrics.
    copies = [c for c in children_of(client, owner.run_id) if "tracked.copy" in c.data.tags]
    assert 6 == len(copies)
    (copy_fit,) = [c for c in copies if c.info.run_name == "classification:fit"]
    assert "100.0" == copy_fit.data.params["C"]
    copied_model = mlflow.sklearn.load_model(f"runs:/{copy_fit.info.run_id}/pipeline")
    assert 100.0 == copied_model.steps[-1][1].C
    (copy_inference,) = [c for c in copies if c.info.run_name == "classification:inference"]
    assert "accuracy" in copy_inference.data.metrics
    assert "true" == copy_inference.data.tags["tracked.pipeline_verified"]
    assert "FINISHED" == parent.info.status
