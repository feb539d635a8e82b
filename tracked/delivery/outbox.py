"""The caller's side of a session: stage records become entries, handed to the spool and the writer.

Runs on the caller's thread, inside the stage call: it builds and hands on, never writes
to the store itself (unless the session is synchronous)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import attrs

from tracked.core.errors import TrackingError
from tracked.core.names import COPY_TAG, PARENT_STAGE_TAG
from tracked.core.report import describe, report_failure
from tracked.core.values import KILLED, StageRecord
from tracked.delivery.registry import REGISTRY
from tracked.delivery.writer import writer
from tracked.spool.entries import (
    Entry,
    NestedRun,
    StageEntry,
    StagePayload,
)

if TYPE_CHECKING:
    from tracked.delivery.session import Session


@attrs.frozen
class SeriesChunk:
    """How a series' chunk differs from a stage record of its own: it logs on the series'
    ``run`` (which the first chunk, ``new_run``, creates), renames it, may leave it open,
    and names its model (a checkpoint's)."""

    run: str
    new_run: bool
    run_name: str
    ends_run: bool = True
    model_name: str = "model"

    def applied(self, entry: StageEntry) -> StageEntry:
        return attrs.evolve(
            entry,
            run_name=self.run_name,
            new_run=self.new_run,
            ends_run=self.ends_run,
            model_name=self.model_name,
        )


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


class Outbox:
    """The caller's side of a session: records become entries for the spool and the writer."""

    def _init_outbox(self) -> None:
        #: The caller's side (numbering, spooling, queueing entries in order). The writer
        #: never takes it, so holding it while the queue is full cannot deadlock.
        self._lock = threading.RLock()
        self._seq = 0
        #: Entries handed to the writer and not done yet; ``_idle`` tells when none are.
        self._outstanding = 0
        self._idle = threading.Condition()
        #: The recording layer's series of folded calls, by stage (None until one starts).
        self.series: dict[str, Any] | None = None
        #: Called with ``may_raise`` before the run ends and at ``tracked.flush()``: what
        #: the recording layer still holds (open series) is handed on.
        self.finishers: list[Any] = []

    @property
    def lock(self) -> threading.RLock:
        """The caller's side's lock (reentrant)."""
        return self._lock

    def finish_pending(self, *, may_raise: bool) -> None:
        """Run the finishers: what the caller's side still holds is handed on."""
        for finisher in list(self.finishers):
            try:
                finisher(may_raise)
            except (TrackingError, Warning):
                if may_raise:
                    raise
            except Exception as exc:
                what = "hand on the calls folded into a series"
                report_failure(what, exc, strict=self.strict, may_raise=may_raise)

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
        chunk: SeriesChunk | None = None,
    ) -> str | None:
        """Hand ``record`` to the writer as a child run of this session's parent run, or
        nested under the run of the stage that called it (``(its run, its name)``), or as a
        ``chunk`` of a series' run. ``composed_step``: the step of its composed model
        (default: the latest one's).

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
            if not self.owned:
                tags[COPY_TAG] = "true"
            run = chunk.run if chunk is not None else f"{self.local_id}-{self._seq}"
            entry = self._stage_entry(run, record, tags, nested_under, composed_step)
            if chunk is not None:
                entry = chunk.applied(entry)
            self._submit(entry, _payload_of(record))
        self.deliver(may_raise=may_raise)
        return entry.run

    def _stage_entry(
        self,
        run: str,
        record: StageRecord,
        tags: dict[str, str],
        nested_under: tuple[str, str] | None,
        composed_step: int | None,
    ) -> StageEntry:
        return StageEntry(
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
            nested=_nested_entries(run, record),
        )

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


def _nested_entries(run: str, record: StageRecord) -> tuple[NestedRun, ...]:
    """The runs nested under stage run ``run`` (a search's best candidates)."""
    return tuple(
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
    )


def _payload_of(record: StageRecord) -> StagePayload:
    """The binary parts of a stage's entry: what the spool keeps in its payload file."""
    return StagePayload(
        model=record.model,
        composed=record.composed,
        artifacts=dict(record.artifacts),
        datasets=record.datasets,
        pictures=record.pictures,
        scores=record.scores,
    )
