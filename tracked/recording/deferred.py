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
from tracked.records.report import describe
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

    ``settled()`` computes the metrics at once and keeps only them: what a large evaluation
    carries to the writer (and the spool) instead of its prediction vectors.
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
    #: The metrics and failures computed by ``settled()`` (the vectors are then None);
    #: None: computed when ``evaluate()`` is called.
    computed: tuple[tuple[Metric, ...], tuple[tuple[str, Exception], ...]] | None = None

    def evaluate(self) -> tuple[tuple[Metric, ...], tuple[tuple[str, Exception], ...]]:
        """The metrics, and ``(name, exception)`` for each metric that failed."""
        # getattr: a spool written before this field existed unpickles without it.
        computed = getattr(self, "computed", None)
        if computed is not None:
            return computed
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

    def settled(self) -> Scores:
        """These scores with their metrics computed now, on every row, and without the
        vectors they were computed from (a few numbers instead of megabytes)."""
        try:
            metrics, failed = self.evaluate()
        except Exception as exc:  # the calls could not even be set up
            metrics, failed = (), (("evaluation metrics", exc),)
        computed = (metrics, tuple((name, _picklable(exc)) for name, exc in failed))
        return Scores(
            task=self.task,
            y_true=None,
            y_pred=None,
            prefix=self.prefix,
            step=self.step,
            timestamp=self.timestamp,
            classes=self.classes,
            pos_label=self.pos_label,
            computed=computed,
        )


def _picklable(exc: Exception) -> Exception:
    """``exc``, or a plain exception saying the same when it does not pickle (the settled
    scores are pickled into the spool; the failure is reported when they are written)."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(describe(exc))
    return exc


@frozen
class ScoreTrail:
    """The evaluations of a series' folded calls, one step each: computed like ``Scores``,
    by the writer; a metric that fails is reported once, not once per step."""

    items: tuple[Scores, ...]

    def evaluate(self) -> tuple[tuple[Metric, ...], tuple[tuple[str, Exception], ...]]:
        metrics: list[Metric] = []
        failed: dict[str, Exception] = {}
        for scores in self.items:
            computed, failures = scores.evaluate()
            metrics.extend(computed)
            for name, exc in failures:
                failed.setdefault(name, exc)
        return tuple(metrics), tuple(failed.items())

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
