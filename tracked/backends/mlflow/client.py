"""The MLflow client as tracked uses it: bounded requests, retried transient store errors, a
store opened once per process (its schema made under a lock; a store stuck half-migrated
named as such), and mlflow imported once."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from tracked.core.homes import home_folder, private_folder

try:
    import fcntl
except ImportError:  # Windows: the retries alone
    fcntl = None  # type: ignore[assignment]
from tracked.core.errors import StoreUnavailable
from tracked.core.report import foreign_logs_quieted
from tracked.core.text import mask_secrets


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Fail fast when an HTTP tracking server does not accept connections.

    MLflow's client retries a refused connection with backoff for minutes; a stage call
    must not wait that long to learn that the server is away.
    """
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        msg = f"the tracking server at {parts.hostname}:{port} is not reachable ({exc})"
        raise ConnectionError(msg) from None


#: A request of the library's own to an HTTP store waits this long at most for an answer
#: (connect and each read), and is tried again once: a store that does not answer within a
#: few seconds counts as away, and its records go to the spool. MLflow's own defaults (120 s,
#: 7 retries with backoff) would hold the writer for many minutes. Set
#: ``MLFLOW_HTTP_REQUEST_TIMEOUT`` / ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` to choose otherwise.
REQUEST_TIMEOUT_S = 5


REQUEST_RETRIES = 1


#: Set while the library calls the store on this thread: MLflow's request settings answer
#: with the library's bounds then (``_bound_requests``), and only then.
_own_call = threading.local()


_bounds_installed = False


_bounds_lock = threading.Lock()


def _bound_requests() -> None:
    """Give the library's own HTTP requests its bounds, leaving everyone else's alone.

    MLflow reads ``MLFLOW_HTTP_REQUEST_TIMEOUT`` and ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` from
    the environment at every request (tracking calls and artifact uploads alike), and offers
    no per-client setting. Changing the environment would change the user's own MLflow calls
    too; so the two settings answer with the library's bounds only on a thread inside a call
    of the library's (``GuardedClient.call``), and only when the user did not set them.
    """
    global _bounds_installed
    with _bounds_lock:
        if _bounds_installed:
            return
        from mlflow import environment_variables as variables

        for variable, bound in (
            (variables.MLFLOW_HTTP_REQUEST_TIMEOUT, REQUEST_TIMEOUT_S),
            (variables.MLFLOW_HTTP_REQUEST_MAX_RETRIES, REQUEST_RETRIES),
        ):
            original = variable.get

            def get(original=original, variable=variable, bound=bound):
                if getattr(_own_call, "depth", 0) and not variable.is_set():
                    return bound
                return original()

            variable.get = get
        _bounds_installed = True


#: Errors after which a store call certainly did not happen, so trying again is safe.
_TRANSIENT = ("database is locked", "QueuePool limit", "database table is locked")


#: MLflow creates a logged dataset with a check-then-insert: two processes logging the same
#: dataset at once make one insert fail; on the retry it finds the other's row.
_TRANSIENT_BY_CALL = {
    "log_inputs": ("UNIQUE constraint failed", "duplicate key value violates unique constraint")
}


RETRIES = 5


FIRST_BACKOFF_S = 0.1


class GuardedClient:
    """An ``MlflowClient`` whose calls are retried on transient store errors.

    sqlite has one writer at a time: calls to a sqlite store are serialised here (a
    reentrant lock), rather than left to fight over MLflow's connection pool and sqlite's
    lock ("QueuePool limit reached", "database is locked"). Calls that failed that way never
    reached the store, so they are retried, up to 5 times with doubling backoff from 0.1 s;
    so is a dataset input that lost a race with another process creating the same dataset.
    """

    def __init__(self, client: Any, *, serialize: bool) -> None:
        self._client = client
        self._lock = threading.RLock() if serialize else None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute
        transient = _TRANSIENT + _TRANSIENT_BY_CALL.get(name, ())
        return functools.partial(self.call, attribute, transient=transient)

    def call(
        self, function: Any, *args: Any, transient: tuple[str, ...] = _TRANSIENT, **kwargs: Any
    ) -> Any:
        """``function(*args, **kwargs)``, serialised and retried as the client's calls are."""
        delay = FIRST_BACKOFF_S
        _own_call.depth = getattr(_own_call, "depth", 0) + 1
        try:
            for attempt in range(RETRIES + 1):
                try:
                    if self._lock is None:
                        return function(*args, **kwargs)
                    with self._lock:
                        return function(*args, **kwargs)
                except Exception as exc:
                    if attempt == RETRIES or not any(t in str(exc) for t in transient):
                        raise
                time.sleep(delay)
                delay *= 2
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            _own_call.depth -= 1

    def terminate(self, run_id: str, status: str, end_time: int | None) -> None:
        """End a run as ``set_terminated`` does, without its "View run" line on stdout:
        the writer is a background thread of someone else's program."""
        from mlflow.entities import RunStatus

        store = self._client._tracking_client.store
        self.call(
            store.update_run_info,
            run_id,
            run_status=RunStatus.from_string(status),
            end_time=end_time or int(time.time() * 1000),
            run_name=None,
        )


def source_tags() -> dict[str, str]:
    """``mlflow.user``, ``mlflow.source.name``/``type`` and, in a git checkout,
    ``mlflow.source.git.commit``/``branch``: the tags MLflow's fluent runs get.

    Computed here rather than with MLflow's context registry, which also probes for
    notebooks and Databricks (importing IPython: a few hundred milliseconds).
    """
    import getpass
    import subprocess
    import sys

    tags = {"mlflow.source.type": "LOCAL"}
    with contextlib.suppress(Exception):
        tags["mlflow.user"] = getpass.getuser()
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-") else None
    source = os.path.abspath(script) if script else "<interactive>"
    tags["mlflow.source.name"] = source
    folder = os.path.dirname(source) if script else os.getcwd()
    for tag, args in (
        ("mlflow.source.git.commit", ["rev-parse", "HEAD"]),
        ("mlflow.source.git.branch", ["rev-parse", "--abbrev-ref", "HEAD"]),
    ):
        with contextlib.suppress(Exception):
            done = subprocess.run(
                ["git", "-C", folder, *args], capture_output=True, text=True, timeout=2, check=True
            )
            tags[tag] = done.stdout.strip()
    return tags


def default_tracking_uri() -> str:
    """MLflow's tracking URI, resolved as MLflow does, without importing mlflow if it can.

    ``import mlflow`` costs over a second: a stage call must not pay it. Once mlflow is
    imported (the user may have called ``mlflow.set_tracking_uri``), MLflow is asked.
    """
    if not mlflow_imported():
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        if not os.path.isdir("mlruns"):  # else MLflow's old file store default applies
            return "sqlite:///" + os.path.abspath("mlflow.db")
    return load_mlflow().get_tracking_uri()


_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


#: Tracking URIs without a scheme that are not paths.
_SPECIAL_URIS = frozenset({"databricks", "databricks-uc", "uc"})


def absolute_store_uri(uri: str) -> str:
    """``uri`` with a relative local path made absolute against the current folder.

    A session resolves its store once, when it opens: ``sqlite:///rel.db``, ``./mlruns`` or
    ``file:mlruns`` then mean the same store whichever folder the process is in later.
    """
    from urllib.parse import urlsplit

    if uri.startswith("sqlite:///"):
        path, sep, query = uri[len("sqlite:///") :].partition("?")
        # ``file:...`` is SQLite's own URI filename (``?mode=ro&uri=true``): left as given.
        if path and path != ":memory:" and not path.startswith("file:") and not os.path.isabs(path):
            return "sqlite:///" + os.path.abspath(path) + sep + query
        return uri
    parts = urlsplit(uri)
    if parts.scheme == "file" and not parts.netloc and not os.path.isabs(parts.path):
        return "file://" + os.path.abspath(parts.path)
    if uri in _SPECIAL_URIS:
        return uri
    if not parts.scheme or (len(parts.scheme) == 1 and os.name == "nt"):  # a plain path
        return os.path.abspath(uri)
    return uri


def default_artifact_root(uri: str) -> str | None:
    """MLflow's default artifact root of a database store (``./mlruns``), made absolute; None
    for other stores (they choose their artifact locations themselves) or when the
    environment of an MLflow server chooses it."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme not in _DATABASE_SCHEMES or os.environ.get("_MLFLOW_SERVER_ARTIFACT_ROOT"):
        return None
    return os.path.abspath("mlruns")


#: MLflow creates a fresh database's schema on first use. Processes opening one fresh store
#: at once race there and fail with these; the store is fine once one of them has finished.
_SCHEMA_RACE = (
    "Online migration expected to match one row",
    "duplicate column name",
    "already exists",
    "out-of-date database schema",
    "no such table",
)


#: How long opening a store keeps trying after such errors, at most (a race ends sooner).
SCHEMA_RACE_WAIT_S = 60.0


#: A store whose schema stays where it is (the same alembic revision, the same error), not
#: the one this MLflow needs, while no process writes the database, for this long, is stuck
#: at a partial migration, not in a race. A migrating process moves the revision step by
#: step, or (sqlite: MLflow upgrades in one transaction) holds the database's write lock;
#: the other tracked processes of this machine wait for ``_store_creation_lock``, held here.
STUCK_AFTER_S = 2.0


class StoreNotMigrated(StoreUnavailable):
    """A database store stuck at a partial schema migration (a process killed while it
    created or upgraded the store): it needs a person (``mlflow db upgrade``), not retries.
    Records wait in the spool meanwhile."""


def _open_client(mlflow: Any, uri: str, artifact_root: str | None) -> Any:
    """An ``MlflowClient`` for ``uri`` whose store exists (a fresh database's schema made)
    and keeps artifacts under ``artifact_root`` (None: MLflow's choice).

    Raises:
        StoreNotMigrated: the store's schema is stuck at a partial migration.
    """
    from mlflow.tracking._tracking_service import utils

    def create() -> Any:
        # The store first, with its artifact root: the client's own lookup (without one)
        # then finds the schema made, and its root is replaced below.
        utils._get_store(uri, artifact_root)
        return mlflow.MlflowClient(tracking_uri=uri)

    deadline = time.monotonic() + SCHEMA_RACE_WAIT_S
    delay = FIRST_BACKOFF_S
    watch = _SchemaWatch(uri)
    with _store_creation_lock(uri):
        while True:
            try:
                with foreign_logs_quieted():  # MLflow logs each attempt: said once, below
                    client = create()
                break
            except Exception as exc:
                if not any(t in str(exc) for t in _SCHEMA_RACE):
                    raise
                stuck = watch.stuck(exc)
                if stuck is not None:
                    raise StoreNotMigrated(stuck) from None  # said in full: no cause to show
                if time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    if artifact_root is not None:
        client._tracking_client = _pinned_tracking_client(uri, artifact_root)
    return client


class _SchemaWatch:
    """Tells a store in a schema race (another process creating or upgrading it) from one
    stuck at a partial migration: the same revision and error, no writer, for
    ``STUCK_AFTER_S``."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._seen: tuple[str | None, str] | None = None
        self._since = 0.0

    def stuck(self, exc: BaseException) -> str | None:
        """What to say when the store is stuck, else None (a race: try again)."""
        revision, writing = _schema_revision(self.uri)
        seen = (revision, str(exc).splitlines()[0][:200] if str(exc) else "")
        now = time.monotonic()
        if writing or seen != self._seen:
            self._seen, self._since = seen, now
            return None
        if now - self._since < STUCK_AFTER_S:
            return None
        from mlflow.store.db.utils import _get_latest_schema_revision
        from mlflow.version import VERSION

        head = _get_latest_schema_revision()
        where = mask_secrets(self.uri)
        if revision == head:
            state = (
                f"its alembic_version is {revision}, the one MLflow {VERSION} needs, but its "
                f"tables do not match it ({seen[1]})"
            )
        else:
            state = f"its alembic_version is {revision or 'missing'}; MLflow {VERSION} needs {head}"
        return (
            f"the store {where} is stuck at a partial schema migration: {state}, and no "
            f"process has been migrating it for {STUCK_AFTER_S:g} s (a process killed while "
            f"it created or upgraded the store?). Take a backup of the database, then run "
            f"`mlflow db upgrade {where}`; if that fails, move the database aside (the next "
            "run creates a fresh one). Records wait in the spool: `tracked sync` writes them "
            "once the store is fixed"
        )


def _schema_revision(uri: str) -> tuple[str | None, bool]:
    """(the revision in the store's ``alembic_version``, None when it has none; whether a
    process holds the database's write lock now: sqlite only, else False)."""
    if uri.startswith("sqlite:///"):
        import sqlite3  # here, not at import: 6 ms of `import tracked`, for a rare case

        path = uri[len("sqlite:///") :].partition("?")[0]
        try:
            connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=0)
        except sqlite3.Error:
            return None, False
        try:
            try:
                row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.Error:
                row = None
            try:
                connection.execute("BEGIN IMMEDIATE")
                connection.rollback()
                writing = False
            except sqlite3.OperationalError:
                writing = True  # "database is locked": a migration (or a write) under way
            return (row[0] if row else None), writing
        finally:
            connection.close()
    import sqlalchemy
    from alembic.runtime.migration import MigrationContext

    engine = sqlalchemy.create_engine(uri, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision(), False
    except Exception:
        return None, False
    finally:
        engine.dispose()


@contextlib.contextmanager
def _store_creation_lock(uri: str) -> Iterator[None]:
    """Serialise the creation of a sqlite store between the processes of this machine,
    whichever user runs them (the retries above cover what this cannot).

    The lock is the store's own folder: ``flock`` on a read-only handle of it, which every
    user of the store may open. Nothing is created and nothing is left behind. (A lock file
    in the shared temporary directory, made by the first user with mode 0644, blocked every
    other user of the store, and one stayed behind per store.) The wait is bounded: past
    ``SCHEMA_RACE_WAIT_S``, or where the file system has no ``flock``, the retries alone.
    """
    folder = _sqlite_folder(uri)
    fd = None
    if folder is not None and fcntl is not None:
        with contextlib.suppress(OSError):
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if fd is not None:
            _lock_bounded(fd, time.monotonic() + SCHEMA_RACE_WAIT_S)
        yield
    finally:
        if fd is not None:
            os.close(fd)  # the lock goes with it


def _lock_bounded(fd: int, deadline: float) -> bool:
    """Take ``flock`` on ``fd``, waiting until ``deadline`` at most; whether it was taken."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
        except OSError:  # no flock here (some network file systems)
            return False
        time.sleep(0.05)


def _sqlite_folder(uri: str) -> str | None:
    """The folder of the database file of a ``sqlite:`` URI; None for other stores, an
    in-memory database or SQLite's own ``file:`` URIs."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].partition("?")[0]
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return os.path.dirname(os.path.abspath(path))


def _pinned_tracking_client(uri: str, artifact_root: str) -> Any:
    """MLflow's tracking client whose store keeps artifacts under ``artifact_root``.

    ``MlflowClient`` always asks for the store without an artifact root, which a database
    store resolves to ``./mlruns`` of the folder current at that moment.
    """
    from mlflow.tracking._tracking_service import utils
    from mlflow.tracking._tracking_service.client import TrackingServiceClient

    class PinnedTrackingClient(TrackingServiceClient):
        @property
        def store(self) -> Any:
            return utils._get_store(self.tracking_uri, artifact_root)

    return PinnedTrackingClient(uri)


def mlflow_imported() -> bool:
    """Whether mlflow is imported, completely: the writer thread may be importing it now,
    and a half-imported mlflow must not be used from another thread."""
    module = sys.modules.get("mlflow")
    if module is None:
        return False
    spec = getattr(module, "__spec__", None)
    return not getattr(spec, "_initializing", False)


#: What the backend imports of mlflow, all of it: ``mlflow.data.dataset_registry`` imports
#: polars when it is installed, ``import mlflow`` pandas and pyarrow.
MLFLOW_MODULES = (
    "mlflow",
    "mlflow.entities",
    "mlflow.exceptions",
    "mlflow.models",
    "mlflow.sklearn",
    "mlflow.data",
    "mlflow.data.dataset_registry",
    "mlflow.utils.autologging_utils",
    # skops (the default model format) walks every scikit-learn module when imported,
    # importing dask and others on the way.
    "skops.io",
)


#: What a database store (``sqlite:``, ``postgresql:``, ...) adds: about a second to import.
DATABASE_STORE_MODULES = (
    "mlflow.store.db.utils",
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
)


def import_mlflow(uri: str | None = None) -> None:
    """Import ``MLFLOW_MODULES`` and, for a database store at ``uri``, its modules too
    (quick once they are). Every path of this package that may import mlflow first in a
    process comes here first (see ``_home_for_import``)."""
    import importlib

    names = MLFLOW_MODULES
    if uri is not None and uri.partition(":")[0].partition("+")[0] in DATABASE_SCHEMES:
        names += DATABASE_STORE_MODULES
    missing = [name for name in names if name not in sys.modules]
    if not missing:
        return
    with _home_for_import():
        for name in missing:
            importlib.import_module(name)


def load_mlflow() -> Any:
    """The ``mlflow`` module, imported as ``import_mlflow`` imports it."""
    with _home_for_import() if "mlflow" not in sys.modules else contextlib.nullcontext():
        import mlflow

    return mlflow


_home_lock = threading.Lock()


@contextlib.contextmanager
def _home_for_import() -> Iterator[None]:
    """A home folder while mlflow imports, for a user who has none.

    ``import mlflow`` calls ``Path.home()`` (for a default path it only names), which raises
    for a user with no ``HOME`` and no passwd entry (a container's random user id). Then,
    and only then, ``HOME`` names the user's private folder (``tracked.core.homes``)
    while the import runs, and is taken away after: the user's environment (and that of the
    processes it starts) is left as it was.
    """
    if home_folder() is not None:
        yield
        return
    with _home_lock:
        os.environ["HOME"] = str(private_folder())
        try:
            yield
        finally:
            os.environ.pop("HOME", None)


DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
