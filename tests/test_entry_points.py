"""Every public entry point is guarded as a stage call is: with the store's library failing
to import (a broken install; ``import mlflow`` raising, as it does for a user without a home
folder on an unguarded path), the user's program runs on, warned, never a traceback of
tracked's, and the command line says what failed in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from pipelines import Iris
from processes import ROOT, TESTS
from servers import free_port

import tracked
from tracked import TrackingError, TrackingWarning
from tracked.testing import MemoryBackend

#: Makes ``import mlflow`` (and any of its modules) raise, in every process it is on the
#: path of.
NO_MLFLOW = '''
import sys

class _NoMlflow:
    """``import mlflow`` fails, as in a broken install."""

    def find_spec(self, name, path=None, target=None):
        if name == "mlflow" or name.startswith("mlflow."):
            raise ImportError(f"No module named {name!r} (taken away by the test)")
        return None

sys.meta_path.insert(0, _NoMlflow())
'''

#: Every entry point of the library, in a user's order; each prints that it was passed.
PROGRAM = """
import warnings
warnings.simplefilter("always")
from sklearn.datasets import load_iris
import tracked
from pipelines import Iris

X, y = load_iris(return_X_y=True)
with Iris() as pipe:
    print("entered")
    pipe.train(X, y)
    print("predicted", len(pipe.predict(X)))
    print("run_id", pipe.run_id)
    print("model_uri", pipe.model_uri)
print("exited")
pipe.close()
print("closed")
print("flushed", tracked.flush())
with Iris() as second:
    second.train(X, y)
try:
    with Iris() as third:
        raise RuntimeError("the user's own")
except RuntimeError as exc:
    print("the user's exception", exc)
"""


def _env(tmp_path: Path, *, broken: bool, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "TRACKED_STRICT"}
    paths = [str(ROOT), str(TESTS)]
    if broken:
        site = tmp_path / "site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(NO_MLFLOW)
        paths.insert(0, str(site))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(extra)
    return env


def _run(args: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.mark.slow
def test_with_the_store_library_failing_to_import_every_entry_point_warns(tmp_path):
    (tmp_path / "program.py").write_text(PROGRAM)
    env = _env(tmp_path, broken=True)

    done = _run(["program.py"], tmp_path, env)

    assert 0 == done.returncode, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    out = done.stdout
    for passed in ("entered", "predicted 150", "run_id None", "model_uri None", "exited"):
        assert passed in out, out
    for passed in ("closed", "flushed", "the user's exception the user's own"):
        assert passed in out, out
    warnings = [line for line in done.stderr.splitlines() if "TrackingWarning" in line]
    assert warnings, done.stderr
    assert all("ImportError" in line for line in warnings), warnings


@pytest.mark.slow
def test_with_the_store_library_failing_to_import_the_cli_says_so_in_a_line(tmp_path):
    spool = tmp_path / "spool"
    # Something for sync to try: a run spooled while its server was away.
    away = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "program.py").write_text(PROGRAM.split("with Iris() as second")[0])
    healthy = _env(tmp_path, broken=False, TRACKED_SPOOL_DIR=str(spool), MLFLOW_TRACKING_URI=away)
    assert 0 == _run(["program.py"], tmp_path, healthy).returncode
    assert any(spool.iterdir())
    broken = _env(tmp_path, broken=True, TRACKED_SPOOL_DIR=str(spool), MLFLOW_TRACKING_URI=away)

    said = {}
    for command in (["status"], ["sync"], ["compare", "Iris"]):
        done = _run(["-m", "tracked", *command], tmp_path, broken)
        assert "Traceback" not in done.stderr, done.stderr
        said[command[0]] = (done.returncode, done.stdout + done.stderr)

    assert 0 == said["status"][0], said["status"]  # the spool is read without mlflow
    assert "1 runs" in said["status"][1]
    for command in ("sync", "compare"):
        status, text = said[command]
        assert 1 == status, text
        assert "ImportError: No module named 'mlflow'" in text, text


class _LibraryMissing(MemoryBackend):
    """A backend whose store library fails to import when a session opens."""

    def prepare(self) -> None:
        raise ImportError("No module named 'mlflow' (taken away by the test)")


def test_the_with_enter_warns_and_the_block_runs_when_the_store_library_fails(iris, monkeypatch):
    monkeypatch.delenv("TRACKED_STRICT")
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, backend=_LibraryMissing())

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TrackingWarning)
        with pipe:
            pipe.train(X_train, y_train)
            ran = True
        pipe.close()

    said = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert ran
    assert any("could not open the parent run: ImportError" in text for text in said), said
    assert (None, None) == (pipe.run_id, pipe.model_uri)


def test_in_strict_mode_the_with_enter_raises_a_tracking_error(iris):
    pipe = Iris()
    tracked.configure(pipe, backend=_LibraryMissing())

    with pytest.raises(TrackingError, match="could not open the parent run: ImportError"), pipe:
        pytest.fail("the block must not run in strict mode")


def test_an_entry_point_that_does_not_fail_asks_nothing_of_strictness(iris, memory, monkeypatch):
    """Strictness is resolved only when a failure is reported: a `with` block, `close()`,
    `run_id` and `model_uri` that succeed (tracked or not) never ask for it."""
    import tracked._pipeline

    def asked(instance):
        raise AssertionError("strictness was resolved with nothing to report")

    monkeypatch.setattr(tracked._pipeline, "strict_of", asked)
    X_train, _, y_train, _ = iris
    for tracking in (False, True):
        pipe = tracked.configure(Iris(), backend=memory, tracking=tracking)
        with pipe:
            pipe.train(X_train, y_train)
        pipe.close()
        assert (pipe.run_id is None) is (not tracking)
        pipe.model_uri  # noqa: B018  (read for its guard)
