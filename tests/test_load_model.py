"""The reader's side of a logged model (issue "Security and faults, round two", point 3):
``tracked.load_model`` checks the model's files against the digest recorded when they were
logged, and loads them in the format and with the trust the reader chooses, never the ones
the files name. A by-value (cloudpickle) model is announced where its reader looks.
"""

from __future__ import annotations

import os
import pickle
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from pipelines import Iris, run_iris
from processes import ROOT
from servers import MlflowServer, free_port

import tracked
from tracked import ModelRefused, TrackingWarning
from tracked.backends.mlflow.loading import model_digest
from tracked.cli import main as tracked_cli


class ByValue(Iris):
    """The demo's workflow, saved with cloudpickle."""

    serialization_format = "cloudpickle"


class Payload:
    """What an attacker puts in ``model.pkl``: unpickling it writes a marker file (harmless,
    but code run by whoever loads the model)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('the payload ran')",))


def newest_model(client: MlflowClient, run_id: str, name: str):
    experiment = client.get_run(run_id).info.experiment_id
    models = [
        model
        for model in client.search_logged_models(experiment_ids=[experiment])
        if model.source_run_id == run_id and model.name == name
    ]
    return max(models, key=lambda model: model.creation_timestamp)


def test_the_digest_covers_every_file_its_path_and_its_bytes(tmp_path):
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.skops").write_bytes(b"\x00\x01")
    before = model_digest(tmp_path)
    assert before == model_digest(tmp_path)  # a function of the files, nothing else
    (tmp_path / "sub" / "model.skops").write_bytes(b"\x00\x02")
    changed = model_digest(tmp_path)
    (tmp_path / "sub" / "model.skops").write_bytes(b"\x00\x01")
    (tmp_path / "sub" / "model.skops").rename(tmp_path / "sub" / "model.pkl")
    renamed = model_digest(tmp_path)
    (tmp_path / "sub" / "model.pkl").rename(tmp_path / "sub" / "model.skops")
    (tmp_path / "extra.py").write_text("")
    added = model_digest(tmp_path)
    assert 4 == len({before, changed, renamed, added})


def test_an_untampered_model_loads_and_predicts_like_the_live_pipeline(iris, tracking_uri):
    _, X_test, _, _ = iris
    pipe, predictions = run_iris(iris, tracking_uri=tracking_uri)
    client = MlflowClient(tracking_uri)
    tags = client.get_run(pipe.run_id).data.tags
    assert "skops" == tags["tracked.model_format.pipeline"]
    logged = newest_model(client, pipe.run_id, "pipeline")
    assert tags["tracked.model_digest.pipeline"] == logged.tags["tracked.model_digest"]

    by_run = tracked.load_model(f"runs:/{pipe.run_id}/pipeline", tracking_uri=tracking_uri)
    by_id = tracked.load_model(f"models:/{logged.model_id}", tracking_uri=tracking_uri)
    assert predictions.tolist() == by_run.predict(X_test).tolist()
    assert predictions.tolist() == by_id.predict(X_test).tolist()


def test_the_newest_of_two_fits_and_a_registered_version_load(iris, tracking_uri):
    """``runs:/`` names the newest model of its name on the run, whose digest the run's tag
    holds; a registered version is checked against its logged model's own tags."""
    X_train, X_test, y_train, _ = iris
    pipe = tracked.configure(Iris(), tracking_uri=tracking_uri, registered_model_name="iris-loaded")
    with pipe:
        pipe.train(X_train, y_train)
        pipe.C = 0.01
        pipe.train(X_train, y_train)
        predictions = pipe.predict(X_test)
    newest = tracked.load_model(f"runs:/{pipe.run_id}/pipeline", tracking_uri=tracking_uri)
    assert 0.01 == newest.steps[-1][1].C
    client = MlflowClient(tracking_uri)
    version = max(
        client.search_model_versions("name = 'iris-loaded'"), key=lambda v: int(v.version)
    )
    assert not version.description  # a skops model: nothing to announce
    registered = tracked.load_model(
        f"models:/iris-loaded/{version.version}", tracking_uri=tracking_uri
    )
    assert predictions.tolist() == registered.predict(X_test).tolist()


def test_a_by_value_model_is_announced_and_needs_allow_pickle(iris, tracking_uri):
    _, X_test, _, _ = iris
    pipe = tracked.configure(
        ByValue(), tracking_uri=tracking_uri, registered_model_name="iris-by-value"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        X_train, _, y_train, _ = iris
        with pipe:
            pipe.train(X_train, y_train)
            predictions = pipe.predict(X_test)
    client = MlflowClient(tracking_uri)
    uri = f"runs:/{pipe.run_id}/pipeline"
    assert "cloudpickle" == client.get_run(pipe.run_id).data.tags["tracked.model_format.pipeline"]
    logged = newest_model(client, pipe.run_id, "pipeline")
    assert "cloudpickle" in logged.tags["mlflow.note.content"]
    [version] = client.search_model_versions("name = 'iris-by-value'")
    assert "cloudpickle" in version.description

    with pytest.raises(ModelRefused, match="allow_pickle=True"):
        tracked.load_model(uri, tracking_uri=tracking_uri)
    model = tracked.load_model(uri, tracking_uri=tracking_uri, allow_pickle=True)
    assert predictions.tolist() == model.predict(X_test).tolist()


def test_a_model_tracked_did_not_log_is_refused_with_what_to_do(tracking_uri, iris):
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    X_train, _, y_train, _ = iris
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with mlflow.start_run() as run:
            mlflow.sklearn.log_model(
                LogisticRegression(max_iter=500).fit(X_train, y_train),
                name="plain",
                pip_requirements=["scikit-learn"],
            )
    finally:
        mlflow.set_tracking_uri(None)
    with pytest.raises(ModelRefused, match="no digest recorded"):
        tracked.load_model(f"runs:/{run.info.run_id}/plain", tracking_uri=tracking_uri)
    with pytest.raises(ModelRefused, match="runs:/<run id>/<name> or models:/<id>"):
        tracked.load_model("s3://bucket/model", tracking_uri=tracking_uri)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_spooled_model_gets_its_digest_when_it_is_synced(iris, tmp_path, monkeypatch):
    """The spool's replay logs the model through the same backend call: the digest is
    recorded the same way, and the synced model loads."""
    monkeypatch.chdir(tmp_path)
    _, X_test, _, _ = iris
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        with tracked.testing.strict(False):
            _, predictions = run_iris(
                iris, tracking_uri=f"http://127.0.0.1:{free_port()}"
            )  # away: spooled
    store = f"sqlite:///{tmp_path / 'store.db'}"
    assert 0 == tracked_cli(["sync", "--tracking-uri", store])
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("tests").experiment_id
    [parent] = [
        run
        for run in client.search_runs([experiment])
        if "tracked.model_digest.pipeline" in run.data.tags
    ]
    model = tracked.load_model(f"runs:/{parent.info.run_id}/pipeline", tracking_uri=store)
    assert predictions.tolist() == model.predict(X_test).tolist()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_model_files_rewritten_through_the_server_are_refused_and_never_run(iris, tmp_path):
    """Anyone who can write a default ``mlflow server``'s artifacts can turn a model into a
    cloudpickle payload: MLflow's loader runs it, ``tracked.load_model`` refuses it."""
    _, X_test, _, _ = iris
    with MlflowServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts") as server:
        pipe, predictions = run_iris(iris, tracking_uri=server.url)
        uri = f"runs:/{pipe.run_id}/pipeline"
        model = tracked.load_model(uri, tracking_uri=server.url)
        assert predictions.tolist() == model.predict(X_test).tolist()

        # The attacker's upload, through the server's artifact API.
        client = MlflowClient(server.url)
        logged = newest_model(client, pipe.run_id, "pipeline")
        tampered = tmp_path / "tampered"
        original = Path(
            download_artifacts(
                artifact_uri=logged.artifact_location,
                dst_path=str(tmp_path / "original"),
                tracking_uri=server.url,
            )
        )
        tampered.mkdir()
        marker = tmp_path / "marker"
        mlmodel = yaml.safe_load((original / "MLmodel").read_text())
        mlmodel["flavors"]["sklearn"].update(
            pickled_model="model.pkl", serialization_format="cloudpickle"
        )
        mlmodel["flavors"]["python_function"]["model_path"] = "model.pkl"
        (tampered / "MLmodel").write_text(yaml.safe_dump(mlmodel))
        (tampered / "model.pkl").write_bytes(pickle.dumps(Payload(marker)))
        client.log_model_artifacts(logged.model_id, str(tampered))

        with pytest.raises(ModelRefused, match="changed since they were logged"):
            tracked.load_model(uri, tracking_uri=server.url)
        with pytest.raises(ModelRefused, match="changed since they were logged"):
            tracked.load_model(uri, tracking_uri=server.url, allow_pickle=True)
        with pytest.raises(ModelRefused, match="changed since they were logged"):
            tracked.load_model(f"models:/{logged.model_id}", tracking_uri=server.url)
        assert not marker.exists()
        # The run still claims what it claimed: the check is the loader's, not the tag's.
        tags = client.get_run(pipe.run_id).data.tags
        assert "skops" == tags["tracked.model_format.pipeline"]

        # The attack is real: MLflow's own loader runs the payload (in a process of its own).
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "PYTHONPATH": str(ROOT)}
        code = (
            "import mlflow.pyfunc\n"
            "try:\n"
            f"    mlflow.pyfunc.load_model({uri!r})\n"
            "except Exception:\n"
            "    pass\n"
        )
        import subprocess

        subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, timeout=180, check=False
        )
        assert "the payload ran" == marker.read_text()


def test_skops_trusts_what_the_run_recorded_and_the_caller_adds_not_what_mlmodel_lists(
    tmp_path,
):
    """The ``MLmodel`` file may list any type as trusted (whoever wrote it chose): the
    loader passes skops only the recorded types and the caller's ``trusted``."""
    import math

    import mlflow.sklearn
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from skops.io.exceptions import UntrustedTypesFoundException

    from tracked.backends.mlflow.loading import Recorded, _load_files

    model = make_pipeline(FunctionTransformer(math.sqrt)).fit([[1.0], [4.0]])
    folder = tmp_path / "model"
    mlflow.sklearn.save_model(
        model,
        str(folder),
        serialization_format="skops",
        skops_trusted_types=["math.sqrt"],
        pip_requirements=["scikit-learn"],
    )
    recorded = Recorded(model_digest(folder), "skops", ())
    with pytest.raises(UntrustedTypesFoundException, match=r"math\.sqrt"):
        _load_files(folder, recorded, (), "runs:/r/model")
    loaded = _load_files(folder, recorded, ["math.sqrt"], "runs:/r/model")
    also = _load_files(folder, Recorded(recorded.digest, "skops", ("math.sqrt",)), (), "u")
    assert (math.sqrt, math.sqrt) == (loaded[0].func, also[0].func)
