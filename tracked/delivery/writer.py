"""The background writer: one thread per process that talks to the tracking stores.

Stage wrappers hand it jobs (a session and one of its entries) and return; the writer does
the slow part, in order: jobs are done one at a time, first in first out, so a run's records
reach the store in the order they were made. The queue holds at most ``TRACKED_QUEUE_SIZE``
jobs (default 256); when it is full the caller waits for room: back-pressure, never a
dropped record or unbounded memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tracked.core.config import QUEUE_SIZE_ENV, env_text

logger = logging.getLogger("tracked")


DEFAULT_QUEUE_SIZE = 256


def _queue_size() -> int:
    try:
        return max(1, int(env_text(QUEUE_SIZE_ENV) or DEFAULT_QUEUE_SIZE))
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

    def expedite(self, session: Any) -> None:
        """Move ``session``'s queued jobs, in their order, to the front of the queue.

        Someone waits for the run id: a search's refit should not wait
        behind the records of every fold before it. Each session's jobs keep their order,
        and a session's runs nest only under its own runs or under runs that already have a
        store id, so no job depends on another session's job still queued.
        """
        with self._queue.mutex:
            jobs = self._queue.queue
            mine = [job for job in jobs if getattr(job, "session", None) is session]
            if not mine:
                return
            rest = [job for job in jobs if getattr(job, "session", None) is not session]
            jobs.clear()
            jobs.extend(mine)
            jobs.extend(rest)

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


_writer = Writer()


def writer() -> Writer:
    return _writer


def fresh_writer() -> None:
    """In a forked child: the parent's thread does not exist there, and its queue is the
    parent's."""
    global _writer
    _writer = Writer()
