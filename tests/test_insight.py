"""Insight without code: pictures, fitted state, lineage, previews, timings, source tags."""

from __future__ import annotations

import csv
import io
import itertools
import json

import numpy as np
import pandas as pd
import pipelines
import pytest
from PIL import Image
from pipelines import Iris, Regression
from sklearn.metrics import confusion_matrix
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import TrackedPipeline
from tracked.recording.data import SAMPLED_ROWS, digest_array, summarize
from tracked.recording.fitted import fitted_state


def trained(pipe, iris):
    return pipelines.tracked_pass(pipe, iris)


@pytest.fixture
def sqlite_run(tracking_uri, client, iris):
    """A demo-like run in a real store: (pipe, predictions, children by run name)."""
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    predictions = trained(pipe, iris)
    parent = client.get_run(pipe.run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{pipe.run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return pipe, predictions, {child.info.run_name: child for child in children}


def artifact(client, run, path) -> bytes:
    local = client.download_artifacts(run.info.run_id, path)
    with open(local, "rb") as file:
        return file.read()


def test_the_confusion_matrix_is_sklearn_s_and_its_picture_a_valid_png(sqlite_run, client, iris):
    _, _, _, y_test = iris
    _, predictions, children = sqlite_run
    run = children["classification:inference"]
    numbers = json.loads(artifact(client, run, "confusion_matrix.json"))
    assert confusion_matrix(y_test, predictions).tolist() == numbers["matrix"]
    assert ["0", "1", "2"] == numbers["labels"]
    for picture in ("confusion_matrix.png", "roc_curve.png", "pr_curve.png"):
        image = Image.open(io.BytesIO(artifact(client, run, picture)))
        image.verify()
        assert "PNG" == image.format


def test_pca_explained_variance_ratio_is_a_metric_history_of_the_fitted_values(sqlite_run, client):
    pipe, _, children = sqlite_run
    run_id = children["reduction:fit"].info.run_id
    history = client.get_metric_history(run_id, "fitted.explained_variance_ratio_")
    assert list(range(pipe.n_components)) == [m.step for m in history]
    np.testing.assert_allclose(pipe.pca.explained_variance_ratio_, [m.value for m in history])
    assert pipe.pca.n_components_ == client.get_run(run_id).data.metrics["fitted.n_components_"]
    document = json.loads(artifact(client, children["reduction:fit"], "fitted_attributes.json"))
    np.testing.assert_allclose(pipe.pca.components_, document["components_"])


def test_the_digest_chain_holds_through_a_training_and_a_prediction_pass(sqlite_run):
    _, _, children = sqlite_run
    for pass_ in ("fit", "inference"):
        runs = [children[f"{stage}:{pass_}"] for stage in ("preprocessing", "reduction")]
        runs.append(children[f"classification:{pass_}"])
        for before, after in itertools.pairwise(runs):
            assert (
                before.data.tags["tracked.output_digest"] == after.data.tags["tracked.input_digest"]
            )
    assert (
        children["preprocessing:fit"].data.tags["tracked.input_digest"]
        != children["preprocessing:inference"].data.tags["tracked.input_digest"]
    )


def test_each_stage_logs_its_input_as_a_dataset_with_its_context(sqlite_run):
    _, _, children = sqlite_run
    expected = {
        "preprocessing:fit": ("fit", [120, 4]),
        "preprocessing:inference": ("inference", [30, 4]),
        "classification:inference": ("evaluation", [30, 2]),
    }
    for name, (context, shape) in expected.items():
        [entry] = children[name].inputs.dataset_inputs
        assert context == {t.key: t.value for t in entry.tags}["mlflow.data.context"]
        assert shape == json.loads(entry.dataset.profile)["features_shape"]
        assert children[name].data.tags["tracked.input_digest"] == entry.dataset.digest


def test_outputs_leave_a_twenty_row_preview_by_default(sqlite_run, client):
    _, _, children = sqlite_run
    rows = list(
        csv.reader(
            io.StringIO(
                artifact(client, children["preprocessing:fit"], "output_preview.csv").decode()
            )
        )
    )
    assert ["x0", "x1", "x2", "x3"] == rows[0]
    assert 20 == len(rows) - 1


@pytest.mark.parametrize(("mode", "expected"), [("none", set()), ("full", {"output.csv"})])
def test_log_outputs_chooses_the_output_artifact(memory, iris, mode, expected):
    class Outputs(Iris):
        log_outputs = mode

    pipe = Outputs()
    tracked.configure(pipe, backend=memory)
    trained(pipe, iris)
    scale = memory.children(pipe.run_id)[0]
    assert expected == {name for name in scale.artifacts if name.startswith("output")}
    if mode == "full":
        assert 1 + 120 == scale.artifacts["output.csv"].decode().count("\n")


def test_dataframe_outputs_keep_their_column_names(memory):
    class Frames(TrackedPipeline):
        def scale(self, X, stage="transformer"):
            self.operator = StandardScaler().set_output(transform="pandas").fit(X)
            return self.operator.transform(X)

    frame = pd.DataFrame({"height": np.arange(30.0), "weight": np.arange(30.0) ** 2})
    pipe = Frames()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.scale(frame)
    [child] = memory.children(pipe.run_id)
    header = child.artifacts["output_preview.csv"].decode().splitlines()[0]
    assert "height,weight" == header
    [(_, context, summary)] = child.datasets
    assert ("fit", "pandas", ("height", "weight")) == (context, summary.kind, summary.columns)


def test_regressors_get_a_scatter_and_a_residual_plot(memory):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 2))
    y = X @ [1.0, -2.0] + rng.normal(scale=0.1, size=60)
    pipe = Regression()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.regress(pipe.scale(X), y)
        pipe.regress(pipe.scale(X, train=False), y, train=False)
    predict = memory.children(pipe.run_id)[-1]
    for name in ("predicted_vs_actual.png", "residuals.png"):
        assert Image.open(io.BytesIO(predict.artifacts[name])).size[0] > 100


def test_timings_add_up_on_the_parent(memory, iris):
    pipe = Iris()
    tracked.configure(pipe, backend=memory)
    trained(pipe, iris)
    durations = [c.metric("duration_s") for c in memory.children(pipe.run_id)]
    assert sum(durations) == pytest.approx(memory.get(pipe.run_id).metric("total_stage_duration_s"))


def test_the_parent_carries_source_and_library_versions(sqlite_run, client):
    import sklearn

    pipe, _, _ = sqlite_run
    tags = client.get_run(pipe.run_id).data.tags
    assert sklearn.__version__ == tags["tracked.sklearn_version"]
    assert np.__version__ == tags["tracked.numpy_version"]
    assert "mlflow.source.name" in tags
    assert "mlflow.user" in tags


def test_large_fitted_arrays_are_summarised_not_logged_whole():
    X = np.random.default_rng(0).normal(size=(5, 2000))
    state = fitted_state(StandardScaler().fit(X))
    summary = state.document["mean_"]["summary"]
    assert [2000] == summary["shape"]
    assert X.mean(axis=0).max() == pytest.approx(summary["max"])
    assert "mean_" not in state.histories
    assert 5 == state.scalars["n_samples_seen_"]


def test_digests_tell_equal_data_apart_from_different_data():
    a = np.arange(60.0).reshape(20, 3)
    assert digest_array(a) == digest_array(a.copy(order="F"))
    assert digest_array(a) != digest_array(a + 1e-12)
    assert digest_array(a) != digest_array(a.astype(np.float32))
    big = np.zeros((SAMPLED_ROWS * 600, 2))
    changed = big.copy()
    changed[-1, 0] = 1.0  # the last row is always part of the sample
    assert digest_array(big) != digest_array(changed)


def test_non_array_inputs_and_outputs_have_no_digest():
    assert summarize(None) is None
    assert summarize(StandardScaler()) is None
    assert summarize(3.0) is None
