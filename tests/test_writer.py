"""The background writer: off the caller's thread, in order, bounded, flushed, reported."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from pipelines import CHILD_NAMES, Iris, run_iris, tracked_pass

import tracked
from tracked import TrackingError, TrackingWarning
from tracked.delivery.writer import Writer
from tracked.testing import MemoryBackend


class SlowBackend(MemoryBackend):
    """A store that takes ``delay`` seconds to create a run, through the writer."""

    def __init__(self, delay: float = 0.2) -> None:
        super().__init__(synchronous=False)
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def start_run(self, **kwargs):
        self.gate.wait(30)
        time.sleep(self.delay)
        return super().start_run(**kwargs)


class FailingLogBackend(MemoryBackend):
    """Refuses every param and metric, as a store refuses bad data (not a connection)."""

    def __init__(self) -> None:
        super().__init__(synchronous=False)

    def log(self, run_id, **kwargs):
        raise ValueError("refused by the store")


def test_a_stage_call_returns_before_its_records_are_written(iris):
    backend = SlowBackend(delay=0.5)
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, backend=backend)
    started = time.perf_counter()
    pipe.preprocessing(X_train, y_train)
    returned = time.perf_counter() - started
    # The parent run and the child run each take 0.5 s to create: neither was waited for.
    assert returned < 0.5
    assert [] == backend.parents()
    assert tracked.flush(timeout=30)
    [parent] = backend.parents()
    assert ["preprocessing:fit"] == [c.name for c in backend.children(parent.run_id)]
    pipe.close()


def test_the_with_exit_waits_for_every_record_of_the_run(iris):
    backend = SlowBackend(delay=0.05)
    pipe, _ = run_iris(iris, backend=backend)
    [parent] = backend.parents()
    assert "FINISHED" == parent.status
    assert 6 == len(backend.children(parent.run_id))
    assert pipe.run_id == parent.run_id


def test_records_reach_the_store_in_the_order_they_were_made(iris):
    backend = SlowBackend(delay=0.0)
    pipe, _ = run_iris(iris, backend=backend)
    names = [c.name for c in backend.children(pipe.run_id)]
    assert CHILD_NAMES == names
    ids = [int(c.run_id.removeprefix("mem-")) for c in backend.children(pipe.run_id)]
    assert sorted(ids) == ids


def test_synchronous_writes_before_the_call_returns(iris):
    backend = SlowBackend(delay=0.0)
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, backend=backend)
    tracked.configure(pipe, synchronous=True)
    pipe.preprocessing(X_train, y_train)
    [parent] = backend.parents()  # no flush: already written
    assert ["preprocessing:fit"] == [c.name for c in backend.children(parent.run_id)]
    pipe.close()


def test_flush_with_a_timeout_says_whether_everything_was_written(iris):
    backend = SlowBackend(delay=0.0)
    backend.gate.clear()  # the store hangs until the gate opens
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, backend=backend)
    pipe.preprocessing(X_train, y_train)
    assert tracked.flush(timeout=0.2) is False
    backend.gate.set()
    assert tracked.flush(timeout=30) is True
    pipe.close()


def test_a_full_queue_makes_the_caller_wait_and_drops_nothing():
    writer = Writer()
    writer._queue.maxsize = 2
    gate = threading.Event()
    done: list[int] = []

    class Job:
        def __init__(self, n):
            self.n = n

        def run(self):
            gate.wait(30)
            done.append(self.n)

    for n in range(3):  # one running (blocked), two queued: the queue is full
        writer.submit(Job(n))
    fourth = threading.Thread(target=writer.submit, args=(Job(3),))
    fourth.start()
    fourth.join(0.3)
    assert fourth.is_alive()  # back-pressure: the caller waits for room
    gate.set()
    fourth.join(30)
    assert writer.flush(timeout=30)
    assert [0, 1, 2, 3] == done


def test_the_logged_model_is_the_operator_as_the_stage_left_it(iris):
    backend = SlowBackend(delay=0.0)
    backend.gate.clear()  # nothing is written until the operator has changed
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, backend=backend)
    with pipe:
        X = pipe.preprocessing(X_train, y_train)
        X = pipe.reduction(X, y_train)
        pipe.classification(X, y_train)
        fitted = pipe.classifier.coef_.copy()
        pipe.classifier.coef_[:] = 0.0  # changed in place after the stage returned
        backend.gate.set()
    [classification] = [c for c in backend.children(pipe.run_id) if c.name.startswith("class")]
    np.testing.assert_array_equal(fitted, classification.models["model"].coef_)


def test_a_writer_failure_is_raised_in_strict_mode_at_the_next_sync_point(iris):
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, backend=FailingLogBackend())
    pipe.preprocessing(X_train, y_train)
    with pytest.raises(TrackingError, match="refused by the store") as info:
        tracked.flush()
    # One error names every failure collected: the parent's params and the stage's.
    assert "log the pipeline's params" in str(info.value)
    assert "log params and metrics of stage 'preprocessing'" in str(info.value)
    with pytest.raises(TrackingError, match="log the total stage duration"):
        pipe.close()


def test_a_writer_failure_is_a_warning_on_the_callers_thread(iris, monkeypatch):
    monkeypatch.setenv("TRACKED_STRICT", "0")
    pipe = Iris()
    tracked.configure(pipe, backend=FailingLogBackend())
    with pytest.warns(TrackingWarning, match="refused by the store") as caught:
        predictions = tracked_pass(pipe, iris)
    assert all(w.filename != threading.__file__ for w in caught)
    untracked = Iris()
    untracked.tracking = False
    X_train, X_test, y_train, _ = iris
    untracked.train(X_train, y_train)
    np.testing.assert_array_equal(untracked.predict(X_test), predictions)


def test_a_healthy_run_leaves_the_spool_empty(tracking_uri, iris, spool_dir):
    run_iris(iris, tracking_uri=tracking_uri)
    assert [] == list(spool_dir.iterdir())


def test_a_full_queue_and_a_failing_store_do_not_deadlock(iris, monkeypatch):
    # The writer reports failures while the caller waits for room in a one-job queue.
    monkeypatch.setenv("TRACKED_STRICT", "0")
    small = Writer()
    small._queue.maxsize = 1
    monkeypatch.setattr(tracked.delivery.writer, "_writer", small)
    pipe = Iris()
    tracked.configure(pipe, backend=FailingLogBackend())
    done = threading.Event()

    def work():
        with pytest.warns(TrackingWarning):
            tracked_pass(pipe, iris)
        done.set()

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    assert done.wait(60), "the stage calls hung"


def test_ctrl_c_while_waiting_for_room_leaves_nothing_waiting_forever(iris, monkeypatch):
    writer = Writer()
    monkeypatch.setattr(tracked.delivery.writer, "_writer", writer)
    X_train, _, y_train, _ = iris
    pipe = Iris()
    tracked.configure(pipe, backend=SlowBackend(delay=0.0))
    pipe.preprocessing(X_train, y_train)

    def interrupted(job, block=True, timeout=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer._queue, "put", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipe.reduction(X_train, y_train)
    monkeypatch.undo()
    monkeypatch.setattr(tracked.delivery.writer, "_writer", writer)
    assert writer.flush(timeout=30)
    assert pipe._last_session().wait(timeout=30)
    pipe.close()


def test_the_writer_holds_back_while_a_stage_runs_unless_someone_waits():
    writer = Writer()
    done = threading.Event()

    class Job:
        def run(self):
            done.set()

    writer.stage_started()
    writer.submit(Job())
    assert not done.wait(0.02)  # a stage is running: the writer waits for it (up to 50 ms)
    writer.stage_finished()
    assert done.wait(5)

    done.clear()
    writer.stage_started()  # a stage that runs for long: a flush does not wait behind it
    writer.submit(Job())
    started = time.perf_counter()
    assert writer.flush(timeout=5)
    assert time.perf_counter() - started < 1
    writer.stage_finished()


def test_the_queue_size_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRACKED_QUEUE_SIZE", "3")
    assert 3 == Writer()._queue.maxsize
    monkeypatch.setenv("TRACKED_QUEUE_SIZE", "many")
    assert tracked.delivery.writer.DEFAULT_QUEUE_SIZE == Writer()._queue.maxsize


EXIT_SCRIPT = """
import tracked
import sys, time
from sklearn.datasets import load_iris
from pipelines import Iris
from tracked.testing import MemoryBackend

class Hanging(MemoryBackend):
    def start_run(self, **kwargs):
        time.sleep(60)  # a store that does not answer
        return super().start_run(**kwargs)

X, y = load_iris(return_X_y=True)
pipe = Iris()
tracked.configure(pipe, backend=Hanging(synchronous=False))
pipe.preprocessing(X, y)  # no `with`, no close(): the exit ends the run
print("exiting", flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_exit_timeout_bounds_how_long_exit_waits_for_the_writer(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "exit.py"
    script.write_text(EXIT_SCRIPT)
    tests = Path(__file__).parent
    # The checkout's tracked, not whichever one is installed.
    path = f"{tests}{os.pathsep}{tests.parent}"
    env = {**os.environ, "PYTHONPATH": path, "TRACKED_EXIT_TIMEOUT": "2"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=100
    )
    seconds = time.perf_counter() - started
    assert 0 == done.returncode, done.stderr
    assert "exiting" in done.stdout
    assert seconds < 30  # the store would have held it for 60 s per run
    # The backend keeps no spool: the warning says what is not written, and that it is lost.
    assert "records of run 'Iris' are not written yet" in done.stderr
    assert "lost if the process ends" in done.stderr
