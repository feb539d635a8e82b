"""Writing entries to a store, step by named step, each step at most once.

The background writer and ``tracked sync`` share this code: an entry (the start of a parent
run, one stage call, the end of a parent run) becomes a list of steps, each with a name of
its own (``create_run``, ``log``, ``artifact:<file>``, ``model``, ``end_run``, ...; see
``tracked.spool.steps``). Each step that reaches the store is noted by that name
(``Progress``), so that replaying again after an interruption skips exactly the steps done,
whatever the payload holds. Runs get the tag ``tracked.local_run_id``: a replay that was
interrupted between creating a run and noting it finds the run again instead of creating a
second one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from attrs import define, field

from tracked.core.errors import StoreError, StoreUnavailable
from tracked.core.names import LOCAL_PREFIX
from tracked.core.report import foreign_logs_quieted
from tracked.spool.entries import Entry, Header, Progress, StagePayload
from tracked.spool.steps import CREATE_RUN, StepBuilder

#: The step name of the note that says all of an entry's steps are done.
COMPLETE = "complete"

#: Error codes that mean "the store cannot take this now", not "this is wrong". A backend
#: that knows its store's errors better says so itself (``backend.is_store_away``: the MLflow
#: backend's tells MLflow's INTERNAL_ERROR default from an outage).
_AWAY_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"})


class StoreAway(Exception):
    """The store did not take a step for reasons of its own (down, read-only, full)."""


def is_store_away(exc: BaseException) -> bool:
    """Whether ``exc`` says the store is away rather than that the data is wrong, for a
    backend that does not say (``backend.is_store_away``): connection errors, timeouts and
    full or read-only disks are ``OSError``s (requests' errors are too); or an away code.
    A backend's own ``StoreUnavailable`` / ``StoreRejected`` say it outright.
    """
    if isinstance(exc, StoreError):
        return isinstance(exc, StoreUnavailable)
    if isinstance(exc, OSError):
        return True
    if getattr(exc, "error_code", None) in _AWAY_CODES:
        return True
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_store_away(cause)


@define
class ReplayState:
    """What reached the store so far, for one session."""

    #: Local run id -> the store's run id.
    runs: dict[str, str] = field(factory=dict)
    #: (entry seq, step name) of the steps done.
    done: set[tuple[int, str]] = field(factory=set)
    model_uri: str | None = None
    #: The composed models (their ``composed_step``) that reached the store.
    composed: set[int] = field(factory=set)
    #: ``composed_step`` -> the URI of that composed model (the parent's metrics link to it).
    composed_models: dict[int, str] = field(factory=dict)
    #: Stage -> the URI of the model its latest fit logged (its metrics link to it).
    models: dict[str, str] = field(factory=dict)
    #: Entry seq -> the URI of the stage model that entry logged.
    entry_models: dict[int, str] = field(factory=dict)
    model_version: tuple[str, str] | None = None
    #: The latest evaluation metrics of a prediction pass (not kept in the spool).
    evaluation: dict[str, float] = field(factory=dict)
    #: A sweep's session: the stages' heavy parts kept aside (``tracked.spool.aside``).
    aside: list[Any] = field(factory=list)

    @classmethod
    def from_progress(cls, events: list[Progress]) -> ReplayState:
        state = cls()
        for event in events:
            state.apply(event)
        return state

    def apply(self, event: Progress) -> None:
        self.done.add((event.seq, event.step))
        if event.run is not None and event.id is not None:
            self.runs[event.run] = event.id
        if event.model_uri is not None:
            self.model_uri = event.model_uri
        if event.composed_step is not None:
            self.composed.add(event.composed_step)
            if event.model_uri is not None:
                self.composed_models[event.composed_step] = event.model_uri
        if event.model is not None:
            stage, uri = event.model
            self.models[stage] = uri
            self.entry_models[event.seq] = uri
        if event.version is not None:
            self.model_version = event.version

    def complete(self, seq: int) -> bool:
        return (seq, COMPLETE) in self.done

    def resolve(self, ref: str | None) -> str | None:
        """The store's id for a run reference (a store id already, or a local one)."""
        if ref is None or not ref.startswith(LOCAL_PREFIX):
            return ref
        try:
            return self.runs[ref]
        except KeyError:
            msg = f"run {ref} was never created in the store"
            raise LookupError(msg) from None


class Replayer:
    """Writes entries of one session to ``backend``.

    Args:
        header: the session's header (parent, registered model name, model format).
        state: what is done already; updated as steps are done.
        note: called with each progress event (to persist it) after the step is done.
        find_existing: look a run up by its local id before creating it (``tracked sync``).
        mark_failed: count a step that failed for the data's sake as done in ``state``
            (the writer: its failure is reported, and retrying now cannot help); it is not
            noted, so that ``tracked sync`` tries it again. ``tracked sync`` retries them.
        between_steps: called before each step after the first (the writer's pause).
        keep_aside: a sweep's session: stages' pictures, files, datasets and models go to
            ``state.aside`` instead of the store (``tracked.spool.aside``).
    """

    def __init__(
        self,
        backend: Any,
        header: Header,
        state: ReplayState,
        note: Callable[[Progress], None],
        *,
        find_existing: bool = False,
        mark_failed: bool = True,
        between_steps: Callable[[], None] | None = None,
        keep_aside: bool = False,
    ) -> None:
        self.backend = backend
        self.header = header
        self.state = state
        self.note = note
        self.mark_failed = mark_failed
        self.between_steps = between_steps
        self.steps = StepBuilder(backend, header, state, find_existing=find_existing)
        self.steps.keep_aside = keep_aside
        self._is_away = getattr(backend, "is_store_away", None) or is_store_away

    @property
    def created(self) -> int:
        """Runs this replayer created in the store (not found there again)."""
        return self.steps.created

    def replay(self, entry: Entry, payload: StagePayload | None) -> list[tuple[str, BaseException]]:
        """Do the entry's steps not done yet; return the failures that are the data's fault.

        Raises:
            StoreAway: the store is away; the steps from the failed one on are not done.
        """
        seq = entry.seq
        if self.state.complete(seq):
            return []
        failures: list[tuple[str, BaseException]] = []
        for index, step in enumerate(self.steps.of(entry, payload)):
            if (seq, step.name) in self.state.done:
                continue
            if step.needs is not None and (seq, step.needs) not in self.state.done:
                continue  # its failure is reported: this step is done when that one is
            if self.between_steps is not None and index:
                self.between_steps()
            try:
                with foreign_logs_quieted():  # the failure is ours to report, in one line
                    result = step.run()
            except Exception as exc:
                if self._is_away(exc):
                    raise StoreAway(step.what) from exc
                failures.append((step.what, exc))
                if step.name == CREATE_RUN and entry.kind == "start_run":
                    return failures  # left for `tracked sync`, once the cause is fixed
                if step.name == CREATE_RUN and entry.kind == "stage":
                    break  # the run was not created: its other steps have nowhere to go
                if self.mark_failed:
                    self.state.apply(Progress(seq=seq, step=step.name))
                continue
            found = result if isinstance(result, dict) else {}
            self._mark(Progress(seq=seq, step=step.name, **found))
        if not failures:
            self._mark(Progress(seq=seq, step=COMPLETE))
        elif self.mark_failed:
            self.state.apply(Progress(seq=seq, step=COMPLETE))
        return failures

    def _mark(self, event: Progress) -> None:
        self.state.apply(event)
        self.note(event)


def with_tags(entry: Entry, tags: dict[str, str]) -> Entry:
    """``entry`` with ``tags`` added to its own (for a stage: its run's)."""
    if not tags or not hasattr(entry, "tags"):
        return entry
    return attrs.evolve(entry, tags={**entry.tags, **tags})
