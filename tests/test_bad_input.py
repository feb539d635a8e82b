"""Values MLflow would refuse, and secrets: a clear result, nothing lost, nothing leaked."""

from __future__ import annotations

import json
import math

import pytest
from sklearn.base import BaseEstimator
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import TrackedPipeline
from tracked.backends.mlflow.backend import MlflowBackend
from tracked.backends.mlflow.keys import MAX_PARAM_VALUE_LENGTH, KeyNotes, ParamConflict
from tracked.core.report import describe
from tracked.core.text import is_secret_name, mask_secrets
from tracked.core.values import Metric


def notes_of(client, run_id):
    path = client.download_artifacts(run_id, KeyNotes.ARTIFACT)
    with open(path) as file:
        return json.load(file)


def test_a_long_param_is_cut_and_kept_whole_in_the_key_notes(tracking_uri, client):
    backend = MlflowBackend(tracking_uri)
    run_id = backend.start_run(experiment="limits", run_name="r")
    value = "".join(str(i % 10) for i in range(7000))
    backend.log(run_id, params={"long": value, "bad/key?": "v"})
    params = client.get_run(run_id).data.params
    assert MAX_PARAM_VALUE_LENGTH == len(params["long"])
    notes = notes_of(client, run_id)
    assert value == notes["truncated"]["params"]["long"]
    assert {"bad/key?": "bad_key_"} == notes["renamed"]["params"]


def test_more_than_a_hundred_params_are_all_logged(tracking_uri, client):
    backend = MlflowBackend(tracking_uri)
    run_id = backend.start_run(experiment="limits", run_name="r")
    params = {f"p{i}": str(i) for i in range(250)}
    backend.log(run_id, params=params)
    assert params == client.get_run(run_id).data.params


def test_a_param_logged_again_with_another_value_keeps_the_first_and_says_so(tracking_uri, client):
    backend = MlflowBackend(tracking_uri)
    run_id = backend.start_run(experiment="limits", run_name="r")
    backend.log(run_id, params={"alpha": "1"})
    backend.log(run_id, params={"alpha": "1"})  # the same value again is fine
    with pytest.raises(ParamConflict, match="alpha"):
        backend.log(run_id, params={"alpha": "2", "beta": "3"})
    assert {"alpha": "1", "beta": "3"} == client.get_run(run_id).data.params
    assert {"alpha": ["1", "2"]} == notes_of(client, run_id)["param_conflicts"]


def test_nan_and_infinite_metrics_are_logged_as_mlflow_stores_them(tracking_uri, client):
    backend = MlflowBackend(tracking_uri)
    run_id = backend.start_run(experiment="limits", run_name="r")
    values = {"nan": math.nan, "inf": math.inf, "neg_inf": -math.inf, "plain": 0.5}
    backend.log(run_id, metrics=[Metric(key=k, value=v) for k, v in values.items()])
    stored = client.get_run(run_id).data.metrics
    assert math.isnan(stored["nan"])
    assert stored["inf"] > 1e308 and stored["neg_inf"] < -1e308
    assert 0.5 == stored["plain"]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("db__password", True),
        ("DB_PASSWD", True),
        ("client_secret", True),
        ("auth_token", True),
        ("apiKey", True),
        ("api_key", True),
        ("aws_access_key_id", True),
        ("credentials", True),
        ("dbPassword", True),
        ("authToken", True),
        ("awsSecretAccessKey", True),
        ("maxTokens", False),
        ("tokenizer", False),
        ("max_tokens", False),
        ("n_components", False),
        ("secretary", False),
    ],
)
def test_credential_like_names(name, secret):
    assert secret == is_secret_name(name)


class Connector(BaseEstimator):
    def __init__(self, host="db", api_key=None):
        self.host = host
        self.api_key = api_key


class WithSecrets(TrackedPipeline):
    experiment = "tests"

    def __init__(self, password="", db=None, tokenizer="word"):
        self.password = password
        self.db = db
        self.tokenizer = tokenizer

    def scale(self, X, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        return self.operator.transform(X)


def test_secrets_are_masked_in_params_and_run_names(memory):
    pipe = WithSecrets(password="hunter2", db=Connector(api_key="sk-123"), tokenizer="bpe")
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.scale([[1.0], [2.0]])
    [parent] = memory.parents()
    assert "***" == parent.params["password"]
    assert "***" == parent.params["db__api_key"]
    assert "bpe" == parent.params["tokenizer"]
    assert "db" == parent.params["db__host"]
    assert "hunter2" not in parent.name
    assert "sk-123" not in repr(pipe)
    assert "password=***" in parent.name


def test_credentials_in_uris_are_masked_in_messages():
    error = ConnectionError("cannot reach http://alice:s3cret@127.0.0.1:5000/api")
    assert "s3cret" not in describe(error)
    assert "http://***@127.0.0.1:5000/api" in describe(error)
    assert "postgresql://***@db/x" == mask_secrets("postgresql://u:p@db/x")
    assert "sqlite:////tmp/a.db" == mask_secrets("sqlite:////tmp/a.db")
    assert "s3cret" not in repr(MlflowBackend("http://alice:s3cret@127.0.0.1:5000"))
