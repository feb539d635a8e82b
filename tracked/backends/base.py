"""The backend protocol: the few calls the tracker makes on a monitoring store.

Backends raise ``StoreUnavailable`` (the store is away: try again later) or
``StoreRejected`` (the request itself is refused), mapped from their library's own errors
inside the backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from attrs import frozen

from tracked.core.errors import StoreError, StoreRejected, StoreUnavailable
from tracked.core.settings import BACKEND_METHODS, is_backend
from tracked.core.values import DataSummary, Metric

__all__ = [
    "Backend",
    "Capabilities",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "capabilities",
]

REQUIRED_METHODS = BACKEND_METHODS

__all__ = ["REQUIRED_METHODS", "is_backend"]  # re-exported: the protocol's own names


@runtime_checkable
class Backend(Protocol):
    """A store of runs. Implementations must be safe to call from several threads.

    Run ids are strings chosen by the backend. Every method may raise; the tracker turns
    what it raises into a ``TrackingWarning``.
    """

    def start_run(
        self,
        *,
        experiment: str | None,
        run_name: str,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        start_time: int | None = None,
    ) -> str:
        """Create a run (in ``experiment``, created if missing) and return its id.

        ``experiment=None`` means the experiment of ``parent_run_id``.
        """
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

    def log_model(
        self,
        run_id: str,
        name: str,
        model: object,
        *,
        input_example: object = None,
        signature_example: object = None,
        output_example: object = None,
        serialization_format: str = "skops",
        step: int = 0,
        trusted_types: Sequence[str] = (),
    ) -> str:
        """Store a fitted scikit-learn compatible ``model`` under ``name`` on a run.

        A model logged again under the same name on the same run is a newer version of it
        (``step`` counts them). ``input_example`` is stored with the model; its signature is
        inferred from ``signature_example`` (not stored), else from it. ``output_example`` is
        what the model predicted on ``signature_example``: a backend needs no prediction of
        its own for a signature. ``trusted_types`` (``module.Name``) are the types beyond
        scikit-learn's and NumPy's that a skops model may hold (the pipeline's
        ``trusted_types``). Returns a URI that names exactly this model.
        """
        ...

    def log_artifact(self, run_id: str, path: str, content: bytes) -> None:
        """Store ``content`` as the file ``path`` among a run's artifacts."""
        ...

    def log_dataset(self, run_id: str, summary: DataSummary, *, context: str, name: str) -> None:
        """Record that a run read a dataset (digest, shape, schema) in ``context``:
        ``fit``, ``inference`` or ``evaluation``."""
        ...

    def register_model(self, name: str, model_uri: str, run_id: str) -> str:
        """Register ``model_uri`` as a new version of registered model ``name``; return it."""
        ...

    def tag_model_version(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        """Set tags on a registered model version."""
        ...

    def end_run(self, run_id: str, status: str, end_time: int | None = None) -> None:
        """End a run with status ``FINISHED``, ``FAILED`` or ``KILLED``."""
        ...


#: Optional members a backend may have, beside the required methods. Each is looked up in
#: one place (``capabilities``), never with ``getattr`` elsewhere.
OPTIONAL_MEMBERS = {
    "synchronous": "bool: write each record before the stage call returns",
    "spool_uri": "str: the store's URI; records can then wait in the spool for it",
    "source_tags": "() -> dict: tags that say where a run was made (MLflow's source tags)",
    "find_run": "(...) -> str | None: an existing run with a local id (resumed replay)",
    "outer_run_id": "() -> str | None: the run the caller has open in this store, if any",
    "is_store_away": "(exc) -> bool: whether an exception means the store is away",
    "picklable": "bool: the backend may travel with a pickled pipeline (default True)",
    "prepare": "() -> None: import the store's library now, on the caller's thread",
    "link_metrics": (
        "(run_id, metrics, *, model_uri, dataset) -> None: log a run's metrics again, linked "
        "to a logged model (a ``log_model`` URI) and the dataset ``(name, digest)`` they were "
        "computed on, so that the store shows them with the model"
    ),
}


@frozen(kw_only=True)
class Capabilities:
    """What a backend offers beyond the protocol's required methods."""

    synchronous: bool = False
    spool_uri: str | None = None
    source_tags: Callable[[], Mapping[str, str]] | None = None
    find_run: Callable[..., str | None] | None = None
    outer_run_id: Callable[[], str | None] | None = None
    is_store_away: Callable[[BaseException], bool] | None = None
    picklable: bool = True
    prepare: Callable[[], None] | None = None
    link_metrics: Callable[..., None] | None = None


def capabilities(backend: object) -> Capabilities:
    """The optional members ``backend`` has (see ``OPTIONAL_MEMBERS``)."""

    def method(name: str) -> Any:
        member = getattr(backend, name, None)
        return member if callable(member) else None

    uri = getattr(backend, "spool_uri", None)
    return Capabilities(
        synchronous=bool(getattr(backend, "synchronous", False)),
        spool_uri=uri if isinstance(uri, str) else None,
        source_tags=method("source_tags"),
        find_run=method("find_run"),
        outer_run_id=method("outer_run_id"),
        is_store_away=method("is_store_away"),
        picklable=bool(getattr(backend, "picklable", True)),
        prepare=method("prepare"),
        link_metrics=method("link_metrics"),
    )


#: Called (once each) when a backend first imports its store's library: the runtime moves
#: its exit flush behind the exit handlers that library registers.
_on_library_load: list[Callable[[], None]] = []


def when_store_library_loads(hook: Callable[[], None]) -> None:
    """Call ``hook`` whenever a backend has just imported its store's library."""
    if hook not in _on_library_load:
        _on_library_load.append(hook)


def store_library_loaded() -> None:
    """Backends call this right after importing their store's library."""
    for hook in list(_on_library_load):
        hook()
