"""MLflow 3's model page: a stage's metrics are linked to the model it logged (and to the
dataset they were computed on), the parent's evaluation metrics to the composed model,
whether the writer writes them at once or ``tracked sync`` replays them later."""

from __future__ import annotations

import contextlib
import io

import pytest
from pipelines import Iris
from servers import free_port

import tracked
from tracked import TrackingWarning
from tracked.cli import main as tracked_cli


def workflow(pipe, iris):
    X_train, X_test, y_train, y_test = iris
    with pipe:
        pipe.train(X_train, y_train)
        pipe.predict(X_test, y_test)


def runs_by_name(client, parent_run_id):
    experiment = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    return {run.info.run_name: run for run in runs}


def model_metrics(client, model_id):
    return {m.key: m for m in client.get_logged_model(model_id).metrics or ()}


def check_links(client, parent_run_id):
    """What MLflow 3's model pages show, checked against the runs' own metrics."""
    parent = client.get_run(parent_run_id)
    children = runs_by_name(client, parent_run_id)
    fit = children["classification:fit"]
    inference = children["classification:inference"]
    [stage_model] = [o.model_id for o in fit.outputs.model_outputs]

    linked = model_metrics(client, stage_model)
    training = {k: v for k, v in fit.data.metrics.items() if k.startswith("training_")}
    evaluation = {k: v for k, v in inference.data.metrics.items() if k != "duration_s"}
    # A call's duration and its fitted attributes describe the call, not the model.
    assert not any(k.startswith("fitted.") for k in evaluation)
    assert training and evaluation
    # The fit's training metrics and the later inference's evaluation, each from its run.
    assert {**training, **evaluation} == {k: m.value for k, m in linked.items()}
    assert {fit.info.run_id} == {linked[k].run_id for k in training}
    assert {inference.info.run_id} == {linked[k].run_id for k in evaluation}
    # With the dataset each was computed on: the stage's input dataset of that run.
    for run, keys in ((fit, training), (inference, evaluation)):
        [dataset] = [d.dataset for d in run.inputs.dataset_inputs]
        assert {(dataset.name, dataset.digest)} == {
            (linked[k].dataset_name, linked[k].dataset_digest) for k in keys
        }
    # The inference run used the model the fit logged: an input of that run.
    used = client.get_run(inference.info.run_id).inputs.model_inputs
    assert [stage_model] == [i.model_id for i in used]

    [composed] = [o.model_id for o in parent.outputs.model_outputs]
    assert "pipeline" == client.get_logged_model(composed).name
    evaluated = {k: v for k, v in parent.data.metrics.items() if k != "total_stage_duration_s"}
    assert evaluated
    assert evaluated == {k: m.value for k, m in model_metrics(client, composed).items()}


def test_stage_and_parent_metrics_are_linked_to_their_models(tracking_uri, client, iris):
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    workflow(pipe, iris)
    check_links(client, pipe.run_id)


@pytest.mark.slow  # a spooled workflow, then `tracked sync` in this process
@pytest.mark.timeout(240)
def test_a_spooled_workflow_links_the_same_when_synced(tracking_uri, client, iris, spool_dir):
    pipe = Iris()
    tracked.configure(
        pipe, tracking_uri=f"http://127.0.0.1:{free_port()}"
    )  # nobody listens: all is spooled
    with pytest.warns(TrackingWarning, match="is away"):
        workflow(pipe, iris)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = tracked_cli(["sync", "--spool", str(spool_dir), "--tracking-uri", tracking_uri])
    assert 0 == code, err.getvalue()
    experiment = client.get_experiment_by_name(pipe.experiment).experiment_id
    [parent] = client.search_runs([experiment], filter_string="tags.`tracked.pipeline` LIKE '%'")
    check_links(client, parent.info.run_id)


def test_metrics_link_to_the_memory_backend_s_models(memory, iris):
    pipe = Iris()
    tracked.configure(pipe, backend=memory)
    workflow(pipe, iris)
    [parent] = memory.parents()
    fit, inference = (
        run for run in memory.children(parent.run_id) if run.name.startswith("classification")
    )
    [stage_model] = [uri for uri in memory.model_metrics if f"/{fit.run_id}/" in uri]
    linked = {(run_id, metric.key) for run_id, metric, _ in memory.model_metrics[stage_model]}
    assert {(fit.run_id, k) for k in fit.metrics if k.startswith("training_")} | {
        (inference.run_id, k) for k in inference.metrics if k != "duration_s"
    } == linked


def test_a_progress_note_keeps_a_stage_s_model_and_reads_back_into_the_replay_state():
    """A replay resumed in another process (``tracked sync`` after the writer) still knows
    which model a stage's later metrics link to; a note without one keeps its old form."""
    from tracked.spool.codec import decode_progress, encode_progress
    from tracked.spool.entries import Progress
    from tracked.spool.replay import ReplayState

    key, session = b"k" * 32, "local-" + "0" * 32
    noted = Progress(seq=3, step="model", model=("classification", "models:/m-1"))
    plain = Progress(seq=4, step="log")
    lines = [encode_progress(event, key, session) for event in (noted, plain)]
    assert b'"model"' not in lines[1]
    events = [decode_progress(line, key, session, "a note") for line in lines]
    assert [noted, plain] == events
    state = ReplayState.from_progress(events)
    assert ({"classification": "models:/m-1"}, {3: "models:/m-1"}) == (
        state.models,
        state.entry_models,
    )
