"""Every wait is bounded, whatever the store does: refuse, stall, answer half a response.

The servers here accept TCP connections on 127.0.0.1 and then never answer (or answer half
an HTTP response and stall). Programs run in subprocesses without the suite's
``MLFLOW_HTTP_REQUEST_*`` settings (tests/conftest.py), so they prove the library's own
bounds, not the suite's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pipelines import Iris

import tracked
from tracked import TrackingWarning
from tracked.spool.sync import pending_entries, spooled_sessions

TESTS = Path(__file__).parent
ROOT = TESTS.parent
HALF_RESPONSE = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"exp'
)


class StalledServer:
    """Accepts connections on a free loopback port; never answers, or (``half``) answers
    the first bytes of a response and then nothing more."""

    def __init__(self, *, half: bool = False) -> None:
        self.half = half
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.settimeout(0.2)
        self._connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue
            self._connections.append(connection)
            if self.half:
                connection.settimeout(5)
                try:
                    connection.recv(65536)
                    connection.sendall(HALF_RESPONSE)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for connection in [*self._connections, self._socket]:
            connection.close()


@pytest.fixture(params=["silent", "half"])
def stalled(request) -> Iterator[StalledServer]:
    server = StalledServer(half=request.param == "half")
    try:
        yield server
    finally:
        server.stop()


def child_env(spool: Path, **extra: str) -> dict[str, str]:
    """The environment of a program as a user runs it: no MLflow request settings."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}",
        "TRACKED_SPOOL_DIR": str(spool),
    }
    for name in (
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
        "MLFLOW_HTTP_REQUEST_TIMEOUT",
        "TRACKED_STRICT",
        "TRACKED_EXIT_TIMEOUT",
    ):
        env.pop(name, None)
    env.update(extra)
    return env


PROGRAM = """\
import tracked
import sys, time
from sklearn.datasets import load_iris
from pipelines import Iris
X, y = load_iris(return_X_y=True)
pipe = Iris()
tracked.configure(pipe, tracking_uri=sys.argv[1])
"""

WITH_BLOCK = """
    with pipe:
        started = time.perf_counter()
        pipe.train(X, y)
        print("stages took", time.perf_counter() - started, flush=True)
    print("exit returned", flush=True)
"""


def run_program(body: str, url: str, spool: Path, cwd: Path, **env: str):
    code = PROGRAM + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", code, url],
        cwd=cwd,
        env=child_env(spool, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def spooled_pending(spool: Path) -> list[int]:
    return [len(pending_entries(session)) for session in spooled_sessions(spool)]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_with_block_against_a_store_that_never_answers_ends_within_the_bound(stalled, tmp_path):
    spool = tmp_path / "spool"
    started = time.perf_counter()
    process = run_program(WITH_BLOCK, stalled.url, spool, tmp_path)
    try:
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    seconds = time.perf_counter() - started
    assert 0 == process.returncode, err
    assert seconds < 90, f"the program took {seconds:.0f} s"
    assert "exit returned" in out
    stage_seconds = float(out.split("stages took")[1].split()[0])
    assert stage_seconds < 10, "the stage calls waited on the store"
    # One warning: the store is away, how many records wait, and that sync sends them.
    [warning] = [line for line in err.splitlines() if "TrackingWarning" in line]
    assert f"the tracking store {stalled.url} is away" in warning
    assert "5 records of run 'Iris'" in warning  # start, three stages, end
    assert "`tracked sync`" in warning
    assert [5] == spooled_pending(spool)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_one_ctrl_c_ends_the_with_exit_wait_at_once_and_leaves_the_records_in_the_spool(
    tmp_path,
):
    server = StalledServer()
    spool = tmp_path / "spool"
    # The user asked MLflow to wait long for each request, and tracked to wait long at exit:
    # only the Ctrl-C can end this wait early.
    process = run_program(
        WITH_BLOCK,
        server.url,
        spool,
        tmp_path,
        MLFLOW_HTTP_REQUEST_TIMEOUT="600",
        TRACKED_EXIT_TIMEOUT="600",
    )
    try:
        line = process.stdout.readline()  # the stages are done: the `with` exit waits
        assert line.startswith("stages took"), process.stderr.read()
        time.sleep(1.0)
        interrupted = time.perf_counter()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        seconds = time.perf_counter() - interrupted
    finally:
        process.kill()
        server.stop()
    assert seconds < 30, f"the program took {seconds:.0f} s after Ctrl-C"
    assert "exit returned" not in out  # the Ctrl-C reached the program
    assert "KeyboardInterrupt" in err
    assert "Exception ignored" not in err, err
    assert "interrupted (Ctrl-C)" in err and "wait in the spool" in err, err
    assert [5] == spooled_pending(spool)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_one_ctrl_c_ends_the_exit_handlers_wait_without_a_traceback(tmp_path):
    server = StalledServer()
    spool = tmp_path / "spool"
    body = """
        pipe.train(X, y)  # no `with`, no close(): the exit handler ends the run
        print("exiting", flush=True)
    """
    process = run_program(
        body,
        server.url,
        spool,
        tmp_path,
        MLFLOW_HTTP_REQUEST_TIMEOUT="600",
        TRACKED_EXIT_TIMEOUT="600",
    )
    try:
        assert "exiting" in process.stdout.readline(), process.stderr.read()
        time.sleep(1.5)  # in the exit handler now
        interrupted = time.perf_counter()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        seconds = time.perf_counter() - interrupted
    finally:
        process.kill()
        server.stop()
    assert seconds < 30, f"the program took {seconds:.0f} s after Ctrl-C"
    assert "Exception ignored" not in err, err
    assert "Traceback" not in err, err
    assert "interrupted (Ctrl-C)" in err and "wait in the spool" in err, err
    assert [5] == spooled_pending(spool)


@pytest.mark.timeout(120)
def test_flush_and_close_return_within_the_one_bound(iris, monkeypatch, spool_dir):
    """TRACKED_EXIT_TIMEOUT bounds ``tracked.flush()`` and ``close()`` too (in-process: the
    suite's 5 s request timeout keeps the writer busy longer than the 1 s bound)."""
    monkeypatch.setenv("TRACKED_EXIT_TIMEOUT", "1")
    server = StalledServer()
    try:
        X_train, _, y_train, _ = iris
        pipe = Iris()
        tracked.configure(pipe, tracking_uri=server.url)
        started = time.perf_counter()
        pipe.preprocessing(X_train, y_train)
        assert time.perf_counter() - started < 5  # the stage call does not wait on the store
        with pytest.warns(TrackingWarning, match=r"records of run 'Iris' wait in the spool"):
            started = time.perf_counter()
            assert tracked.flush() is False
        assert time.perf_counter() - started < 4
        pipe.reduction(pipe.preprocessing(X_train, train=False), y_train)
        started = time.perf_counter()
        pipe.close()
        assert time.perf_counter() - started < 4
        assert pipe.run_id.startswith("local-")
    finally:
        # The writer tells later that the store is away: that is this test's, not the next's.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracked.flush(timeout=60)
        server.stop()
    [session] = spooled_sessions(spool_dir)
    assert 5 == len(session.entries)  # start, three stages, end
    assert 5 == len(pending_entries(session))


def test_the_bound_is_read_from_the_environment(monkeypatch):
    from tracked.core.config import wait_bound

    monkeypatch.delenv("TRACKED_EXIT_TIMEOUT", raising=False)
    assert 30.0 == wait_bound()
    monkeypatch.setenv("TRACKED_EXIT_TIMEOUT", "2.5")
    assert 2.5 == wait_bound()
    monkeypatch.setenv("TRACKED_EXIT_TIMEOUT", "inf")  # as long as it takes, knowingly
    assert float("inf") == wait_bound()
    assert tracked.flush() is True  # nothing to wait for; an infinite bound is usable
    monkeypatch.setenv("TRACKED_EXIT_TIMEOUT", "soon")
    with pytest.warns(TrackingWarning, match="not a number of seconds"):
        assert 30.0 == wait_bound()
