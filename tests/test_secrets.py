"""Secrets masked everywhere they go (issue 16, point 7): credentials inside values (a URL's
user:password anywhere in a string, ``password=``/``pwd=`` in a connection string, a
``Bearer`` token) and values under credential-like names (``private_key``, ``pwd``,
``headers__Authorization``, ``apiToken``, a fitted ``auth_token_``) reach neither the
store's database, nor its artifacts, nor the spool; ``tokenizer``, ``max_tokens`` and
``author`` stay as they are. Logged models are the exception the README states: an estimator
carries its own parameter values.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from servers import free_port
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.linear_model import LogisticRegression

import tracked
from tracked import TrackedPipeline, TrackingWarning
from tracked.cli import main as tracked_cli
from tracked.core.text import is_secret_name, mask_secrets
from tracked.recording.data import preview, summarize
from tracked.spool.sync import spooled_sessions

#: Each secret once, so that a hit names the way it leaked.
SECRETS = {
    "url": "pw-in-url-7d1",
    "endpoint": "pw-in-endpoint-8e2",
    "bearer": "bearer-token-9f3",
    "private_key": "private-key-a04",
    "pwd": "pwd-value-b15",
    "connection": "conn-password-c26",
    "fitted": "fitted-token-d37",
    "run name": "run-name-pw-e48",
    "api token": "api-token-f59",
}


class Connector(BaseEstimator, TransformerMixin):
    """A transformer whose settings hold credentials, as real ones do."""

    def __init__(
        self,
        db_url=None,
        endpoint=None,
        headers=None,
        private_key=None,
        pwd=None,
        connection=None,
        apiToken=None,  # camelCase is the point
        tokenizer="whitespace",
        max_tokens=7,
        author="ada lovelace",
    ):
        self.db_url = db_url
        self.endpoint = endpoint
        self.headers = headers
        self.private_key = private_key
        self.pwd = pwd
        self.connection = connection
        self.apiToken = apiToken
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.author = author

    def fit(self, X, y=None):
        self.auth_token_ = SECRETS["fitted"]
        self.source_ = f"fetched from https://reader:{SECRETS['fitted']}x@data.example.com/set"
        self.mean_ = np.asarray(X).mean(axis=0)
        return self

    def transform(self, X):
        return np.asarray(X) - self.mean_


def connector() -> Connector:
    return Connector(
        db_url=f"postgresql://u:{SECRETS['url']}@db.example.com/db",
        endpoint={"primary": f"https://u2:{SECRETS['endpoint']}@api.example.com/v1"},
        headers={"Authorization": f"Bearer {SECRETS['bearer']}"},
        private_key=SECRETS["private_key"],
        pwd=SECRETS["pwd"],
        connection=f"Server=db;Database=d;Uid=u;Pwd={SECRETS['connection']};",
        apiToken=SECRETS["api token"],
    )


class Secretive(TrackedPipeline):
    experiment = "secrets"

    def __init__(self, source=None):
        self.source = source  # in the default run name

    def connect(self, X, y=None, stage="transformer"):
        self.operator = connector().fit(X)
        return self.operator.transform(X)

    def classify(self, X, y=None, stage="estimator"):
        self.operator = LogisticRegression(max_iter=500).fit(X, y)
        return self.operator.predict(X)

    def train(self, X, y):
        return self.classify(self.connect(X, y), y)


def leaks(data: bytes) -> set[str]:
    """The secrets found in ``data``."""
    return {name for name, secret in SECRETS.items() if secret.encode() in data}


def is_model_file(path: Path) -> bool:
    """A serialized model: the estimators themselves, with their own parameter values."""
    return path.suffix in (".pkl", ".skops", ".cloudpickle") or path.name == "payloads.bin"


def test_secret_names_cover_credentials_and_spare_ordinary_words():
    secret = [
        "password", "db__password", "private_key", "privateKey", "pwd", "auth",
        "authorization", "headers__Authorization", "bearer", "cookie", "dsn", "session_key",
        "sessionKey", "apiToken", "api_key", "auth_token_", "client_secret",
    ]  # fmt: skip
    ordinary = ["tokenizer", "max_tokens", "author", "authority", "n_estimators", "oauthless"]
    assert ([], []) == (
        [name for name in secret if not is_secret_name(name)],
        [name for name in ordinary if is_secret_name(name)],
    )


def test_credentials_inside_values_are_masked():
    assert "postgresql://***@h/db, then https://***@x.com/a" == mask_secrets(
        "postgresql://u:pw@h/db, then https://u2:p@ss@x.com/a"
    )
    assert "Server=h;Uid=u;Pwd=***;x=1" == mask_secrets("Server=h;Uid=u;Pwd={a;b};x=1")
    assert "host=h password=*** dbname=d" == mask_secrets("host=h password=abc dbname=d")
    assert "Bearer ***" == mask_secrets("Bearer abc.def-1")
    assert "max_tokens=5 author=ada" == mask_secrets("max_tokens=5 author=ada")


def test_a_preview_shows_no_credentials_in_column_names():
    frame = pd.DataFrame({f"postgresql://u:{SECRETS['url']}@h/db": ["a", "b"], "x": ["c", "d"]})
    content = preview(summarize(frame)).content
    rendered = content if isinstance(content, bytes) else repr(content).encode()
    assert set() == leaks(rendered)
    assert b"postgresql://***@h/db" in rendered


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_no_secret_reaches_the_store_its_artifacts_or_the_spool(
    iris, spool_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # MLflow puts a sqlite store's artifacts in ./mlruns
    X_train, _, y_train, _ = iris
    pipe = Secretive(source=f"mysql://reader:{SECRETS['run name']}@db.example.com/iris")
    tracked.configure(
        pipe, tracking_uri=f"http://127.0.0.1:{free_port()}"
    )  # away: everything is spooled
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        with pipe:
            pipe.train(X_train, y_train)
    [folder] = [p for p in spool_dir.iterdir() if p.is_dir()]

    # The spool: its JSON files as they are, its payloads one by one without the models.
    found = {p.name: leaks(p.read_bytes()) for p in folder.iterdir() if not is_model_file(p)}
    [session] = spooled_sessions(spool_dir)
    for entry in session.entries:
        payload = session.payload(entry)
        if payload is None:
            continue
        rest = [payload.artifacts, payload.datasets, payload.pictures, payload.scores]
        found[f"payload of entry {entry.seq}"] = leaks(cloudpickle.dumps(rest))
    assert {} == {where: hits for where, hits in found.items() if hits}

    store = tmp_path / "store.db"
    with warnings.catch_warnings():  # the notice that the model is saved by value
        warnings.simplefilter("ignore", TrackingWarning)
        code = tracked_cli(
            ["sync", "--spool", str(spool_dir), "--tracking-uri", f"sqlite:///{store}"]
        )
    assert 0 == code
    assert set() == leaks(store.read_bytes())
    artifacts = [p for p in (tmp_path / "mlruns").rglob("*") if p.is_file()]
    assert any(p.name == "fitted_attributes.json" for p in artifacts)
    found = {str(p): leaks(p.read_bytes()) for p in artifacts if not is_model_file(p)}
    assert {} == {where: hits for where, hits in found.items() if hits}
    # What the README says: a logged model carries its estimators' own parameter values.
    models = [p for p in artifacts if is_model_file(p)]
    assert any(leaks(p.read_bytes()) for p in models)

    # Ordinary names stay readable; secret-named ones are masked, not dropped.
    client = MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("secrets").experiment_id
    [child] = [
        r for r in client.search_runs([experiment]) if r.data.params.get("tokenizer") is not None
    ]
    params = child.data.params
    assert ("whitespace", "7", "ada lovelace") == (
        params["tokenizer"],
        params["max_tokens"],
        params["author"],
    )
    assert {"***"} == {params[k] for k in ("pwd", "private_key", "apiToken")}
    assert "***" == params["headers__Authorization"]
    assert "postgresql://***@db.example.com/db" == params["db_url"]
    assert "Server=db;Database=d;Uid=u;Pwd=***;" == params["connection"]
    [parent] = [
        r for r in client.search_runs([experiment]) if "mlflow.parentRunId" not in r.data.tags
    ]
    assert "mysql://***@db.example.com/iris" in parent.info.run_name


def test_a_search_s_results_table_and_candidates_mask_credentials():
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.model_selection import GridSearchCV

    from tracked.recording.search import summarize_search

    class Connected(ClassifierMixin, BaseEstimator):
        def __init__(self, db_url="", password="", C=1.0):
            self.db_url, self.password, self.C = db_url, password, C

        def fit(self, X, y):
            self.classes_ = np.unique(y)
            return self

        def predict(self, X):
            return np.full(len(X), self.classes_[0])

    X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    grid = {"db_url": ["postgresql://u:hunter2@h/db"], "password": ["s3cret"], "C": [1.0, 2.0]}
    search = GridSearchCV(Connected(), grid, cv=2).fit(X, y)
    summary = summarize_search(search, "clf", None, 0)
    table = summary.artifacts["cv_results.csv"].render()
    assert b"param_C" in table and b"2.0" in table
    assert b"hunter2" not in table and b"s3cret" not in table
    for candidate in summary.candidates:
        assert "hunter2" not in str(candidate.params) and "s3cret" not in str(candidate.params)
