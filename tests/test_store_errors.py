"""Outage versus data error (issue 16, point 9): only connection errors, timeouts and HTTP
5xx / 429 answers mean the store is away. MLflow's default code, INTERNAL_ERROR, raised by a
local store for a value it cannot hold, is a record the store refuses: reported with its run
and reason, never "the store is away", on every sync.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from pipelines import run_iris
from servers import free_port
from spooling import entry_documents, write_entry_documents

from tracked import TrackingWarning
from tracked.backends.mlflow.errors import is_store_away
from tracked.cli import main as tracked_cli

LOCAL_ID_TAG = "tracked.local_run_id"


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = tracked_cli(list(args))
    return code, out.getvalue(), err.getvalue()


def raised(call) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    pytest.fail("the call did not raise")


def test_a_value_a_sqlite_store_cannot_hold_is_refused_not_away(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'store.db'}")
    run = client.create_run("0")
    exc = raised(
        lambda: client.log_batch(
            run.info.run_id, metrics=[Metric("m", 1.0, 0, 2**70)], synchronous=True
        )
    )
    assert "INTERNAL_ERROR" == exc.error_code  # MLflow's default: no outage by itself
    assert not is_store_away(exc)


class _Answers(BaseHTTPRequestHandler):
    """Answers every request with the status its server was given, plain text or JSON."""

    def _answer(self) -> None:
        status, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/json" if body.startswith("{") else "text/plain"
        )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def answering():
    """``answering(status, body)``: the URI of a loopback HTTP server that answers so."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def answer(status: int, body: str) -> str:
        server.answer = (status, body)  # type: ignore[attr-defined]
        return f"http://127.0.0.1:{server.server_address[1]}"

    try:
        yield answer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("status", "body", "away"),
    [
        (500, "internal error", True),
        (502, "bad gateway", True),
        (503, "unavailable", True),
        (429, "slow down", True),
        (500, json.dumps({"error_code": "INTERNAL_ERROR", "message": "boom"}), True),
        (400, "bad request", False),
        (400, json.dumps({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}), False),
        (403, json.dumps({"error_code": "PERMISSION_DENIED", "message": "no"}), False),
    ],
)
def test_http_answers_are_away_only_for_5xx_and_429(answering, status, body, away):
    client = MlflowClient(answering(status, body))
    exc = raised(lambda: client.get_experiment("0"))
    assert away == is_store_away(exc), repr(exc)


def test_a_store_nobody_answers_on_is_away():
    client = MlflowClient(f"http://127.0.0.1:{free_port()}")
    assert is_store_away(raised(lambda: client.get_experiment("0")))


@pytest.mark.timeout(300)
def test_sync_reports_a_refused_record_with_its_run_and_never_calls_the_store_away(
    iris, spool_dir, tmp_path, monkeypatch, new_store
):
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        pipe, _ = run_iris(iris, tracking_uri=f"http://127.0.0.1:{free_port()}")
    folder = spool_dir / pipe.run_id
    # One record holds a value the store cannot hold (a step beyond SQLite's integers).
    documents = entry_documents(folder)
    entries = [d["entry"] for d in documents]
    [bad] = [e for e in entries if e["kind"] == "stage" and e["stage"] == "reduction"][:1]
    bad["metrics"][0]["step"] = 2**70
    write_entry_documents(folder, documents)  # signed: an edit of the spool's owner

    target = new_store(tmp_path / "target.db")
    outputs = [cli("sync", "--spool", str(spool_dir), "--tracking-uri", target) for _ in "12"]
    for code, _out, err in outputs:
        assert 1 == code
        assert "away" not in err
        [refused] = [line for line in err.splitlines() if line.startswith("failed: ")]
        assert f"{pipe.run_id} (run 'Iris'): the store refused to log params and metrics" in refused
        assert "too large" in refused  # the reason, from the store
        assert "fix the cause, then run sync again" in err
    assert folder.is_dir()  # the refused record is kept
    client = MlflowClient(target)
    experiment = client.get_experiment_by_name("tests").experiment_id
    runs = client.search_runs([experiment])
    # Everything else reached the store, once, although sync ran twice.
    assert 7 == len(runs)
    assert 1 == sum(r.data.tags.get(LOCAL_ID_TAG) == pipe.run_id for r in runs)
