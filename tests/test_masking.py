"""One masker for every output (issue "Security and faults, round two", point 2): credentials
are found by value, not only by name (key=value pairs in URLs, query strings, headers and
JSON strings, ``Authorization`` headers, well-known token formats), and every string that
leaves the process passes the same masker: params (names and values), tags, run names,
``tracked.error``, artifacts' text, warnings, log lines and the commands' output.

The corpus holds one credential per detector; each test injects all of it through one
channel and looks for every secret everywhere it could land.
"""

from __future__ import annotations

import base64
import logging
import re
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from servers import free_port
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import TrackedPipeline, TrackingWarning
from tracked.backends.mlflow.backend import masked_text_artifact
from tracked.cli import main as tracked_cli
from tracked.core.report import clean, logger
from tracked.core.text import is_secret_name, mask_secrets
from tracked.testing import strict


def _alnum(seed: str, length: int) -> str:
    """``length`` letters and digits, different for each ``seed``, never hex-only."""
    digest = base64.b32encode(seed.encode() * 8).decode().replace("=", "")
    return (digest * (length // len(digest) + 1))[:length]


#: detector -> (text holding the secret, the secret itself): one per detector.
CORPUS: dict[str, tuple[str, str]] = {}


def _add(name: str, text: str, secret: str) -> None:
    assert secret in text
    CORPUS[name] = (text, secret)


_aws = "AKIA" + _alnum("aws", 16).upper()
_add("aws access key id", f"s3_key={_aws}", _aws)
_gh = "ghp_" + _alnum("github", 36)
_add("github token", f"using {_gh} for the clone", _gh)
_ghpat = "github_pat_" + _alnum("finegrained", 40)
_add("github fine-grained token", _ghpat, _ghpat)
_gl = "glpat-" + _alnum("gitlab", 20)
_add("gitlab token", f"remote={_gl}", _gl)
_slack = "xoxb-1234567890-0987654321-" + _alnum("slack", 24)
_add("slack token", _slack, _slack)
_hook = "https://hooks.slack.com/services/T0ABCDEFG/B0ABCDEFG/" + _alnum("hook", 24)
_add("slack webhook", f"notify {_hook}", _hook.rsplit("/", 1)[1])
_stripe = "sk_live_" + _alnum("stripe", 24)
_add("stripe key", _stripe, _stripe)
_gcp = "AIza" + _alnum("google", 35)
_add("google api key", f"maps:{_gcp}", _gcp)
_openai = "sk-proj-" + _alnum("oa1", 20) + "T3BlbkFJ" + _alnum("oa2", 20)
_add("openai key", _openai, _openai)
_pypi = "pypi-AgEIcHlwaS5vcmc" + _alnum("pypi", 60)
_add("pypi token", _pypi, _pypi)
_npm = "npm_" + _alnum("npm", 36)
_add("npm token", _npm, _npm)
_vault = "hvs." + _alnum("vault", 30)
_add("vault token", _vault, _vault)
_jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZGEifQ." + _alnum("jwtsig", 43)
_add("json web token", f"cookie {_jwt}", _jwt)
_pem = _alnum("pem", 64)
_add(
    "private key block",
    f"-----BEGIN RSA PRIVATE KEY-----\n{_pem}\n-----END RSA PRIVATE KEY-----",
    _pem,
)
_add(
    "access_token in a query",
    "https://api.example.com/v1?access_token=tok-acc-71a&x=1",
    "tok-acc-71a",
)
_add("client_secret pair", "client_id=abc client_secret=cs-value-82b", "cs-value-82b")
_add("password in a JSON string", '{"db_password": "dbpw-93c", "host": "h"}', "dbpw-93c")
_add("password in a bytes repr", "{'password': b'bytespw-3d6', 'n': 1}", "bytespw-3d6")
_add("x-api-key header", "X-Api-Key: apikey-a4d", "apikey-a4d")
_basic = base64.b64encode(b"ada:basicpw-b5e").decode()
_add("basic authorization header", f"Authorization: Basic {_basic}", _basic)
_add("bearer token", "Bearer bearer-c6f.xyz", "bearer-c6f.xyz")
_add("user and password in a URL", "postgresql://ada:urlpw-d70@db.example.com/x", "urlpw-d70")
_add("password in a store URI's query", "sqlite:///x.db?password=qpw-e81", "qpw-e81")
_add("token in a server URI's query", "http://127.0.0.1:5000/?token=qtok-f92", "qtok-f92")
_add("fsspec storage key", "{'storage_options__key': 'fskey-0a3'}", "fskey-0a3")
_add(
    "azure connection string",
    "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=azkey-1b4+/==;EndpointSuffix=x",
    "azkey-1b4",
)
_add("azure sas signature", "https://a.blob.core.windows.net/c?sv=2022&sig=azsig-2c5", "azsig-2c5")


SECRETS = {name: secret for name, (_, secret) in CORPUS.items()}


#: Ordinary values that must come out as they went in.
ORDINARY = [
    "n_estimators=100",
    "100",
    "auto",
    "max_tokens=5, author='ada', tokenizer='whitespace'",
    "RandomForestClassifier(max_depth=3, n_estimators=100)",
    "0123456789abcdef0123456789abcdef",  # a run id
    "sha256:" + "9f" * 32,  # a digest
    "models:/m-0123456789abcdef0123456789abcdef",
    "runs:/0123456789abcdef0123456789abcdef/pipeline",
    "2026-12-07 23:11:11",
    "Basic usage of the estimator",
    "https://example.com/data.csv?version=3",
    "sqlite:////tmp/mlflow.db",
    "{'C': 1.0, 'penalty': 'l2', 'sort_key': 'date'}",
    "ValueError: could not convert string to float: 'abc'",
]


def leaks(text: str | bytes) -> set[str]:
    """The corpus entries whose secret is in ``text``."""
    data = text.encode() if isinstance(text, str) else text
    return {name for name, secret in SECRETS.items() if secret.encode() in data}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_detector_masks_its_credential_inside_other_text(name):
    text, secret = CORPUS[name]
    assert secret not in mask_secrets(f"before {text} after")


@pytest.mark.parametrize("value", ORDINARY)
def test_ordinary_values_come_out_as_they_went_in(value):
    assert value == mask_secrets(value)


def test_a_masked_json_document_stays_json_and_keeps_ordinary_keys():
    import json

    document = json.dumps({"db_password": "dbpw-93c", "nested": '{"api_key": "k-1"}', "n": 3})
    assert {"db_password": "***", "nested": '{"api_key": "***"}', "n": 3} == json.loads(
        mask_secrets(document)
    )


def test_names_with_hyphens_underscores_and_nesting_are_secret_names():
    secret = ["X-Api-Key", "client_secret", "access_token", "db_password", "storage_options__key"]
    ordinary = ["sort_key", "key_func", "max_tokens", "sigma", "author", "oauthless_mode"]
    assert ([], []) == (
        [name for name in secret if not is_secret_name(name)],
        [name for name in ordinary if is_secret_name(name)],
    )


def test_warnings_and_log_lines_are_masked(caplog):
    text = " ".join(text for text, _ in CORPUS.values())
    assert set() == leaks(clean(text))
    with caplog.at_level(logging.DEBUG, logger="tracked"):
        logger.warning("store said %s", text)
        try:
            raise RuntimeError(text)
        except RuntimeError:
            logger.exception("a failure")
    assert "store said" in caplog.text and "RuntimeError" in caplog.text
    for handler in logging.getLogger().handlers:
        handler.flush()
    formatted = "\n".join(logging.Formatter().format(record) for record in caplog.records)
    assert set() == leaks(formatted)


def test_text_artifacts_are_masked_and_binary_ones_left_alone():
    text = "\n".join(text for text, _ in CORPUS.values()).encode()
    assert set() == leaks(masked_text_artifact("tracked/notes.json", text))
    assert text == masked_text_artifact("confusion_matrix.png", text)


class Carrier(BaseEstimator, TransformerMixin):
    """A transformer whose settings carry the corpus under ordinary names (values) and as the
    keys of a dict (names)."""

    def __init__(self, settings=None, keyed=None, n_estimators=100):
        self.settings = settings
        self.keyed = keyed
        self.n_estimators = n_estimators

    def fit(self, X, y=None):
        self.notes_ = dict(self.settings or {})
        return self

    def transform(self, X):
        return np.asarray(X)


class Leaky(TrackedPipeline):
    experiment = "masking"
    serialization_format = "skops"

    def __init__(self, source=None):
        self.source = source  # in the default run name

    def carry(self, X, y=None, stage="transformer"):
        texts = [text for text, _ in CORPUS.values()]
        self.operator = Carrier(
            settings={f"s{i}": text for i, text in enumerate(texts)},
            keyed={text: i for i, text in enumerate(texts)},
        ).fit(X)
        return self.operator.transform(X)

    def classify(self, X, y=None, stage="estimator"):
        self.operator = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
        return self.operator.predict(X)

    def scale(self, X, y=None, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        return self.operator.transform(X)

    def fail(self, X, y=None, stage="estimator"):
        message = " | ".join(text for text, _ in CORPUS.values())
        raise ValueError(f"cannot reach the feature store: {message}")


def _store_text(store: Path) -> dict[str, set[str]]:
    """Every table of the sqlite store, and the raw file, scanned for the corpus."""
    found = {"file": leaks(store.read_bytes())}
    with sqlite3.connect(store) as connection:
        tables = [row[0] for row in connection.execute("select name from sqlite_master")]
        for table in tables:
            try:
                rows = connection.execute(f'select * from "{table}"').fetchall()
            except sqlite3.DatabaseError:
                continue
            found[table] = leaks(repr(rows))
    return {where: hits for where, hits in found.items() if hits}


def _artifact_text(root: Path) -> dict[str, set[str]]:
    """Every artifact but the model binaries (an estimator carries its own parameter values,
    see docs/security.md), scanned for the corpus."""
    found = {
        str(path): leaks(path.read_bytes())
        for path in root.rglob("*")
        if path.is_file() and path.suffix not in (".pkl", ".skops", ".cloudpickle")
    }
    return {where: hits for where, hits in found.items() if hits}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_no_credential_of_the_corpus_survives_any_output_channel(
    iris, tmp_path, monkeypatch, capfd, caplog
):
    """Params (values and names), the run name (the hyperparameters' repr), an exception's
    message (``tracked.error``), fitted attributes, warnings, log lines, the spool and
    ``tracked status | sync | compare``: the corpus reaches none of them, and tracked's own
    values (digests, run ids, ``n_estimators``) are not masked."""
    monkeypatch.chdir(tmp_path)  # MLflow puts a sqlite store's artifacts in ./mlruns
    store = tmp_path / "store.db"
    uri = f"sqlite:///{store}"
    X_train, _, y_train, _ = iris
    caplog.set_level(logging.DEBUG, logger="tracked")

    # Every channel of a stage call once, with the whole corpus.
    pipe = Leaky()
    tracked.configure(pipe, tracking_uri=uri)
    with pipe:
        pipe.classify(pipe.carry(X_train, y_train), y_train)
        with pytest.raises(ValueError, match="cannot reach the feature store"):
            pipe.fail(X_train, y_train)
    # The run name, one entry at a time: a run name is cut at 250 characters.
    for text, _ in CORPUS.values():
        pipe = Leaky(source=text)
        tracked.configure(pipe, tracking_uri=uri)
        with pipe:
            pipe.scale(X_train)

    # A store that is away, named by a URI with a token in its query and its user info:
    # the warning says so, the records wait in the spool, `tracked status` lists them.
    user_password = SECRETS["user and password in a URL"]
    token = SECRETS["token in a server URI's query"]
    away = f"http://ada:{user_password}@127.0.0.1:{free_port()}/?token={token}"
    with strict(False), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe = Leaky(source=CORPUS["github token"][0])
        tracked.configure(pipe, tracking_uri=away)
        with pipe:
            pipe.carry(X_train, y_train)
    shown = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert any("away" in message for message in shown), shown
    assert set() == leaks("\n".join(shown))

    assert 0 == tracked_cli(["status"])
    with strict(False), warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        assert 0 == tracked_cli(["sync", "--tracking-uri", uri])
    assert 0 == tracked_cli(["compare", "masking", "--tracking-uri", uri, "--format", "json"])
    out, err = capfd.readouterr()
    assert "***" in out  # status showed the masked URI, compare the masked params
    assert (set(), set()) == (leaks(out), leaks(err))

    formatted = "\n".join(logging.Formatter().format(record) for record in caplog.records)
    assert set() == leaks(formatted)
    assert {} == _store_text(store)
    assert {} == _artifact_text(tmp_path / "mlruns")
    assert any((tmp_path / "mlruns").rglob("fitted_attributes.json"))

    # What tracked writes itself is kept: ordinary params, digests and run ids.
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("masking").experiment_id
    runs = client.search_runs([experiment], max_results=500)
    carriers = [r for r in runs if "settings__s0" in r.data.params]
    assert carriers and {"100"} == {r.data.params["n_estimators"] for r in carriers}
    failed = [r for r in runs if "tracked.error" in r.data.tags]
    assert failed and all("***" in r.data.tags["tracked.error"] for r in failed)
    hexlike = re.compile(r"^[0-9a-f]{16,}$")
    own = {
        (key, value)
        for run in runs
        for key, value in run.data.tags.items()
        if hexlike.match(value) and key != "mlflow.source.git.commit"
    }
    assert any(key == "mlflow.parentRunId" for key, _ in own)
    assert any("digest" in key for key, _ in own), sorted({key for key, _ in own})
