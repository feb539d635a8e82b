"""The process runtime: flush, interpreter exit and fork hooks, installed with the first session."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from tracked.backends.base import when_store_library_loads
from tracked.core.config import env_strict, wait_bound
from tracked.core.report import guarded_entry
from tracked.core.values import FINISHED, KILLED, status_for
from tracked.delivery.registry import REGISTRY
from tracked.delivery.writer import fresh_writer, writer

if TYPE_CHECKING:
    from tracked.delivery.session import Session


def deliver_all() -> None:
    """Report what the writer collected for every session, on the calling thread."""
    for session in list(REGISTRY.with_reports):
        session.deliver()


def _interactive() -> bool:
    """A REPL (``python -i``, ``code.interact``) or an IPython shell or notebook kernel."""
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return True
    return _ipython() is not None


def _ipython() -> Any:
    module = sys.modules.get("IPython")
    get = getattr(module, "get_ipython", None)
    try:
        return get() if callable(get) else None
    except Exception:
        return None


def _exit_status(session: Session) -> str:
    """How a run left open ends at interpreter exit.

    ``sys.last_type`` is set by the interpreter when an exception ended the program, and by
    a REPL or IPython for every exception it displayed and survived: there, a displayed
    exception is not the cause of the exit, so runs end FINISHED, except those a Ctrl-C
    interrupted (a stage call of theirs, or the notebook cell that opened them): KILLED.
    """
    if _interactive():
        return KILLED if session.interrupted else FINISHED
    return status_for(getattr(sys, "last_type", None))


def end_open_sessions(status: str | None = None, deadline: float | None = None) -> None:
    """End every parent run this process opened and left open (at interpreter exit),
    waiting for the writer until ``deadline`` (``time.monotonic()``) at most."""
    for session in list(REGISTRY.open):
        if session.pid != os.getpid():
            continue
        # Strict mode at exit: there is nowhere left to raise to.
        with contextlib.suppress(Exception):
            session.end(status or _exit_status(session), may_raise=False, deadline=deadline)


def end_done_with(*, flushing: bool = False, status: str = FINISHED) -> None:
    """End the parent runs of instances that were garbage-collected (queued by their
    finalizers), without waiting for the writer; then the clone group runs whose clones are
    all done and whose origin is gone (``flushing``: ``tracked.flush()`` or exit, whether
    or not it is)."""
    while REGISTRY.abandoned:
        try:
            context = REGISTRY.abandoned.popleft()
        except IndexError:  # another thread took the last one
            break
        context.close(status, wait=False)
    for group in list(REGISTRY.clone_groups):
        group.end_if_done(flushing=flushing, status=status)


class _Cells:
    """IPython's cells as they run: which one is running, and whether a Ctrl-C ended it."""

    def __init__(self) -> None:
        self.count = 0
        self.watched = False

    def started(self, *args: Any) -> None:
        self.count += 1

    def finished(self, result: Any = None) -> None:
        error = getattr(result, "error_in_exec", None)
        if isinstance(error, KeyboardInterrupt):
            for session in list(REGISTRY.open):
                if session.cell == self.count:
                    session.interrupted = True


cells = _Cells()


def watch_cells() -> None:
    """Follow IPython's cells (once, when the first run opens in an IPython shell)."""
    if cells.watched:
        return
    shell = _ipython()
    if shell is None:
        return
    cells.watched = True
    with contextlib.suppress(Exception):
        shell.events.register("pre_run_cell", cells.started)
        shell.events.register("post_run_cell", cells.finished)


def settle_all(deadline: float, *, at_exit: bool = False) -> bool:
    """Wait until the writer is done with every session of this process, until ``deadline``
    at most; the entries of sessions it has not finished by then stay in the spool."""
    done = True
    for session in list(REGISTRY.busy):
        if session.pid != os.getpid() or (session.gave_up and session.spool is not None):
            continue  # a wait that ended already (bound, Ctrl-C): its records are in the spool
        done = session.settle(deadline, at_exit=at_exit) and done
    return done


def give_up_all(why: str, *, at_exit: bool = False) -> None:
    """Stop waiting for every session of this process (see ``Session.give_up``)."""
    for session in list(REGISTRY.busy):
        if session.pid == os.getpid():
            with contextlib.suppress(Exception):
                session.give_up(why, at_exit=at_exit)


#: How long a fork waits for the writer to create the runs the child will log under.
FORK_DRAIN_TIMEOUT_S = 30.0


def _drain_before_fork() -> None:
    # A forked child should find the parent's runs created (their store ids known). Bounded:
    # a hanging store must not hang every fork; never from the writer thread itself.
    if REGISTRY.open and not writer().is_writer_thread():
        writer().flush(FORK_DRAIN_TIMEOUT_S)


def _sessions_forked() -> None:
    for session in list(REGISTRY.open):
        session.forked = True


def _sessions_of_forked_child() -> None:
    # The child's stage calls log under the parent's open runs as copies do: they never end
    # those runs, and spool into folders of their own.
    fresh_writer()
    sessions = REGISTRY.forget()
    for session in sessions:
        session.fork_copy()
        REGISTRY.open.add(session)
    if sessions and "multiprocessing" in sys.modules:
        # multiprocessing's forked workers leave through os._exit, without atexit handlers.
        from multiprocessing import util

        util.Finalize(None, _at_exit, exitpriority=10)


def flush(timeout: float | None = None) -> bool:
    """``tracked.flush`` once the delivery layer is loaded (see ``tracked/_flush.py``)."""
    return guarded_entry("flush", lambda: _flush(timeout), strict=env_strict(), default=False)


def _flush(timeout: float | None) -> bool:
    for session in list(REGISTRY.open):  # open series end here: their records go now
        if session.pid == os.getpid() and session.usable:
            session.finish_pending(may_raise=True)
    end_done_with(flushing=True)
    if timeout is None:
        deadline = time.monotonic() + wait_bound()
        drained = settle_all(deadline) and writer().flush(max(0.0, deadline - time.monotonic()))
    else:
        drained = writer().flush(timeout)
    deliver_all()
    return drained


def _at_exit() -> None:
    """End the runs left open and wait for the writer, at most ``TRACKED_EXIT_TIMEOUT``.

    Never raises: a Ctrl-C here ends the wait at once, and the records still waiting stay
    in the spool (an exit handler that raised would print "Exception ignored in atexit").
    """
    deadline = time.monotonic() + wait_bound()
    try:
        end_open_sessions(deadline=deadline)
        with contextlib.suppress(Exception):  # nowhere left to raise to
            end_done_with(flushing=True)
        # Sessions whose wait ended already (a Ctrl-C in a `with` exit) are not waited for
        # again: their records are in the spool.
        settle_all(deadline, at_exit=True)
    except KeyboardInterrupt:
        give_up_all("the wait for it was interrupted (Ctrl-C)", at_exit=True)


def run_first_at_exit() -> None:
    """Make the exit flush run before exit handlers registered since (mlflow's closes its
    store connections): handlers run last registered, first run."""
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Install the process hooks, once, when the first session opens (a bare ``import
    tracked`` changes nothing in the process): the exit flush, and the fork handlers that
    let a forked child log under the parent's runs with a writer of its own."""
    global _installed
    with _install_lock:
        if _installed:
            return
        atexit.register(_at_exit)
        os.register_at_fork(
            before=_drain_before_fork,
            after_in_parent=_sessions_forked,
            after_in_child=_sessions_of_forked_child,
        )
        # mlflow registers exit handlers of its own when it is imported (closing its store
        # connections): the exit flush must run before them, so it moves behind them.
        when_store_library_loads(run_first_at_exit)
        _installed = True
