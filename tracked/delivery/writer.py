"""The background writer: one thread per process that talks to the tracking stores.

Stage wrappers hand it jobs (a session and one of its entries) and return; the writer does
the slow part, in order: jobs are done one at a time, first in first out, so a run's records
reach the store in the order they were made. The queue holds at most ``TRACKED_QUEUE_SIZE``
jobs (default 256); when it is full the caller waits for room: back-pressure, never a
dropped record or unbounded memory.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("tracked")


QUEUE_SIZE_ENV = "TRACKED_QUEUE_SIZE"


DEFAULT_QUEUE_SIZE = 256


def _queue_size() -> int:
    try:
        return max(1, int(os.environ.get(QUEUE_SIZE_ENV, DEFAULT_QUEUE_SIZE)))
    except ValueError:
        return DEFAULT_QUEUE_SIZE


#: How long the writer waits at most for running stage calls to end before its next step.
POLITE_WAIT_S = 0.05


class Writer:
    """The writer thread and its queue, started on the first job.

    The writer is polite: it does its next step when no tracked stage call is running, or
    after waiting ``POLITE_WAIT_S`` for one to end. Python runs one thread at a time (the
    GIL): a writer busy with MLflow's Python code while a stage runs would take turns with
    it, and the stage would pay for the writes after all. Nobody waits for it when someone
    waits for the writer (``flush``, a ``with`` exit), or when its queue is half full.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=_queue_size())
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._unfinished = 0
        self._quiet = threading.Condition()
        self._stages_running = 0
        self._urgent = 0

    def stage_started(self) -> None:
        with self._quiet:
            self._stages_running += 1

    def stage_finished(self) -> None:
        with self._quiet:
            self._stages_running -= 1
            if self._stages_running == 0:
                self._quiet.notify_all()

    def pause_for_callers(self) -> None:
        """Called by the writer between steps: let running stage calls finish first."""
        if not self._stages_running or self._urgent:
            return
        if self._queue.qsize() * 2 >= self._queue.maxsize:
            return
        with self._quiet:
            self._quiet.wait_for(
                lambda: not self._stages_running or self._urgent, timeout=POLITE_WAIT_S
            )

    @contextmanager
    def urgent(self) -> Iterator[None]:
        """Someone waits for the writer: it writes without pausing meanwhile."""
        with self._quiet:
            self._urgent += 1
            self._quiet.notify_all()
        try:
            yield
        finally:
            with self._quiet:
                self._urgent -= 1

    def submit(self, job: Any) -> None:
        """Queue ``job`` (anything with ``run()``); waits while the queue is full."""
        with self._idle:
            self._unfinished += 1
        try:
            self._ensure_thread()
            self._queue.put(job)
        except BaseException:  # Ctrl-C while waiting for room: the job was never queued
            self._job_done()
            raise

    def _job_done(self) -> None:
        with self._idle:
            self._unfinished -= 1
            if self._unfinished == 0:
                self._idle.notify_all()

    def is_writer_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="tracked-writer", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            self.pause_for_callers()
            try:
                job.run()
            except BaseException:  # the writer must outlive any job
                logger.exception("tracked's writer failed on a job")
            finally:
                self._job_done()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued job is done; False if ``timeout`` seconds passed first."""
        if timeout is not None and timeout > threading.TIMEOUT_MAX:
            timeout = None  # TRACKED_EXIT_TIMEOUT=inf
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.urgent(), self._idle:
            while self._unfinished:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return self._unfinished


_writer = Writer()


def writer() -> Writer:
    return _writer


def _fresh_writer_after_fork() -> None:
    # The parent's thread does not exist in a forked child, and its queue is the parent's.
    global _writer
    _writer = Writer()


os.register_at_fork(after_in_child=_fresh_writer_after_fork)


EXIT_TIMEOUT_ENV = "TRACKED_EXIT_TIMEOUT"


DEFAULT_EXIT_TIMEOUT_S = 30.0


def wait_bound() -> float:
    """How long the library waits for its writes at most: ``TRACKED_EXIT_TIMEOUT`` seconds
    (default 30), the one bound of the ``with`` exit, ``close()``, ``tracked.flush()`` and
    interpreter exit. Whatever did not reach the store by then waits in the spool."""
    value = os.environ.get(EXIT_TIMEOUT_ENV)
    if not value:
        return DEFAULT_EXIT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds >= 0:  # "inf" waits as long as it takes, knowingly
        return seconds
    from tracked.records.report import notice

    notice(
        f"{EXIT_TIMEOUT_ENV}={value!r} is not a number of seconds; waiting at most "
        f"{DEFAULT_EXIT_TIMEOUT_S:g} s",
        key=f"env:{EXIT_TIMEOUT_ENV}:{value}",
    )
    return DEFAULT_EXIT_TIMEOUT_S


def flush(timeout: float | None = None) -> bool:
    """Wait until everything tracked so far in this process has been written.

    Records whose store is away count as written once they are in the spool. Tracking
    failures collected meanwhile are reported now (raised, in strict mode).

    Args:
        timeout: seconds to wait at most; None waits ``TRACKED_EXIT_TIMEOUT`` seconds (default
            30), after which the records still waiting stay in the spool for ``tracked sync``
            (one ``TrackingWarning`` says how many).

    Returns:
        True when everything was written, False when the wait ended first.
    """
    from tracked.delivery.session import deliver_all, settle_all

    if timeout is None:
        deadline = time.monotonic() + wait_bound()
        drained = settle_all(deadline) and _writer.flush(max(0.0, deadline - time.monotonic()))
    else:
        drained = _writer.flush(timeout)
    deliver_all()
    return drained


def _at_exit() -> None:
    """End the runs left open and wait for the writer, at most ``TRACKED_EXIT_TIMEOUT``.

    Never raises: a Ctrl-C here ends the wait at once, and the records still waiting stay
    in the spool (an exit handler that raised would print "Exception ignored in atexit").
    """
    from tracked.delivery.session import end_open_sessions, give_up_all, settle_all

    deadline = time.monotonic() + wait_bound()
    try:
        end_open_sessions(deadline=deadline)
        # Sessions whose wait ended already (a Ctrl-C in a `with` exit) are not waited for
        # again: their records are in the spool.
        settle_all(deadline, at_exit=True)
    except KeyboardInterrupt:
        give_up_all("the wait for it was interrupted (Ctrl-C)", at_exit=True)


atexit.register(_at_exit)


def run_first_at_exit() -> None:
    """Make the exit flush run before exit handlers registered since (mlflow's closes its
    store connections): handlers run last registered, first run."""
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)
