"""The parent-run lifecycle of one pipeline instance, and the state that travels with it."""

from __future__ import annotations

import enum
import os
import threading
import time
from typing import Any, Protocol

from tracked.backends.base import Backend, capabilities
from tracked.core.config import wait_bound
from tracked.core.names import LOCAL_PREFIX
from tracked.core.params import params_text
from tracked.core.report import notice
from tracked.core.settings import Settings
from tracked.core.text import mask_secrets, masked, shorten
from tracked.core.values import FINISHED, Metric, now_ms
from tracked.delivery import runtime
from tracked.delivery.outbox import Outbox
from tracked.delivery.registry import REGISTRY
from tracked.delivery.reports import Reports
from tracked.delivery.sink import Sink
from tracked.delivery.waiting import Waiting
from tracked.spool.entries import (
    Detach,
    EndRun,
    Entry,
    StartRun,
)


class Lifecycle(enum.Enum):
    """Where a session's parent run is: each session goes through these once, in order."""

    NEW = "new"  #: made; the parent run opens with the first stage call (``start``)
    OPEN = "open"  #: opened: stage records go under it
    ENDED = "ended"  #: ended (``end``): the next stage call opens a new session


class Composition(Protocol):
    """What a session needs of the recording layer's composer: how many composed models it
    made, and which stage kinds were fitted."""

    count: int

    @property
    def fitted_kinds(self) -> set[str]: ...


def default_run_name(instance: object) -> str:
    """Class name plus the hyperparameters that differ from their defaults.

    Two runs of one class with other settings then differ at a glance in the MLflow UI.
    """
    inner = params_text(instance)
    name = type(instance).__name__
    return shorten(f"{name}({inner})", 250) if inner else name


def _replay_state() -> Any:
    # The writer's modules are imported with the first session, not with tracked.
    from tracked.spool.replay import ReplayState

    return ReplayState()


class Session(Waiting, Outbox, Sink, Reports):
    """One parent run: opened once, given stage records, ended once.

    The caller's thread only builds entries: each goes to the session's spool folder and to
    the background writer (or, ``synchronous``, is written at once). What the writer could
    not write is reported on the caller's thread at the next stage call, at ``end`` and at
    ``tracked.flush()``: tracking failures surface where the user is, never in the writer.

    A session whose store is away keeps its records in the spool (``tracked sync`` writes
    them later); one whose parent run was refused (a deleted experiment) records nothing more.
    """

    def __init__(
        self,
        *,
        backend: Backend | None,
        experiment: str | None,
        run_name: str,
        params: dict[str, str],
        tags: dict[str, str],
        settings: Settings,
        run_id: str | None = None,
        outer_run_id: str | None = None,
        composer: Composition,
        keep_aside: bool = False,
    ) -> None:
        self.backend = backend
        #: What the backend offers beyond the required calls, read once.
        self.capabilities = capabilities(backend)
        #: None: the experiment of ``outer_run_id``, the run this parent run nests under.
        self.experiment = experiment
        self.outer_run_id = outer_run_id
        self.run_name = mask_secrets(run_name)  # it goes to the spool and the store as is
        self.params = {key: masked(key, value) for key, value in params.items()}
        self.tags = {key: masked(key, value) for key, value in tags.items()}
        #: What the instance configured, when the run opened (``Settings.of``).
        self.settings = settings
        #: One of a sweep's configurations: the writer keeps the stages' pictures, files,
        #: datasets and models aside for the sweep (``tracked.spool.aside``).
        self.keep_aside = keep_aside
        self.strict = settings.strict
        self._take_identity(run_id)
        #: Its backend failed for good (or there is none): nothing more is recorded.
        self.broken = backend is None
        self.lifecycle = Lifecycle.NEW
        # A forked worker (multiprocessing's fork pools) ends through os._exit, without exit
        # handlers or a writer that finishes: its records are written before its calls return.
        self.synchronous = (
            settings.synchronous or REGISTRY.forked_child or self.capabilities.synchronous
        )
        #: A process was forked while this session was open (its stages are not this one's).
        self.forked = False
        #: A Ctrl-C ended one of its stage calls, or the notebook cell that opened it: in an
        #: interactive session, the run ends KILLED at exit (the others FINISHED).
        self.interrupted = False
        #: The notebook cell (IPython's count of cells run) in which the run opened.
        self.cell = runtime.cells.count
        #: The fitted steps this run composes its servable model from (the recording
        #: layer's ``Composer``).
        self.composer = composer
        self.total_duration_s = 0.0
        #: Per stage, the id of the operator whose params were last logged: an operator made
        #: before the session (in ``__init__``) gets its params on its first call's run.
        self.params_logged: dict[str, int] = {}
        #: The store is away: entries stay in the spool for ``tracked sync``.
        self.spooling = False
        #: The parent run was refused by the store (a deleted experiment).
        self.refused = False
        self._created = threading.Event()
        self._steps: dict[str, int] = {}
        self.state = _replay_state()
        self._init_parts()

    def _take_identity(self, parent: str | None) -> None:
        """A fresh local id; the parent run of this session's stage runs: its own, or
        ``parent`` (the run it logs under as a copy, which someone else opened and ends)."""
        self.owned = parent is None
        #: A forked child inherits this object; only the process that opened the run ends it.
        self.pid = os.getpid()
        self.local_id = new_local_id()
        self.parent_ref = self.local_id if parent is None else parent

    def _init_parts(self) -> None:
        self._init_outbox()
        self._init_sink()
        self._init_reports()

    @property
    def started(self) -> bool:
        """The parent run was opened (its first entry handed on); true after its end too."""
        return self.lifecycle is not Lifecycle.NEW

    @property
    def ended(self) -> bool:
        return self.lifecycle is Lifecycle.ENDED

    @property
    def usable(self) -> bool:
        return not self.broken and not self.ended

    def start(self) -> None:
        """Open the parent run: its first entry goes to the writer (once; thread-safe)."""
        with self._lock:
            if self.lifecycle is not Lifecycle.NEW or self.broken:
                return
            self._prepare_backend()  # raises before the run counts as open: retried next call
            self.lifecycle = Lifecycle.OPEN
            REGISTRY.open.add(self)
            runtime.install()
            self.cell = runtime.cells.count
            runtime.watch_cells()
            self._open_spool()
            if self.owned:
                start = StartRun(
                    run=self.local_id,
                    parent=self.outer_run_id,
                    experiment=self.experiment,
                    run_name=self.run_name,
                    tags=self.tags,
                    params=self.params,
                    start_ms=now_ms(),
                )
                self._submit(start, None)
            else:
                self._created.set()
                if self.parent_ref.startswith(LOCAL_PREFIX) and self.spool is not None:
                    # A copy of a run that is itself only in the spool: so are its records
                    # (`tracked sync` links them once it has created that run).
                    self.spooling = True
        self.deliver()

    def fork_copy(self) -> None:
        """Make this (a forked child's inherited) session a copy logging under the run."""
        self._take_identity(self.run_id or self.parent_ref)
        for inherited in (self.spool, self._dropped_spool):
            if inherited is not None:
                inherited.forget()  # the parent's folders: the parent's lock and files
        # Every lock, queue count and folder is made anew (the parent's may be held by a
        # thread that does not exist here); what the runs are called stays known.
        self._init_parts()
        # The composed models the parent logged stay known: the inherited composer verifies
        # the child's prediction passes against them.
        self.state = type(self.state)(runs=dict(self.state.runs), composed=set(self.state.composed))
        self.synchronous = True  # the worker may end through os._exit any moment
        self._open_spool()

    # -- on the writer's thread ----------------------------------------------------------

    # -- back on the caller's thread --------------------------------------------------------

    def end(
        self,
        status: str = FINISHED,
        *,
        may_raise: bool = True,
        deadline: float | None = None,
        wait: bool = True,
    ) -> None:
        """End the parent run with ``status`` and wait for its records to be written, until
        ``deadline`` (``time.monotonic()``; default: ``TRACKED_EXIT_TIMEOUT`` from now).

        ``wait=False`` only hands the end on (an instance that was garbage-collected: the
        next ``tracked.flush()`` or the exit waits, and reports what failed).
        A copy's session never ends the run it logs under; it only says it is done.
        """
        failed: BaseException | None = None
        with self._lock:
            if self.lifecycle is Lifecycle.ENDED:
                return
            if self.usable and self.pid == os.getpid():
                try:  # open series first: their last records go before the run's end
                    self.finish_pending(may_raise=may_raise)
                except Exception as exc:  # strict mode: raised once the run has ended
                    failed = exc
            self.lifecycle = Lifecycle.ENDED
            REGISTRY.open.discard(self)
            if not self.started or self.pid != os.getpid():
                return
            if self.owned and not self.broken:
                if self.composer.fitted_kinds == {"transformer"}:
                    # Stages of forked workers are child runs of this run, but their fitted
                    # objects live in the workers: this process composes only its own.
                    where = "in this process" if self.forked else "in it"
                    notice(
                        f"parent run {self.run_name!r} ends without a composed `pipeline` model: "
                        f"no estimator stage was fitted {where}",
                        key=f"no-composed:{self.local_id}",
                        warn=False,
                    )
                total = Metric(key="total_stage_duration_s", value=self.total_duration_s)
                entry: Entry = EndRun(
                    run=self.local_id, status=status, end_ms=now_ms(), metrics=(total,)
                )
            else:
                entry = Detach()
            self._note_spool_cap()
            self._submit(entry, None)
        if not wait:
            if failed is not None:
                raise failed
            return
        if deadline is None:
            deadline = time.monotonic() + wait_bound()
        try:
            self.settle(deadline)
        except KeyboardInterrupt:
            self.deliver(may_raise=False)
            raise
        self.deliver(may_raise=may_raise)
        if failed is not None:
            raise failed


def new_local_id() -> str:
    """``local-`` and 32 random hex digits: a run id that no store gave."""
    return f"{LOCAL_PREFIX}{os.urandom(16).hex()}"


def evaluation_metrics(values: dict[str, float], prefix: str, step: int) -> tuple[Metric, ...]:
    stamp = now_ms()
    return tuple(
        Metric(key=f"{prefix}{key}", value=value, step=step, timestamp=stamp)
        for key, value in values.items()
    )
