"""Each problem is shown once, in one clean line, pointing at the user's own line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tracked
from tracked import TrackedPipeline, TrackingWarning
from tracked.core.report import clean, describe

HERE = Path(__file__).resolve()


class NoOperator(TrackedPipeline):
    experiment = "messages"
    strict = False

    def step(self, X, y=None, stage="transformer"):
        return X  # assigns no self.operator: a notice


def read_only_uri(folder: Path) -> str:
    """A sqlite store that exists and refuses every write (also to root, unlike chmod)."""
    import mlflow

    path = folder / "ro.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return f"sqlite:///file:{path}?mode=ro&uri=true"


def test_a_warning_points_at_the_user_s_stage_call(memory):
    pipe = NoOperator()
    tracked.configure(pipe, backend=memory)
    with pytest.warns(TrackingWarning, match="assigned no") as caught:
        line = sys._getframe().f_lineno + 1
        pipe.step([[1.0]])
    pipe.close()
    (warning,) = [w for w in caught if "assigned no" in str(w.message)]
    assert (str(HERE), line) == (str(Path(warning.filename).resolve()), warning.lineno)


def test_a_store_failure_found_by_the_writer_points_at_the_user_s_line(tmp_path, spool_dir):
    pipe = NoOperator()
    tracked.configure(pipe, tracking_uri=read_only_uri(tmp_path))
    with pytest.warns(TrackingWarning) as caught:
        pipe.step([[1.0]])
        pipe.close()
    away = [w for w in caught if "is away" in str(w.message)]
    assert away, [str(w.message) for w in caught]
    for warning in away:
        assert str(HERE) == str(Path(warning.filename).resolve()), warning.filename


def test_a_store_failure_s_details_are_at_debug_on_the_tracked_logger(tmp_path, spool_dir, caplog):
    pipe = NoOperator()
    tracked.configure(pipe, tracking_uri=read_only_uri(tmp_path))
    caplog.set_level(logging.DEBUG, logger="tracked")
    with pytest.warns(TrackingWarning):
        pipe.step([[1.0]])
        pipe.close()
    debug = [r for r in caplog.records if r.name == "tracked" and r.levelno == logging.DEBUG]
    assert any("INSERT INTO" in r.getMessage() for r in debug)
    # What MLflow and SQLAlchemy logged during tracked's calls is among the details, not shown.
    shown = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any("INSERT INTO" in r.getMessage() for r in shown), [r.getMessage() for r in shown]


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import tracked
    from pipelines import Iris
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    pipe = tracked.configure(Iris(), tracking_uri={uri!r})
    with pipe:
        pipe.train(X, y)
    print("done", pipe.run_id)
    """
)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_read_only_store_gives_one_clean_line_on_stderr(tmp_path, spool_dir):
    script = tmp_path / "work.py"
    uri = read_only_uri(tmp_path)
    script.write_text(SCRIPT.format(tests=str(HERE.parent), uri=uri))
    env = {**os.environ, "TRACKED_STRICT": "0"}
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=150,
    )
    assert 0 == done.returncode, done.stderr
    assert "done local-" in done.stdout
    lines = [line for line in done.stderr.splitlines() if "INFO mlflow" not in line]
    for forbidden in ("Traceback", "INSERT INTO", "[SQL:", "sqlalche.me"):
        assert forbidden not in done.stderr, done.stderr
    away = [line for line in lines if "is away" in line]
    assert 1 == len(away), done.stderr
    # Said at the user's line that was running when the writer's report came back: the
    # script's `with`, or the stage call in the user's class (tests/pipelines.py), never tracked's.
    assert away[0].split(":")[0] in {str(script), str(HERE.parent / "pipelines.py")}, away[0]
    # The warning's two lines (message, the user's source line) and nothing else.
    assert len(lines) <= 2, done.stderr


def test_a_notice_is_shown_once_not_also_by_the_logger(tmp_path):
    script = tmp_path / "notice.py"
    script.write_text(
        textwrap.dedent(
            """
            from tracked import TrackedPipeline
            from tracked.testing import MemoryBackend

            class P(TrackedPipeline):
                backend = MemoryBackend()
                def step(self, X, y=None, stage="transformer"):
                    return X

            pipe = P()
            pipe.step([[1.0]])
            pipe.step([[2.0]])
            pipe.close()
            """
        )
    )
    env = {**os.environ, "TRACKED_STRICT": "0"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    assert 0 == done.returncode, done.stderr
    assert 1 == done.stderr.count("assigned no `self.operator`"), done.stderr


def test_clean_cuts_foreign_details_to_one_line():
    text = (
        "(sqlite3.OperationalError) attempt to write a readonly database\n"
        "[SQL: INSERT INTO runs (run_uuid, name) VALUES (?, ?)]\n"
        "[parameters: ('abc', 'x')]\n"
        "(Background on this error at: https://sqlalche.me/e/21/e3q8)"
    )
    assert "(sqlite3.OperationalError) attempt to write a readonly database" == clean(text)
    nested = RuntimeError("failed\nTraceback (most recent call last):\n  File 'x', line 1\nboom")
    assert "RuntimeError: failed" == describe(nested)
    assert "http://***@host/x: no" == clean("http://user:pw@host/x:\n  no")


def test_a_warning_from_a_with_exit_points_at_the_with(tmp_path, spool_dir):
    pipe = NoOperator()
    tracked.configure(pipe, tracking_uri=read_only_uri(tmp_path))
    with pytest.warns(TrackingWarning) as caught:
        line = sys._getframe().f_lineno + 1
        with pipe:
            pass  # the parent run's creation fails in the writer; reported at the exit
    away = [w for w in caught if "is away" in str(w.message)]
    assert away, [str(w.message) for w in caught]
    assert str(HERE) == str(Path(away[0].filename).resolve())
    assert line <= away[0].lineno <= line + 1
