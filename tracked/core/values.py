"""Immutable values handed from the caller's thread to the backend."""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from attrs import field, frozen

STAGE_KINDS = ("estimator", "transformer")


FIT = "fit"


INFERENCE = "inference"


FINISHED = "FINISHED"


FAILED = "FAILED"


KILLED = "KILLED"


def status_for(error_type: type[BaseException] | None) -> str:
    """The status of a run that ``error_type`` ended: FINISHED when nothing was raised,
    KILLED for Ctrl-C (``KeyboardInterrupt``), FAILED for anything else."""
    if error_type is None:
        return FINISHED
    return KILLED if issubclass(error_type, KeyboardInterrupt) else FAILED


def now_ms() -> int:
    """Wall-clock time in milliseconds, MLflow's unit for timestamps."""
    return time.time_ns() // 1_000_000


def _frozen_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@frozen(kw_only=True)
class Metric:
    """One metric value; ``step`` orders a history."""

    key: str
    value: float
    step: int = 0
    timestamp: int = field(factory=now_ms)


@frozen(kw_only=True)
class NestedRun:
    """A run nested under a stage's run (a search CV's candidate)."""

    run_name: str
    params: Mapping[str, str] = field(factory=dict, converter=_frozen_mapping)
    metrics: tuple[Metric, ...] = ()
    tags: Mapping[str, str] = field(factory=dict, converter=_frozen_mapping)


@frozen(kw_only=True)
class StageRecord:
    """Everything captured about one stage call, ready to be written as a child run."""

    stage: str
    kind: str
    phase: str
    operator: str | None
    start_ms: int
    end_ms: int
    status: str = FINISHED
    error: str | None = None
    params: Mapping[str, str] = field(factory=dict, converter=_frozen_mapping)
    tags: Mapping[str, str] = field(factory=dict, converter=_frozen_mapping)
    metrics: tuple[Metric, ...] = ()
    #: Metrics that also go to the parent run (evaluation results).
    parent_metrics: tuple[Metric, ...] = ()
    #: Tags for the parent run.
    parent_tags: Mapping[str, str] = field(factory=dict, converter=_frozen_mapping)
    #: The fitted operator to log as a model, or None.
    model: Any = None
    #: The whole fitted workflow (``tracked._compose.Composed``) to log on the parent, or None.
    composed: Any = None
    #: What the evaluation pictures are drawn from (``tracked._plots.Pictures``), or None.
    pictures: Any = None
    #: The default evaluation, computed by the writer (``tracked._deferred.Scores``), or None.
    scores: Any = None
    #: Artifact files for the child run: {name: bytes, or an object whose render() gives them}.
    artifacts: Mapping[str, bytes] = field(factory=dict, converter=_frozen_mapping)
    #: Datasets the stage read: ((summary, context), ...).
    datasets: tuple[tuple[Any, str], ...] = ()
    #: Wall time of the user's stage body alone, in seconds.
    duration_s: float = 0.0
    #: Runs nested under this stage's run (a search CV's best candidates).
    nested_runs: tuple[NestedRun, ...] = ()

    @property
    def training(self) -> bool:
        """Whether the evaluation metrics were computed on training data."""
        return self.phase == FIT

    @property
    def run_name(self) -> str:
        return f"{self.stage}:{self.phase}"


@frozen(kw_only=True)
class DataSummary:
    """A bounded description of the data a stage received or returned."""

    digest: str
    kind: str  # numpy | pandas | sparse (scipy.sparse, any format) | other
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    columns: tuple[str, ...] | None
    #: The first rows (a copy), for previews and schemas.
    head: Any
