"""Group runs a pipeline's parent run nests under: a ``tracked.group`` the user opened
(``GroupRef``, per thread), or the group run of one instance's clones (``CloneGroup``)."""

from __future__ import annotations

import threading
from typing import Any

from attrs import frozen

from tracked._version import __version__
from tracked.backends.base import capabilities
from tracked.core.names import CLONES_OF_TAG, GROUP_TAG, VERSION_TAG
from tracked.core.report import report_failure
from tracked.core.values import FINISHED, now_ms
from tracked.delivery.registry import REGISTRY

_local = threading.local()


@frozen
class GroupRef:
    """What a pipeline instance needs to nest its parent run under a group run."""

    run_id: str
    experiment: str
    #: The group's store: an MLflow tracking URI, or a backend object (in-process only).
    tracking_uri: str | None
    backend: Any = None
    #: A sweep's group: its pipelines' writers keep the stages' heavy parts aside for the
    #: sweep, which logs its best configuration's (``tracked.spool.aside``).
    keep_aside: bool = False

    def resolve_backend(self) -> Any:
        if self.backend is not None:
            return self.backend
        from tracked.backends.mlflow.backend import shared_backend

        return shared_backend(self.tracking_uri)

    def __getstate__(self) -> dict[str, Any]:
        backend = self.backend if capabilities(self.backend).picklable else None
        return {
            **{f: getattr(self, f) for f in ("run_id", "experiment", "tracking_uri", "keep_aside")},
            "backend": backend,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)


def current_group() -> GroupRef | None:
    """The innermost open group of the calling thread."""
    stack = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def enter_group(ref: GroupRef | None) -> None:
    """Make ``ref`` the calling thread's innermost group (None: a group that is off)."""
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(ref)


def leave_group() -> None:
    """Close the calling thread's innermost group."""
    _local.stack.pop()


class CloneGroup:
    """The group run of one instance's clones: a search's candidates, folds and refit
    (``GridSearchCV``, ``cross_validate``), so the UI shows one search, not a loose parent
    run per clone.

    Made (synchronously: the clones need its store id to nest under it) when the first
    clone opens its parent run outside any run of the instance; ended once none of its
    clones' runs is open and either the instance is garbage-collected (a search's own clone
    of its estimator is, when ``fit`` returns), ``tracked.flush()`` runs, or the process
    exits. A clone that opens its run after that starts a new group run.
    """

    def __init__(self, backend: Any, run_id: str, name: str, strict: bool) -> None:
        self.backend = backend
        self.run_id = run_id
        self.name = name
        self.strict = strict
        #: The clones' open sessions (held strongly: a fold's clone is gone before its
        #: session has ended).
        self.sessions: list[Any] = []
        self.origin_gone = False
        self.ended = False
        self._lock = threading.Lock()

    @classmethod
    def start(
        cls,
        backend: Any,
        *,
        experiment: str | None,
        parent_run_id: str | None,
        name: str,
        pipeline: str,
        strict: bool,
    ) -> CloneGroup | None:
        """Create the group run; None (reported) when the store would not, or was found
        away lately: the clones' runs are then top-level, and go to the spool."""
        offers = capabilities(backend)
        uri = offers.spool_uri
        if uri is not None and REGISTRY.store_recently_away(uri):
            return None
        try:
            run_id = backend.start_run(
                experiment=experiment,
                run_name=name,
                parent_run_id=parent_run_id,
                tags={GROUP_TAG: name, CLONES_OF_TAG: pipeline, VERSION_TAG: __version__},
            )
        except Exception as exc:
            away = offers.is_store_away
            if away is not None and away(exc):
                # The clone's session finds it away too, says so and marks it: later clones
                # go straight to the spool, without asking the store for a group again.
                return None
            report_failure(f"start the group run of the clones {name!r}", exc, strict=strict)
            return None
        group = cls(backend, run_id, name, strict)
        REGISTRY.clone_groups.add(group)
        return group

    def joined(self, session: Any) -> None:
        with self._lock:
            self.sessions.append(session)

    def mark_origin_gone(self) -> None:
        # Called by a weakref finalizer, anywhere: only a flag; ending happens later.
        self.origin_gone = True

    @property
    def idle(self) -> bool:
        # Ended sessions are let go: a large search's fitted clones are not kept alive here.
        with self._lock:
            self.sessions = [session for session in self.sessions if not session.ended]
            return not self.sessions

    def end_if_done(self, *, flushing: bool = False, status: str = FINISHED) -> None:
        """End the group run when its clones are all done and the instance they were
        cloned from is gone, or (``flushing``: ``tracked.flush()``, exit) even if it is not."""
        if not self.idle or not (self.origin_gone or flushing):
            return
        with self._lock:
            if self.ended:
                return
            self.ended = True
        REGISTRY.clone_groups.discard(self)
        self.sessions = []
        try:
            self.backend.end_run(self.run_id, status, now_ms())
        except Exception as exc:
            report_failure(
                f"end the group run of the clones {self.name!r}", exc, strict=self.strict
            )
