"""Shared fixtures. The suite runs strict: a tracking failure raises instead of warning."""

from __future__ import annotations

import os
import tempfile

# Before tracked is imported anywhere: failures of the tracker must be seen by the tests.
os.environ["TRACKED_STRICT"] = "1"
os.environ.pop("TRACKED_ENABLED", None)
# MLflow's retries against an unreachable server would take minutes per request.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
# The stores of the suite are real and, with every core busy, slow: a `with` exit that waits
# longer than the default 30 s is not a failure of the tests whose subject is something else.
# tests/test_stalled_store.py tests the bound itself, with the default put back.
os.environ.setdefault("TRACKED_EXIT_TIMEOUT", "240")


def _temporary_folders_in_memory() -> None:
    """Temporary folders (``tmp_path``, the stores and spools in them, and those of the
    processes the tests start) in RAM, on ``/dev/shm``, when it has room: the suite's sqlite
    stores commit thousands of times, and each commit's fsync to disk made most of their
    tests' time (a dtype-family test: 50 s on disk, 17 s in memory). The stores stay real
    sqlite files. ``TRACKED_TEST_TMP=disk`` keeps the system's temporary folder."""
    if os.environ.get("TRACKED_TEST_TMP") == "disk" or not os.path.isdir("/dev/shm"):
        return
    try:
        room = os.statvfs("/dev/shm")
    except OSError:
        return
    if room.f_bavail * room.f_frsize < 4 << 30 or not os.access("/dev/shm", os.W_OK):
        return
    os.environ["TMPDIR"] = "/dev/shm"
    tempfile.tempdir = None  # asked again, from TMPDIR


_temporary_folders_in_memory()

import functools
from pathlib import Path

import pytest
import stores
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

from tracked.testing import MemoryBackend


@pytest.fixture(autouse=True)
def fresh_warnings():
    """Each test sees the library's once-per-cause warnings afresh."""
    from tracked.core import report as _report

    _report.reset_seen()
    yield
    _report.reset_seen()


@pytest.fixture(autouse=True)
def spool_dir(tmp_path_factory, monkeypatch):
    """Each test spools into a folder of its own, and leaves no write behind for the next."""
    import tracked.delivery.writer
    from tracked.delivery.registry import REGISTRY

    folder = tmp_path_factory.mktemp("spool")
    monkeypatch.setenv("TRACKED_SPOOL_DIR", str(folder))
    # The spool's key (made on first use), one per test session, never the user's own.
    monkeypatch.setenv(
        "TRACKED_SPOOL_KEY_FILE", str(tmp_path_factory.getbasetemp() / "key" / "spool.key")
    )
    yield folder
    tracked.delivery.writer.writer().flush(timeout=120)
    REGISTRY.away.clear()


@pytest.fixture(scope="session")
def iris():
    """The demo's split: X_train, X_test, y_train, y_test."""
    X, y = load_iris(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=42)


@pytest.fixture
def memory() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """One migrated sqlite store for the whole run (shared by the xdist workers)."""
    base = tmp_path_factory.getbasetemp()
    # Under xdist each worker has its own base folder; their parent is the run's.
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return stores.template(root)


@pytest.fixture
def new_store(store_template):
    """``new_store(path)``: a fresh (copied, already migrated) sqlite store at ``path``."""
    return functools.partial(stores.fresh_store, store_template)


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch, new_store) -> str:
    """A fresh sqlite MLflow store in a temporary folder, which is also the working folder.

    MLflow puts a sqlite store's artifacts in ``./mlruns`` of the working folder.
    """
    monkeypatch.chdir(tmp_path)
    return new_store(tmp_path / "mlflow.db")


@pytest.fixture
def client(tracking_uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


@pytest.fixture
def in_tmp_cwd(tmp_path, monkeypatch):
    """Run in an empty folder, so that MLflow's default store lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
