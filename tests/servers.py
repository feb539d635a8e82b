"""Real servers for integration tests: PostgreSQL databases and a team MLflow tracking server.

Not a test module (pytest collects only ``test_*.py``); the tests import it as ``servers``.

- :func:`free_port` -- a TCP port on 127.0.0.1 that was free a moment ago.
- :func:`postgres_database` -- a uniquely named, always dropped PostgreSQL database.
- :class:`MlflowServer` / :func:`mlflow_server` -- ``mlflow server`` with a database backend
  store and proxied artifacts (``mlflow-artifacts:/``), in its own process group that is
  always stopped; it can be stopped and restarted on the same port to inject faults.

The PostgreSQL server is shared (CI runs it for every job): databases are named
``<prefix>_<12 hex digits>`` and dropped with ``WITH (FORCE)``, so that connections an
``mlflow server`` left open cannot keep one alive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

POSTGRES_HOST = os.environ.get("TRACKED_TEST_PGHOST", "127.0.0.1")
POSTGRES_PORT = int(os.environ.get("TRACKED_TEST_PGPORT", "5432"))
POSTGRES_USER = os.environ.get("TRACKED_TEST_PGUSER", "postgres")

# Seconds between SIGTERM and SIGKILL when a server's process group is stopped.
STOP_GRACE = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that no one listened on when asked (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- PostgreSQL ------------------------------------------------------------------------------


@contextlib.contextmanager
def _admin_connection(host: str, port: int, user: str) -> Iterator:
    """An autocommit psycopg2 connection to the ``postgres`` maintenance database.

    CREATE/DROP DATABASE cannot run inside a transaction, hence autocommit.
    """
    import psycopg2

    connection = psycopg2.connect(host=host, port=port, user=user, dbname="postgres")
    try:
        connection.autocommit = True
        yield connection
    finally:
        connection.close()


def database_exists(
    name: str, *, host: str = POSTGRES_HOST, port: int = POSTGRES_PORT, user: str = POSTGRES_USER
) -> bool:
    """Whether ``pg_database`` lists a database called ``name``."""
    with _admin_connection(host, port, user) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return cursor.fetchone() is not None


@contextlib.contextmanager
def postgres_database(
    prefix: str = "tracked_test",
    *,
    host: str = POSTGRES_HOST,
    port: int = POSTGRES_PORT,
    user: str = POSTGRES_USER,
) -> Iterator[str]:
    """Create a fresh database ``<prefix>_<uuid hex 12>``; yield its SQLAlchemy URI; drop it.

    The URI names the driver, ``postgresql+psycopg2://user@host:port/name``: SQLAlchemy 2.1
    maps a bare ``postgresql://`` to psycopg 3, which is not installed (psycopg2-binary is).
    The database is dropped ``WITH (FORCE)`` on exit, whatever happened inside, so that
    connections still open (a server that failed to stop, a pool) cannot keep it alive.
    """
    from psycopg2 import sql

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    identifier = sql.Identifier(name)
    with _admin_connection(host, port, user) as connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    try:
        yield f"postgresql+psycopg2://{user}@{host}:{port}/{name}"
    finally:
        with _admin_connection(host, port, user) as connection, connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))


def database_name(uri: str) -> str:
    """The database name at the end of a URI that :func:`postgres_database` yielded."""
    return uri.rsplit("/", 1)[1]


# --- mlflow server ---------------------------------------------------------------------------


def mlflow_command() -> list[str]:
    """The ``mlflow`` executable installed next to this interpreter (``python -m mlflow`` else)."""
    executable = Path(sys.executable).parent / "mlflow"
    if executable.exists():
        return [str(executable)]
    return [sys.executable, "-m", "mlflow"]


def _live_members(pgid: int) -> bool:
    """Whether process group ``pgid`` still has a process that is not a zombie.

    Zombies count for ``killpg(pgid, 0)`` but hold no port or connection; where PID 1 does
    not reap orphans (some containers) they never go away, so on Linux /proc is read instead.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a database backend and proxied artifacts.

    Use as a context manager: entering starts the server and waits until ``GET /health``
    answers 200; leaving stops its whole process group (uvicorn and its workers), always.
    ``stop()``, ``start()`` and ``restart()`` may be called in between (fault injection);
    the port stays the same, so clients keep their ``url``.

    The server runs in a new session (its own process group) with the interpreter's bin
    folder first on PATH (mlflow starts uvicorn from there); its output goes, across
    restarts, to ``log_path``. MLflow's server-side job execution is off unless
    ``job_execution``: tracking does not use it. Requests from 127.0.0.1/localhost pass
    MLflow's security middleware without ``--allowed-hosts`` (it allows loopback and
    private addresses; other Host headers get 403).
    """

    def __init__(
        self,
        backend_store_uri: str,
        artifacts_dir: str | os.PathLike,
        *,
        port: int | None = None,
        workers: int = 2,
        timeout: float = 90.0,
        log_dir: str | os.PathLike | None = None,
        job_execution: bool = False,
    ) -> None:
        self.backend_store_uri = backend_store_uri
        self.artifacts_dir = Path(artifacts_dir)
        self.port = port if port is not None else free_port()
        self.workers = workers
        self.timeout = timeout
        self.job_execution = job_execution
        self._own_log_dir = log_dir is None
        self.log_dir = Path(
            tempfile.mkdtemp(prefix="mlflow-server-") if log_dir is None else log_dir
        )
        self.log_path = self.log_dir / f"mlflow-server-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.startup_seconds: list[float] = []  # one entry per successful start

    @property
    def url(self) -> str:
        """The tracking URI, ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The command line that starts the server."""
        return [
            *mlflow_command(),
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            str(self.artifacts_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]

    def start(self) -> MlflowServer:
        """Start the server and wait until it is healthy; on failure it is stopped again.

        Raises RuntimeError, with the last 40 lines of the server's log, when the process
        exits or ``timeout`` seconds pass before ``GET /health`` answers 200.
        """
        if self.running:
            msg = f"the mlflow server at {self.url} is already running"
            raise RuntimeError(msg)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        env.pop("MLFLOW_TRACKING_URI", None)
        env["PYTHONUNBUFFERED"] = "1"
        # Server-side jobs (GenAI scoring, trace archival) start a job runner and six huey
        # consumers: seven more interpreters importing mlflow, ~10 s to stop on a busy host.
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true" if self.job_execution else "false"
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n=== {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.log_dir,  # anything the server writes to its working folder lands here
                start_new_session=True,
            )
        try:
            self._wait_healthy(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds.append(time.monotonic() - started)
        return self

    def _wait_healthy(self, started: float) -> None:
        deadline = started + self.timeout
        while True:
            assert self.process is not None
            code = self.process.poll()
            if code is not None:
                msg = f"mlflow server exited with code {code} before it was healthy"
                raise RuntimeError(f"{msg}\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() >= deadline:
                msg = f"mlflow server at {self.url} not healthy within {self.timeout:.0f} s"
                raise RuntimeError(f"{msg}\n{self.log_tail()}")
            time.sleep(0.25)

    def stop(self) -> None:
        """Stop the whole process group: SIGTERM, up to 15 s, then SIGKILL. Idempotent."""
        process, self.process = self.process, None
        if process is None:
            return
        pgid = process.pid  # start_new_session: the server leads its own group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE)
        while _live_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process.poll() is None or _live_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        process.wait()

    def restart(self) -> MlflowServer:
        """Stop the server and start it again on the same port."""
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> MlflowServer:
        try:
            return self.start()
        except BaseException:  # __exit__ will not run: the log (quoted in the error) goes now
            if self._own_log_dir:
                shutil.rmtree(self.log_dir, ignore_errors=True)
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            if self._own_log_dir:
                shutil.rmtree(self.log_dir, ignore_errors=True)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"MlflowServer({self.url}, {self.backend_store_uri!r}, {state})"


@contextlib.contextmanager
def mlflow_server(
    backend_store_uri: str,
    artifacts_dir: str | os.PathLike,
    *,
    workers: int = 2,
    timeout: float = 90.0,
) -> Iterator[str]:
    """Run an :class:`MlflowServer` for the ``with`` block; yield its URL."""
    with MlflowServer(backend_store_uri, artifacts_dir, workers=workers, timeout=timeout) as server:
        yield server.url
