"""Group runs: one MLflow run over many pipeline runs (a sweep, an experiment campaign).

The group is captured when a pipeline instance is created (``TrackedMeta.__call__``), not
looked up when it logs, so it travels with the instance to threads, processes and Dask
workers, and an instance created in a worker thread outside the block is not in the group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracked._version import __version__
from tracked.core.config import env_strict, killed_by_env
from tracked.core.errors import TrackingError
from tracked.core.names import DEFAULT_EXPERIMENT, GROUP_TAG, VERSION_TAG
from tracked.core.report import report_failure
from tracked.core.values import now_ms, status_for

if TYPE_CHECKING:
    from tracked.delivery.groups import GroupRef


class group:
    """Open a group run; pipeline instances created inside the block nest under it.

    Args:
        name: the group run's name.
        experiment: the experiment of the group run, and of the pipeline runs whose class
            sets no ``experiment``. Default: MLflow's ``Default`` experiment. The MLflow UI
            nests runs only within one experiment: give the pipelines' experiment here.
        tracking_uri: the store (default: MLflow's own resolution); pipelines that set no
            ``tracking_uri`` or ``backend`` of their own log to it.
        backend: another backend, e.g. ``tracked.testing.MemoryBackend()``.

    Example:
        >>> with tracked.group("grid over C", experiment="iris-demo") as g:  # doctest: +SKIP
        ...     for C in (0.1, 1.0):
        ...         with IrisPipeline(C=C) as pipe:
        ...             pipe.train(X, y)
        >>> g.run_id  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        *,
        experiment: str | None = None,
        tracking_uri: str | None = None,
        backend: Any = None,
        strict: bool | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            msg = f"a group needs a non-empty name, not {name!r}"
            raise TypeError(msg)
        self.name = name
        self.experiment = experiment or DEFAULT_EXPERIMENT
        self.tracking_uri = tracking_uri
        self.backend = backend
        self.strict = env_strict() if strict is None else strict
        self.ref: GroupRef | None = None
        #: Set by ``tracked.sweep``: its pipelines keep their stages' heavy parts aside.
        self.keep_aside = False
        self._backend: Any = None

    @property
    def run_id(self) -> str | None:
        """The group run's id (None when tracking is off or the run could not be created)."""
        return self.ref.run_id if self.ref is not None else None

    def __enter__(self) -> group:
        # The delivery layer loads when a group opens, not with `import tracked`.
        from tracked.delivery.groups import enter_group

        if not killed_by_env():
            self._start()
        enter_group(self.ref)
        return self

    def _start(self) -> None:
        from tracked.delivery.context import outer_run_of
        from tracked.delivery.groups import GroupRef

        try:
            if self.backend is not None:
                backend = self.backend
                uri = None
            else:
                from tracked.backends.mlflow.backend import shared_backend

                backend = shared_backend(self.tracking_uri)
                uri = backend.tracking_uri
            run_id = backend.start_run(
                experiment=self.experiment,
                run_name=self.name,
                parent_run_id=outer_run_of(backend),
                tags={GROUP_TAG: self.name, VERSION_TAG: __version__},
            )
        except TrackingError:
            raise
        except Exception as exc:
            report_failure(f"start group run {self.name!r}", exc, strict=self.strict)
            return
        self._backend = backend
        self.ref = GroupRef(run_id, self.experiment, uri, self.backend, self.keep_aside)

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        from tracked.delivery.groups import leave_group

        leave_group()
        if self.ref is None:
            return
        status = status_for(exc_type)
        try:
            self._backend.end_run(self.ref.run_id, status, now_ms())
        except Exception as error:
            report_failure(
                f"end group run {self.name!r}", error, strict=self.strict, may_raise=exc is None
            )

    def log(self, *, params: dict[str, str] | None = None, metrics: Any = (), tags: Any = None):
        """Log on the group run (best configuration of a sweep, ...); failures warn."""
        if self.ref is None:
            return
        try:
            self._backend.log(self.ref.run_id, params=params, metrics=metrics, tags=tags)
        except Exception as exc:
            report_failure(f"log on group run {self.name!r}", exc, strict=self.strict)
