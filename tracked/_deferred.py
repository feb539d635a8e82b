"""What the writer turns into metrics and files: made on the caller's thread from copies,
finished later, off it.

Imported when the first stage is recorded, not with ``tracked``: each attrs class costs
``import tracked`` about a millisecond.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

from tracked._capture import default_metrics
from tracked._insight import PREVIEW_BYTES, render_csv
from tracked._records import Metric


@frozen
class Scores:
    """The default evaluation of one estimator call, computed later (by the writer).

    The predictions are made on the caller's thread, by the operator that the call used;
    the metrics (scikit-learn's validation makes each cost milliseconds) are computed from
    them afterwards. ``prefix`` is ``training_`` on fit; ``step`` orders repeated evaluations.
    """

    task: str
    y_true: Any
    y_pred: Any
    prefix: str
    step: int
    timestamp: int

    def metrics(self) -> tuple[Metric, ...]:
        values = default_metrics(self.task, self.y_true, self.y_pred)
        return tuple(
            Metric(
                key=f"{self.prefix}{name}",
                value=float(value),
                step=self.step,
                timestamp=self.timestamp,
            )
            for name, value in values.items()
        )


@frozen
class CsvFile:
    """An artifact written as CSV when it is logged (by the writer), from a copy of rows."""

    data: Any
    columns: tuple[str, ...] | None = None

    def render(self) -> bytes:
        # Bounded like every preview (what is rendered later is numeric and within it).
        return render_csv(self.data, self.columns, max_bytes=PREVIEW_BYTES)[0]
