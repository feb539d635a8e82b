"""The backend protocol: the few calls the tracker makes on a monitoring store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from tracked._records import Metric

REQUIRED_METHODS = ("start_run", "log", "log_model", "end_run")


@runtime_checkable
class Backend(Protocol):
    """A store of runs. Implementations must be safe to call from several threads.

    Run ids are strings chosen by the backend. Every method may raise; the tracker turns
    what it raises into a ``TrackingWarning``.
    """

    def start_run(
        self,
        *,
        experiment: str,
        run_name: str,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        start_time: int | None = None,
    ) -> str:
        """Create a run (in ``experiment``, created if missing) and return its id."""
        ...

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, str] | None = None,
        metrics: Sequence[Metric] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Log params, metrics and tags on a run."""
        ...

    def log_model(self, run_id: str, name: str, model: object) -> None:
        """Store a fitted scikit-learn compatible ``model`` under ``name`` on a run."""
        ...

    def end_run(self, run_id: str, status: str, end_time: int | None = None) -> None:
        """End a run with status ``FINISHED``, ``FAILED`` or ``KILLED``."""
        ...


def is_backend(obj: object) -> bool:
    """Whether ``obj`` has every backend method."""
    return all(callable(getattr(obj, name, None)) for name in REQUIRED_METHODS)
