"""End to end against a real MLflow store: sqlite in a temporary folder."""

from __future__ import annotations

import warnings

import mlflow
import mlflow.sklearn
import numpy as np
import pipelines
import pytest
from pipelines import Iris
from servers import free_port

import tracked
from tracked import TrackingError, TrackingWarning
from tracked.backends.mlflow.backend import MlflowBackend
from tracked.backends.mlflow.keys import MAX_PARAM_VALUE_LENGTH, sanitize_key
from tracked.core.text import shorten


def run_iris(tracking_uri, iris, **params):
    return pipelines.run_iris(iris, params, tracking_uri=tracking_uri)


def runs_of(client, experiment="tests"):
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment_id], order_by=["attributes.start_time ASC"])


def children_of(client, run_id):
    """The child runs in the order they were made: by start time, and stages that started
    within one millisecond in the order of an Iris pass."""
    parent = client.get_run(run_id)
    runs = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    order = {name: index for index, name in enumerate(pipelines.CHILD_NAMES)}
    return sorted(runs, key=lambda r: (r.info.start_time, order.get(r.info.run_name, 0)))


def test_the_store_holds_the_parent_and_six_children_with_tags_params_metrics(
    tracking_uri, client, iris
):
    _, _, _, y_test = iris
    pipe, predictions = run_iris(tracking_uri, iris, C=0.5)

    parent = client.get_run(pipe.run_id)
    assert "FINISHED" == parent.info.status
    assert "Iris(C=0.5)" == parent.info.run_name
    assert {"n_components": "2", "C": "0.5"} == parent.data.params
    assert float(np.mean(predictions == y_test)) == pytest.approx(parent.data.metrics["accuracy"])

    children = children_of(client, pipe.run_id)
    assert 6 == len(children)
    assert [c.data.tags["tracked.phase"] for c in children] == ["fit"] * 3 + ["inference"] * 3
    assert all(c.info.status == "FINISHED" for c in children)
    classify_fit = children[2]
    assert "classification:fit" == classify_fit.info.run_name
    assert "estimator" == classify_fit.data.tags["tracked.kind"]
    assert "0.5" == classify_fit.data.params["C"]
    assert "training_accuracy" in classify_fit.data.metrics
    assert "accuracy" in children[5].data.metrics


def test_the_estimator_model_loads_back_from_a_runs_uri(tracking_uri, client, iris, monkeypatch):
    _, X_test, _, _ = iris
    pipe, predictions = run_iris(tracking_uri, iris)
    classify_fit = children_of(client, pipe.run_id)[2]

    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    model = mlflow.sklearn.load_model(f"runs:/{classify_fit.info.run_id}/model")
    reduced = pipe.pca.transform(pipe.scaler.transform(X_test))
    np.testing.assert_array_equal(predictions, model.predict(reduced))

    [logged] = client.search_logged_models(
        experiment_ids=[classify_fit.info.experiment_id], filter_string="name = 'model'"
    )
    assert "READY" == str(logged.status)
    assert classify_fit.info.run_id == logged.source_run_id
    flavor = mlflow.models.get_model_info(f"runs:/{classify_fit.info.run_id}/model").flavors
    assert "skops" == flavor["sklearn"]["serialization_format"]


def test_a_failing_stage_leaves_a_failed_child_with_the_error(tracking_uri, client):
    from test_stage import Boom, Failing

    pipe = Failing()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pytest.raises(Boom), pipe:
        pipe.explode(np.ones((3, 2)))
    [child] = children_of(client, pipe.run_id)
    assert "FAILED" == child.info.status
    assert "Boom: the user's own failure" == child.data.tags["tracked.error"]
    assert "FAILED" == client.get_run(pipe.run_id).info.status


def test_an_unreachable_store_warns_and_leaves_results_intact(iris, monkeypatch, spool_dir):
    monkeypatch.setenv("TRACKED_STRICT", "0")
    X_train, X_test, y_train, y_test = iris
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=f"http://127.0.0.1:{free_port()}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pipe:
            pipe.train(X_train, y_train)
            predictions = pipe.predict(X_test, y_test)
    untracked = Iris()
    untracked.tracking = False
    untracked.train(X_train, y_train)
    np.testing.assert_array_equal(untracked.predict(X_test), predictions)
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert len(messages) == 1, messages  # once, not once per stage
    assert "tracking server at 127.0.0.1" in messages[0]
    assert "is not reachable" in messages[0]
    assert f"kept in the spool at {spool_dir}" in messages[0]
    assert pipe.run_id.startswith("local-")
    [folder] = spool_dir.iterdir()
    assert pipe.run_id == folder.name


def test_in_strict_mode_a_spooled_run_is_a_warning_not_an_error(iris):
    # Nothing is lost: the records wait in the spool, so strict mode does not raise.
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=f"http://127.0.0.1:{free_port()}")
    with pytest.warns(TrackingWarning, match="is not reachable"):
        pipe.preprocessing(X_train, y_train)
        tracked.flush()
    pipe.close()


def test_a_deleted_experiment_is_reported_with_the_fix(
    tracking_uri, client, iris, monkeypatch, spool_dir
):
    from tracked.spool.sync import sync

    client.delete_experiment(client.create_experiment("tests"))
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    # The writer learns of it after the stage returned: the next sync point raises.
    with pytest.raises(TrackingError, match="mlflow experiments restore --experiment-id") as info:
        pipe.preprocessing(X_train, y_train)
        tracked.flush()
    assert "kept in the spool" in str(info.value)
    pipe.reduction(X_train, y_train)  # still captured, into the spool
    pipe.close()
    assert pipe.run_id.startswith("local-")

    # Once the experiment is restored, `tracked sync` writes the whole run.
    client.restore_experiment(client.get_experiment_by_name("tests").experiment_id)
    result = sync(spool_dir)
    assert result.ok, result.remaining
    [parent] = [run for run in runs_of(client) if "tracked.pipeline" in run.data.tags]
    assert "FINISHED" == parent.info.status
    names = sorted(c.info.run_name for c in children_of(client, parent.info.run_id))
    assert ["preprocessing:fit", "reduction:fit"] == names


def test_long_param_values_are_truncated_not_failed(tracking_uri, client):
    backend = MlflowBackend(tracking_uri)
    run_id = backend.start_run(experiment="limits", run_name="r")
    backend.log(run_id, params={"long": "x" * 7000, "bad/key?": "v"})
    params = client.get_run(run_id).data.params
    assert len(params["long"]) == MAX_PARAM_VALUE_LENGTH
    assert params["long"].endswith("...")
    assert "v" == params["bad_key_"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a__b", "a__b"),
        ("with space:colon-dash.dot", "with space:colon-dash.dot"),
        ("slash/and?query", "slash_and_query"),
        ("..", "_.."),
        ("", "_"),
        ("é_unicode", "é_unicode"),
        ("k" * 300, "k" * 250),
    ],
)
def test_keys_are_sanitised_to_what_mlflow_accepts(key, expected):
    from mlflow.utils.validation import _validate_param_name

    assert expected == sanitize_key(key)
    _validate_param_name(sanitize_key(key))


def test_shorten_marks_what_it_cut():
    assert "abc" == shorten("abc", 3)
    assert "a..." == shorten("abcdef", 4)


def test_two_pipelines_at_once_in_one_store(tracking_uri, client, iris):
    X_train, _, y_train, _ = iris
    first, second = Iris(n_components=1), Iris(n_components=3)
    for pipe in (first, second):
        tracked.configure(pipe, tracking_uri=tracking_uri)
    with first, second:
        second.preprocessing(X_train, y_train)
        first.preprocessing(X_train, y_train)
        first.reduction(first.scaler.transform(X_train), y_train)
        second.reduction(second.scaler.transform(X_train), y_train)
    for pipe in (first, second):
        children = children_of(client, pipe.run_id)
        assert 2 == len(children)
        assert str(pipe.n_components) == children[1].data.params["n_components"]


class Flaky:
    """Fails its first calls with `message`, then answers."""

    def __init__(self, failures, message):
        self.failures, self.message, self.calls = failures, message, 0

    def create_run(self):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError(self.message)
        return "run"


def test_transient_store_errors_are_retried_with_a_bound(monkeypatch):
    from tracked.backends.mlflow import client as backend

    monkeypatch.setattr(backend, "FIRST_BACKOFF_S", 0.001)
    flaky = Flaky(2, "(sqlite3.OperationalError) database is locked")
    assert "run" == backend.GuardedClient(flaky, serialize=True).create_run()
    assert 3 == flaky.calls
    hopeless = Flaky(99, "database is locked")
    with pytest.raises(RuntimeError, match="locked"):
        backend.GuardedClient(hopeless, serialize=False).create_run()
    assert 1 + backend.RETRIES == hopeless.calls


def test_other_store_errors_are_not_retried():
    from tracked.backends.mlflow.client import GuardedClient

    flaky = Flaky(1, "INVALID_PARAMETER_VALUE: no such experiment")
    with pytest.raises(RuntimeError, match="INVALID_PARAMETER_VALUE"):
        GuardedClient(flaky, serialize=True).create_run()
    assert 1 == flaky.calls


def test_the_backend_raises_only_its_own_store_error_types(tracking_uri):
    """Callers check types, never MLflow's text: away is StoreUnavailable, refused content
    is StoreRejected, each from MLflow's own error."""
    import socket

    from tracked.backends.base import StoreRejected, StoreUnavailable
    from tracked.backends.mlflow import MlflowBackend

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreUnavailable) as away:
        MlflowBackend(f"http://127.0.0.1:{port}").start_run(experiment="e", run_name="r")
    assert away.value.__cause__ is not None

    store = MlflowBackend(tracking_uri)
    run = store.start_run(experiment="e", run_name="r")
    store.log(run, params={"alpha": "1"})
    with pytest.raises(StoreRejected, match="alpha"):
        store.log(run, params={"alpha": "2"})  # MLflow refuses a param logged again
    with pytest.raises(StoreRejected) as refused:
        store.end_run("no-such-run", "FINISHED")
    assert refused.value.__cause__ is not None
