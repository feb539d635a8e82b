"""The parent-run lifecycle of one pipeline instance, and the state that travels with it."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from tracked.backends.base import Backend, capabilities
from tracked.delivery import runtime
from tracked.delivery.registry import REGISTRY
from tracked.delivery.writer import writer
from tracked.records.config import EXIT_TIMEOUT_ENV, wait_bound
from tracked.records.names import COPY_TAG, LOCAL_PREFIX, PARENT_STAGE_TAG
from tracked.records.params import params_text
from tracked.records.report import describe, notice, report_failure
from tracked.records.text import mask_secrets, mask_uri, masked, shorten
from tracked.records.values import FINISHED, KILLED, Metric, StageRecord, now_ms
from tracked.spool.records import (
    Detach,
    EndRun,
    Entry,
    Header,
    NestedRun,
    StageEntry,
    StagePayload,
    StartRun,
)

if TYPE_CHECKING:
    from tracked.spool.folder import SessionSpool
    from tracked.spool.records import Progress
    from tracked.spool.replay import Replayer


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


class Session:
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
        strict: bool,
        run_id: str | None = None,
        outer_run_id: str | None = None,
        registered_model_name: str | None = None,
        serialization_format: str = "skops",
        synchronous: bool = False,
        trusted_types: tuple[str, ...] = (),
        composer: Composition,
    ) -> None:
        self.backend = backend
        #: None: the experiment of ``outer_run_id``, the run this parent run nests under.
        self.experiment = experiment
        self.outer_run_id = outer_run_id
        self.run_name = mask_secrets(run_name)  # it goes to the spool and the store as is
        self.params = {key: masked(key, value) for key, value in params.items()}
        self.tags = {key: masked(key, value) for key, value in tags.items()}
        self.strict = strict
        #: False for a copy that logs under a parent run someone else opened and will end.
        self.owned = run_id is None
        #: A forked child inherits this object; only the process that opened the run ends it.
        self.pid = os.getpid()
        self.local_id = new_local_id()
        #: The parent run of this session's stage runs: our own (local id), or the attached one.
        self.parent_ref = self.local_id if run_id is None else run_id
        self.broken = backend is None
        self.started = False
        self.ended = False
        self.registered_model_name = registered_model_name
        self.serialization_format = serialization_format
        #: The types (``module.Name``) beyond scikit-learn's and NumPy's a skops model may hold.
        self.trusted_types = trusted_types
        # A forked worker (multiprocessing's fork pools) ends through os._exit, without exit
        # handlers or a writer that finishes: its records are written before its calls return.
        self.synchronous = synchronous or REGISTRY.forked_child or capabilities(backend).synchronous
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
        self.spool: SessionSpool | None = None
        #: The spool folder was tidied away (``_tidy_spool``): the next entry opens it again.
        self._respool = False
        #: A folder that stopped taking records (``_drop_spool``): kept until the run's end
        #: reached the store, for good if it never does.
        self._dropped_spool: SessionSpool | None = None
        #: The store is away: entries stay in the spool for ``tracked sync``.
        self.spooling = False
        # The writer's modules are imported with the first session, not with tracked.
        from tracked.spool.replay import ReplayState

        self.state = ReplayState()
        #: The caller's side (numbering, spooling, queueing entries in order). The writer
        #: never takes it, so holding it while the queue is full cannot deadlock.
        self._lock = threading.RLock()
        self._steps: dict[str, int] = {}
        self._seq = 0
        self._outstanding = 0
        self._idle = threading.Condition()
        self._created = threading.Event()
        #: Reports collected by the writer; their own lock, which nothing holds while waiting.
        self._reports: list[tuple[str | Callable[[], str], BaseException | None]] = []
        self._reports_lock = threading.Lock()
        #: The parent run was refused by the store (a deleted experiment).
        self.refused = False
        #: Entries that went to the spool instead of the store (counted by the writer).
        self._spooled = 0
        #: A wait for the writer ended (bound reached, Ctrl-C): what is left is the spool's.
        self.gave_up = False
        self._replayer: Replayer | None = None
        #: The store refused some of its records: the spool folder stays for `tracked sync`.
        self._unacknowledged = False

    @property
    def usable(self) -> bool:
        return not self.broken and not self.ended

    @property
    def run_id(self) -> str | None:
        """The parent run's id: the store's, or ``local-...`` while it is only in the spool.

        Waits for the writer to create the run. ``local-...`` also when the store refused
        the run and its records wait in the spool; None when they could not even be kept.
        """
        if not self.started:
            return None
        if not self.owned:
            return self.state.runs.get(self.parent_ref, self.parent_ref)
        if not self._created.is_set():
            with writer().urgent():
                bound = wait_bound()
                created = self._created.wait(None if bound > threading.TIMEOUT_MAX else bound)
            if not created:
                self.give_up(_not_answered())
        if self.local_id in self.state.runs:
            return self.state.runs[self.local_id]
        return None if self.broken else self.local_id

    @property
    def model_uri(self) -> str | None:
        """URI of the newest composed model, once the writer logged it (waiting at most
        ``TRACKED_EXIT_TIMEOUT``)."""
        self.settle(time.monotonic() + wait_bound())
        return self.state.model_uri

    @property
    def evaluation(self) -> dict[str, float]:
        """The latest evaluation metrics on the parent run (a prediction pass given y)."""
        self.settle(time.monotonic() + wait_bound())
        return self.state.evaluation

    def start(self) -> None:
        """Open the parent run: its first entry goes to the writer (once; thread-safe)."""
        with self._lock:
            if self.started or self.broken or self.ended:
                return
            self.started = True
            REGISTRY.open.add(self)
            runtime.install()
            self.cell = runtime.cells.count
            runtime.watch_cells()
            self._prepare_backend()
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

    def _prepare_backend(self) -> None:
        # The writer must import nothing while the caller's stages run: a module it is
        # importing (MLflow pulls in pandas, polars) sits half-made in sys.modules, and
        # scikit-learn's checks of the user's data find it there and fail in the user's call.
        # The backend imports its store's library here, on the caller's thread, once.
        prepare = capabilities(self.backend).prepare
        if prepare is not None:
            prepare()

    def _open_spool(self) -> None:
        uri = spool_uri(self.backend)
        if uri is None:
            return
        header = self._header(tracking_uri=mask_uri(uri), source_tags=_source_tags(self.backend))
        from tracked.spool.folder import SessionSpool
        from tracked.spool.format import spool_root

        root = spool_root()
        try:
            self.spool = SessionSpool(root, header)
        except Exception as exc:
            self._note(
                f"could not write the spool at {root} ({describe(exc)}): records wait in "
                "memory only, and are lost if the tracking store is away",
                exc,
                key=f"spool-unwritable:{root}",
            )
        if self.spool is not None and REGISTRY.store_recently_away(uri):
            # The store failed moments ago: straight to the spool, without a 3 s wait.
            self.spooling = True

    def _header(self, **fields: Any) -> Header:
        return Header(
            session=self.local_id,
            experiment=self.experiment,
            run_name=self.run_name,
            parent=self.parent_ref,
            registered_model_name=self.registered_model_name,
            serialization_format=self.serialization_format,
            trusted_types=tuple(self.trusted_types),
            **fields,
        )

    def next_step(self, series: str) -> int:
        """0, 1, 2, ... per ``series``: the step of repeated evaluations on the parent."""
        with self._lock:
            step = self._steps.get(series, 0)
            self._steps[series] = step + 1
            return step

    def write_stage(
        self,
        record: StageRecord,
        *,
        may_raise: bool = True,
        nested_under: tuple[str, str] | None = None,
        composed_step: int | None = None,
    ) -> str | None:
        """Hand ``record`` to the writer as a child run of this session's parent run, or
        nested under the run of the stage that called it (``(its run, its name)``).
        ``composed_step``: the step of its composed model (default: the latest one's).

        Returns:
            The local id of the stage's run (None when the session records nothing).
        """
        if not self.usable:
            return None
        if record.status == KILLED:
            self.interrupted = True
        tags = dict(record.tags)
        if nested_under is not None:
            tags[PARENT_STAGE_TAG] = nested_under[1]
        with self._lock:
            if nested_under is None:  # a nested run's time is inside its caller's already
                self.total_duration_s += record.duration_s
            run = f"{self.local_id}-{self._seq}"
            if not self.owned:
                tags[COPY_TAG] = "true"
            entry = StageEntry(
                run=run,
                parent=self.parent_ref,
                nested_under=nested_under[0] if nested_under is not None else None,
                experiment=self.experiment,
                stage=record.stage,
                run_name=record.run_name,
                start_ms=record.start_ms,
                end_ms=record.end_ms,
                status=record.status,
                training=record.training,
                # Credential-like params are masked already, where they are read (flatten).
                params=dict(record.params),
                tags=tags,
                metrics=record.metrics,
                parent_metrics=record.parent_metrics,
                parent_tags=dict(record.parent_tags),
                composed_step=self.composer.count - 1 if composed_step is None else composed_step,
                # Logs under a parent run someone else owns (a copy, a forked child).
                copy=not self.owned,
                nested=tuple(
                    NestedRun(
                        run=f"{run}-{index}",
                        parent=run,
                        run_name=nested.run_name,
                        start_ms=record.start_ms,
                        params=dict(nested.params),
                        metrics=nested.metrics,
                        tags=dict(nested.tags),
                    )
                    for index, nested in enumerate(record.nested_runs)
                ),
            )
            payload = StagePayload(
                model=record.model,
                composed=record.composed,
                artifacts=dict(record.artifacts),
                datasets=record.datasets,
                pictures=record.pictures,
                scores=record.scores,
            )
            self._submit(entry, payload)
        self.deliver(may_raise=may_raise)
        return run

    def _submit(self, entry: Entry, payload: StagePayload | None) -> None:
        """Number the entry, spool it and queue it (or write it now, when synchronous)."""
        if self.spool is None and self._respool:
            self._respool = False
            self._open_spool()
        entry = attrs.evolve(entry, seq=self._seq)
        self._seq += 1
        data: Any = payload
        if payload is not None and (self.spool is not None or not self.synchronous):
            # The bytes are the record's snapshot: the operator may change once the call
            # returned, and a spooled record must outlive this process.
            data = _pickled(payload, entry, self)
        spool = self.spool
        if spool is not None:
            try:
                spool.append(entry, payload, data if isinstance(data, bytes) else None)
            except Exception as exc:
                self._drop_spool(spool, exc)
        if entry.kind == "stage" and self.spooling and self.spool is not None:
            # The store is away: the spool holds the record, and the writer would only skip
            # it; so a stage call never waits for room behind a store that stalls.
            self._spooled += 1
            return
        with self._idle:
            self._outstanding += 1
            REGISTRY.busy.add(self)
        job = _Job(self, entry, data)
        if self.synchronous:
            job.run()
            self._tidy_spool()
            return
        try:
            writer().submit(job)
        except BaseException:  # Ctrl-C while waiting for room: the job was never queued
            self._job_done()
            raise

    def _tidy_spool(self) -> None:
        """A copy writing synchronously (a forked worker) keeps no folder for what reached the
        store: the worker may end any moment through os._exit, and a folder left behind would
        look like an abandoned run. Its next entry opens a fresh one."""
        spool = self.spool
        if self.owned or self.spooling or spool is None or self._outstanding:
            return
        if self._unacknowledged:
            return  # it holds records the store refused: kept for `tracked sync`
        self.spool = None
        self._respool = True
        spool.remove()

    def _drop_spool(self, spool: SessionSpool, exc: BaseException) -> None:
        """Stop spooling after ``exc`` (a full disk). The folder is never removed: it may hold
        records the store has not acknowledged (all of them, when the store is away). It is
        marked incomplete, so that `tracked sync` knows that its end is missing; what follows
        waits in memory only. A folder whose records all reach the store after all goes when
        the run ends (see ``_process``)."""
        lost = (
            "they are lost unless the store comes back before this process ends"
            if self.spooling
            else "they are lost if the store goes away"
        )
        self._note(
            f"could not write to the spool at {spool.path} ({describe(exc)}): it keeps the "
            f"records it holds (marked incomplete; `tracked sync` sends them); records from "
            f"now on wait in memory only: {lost}",
            exc,
            key=f"spool-unwritable:{spool.path.parent}",
        )
        self.spool = None
        self._dropped_spool = spool
        spool.mark_incomplete(describe(exc))

    def _note_spool_cap(self) -> None:
        """Once, at the run's end: the records the full spool kept without their heavy parts."""
        spool = self.spool or self._dropped_spool
        if spool is None or not spool.dropped:
            return
        self._note(
            f"the spool at {spool.path.parent} passed its cap (TRACKED_SPOOL_MAX_BYTES="
            f"{spool.max_bytes} bytes): {spool.dropped} records of run {self.run_name!r} were "
            "kept there without their models, artifacts, pictures and dataset samples (their "
            "runs, params, tags and metrics are kept; `tracked sync` tags those runs "
            "tracked.spool_dropped); run `tracked sync` to make room, or raise the cap",
            None,
            key=f"spool-cap:{self.local_id}",
        )

    def _progress(self, event: Progress) -> None:
        """Note a step done in the spool; a spool that cannot take it is dropped."""
        spool = self.spool
        if spool is None:
            return
        try:
            spool.progress(event)
        except OSError as exc:
            self._drop_spool(spool, exc)

    def fork_copy(self) -> None:
        """Make this (a forked child's inherited) session a copy logging under the run."""
        self.parent_ref = self.run_id or self.parent_ref
        self.owned = False
        self.pid = os.getpid()
        self.local_id = new_local_id()
        for inherited in (self.spool, self._dropped_spool):
            if inherited is not None:
                inherited.forget()  # the parent's folders: the parent's lock and files
        self._lock = threading.RLock()
        self._idle = threading.Condition()
        self._outstanding = 0
        self._unacknowledged = False
        self._seq = 0
        self._reports = []
        self._reports_lock = threading.Lock()
        self._replayer = None
        # The composed models the parent logged stay known: the inherited composer verifies
        # the child's prediction passes against them.
        self.state = type(self.state)(runs=dict(self.state.runs), composed=set(self.state.composed))
        self.synchronous = True  # the worker may end through os._exit any moment
        self._spooled = 0
        self.gave_up = False
        self.spool = None
        self._respool = False
        self._dropped_spool = None
        self._open_spool()

    # -- on the writer's thread ----------------------------------------------------------

    def process(self, entry: Entry, data: Any) -> None:
        """Write one entry to the store (the writer's side of ``_submit``)."""
        try:
            self._process(entry, data)
        finally:
            if entry.kind == "start_run":
                self._created.set()
            self._job_done()

    def _job_done(self) -> None:
        with self._idle:
            self._outstanding -= 1
            if self._outstanding == 0:
                REGISTRY.busy.discard(self)
                self._idle.notify_all()

    def _process(self, entry: Entry, data: Any) -> None:
        from tracked.spool.codec import decode_payload
        from tracked.spool.replay import StoreAway

        kind = entry.kind
        if not (self.broken or self.spooling or self.refused):
            payload = decode_payload(data) if isinstance(data, bytes) else data
            try:
                failures = self._replayer_for().replay(entry, payload)
            except StoreAway as away:
                self._go_spooling(away)
            except Exception as exc:  # a bug of ours: reported, and the writer goes on
                self._report([(f"write a {kind} entry", exc)])
            else:
                if kind == "start_run" and self.local_id not in self.state.runs:
                    # Refused (a deleted experiment): the records wait in the spool until
                    # the cause is fixed and `tracked sync` runs; without a spool, nothing
                    # more is captured.
                    self.refused = self.spooling = True
                    spool = self.spool
                    if spool is not None:
                        where = (
                            f"the records are kept in the spool at {spool.path.parent}: fix "
                            "this, then run `tracked sync`"
                        )
                    else:
                        self.broken = True
                        where = "nothing more is recorded for this run"
                    failures = [(f"{what} ({where})", exc) for what, exc in failures]
                if failures:
                    # What the store refused is kept in the spool for `tracked sync`.
                    self._unacknowledged = True
                self._report(failures)
        if self.spooling and kind != "detach":
            self._spooled += 1
        dropped = self._dropped_spool
        if dropped is not None and kind in ("end_run", "detach"):
            self._dropped_spool = None
            if self.spooling or self.broken or self._unacknowledged:
                # `tracked sync` may take it: it ends the run, saying what is missing.
                with contextlib.suppress(OSError):
                    dropped.release()
            else:  # everything reached the store after all: the folder is not needed
                dropped.remove()
        spool = self.spool  # the caller may drop it meanwhile
        if spool is None:
            return
        if self.spooling:
            spool.make_durable()
        if kind in ("end_run", "detach"):
            if self.spooling or self._unacknowledged:
                spool.release()  # the writer is done with it: `tracked sync` may take over
            else:
                spool.remove()

    def _replayer_for(self) -> Replayer:
        if self._replayer is None:
            from tracked.spool.replay import Replayer

            self._replayer = Replayer(
                self.backend,
                self._header(),
                self.state,
                self._progress,
                between_steps=None if self.synchronous else writer().pause_for_callers,
            )
        return self._replayer

    def _go_spooling(self, away: BaseException) -> None:
        self.spooling = True
        cause = away.__cause__ or away
        uri = spool_uri(self.backend)
        if uri is not None:
            REGISTRY.store_away(uri)
        spool = self.spool
        if spool is None:
            self._note(
                f"could not {away} ({describe(cause)}), and there is no spool: the records of "
                f"run {self.run_name!r} are lost",
                cause,
                key=f"lost:{uri}",
            )
            return
        folder = spool.path.parent

        def message() -> str:  # formatted when shown: the count is known by then
            return (
                f"the tracking store {mask_uri(uri or '')} is away ({describe(cause)}); "
                f"{_records(self._spooled)} of run {self.run_name!r} so far, and what follows, "
                f"are kept in the spool at {folder}: run `tracked sync` when the store is "
                "back, it sends them"
            )

        self._note(message, None, key=f"spooling:{uri}")

    # -- back on the caller's thread --------------------------------------------------------

    def _report(self, failures: list[tuple[str, BaseException]]) -> None:
        if failures:
            with self._reports_lock:
                self._reports.extend(failures)
                REGISTRY.with_reports.add(self)

    def _note(
        self, message: str | Callable[[], str], exc: BaseException | None, *, key: str
    ) -> None:
        """A warning for the caller's thread (not a failure: nothing is lost by it)."""
        with self._reports_lock:
            self._reports.append((message, _Notice(key)))
            REGISTRY.with_reports.add(self)

    def deliver(self, *, may_raise: bool = True) -> None:
        """Report what the writer collected, on the calling thread (raise, in strict mode)."""
        if not self._reports:
            return
        with self._reports_lock:
            reports, self._reports = self._reports, []
            REGISTRY.with_reports.discard(self)
        failures = []
        for what, exc in reports:
            if callable(what):
                what = what()
            if isinstance(exc, _Notice):
                if may_raise:
                    notice(what, key=exc.key)
                else:  # even with warnings turned into errors, the user's exception wins
                    with contextlib.suppress(Warning):
                        notice(what, key=exc.key)
            else:
                failures.append((what, exc))
        if self.strict and may_raise and len(failures) > 1:
            # One error for all of them, each named: strict mode raises once per sync point.
            what = "; ".join(f"{what}: {describe(exc, 300)}" for what, exc in failures[1:])
            failures = [(f"{failures[0][0]} (and: {what})", failures[0][1])]
        for what, exc in failures:
            report_failure(what, exc, strict=self.strict, may_raise=may_raise)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the writer is done with this session's entries."""
        if timeout is not None and timeout > threading.TIMEOUT_MAX:
            timeout = None  # TRACKED_EXIT_TIMEOUT=inf
        with writer().urgent(), self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    def settle(self, deadline: float, *, at_exit: bool = False) -> bool:
        """Wait for the writer until ``deadline`` (``time.monotonic()``) at most.

        When the wait ends first (the bound, or a Ctrl-C, which is raised again), the store
        counts as away: the entries still waiting stay in the spool (``give_up``).
        """
        try:
            done = self.wait(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            self.give_up("the wait for it was interrupted (Ctrl-C)", at_exit=at_exit)
            raise
        if not done:
            self.give_up(_not_answered(), at_exit=at_exit)
        return done

    def give_up(self, why: str, *, at_exit: bool = False) -> None:
        """Stop waiting for the writer: the entries it has not written stay in the spool.

        The session goes on spooling (the writer skips the store for its remaining entries)
        and the store counts as away for new sessions for a while. One warning says how many
        records wait and that ``tracked sync`` sends them.
        """
        with self._idle:
            waiting = self._outstanding
        if self.gave_up or not waiting:
            return
        self.gave_up = True
        spool = self.spool
        uri = spool_uri(self.backend)
        told = self.spooling and spool is not None  # the "is away" warning said it already
        if spool is not None:
            self.spooling = True
            if uri is not None:
                REGISTRY.store_away(uri)
            with contextlib.suppress(OSError):
                spool.make_durable()
            message = (
                f"the tracking store {mask_uri(uri or repr(self.backend))} is away: {why}; "
                f"{_records(waiting)} of run {self.run_name!r} wait in the spool at "
                f"{spool.path.parent}: `tracked sync` sends them"
            )
        else:
            message = (
                f"{_records(waiting)} of run {self.run_name!r} are not written yet: {why}; "
                f"there is no spool for {self.backend!r}, so they are lost if the process ends"
            )
        if not told:
            self._note(message, None, key=f"gave-up:{self.local_id}")
        if at_exit:
            self.deliver(may_raise=False)

    def end(
        self, status: str = FINISHED, *, may_raise: bool = True, deadline: float | None = None
    ) -> None:
        """End the parent run with ``status`` and wait for its records to be written, until
        ``deadline`` (``time.monotonic()``; default: ``TRACKED_EXIT_TIMEOUT`` from now).

        A copy's session never ends the run it logs under; it only says it is done.
        """
        with self._lock:
            if self.ended:
                return
            self.ended = True
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
        if deadline is None:
            deadline = time.monotonic() + wait_bound()
        try:
            self.settle(deadline)
        except KeyboardInterrupt:
            self.deliver(may_raise=False)
            raise
        self.deliver(may_raise=may_raise)


def _records(count: int) -> str:
    return f"{count} record{'' if count == 1 else 's'}"


def _not_answered() -> str:
    return f"it did not take them within {wait_bound():g} s ({EXIT_TIMEOUT_ENV})"


def new_local_id() -> str:
    """``local-`` and 32 random hex digits: a run id that no store gave."""
    return f"{LOCAL_PREFIX}{os.urandom(16).hex()}"


class _Notice:
    """Marks a collected report as a notice (a warning that is not a failure)."""

    def __init__(self, key: str) -> None:
        self.key = key


class _Job:
    __slots__ = ("data", "entry", "session")

    def __init__(self, session: Session, entry: Entry, data: Any) -> None:
        self.session, self.entry, self.data = session, entry, data

    def run(self) -> None:
        self.session.process(self.entry, self.data)


def _pickled(payload: StagePayload, entry: Entry, session: Session) -> Any:
    from tracked.spool.codec import encode_payload

    stage = getattr(entry, "stage", None)
    try:
        return encode_payload(payload)
    except Exception as exc:
        session._note(
            f"the record of stage {stage!r} cannot be pickled ({describe(exc)}): it "
            "is written from memory, so its model is the operator as it is then, and it is not "
            "kept in the spool",
            exc,
            key=f"unpicklable:{stage}",
        )
        return payload


def _source_tags(backend: object) -> dict[str, str]:
    tags = capabilities(backend).source_tags
    try:
        return dict(tags()) if tags is not None else {}
    except Exception:
        return {}


def spool_uri(backend: object) -> str | None:
    """The tracking URI of a backend whose records can be spooled and synced later."""
    return capabilities(backend).spool_uri


def evaluation_metrics(values: dict[str, float], prefix: str, step: int) -> tuple[Metric, ...]:
    stamp = now_ms()
    return tuple(
        Metric(key=f"{prefix}{key}", value=value, step=step, timestamp=stamp)
        for key, value in values.items()
    )
