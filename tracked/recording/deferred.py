"""What the writer turns into metrics and files: made on the caller's thread from copies,
finished later, off it.

Imported when the first stage is recorded, not with ``tracked``: each attrs class costs
``import tracked`` about a millisecond.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

from tracked.recording.data import render_csv
from tracked.recording.scoring import binary_metric_calls, default_metric_calls
from tracked.records.values import Metric


@frozen
class Scores:
    """The default evaluation of one estimator call, computed later (by the writer).

    The predictions are what the stage returned, or those of a copy of the operator made on
    the caller's thread; the metrics (scikit-learn's validation makes each cost milliseconds)
    are computed from them afterwards, each on its own. ``prefix`` is ``training_`` on fit;
    ``step`` orders repeated evaluations. A binary classifier's ``proba``
    (``predict_proba``) or ``decision`` (``decision_function``), with its ``classes`` and
    the ``pos_label`` of the pipeline, add ``roc_auc`` and ``log_loss``.
    """

    task: str
    y_true: Any
    y_pred: Any
    prefix: str
    step: int
    timestamp: int
    proba: Any = None
    decision: Any = None
    classes: tuple[Any, ...] = ()
    pos_label: Any = None

    def evaluate(self) -> tuple[tuple[Metric, ...], tuple[tuple[str, Exception], ...]]:
        """The metrics, and ``(name, exception)`` for each metric that failed."""
        calls = default_metric_calls(self.task, self.y_true, self.y_pred)
        if self.task in ("classifier", "probability"):
            # getattr: a spool written before these fields existed unpickles without them.
            calls += binary_metric_calls(
                self.y_true,
                getattr(self, "proba", None),
                getattr(self, "decision", None),
                getattr(self, "classes", ()),
                getattr(self, "pos_label", None),
            )
        metrics, failed = [], []
        for name, compute in calls:
            try:
                value = float(compute())
            except Exception as exc:
                failed.append((f"{self.prefix}{name}", exc))
                continue
            metrics.append(
                Metric(
                    key=f"{self.prefix}{name}",
                    value=value,
                    step=self.step,
                    timestamp=self.timestamp,
                )
            )
        return tuple(metrics), tuple(failed)

    def metrics(self) -> tuple[Metric, ...]:
        return self.evaluate()[0]


@frozen
class CsvFile:
    """An artifact written as CSV when it is logged (by the writer), from a copy of rows."""

    data: Any
    columns: tuple[str, ...] | None = None
    #: Whole rows only, as many as fit (a preview: ``PREVIEW_BYTES``); None: all of them
    #: (``cv_results.csv`` is a table of record, not a preview).
    max_bytes: int | None = None

    def render(self) -> bytes:
        # getattr: a spool written before this field existed unpickles without it.
        return render_csv(self.data, self.columns, max_bytes=getattr(self, "max_bytes", None))[0]
