"""A real in-memory backend, for users' own unit tests and for ours."""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Mapping, Sequence

from attrs import define, field

from tracked.core.values import DataSummary, Metric, now_ms


@define
class MemoryRun:
    """One run as the memory backend holds it.

    Attributes:
        run_id: the run's id.
        name: the run's name (``IrisPipeline``, ``preprocessing:fit``, ...).
        parent_run_id: the id of the run it is nested under, or None.
        status: ``RUNNING``, then ``FINISHED``, ``FAILED`` or ``KILLED``.
        tags: tag name to value.
        params: param name to value, as text.
        metrics: metric name to its logged points (``value``, ``step``, ...), in order;
            ``metric(key)`` is the latest value.
        artifacts: artifact path to its bytes.
    """

    run_id: str
    experiment: str
    name: str
    parent_run_id: str | None
    start_time: int
    status: str = "RUNNING"
    end_time: int | None = None
    tags: dict[str, str] = field(factory=dict)
    params: dict[str, str] = field(factory=dict)
    metrics: dict[str, list[Metric]] = field(factory=dict)
    models: dict[str, object] = field(factory=dict)
    artifacts: dict[str, bytes] = field(factory=dict)
    #: Datasets read: (name, context, summary).
    datasets: list[tuple[str, str, DataSummary]] = field(factory=list)
    #: Every model logged, in order: (name, model, input example).
    logged_models: list[tuple[str, object, object]] = field(factory=list)

    def metric(self, key: str) -> float:
        """The latest value of metric ``key``."""
        return self.metrics[key][-1].value


@define
class MemoryModelVersion:
    """One version of a registered model."""

    version: str
    source: str
    run_id: str
    tags: dict[str, str] = field(factory=dict)


class MemoryBackend:
    """Keeps runs in a dict. Thread-safe; models are stored as deep copies.

    Args:
        synchronous: write each stage's records before the stage call returns (default),
            so that a test can look at ``runs`` right after a call; False goes through the
            background writer, as an MLflow store does.

    Attributes:
        runs: every run, by run id, in creation order.

    Example:
        >>> backend = MemoryBackend()
        >>> class Pipe(TrackedPipeline):  # doctest: +SKIP
        ...     backend = backend
    """

    #: Runs live in this object: a pickled pipeline must not carry a copy of them away.
    picklable = False

    def __init__(self, *, synchronous: bool = True) -> None:
        self.synchronous = synchronous
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.runs: dict[str, MemoryRun] = {}
        self.registry: dict[str, list[MemoryModelVersion]] = {}
        #: Model URI -> the metrics linked to it: (run id, metric, dataset ``(name, digest)``).
        self.model_metrics: dict[str, list[tuple[str, Metric, tuple[str, str] | None]]] = {}

    def find_run(
        self, *, experiment: str | None, parent_run_id: str | None, key: str, value: str
    ) -> str | None:
        """The id of a run tagged ``key=value``, or None."""
        with self._lock:
            for run in self.runs.values():
                if run.tags.get(key) == value:
                    return run.run_id
        return None

    def start_run(
        self,
        *,
        experiment: str | None,
        run_name: str,
        parent_run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        start_time: int | None = None,
    ) -> str:
        with self._lock:
            if experiment is None:
                if parent_run_id is None:
                    msg = "start_run needs an experiment or a parent run"
                    raise ValueError(msg)
                experiment = self._run(parent_run_id).experiment
            run_id = f"mem-{next(self._ids)}"
            self.runs[run_id] = MemoryRun(
                run_id=run_id,
                experiment=experiment,
                name=run_name,
                parent_run_id=parent_run_id,
                start_time=start_time if start_time is not None else now_ms(),
                tags=dict(tags or {}),
            )
        return run_id

    def log(
        self,
        run_id: str,
        *,
        params: Mapping[str, str] | None = None,
        metrics: Sequence[Metric] = (),
        tags: Mapping[str, str] | None = None,
    ) -> None:
        with self._lock:
            run = self._run(run_id)
            for key, value in (params or {}).items():
                if key in run.params and run.params[key] != value:
                    msg = f"param {key!r} of run {run_id} is already {run.params[key]!r}"
                    raise ValueError(msg)
                run.params[key] = value
            for metric in metrics:
                run.metrics.setdefault(metric.key, []).append(metric)
            run.tags.update(tags or {})

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
        stored = copy.deepcopy(model)
        with self._lock:
            run = self._run(run_id)
            run.models[name] = stored
            run.logged_models.append((name, stored, copy.deepcopy(input_example)))
            return f"memory:/{run_id}/{name}/{len(run.logged_models)}"

    def link_metrics(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        *,
        model_uri: str,
        dataset: tuple[str, str] | None = None,
    ) -> None:
        with self._lock:
            self._run(run_id)
            linked = self.model_metrics.setdefault(model_uri, [])
            linked.extend((run_id, metric, dataset) for metric in metrics)

    def log_artifact(self, run_id: str, path: str, content: bytes) -> None:
        with self._lock:
            self._run(run_id).artifacts[path] = bytes(content)

    def log_dataset(self, run_id: str, summary: DataSummary, *, context: str, name: str) -> None:
        with self._lock:
            self._run(run_id).datasets.append((name, context, summary))

    def register_model(self, name: str, model_uri: str, run_id: str) -> str:
        with self._lock:
            versions = self.registry.setdefault(name, [])
            versions.append(
                MemoryModelVersion(version=str(len(versions) + 1), source=model_uri, run_id=run_id)
            )
            return versions[-1].version

    def tag_model_version(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        with self._lock:
            [entry] = [v for v in self.registry.get(name, []) if v.version == version]
            entry.tags.update(tags)

    def end_run(self, run_id: str, status: str, end_time: int | None = None) -> None:
        with self._lock:
            run = self._run(run_id)
            run.status = status
            run.end_time = end_time if end_time is not None else now_ms()

    def __copy__(self) -> MemoryBackend:
        return self  # a store is shared, not copied with the pipeline that uses it

    def __deepcopy__(self, memo: dict) -> MemoryBackend:
        return self

    def __reduce__(self):
        msg = (
            "a MemoryBackend lives in one process and cannot be pickled; "
            "use MLflow across processes"
        )
        raise TypeError(msg)

    # -- queries for tests --------------------------------------------------------------------

    def _run(self, run_id: str) -> MemoryRun:
        try:
            return self.runs[run_id]
        except KeyError:
            msg = f"no run {run_id!r} in this MemoryBackend"
            raise KeyError(msg) from None

    def get(self, run_id: str) -> MemoryRun:
        """The run with id ``run_id``."""
        with self._lock:
            return self._run(run_id)

    def parents(self) -> list[MemoryRun]:
        """Runs without a parent, in creation order."""
        with self._lock:
            return [run for run in self.runs.values() if run.parent_run_id is None]

    def children(self, run_id: str) -> list[MemoryRun]:
        """Runs whose parent is ``run_id``, in creation order."""
        with self._lock:
            return [run for run in self.runs.values() if run.parent_run_id == run_id]
