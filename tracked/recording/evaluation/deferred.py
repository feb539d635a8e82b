"""What the writer turns into metrics and files: made on the caller's thread from copies,
finished later, off it.

Imported when the first stage is recorded, not with ``tracked``: each attrs class costs
``import tracked`` about a millisecond.
"""

from __future__ import annotations

from typing import Any, ClassVar

from attrs import frozen

from tracked.core.report import describe, notice
from tracked.core.values import Metric
from tracked.recording.data import render_csv
from tracked.recording.evaluation.scoring import (
    Predictor,
    binary_metric_calls,
    class_scores,
    default_metric_calls,
)


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


@frozen(eq=False)
class TrainingScores:
    """The ``training_`` metrics of a fit, predicted and computed later, by the writer.

    Made on the caller's thread for an operator that holds its training data (a
    nearest-neighbours model's ``_fit_X``) and predicts without drawing from the global
    random generators (``predicts_without_global_draws``): it keeps a reference to the
    operator, ``X`` (itself when it is the model's own array, else a copy), a copy of the
    ground truth, and the predictions the stage returned, if it did. The record's payload is
    pickled on the caller's thread before the call returns (``Outbox._submit``), and an
    object held twice in one pickle is stored once: when ``X`` is the model's own array, the
    model snapshot and ``X`` cost the spool nothing more than the model alone. The writer
    predicts with what it unpickled, a copy (and with a copy of that where a random
    generator can be reached): the user's objects never predict again. (A payload that
    cannot be pickled is written from memory: its model, and what these metrics predict
    with, are then the operator and data as they are when written.)

    ``evaluate()`` gives what ``Scores.evaluate()`` gives; predicting on every row costs
    the writer what it would have cost the caller.
    """

    model: Any
    X: Any
    y_true: Any
    task: str
    step: int
    timestamp: int
    #: The predictions the stage returned (a copy), or None: the model predicts them.
    y_pred: Any = None
    classes: tuple[Any, ...] = ()
    pos_label: Any = None
    prefix: str = "training_"
    #: ``owner.stage``, for the notice of a method that failed.
    where: str = ""
    #: It holds the model and the training data: a spool past its cap drops it (the
    #: metrics with it), as it drops models (``StagePayload.light``).
    heavy: ClassVar[bool] = True

    def evaluate(self) -> tuple[tuple[Metric, ...], tuple[tuple[str, Exception], ...]]:
        """The metrics, and ``(name, exception)`` for each metric that failed (all of them,
        as one, when the model cannot predict)."""
        try:
            scores = self.scores()
        except Exception as exc:
            return (), ((f"{self.prefix}metrics", exc),)
        return scores.evaluate()

    def scores(self) -> Scores:
        """The predictions of (a copy of) the model, made now, as ``Scores``."""
        import numpy as np

        predictor = Predictor(self.model)
        y_pred = self.y_pred
        if y_pred is None:
            y_pred = predictor.call("predict", self.X)
            if y_pred is None:
                raise TypeError(f"{type(self.model).__name__} has no predict method")
        proba = decision = None
        if len(self.classes) == 2:  # binary metrics: probabilities, else decision values
            proba, decision = class_scores(predictor, self.X, True, self._failed)
        return Scores(
            task=self.task,
            y_true=self.y_true,
            y_pred=np.asarray(y_pred),
            prefix=self.prefix,
            step=self.step,
            timestamp=self.timestamp,
            proba=proba,
            decision=decision,
            classes=self.classes,
            pos_label=self.pos_label,
        )

    def _failed(self, method: str, exc: Exception) -> None:
        notice(
            f"stage {self.where}: {method} failed on its training data ({describe(exc, 300)});"
            " the training metrics it gives are left out",
            key=f"no-{method}:{self.where}",
            warn=False,
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
    #: Its metrics stay on the series' run (steps of calls, not the parent's evaluations).
    to_parent: ClassVar[bool] = False

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
