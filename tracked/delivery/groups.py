"""The group run a thread's new pipelines nest under (``tracked.group``, sweeps): a thread-local
stack of references.
"""

from __future__ import annotations

import threading
from typing import Any

from attrs import frozen

from tracked.backends.base import capabilities

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
