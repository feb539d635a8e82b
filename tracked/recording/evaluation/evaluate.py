"""Evaluation of an estimator stage given ground truth: metrics now (a user's ``scoring``)
or later (``Scores``, finished by the writer), and the pictures drawn from them.

Where it predicts. The default ``training_`` metrics of a fit are predicted by the writer
(``TrainingScores``), off the caller's thread, when three things hold: the operator holds
its training data (a nearest-neighbours model's ``_fit_X``, which is the stage's ``X`` for a
NumPy array, a converted copy for a DataFrame; or a ``Pipeline`` whose last step does), so
the record carries that much data already and a copy of ``X`` at most doubles it (none is
made when ``X`` is the model's own), while predicting costs in proportion to the training
rows times the rows predicted; it predicts without drawing from the global random
generators (``predicts_without_global_draws``: one of scikit-learn's own estimators, none
of them with ``random_state=None``), since a draw on the writer's thread would change the
user's next draw and could not be given back; and the call's record does not wait for a
stage that called it (it would be pickled then, after the caller may have refitted the
operator). Everything else is predicted here, on the caller's thread, with a copy where a
random generator can be reached, inside the stage wrapper that gives back whatever the
global generators gave. An operator that does not hold its training data would make the
record carry a copy of it (memory, pickling and spool bytes in proportion to the data) for
a prediction that usually costs less than its fit.
"""

from __future__ import annotations

from typing import Any

from attrs import evolve, frozen

from tracked.core.errors import TrackingError
from tracked.core.names import CONTEXT_ATTRIBUTE
from tracked.core.report import describe, notice, report_failure
from tracked.core.values import (
    FIT,
    Metric,
    now_ms,
)
from tracked.delivery.session import Session, evaluation_metrics
from tracked.recording.evaluation.deferred import Scores, TrainingScores
from tracked.recording.evaluation.plots import SCATTER_POINTS, Pictures
from tracked.recording.evaluation.scoring import (
    Predictor,
    class_scores,
    positive_class,
    predicts_without_global_draws,
    returned_predictions,
    scored,
    tagged_task,
    task_of,
)
from tracked.recording.spec import Call, StageSpec


@frozen(kw_only=True, eq=False)
class _Predictions:
    """What an evaluation compares: the ground truth and the predictions, the task they are
    scored as and, for a classifier, its classes, probabilities or decision values, and the
    user's positive class."""

    task: str | None
    y: Any
    y_pred: Any
    proba: Any = None
    decision: Any = None
    classes: tuple[Any, ...] = ()
    pos_label: Any = None


def evaluate(
    call: Call,
    operator: Any,
    X: Any,
    y: Any,
    phase: str,
    result: Any,
    tags: dict[str, str] | None = None,
) -> tuple[tuple[Metric, ...], Pictures | None, Scores | None]:
    """Evaluation of an estimator stage given ground truth (``training_`` on fit): the
    metrics, computed now for a ``scoring`` of the user's and later (``Scores``) for the
    default set; on inference also what the evaluation pictures are drawn from, and in
    ``tags`` (the stage run's) the size of their sample when they are drawn from one.

    What is scored: the predictions the stage returned, when it returned predictions for
    its ``X``; else those of a copy of the operator. The user's objects never predict again
    here, so the random generators they hold draw as in an untracked run.
    Where it predicts: see the module's docstring.
    """
    if y is None:
        return (), None, None
    spec, session = call.spec, call.session
    scoring = call.session.settings.scoring
    pos_label = call.session.settings.pos_label
    y_pred = returned_predictions(result, operator, X, y)
    if phase == FIT and scoring is None:
        later = _training_later(call, operator, X, y, y_pred)
        if later is not None:
            return (), None, later
    predictor = Predictor(operator)
    scored, y_pred = predicted(spec, predictor, X, y_pred, copy=scoring is not None)
    if not scored:
        return (), None, None
    task = task_of(operator, y, y_pred)
    predictions = _Predictions(task=task, y=y, y_pred=y_pred, pos_label=pos_label)
    predictions = _classified(spec, predictor, X, phase, predictions)
    prefix = "training_" if phase == FIT else ""
    pictures = None
    if phase != FIT and predictions.y_pred is not None and task is not None:
        what = f"prepare the evaluation pictures of {spec.name!r}"
        pictures = guarded(session, what, _pictures, predictions)
        if pictures is not None and tags is not None:
            tags.update(pictures.tags())
    if scoring is None:
        return (), pictures, _deferred(session, predictions, prefix)
    return _scored_now(call, scoring, predictor, X, y, prefix), pictures, None


def predicted(
    spec: StageSpec, predictor: Predictor, X: Any, y_pred: Any, *, copy: bool = False
) -> tuple[bool, Any]:
    """``(True, predictions)``: ``y_pred`` (what the stage returned) or, when None, those of
    the operator's copy (None when it has no ``predict``); ``copy`` also makes the copy.
    ``(False, None)``, with a notice, when the operator cannot score the stage's input."""
    try:
        if y_pred is None:
            y_pred = predictor.call("predict", X)
        if copy:
            predictor.get()
    except Exception as exc:
        # Usually the stage reshapes its input before the operator sees it, so the operator
        # cannot predict on what the stage received: a fact about the pipeline, not a failure.
        notice(
            f"stage {spec.owner}.{spec.name} is not evaluated: its operator could not score "
            f"the stage's own input ({describe(exc, 300)})",
            key=f"no-evaluation:{spec.owner}.{spec.name}",
        )
        return False, None
    return True, y_pred


def _classified(
    spec: StageSpec, predictor: Predictor, X: Any, phase: str, predictions: _Predictions
) -> _Predictions:
    """The predictions with what a classifier adds: its classes, and the probabilities or
    decision values its binary metrics and inference curves need (a probability task's
    predictions become labels, with both columns of probability)."""
    import numpy as np

    y, pos_label = predictions.y, predictions.pos_label
    if predictions.task == "probability":  # the probability of class 1: labels, both columns
        p = np.asarray(predictions.y_pred, dtype=float)
        proba = np.column_stack([1.0 - p, p])
        labels = np.array([0, 1]).astype(np.asarray(y).dtype)
        classes, y_pred = tuple(labels.tolist()), labels[(p >= 0.5).astype(int)]
        return evolve(predictions, y_pred=y_pred, proba=proba, classes=classes)
    if predictions.task != "classifier" or np.ndim(y) != 1:
        return predictions
    classes = _checked_classes(spec, predictor.operator, pos_label)
    proba = decision = None
    if len(classes) == 2 or phase != FIT:  # binary metrics; curves on inference
        proba, decision = _scores(spec, predictor, X, binary=len(classes) == 2)
    return evolve(predictions, proba=proba, decision=decision, classes=classes)


def _checked_classes(spec: StageSpec, operator: Any, pos_label: Any) -> tuple[Any, ...]:
    """The operator's classes; a notice when ``pos_label`` is not one of a binary's."""
    classes = _classes(operator)
    if len(classes) == 2 and positive_class(classes, pos_label) is None:
        notice(
            f"pos_label {pos_label!r} of {spec.owner} is not a class of stage {spec.name!r} "
            f"(its classes are {list(classes)}): its roc_auc, log_loss and curves are left out",
            key=f"pos-label:{spec.owner}.{spec.name}:{pos_label!r}",
        )
    return classes


def _training_later(
    call: Call, operator: Any, X: Any, y: Any, y_pred: Any
) -> TrainingScores | None:
    """The training metrics of a fit for the writer to predict and compute; None when they
    are computed here (see ``evaluate``), or when there is nothing to predict."""
    import numpy as np

    task = tagged_task(operator)
    if task is None or _waits(call) or not predicts_without_global_draws(operator):
        return None
    data = _training_data(operator, X)
    if data is None:
        return None
    spec, pos_label = call.spec, call.session.settings.pos_label
    classes: tuple[Any, ...] = ()
    if task == "classifier" and np.ndim(y) == 1:
        classes = _checked_classes(spec, operator, pos_label)
    if y_pred is not None and len(classes) != 2:
        return None  # scored as returned, here: nothing to predict
    return TrainingScores(
        model=operator,
        X=data,
        y_true=np.array(y, copy=True),
        task=task,
        step=call.session.next_step("training_"),
        timestamp=now_ms(),
        y_pred=None if y_pred is None else np.array(y_pred, copy=True),
        classes=classes,
        pos_label=pos_label,
        where=f"{spec.owner}.{spec.name}",
    )


def _training_data(operator: Any, X: Any) -> Any:
    """What the writer predicts on: ``X`` itself when it is one of the operator's attributes
    (a nearest-neighbours model's ``_fit_X``; the model snapshot carries it, so it is not
    copied: were it changed in place after the call, the model would have changed with it);
    a copy of ``X`` (a NumPy array, a pandas DataFrame, a SciPy sparse matrix) when the
    operator (or a Pipeline's last step) holds a table with a row per row of it (the same
    data, converted or transformed); else None: the model does not carry its training
    data, and is scored on the caller's thread."""
    state = getattr(operator, "__dict__", None)
    if X is None or not isinstance(state, dict):
        return None
    values = list(state.values())
    if any(value is X for value in values):
        return X
    final = getattr(operator, "steps", None) and getattr(operator, "_final_estimator", None)
    values += list(getattr(final, "__dict__", {}).values())  # a Pipeline's last step
    try:
        rows = X.shape[0] if len(X.shape) == 2 else None
    except Exception:
        return None
    held = any(len(getattr(value, "shape", ())) == 2 and value.shape[0] == rows for value in values)
    return _copy_of_table(X) if rows and held else None


def _copy_of_table(X: Any) -> Any:
    """A copy of a table of the kinds scikit-learn takes; None for anything else."""
    import numpy as np

    if isinstance(X, np.ndarray):
        return X.copy()
    kind = type(X).__module__.partition(".")[0]
    if kind == "pandas" and hasattr(X, "columns"):
        return X.copy(deep=True)
    if kind == "scipy" and callable(getattr(X, "tocsr", None)):
        return X.copy()
    return None


def _waits(call: Call) -> bool:
    """Whether the call's record waits for the stage that called it, to be pickled with
    that stage's record, once the caller may have changed the operator and the data."""
    context = getattr(call.instance, "__dict__", {}).get(CONTEXT_ATTRIBUTE)
    try:
        return bool(context.stack())
    except Exception:
        return True


def _deferred(session: Session, predictions: _Predictions, prefix: str) -> Scores | None:
    """The default metrics, computed later by the writer from copies of what is scored;
    None when there is nothing to score.

    Past ``SCATTER_POINTS`` rows they are computed now, on every row, on the caller's
    thread (the payload is pickled into the spool there), and only their values travel, not
    the vectors: about 4.8 MB less in the spool per 100,000-row binary inference, for about
    0.1 s of scoring in the call (measured: scikit-learn's six metrics on 100,000 rows,
    ``roc_auc`` and ``log_loss`` the dearest; regression metrics about 10 ms). That is small
    next to a real model's prediction on that many rows, though not next to a linear one's.
    """
    if predictions.task is None or predictions.y_pred is None:
        return None
    import numpy as np

    step = session.next_step(prefix or "evaluation")
    scores = Scores(
        task=predictions.task,
        y_true=np.array(predictions.y, copy=True),
        y_pred=np.array(predictions.y_pred, copy=True),
        prefix=prefix,
        step=step,
        timestamp=now_ms(),
        proba=predictions.proba,
        decision=predictions.decision,
        classes=predictions.classes,
        pos_label=predictions.pos_label,
    )
    return scores.settled() if np.shape(scores.y_true)[:1] > (SCATTER_POINTS,) else scores


def _scored_now(
    call: Call, scoring: Any, predictor: Predictor, X: Any, y: Any, prefix: str
) -> tuple[Metric, ...]:
    """The user's ``scoring``, computed now with the copy; a failing scorer is dropped with
    a notice."""
    spec = call.spec
    # Each scorer on its own, with the copy: one that fails loses only its own metric.
    values, failed = scored(scoring, predictor.get(), X, y)
    for name, exc in failed.items():
        notice(
            f"metric {prefix}{name} of stage {spec.owner}.{spec.name} is dropped: its scorer "
            f"failed ({describe(exc, 300)}); the other metrics are recorded",
            key=f"scorer:{spec.owner}.{spec.name}:{prefix}{name}",
        )
    if not values:
        return ()
    step = call.session.next_step(prefix or "evaluation")
    return evaluation_metrics(values, prefix, step)


def _classes(operator: Any) -> tuple[Any, ...]:
    """A single-output classifier's ``classes_`` as plain values; () when it has none."""
    import numpy as np

    try:
        classes = np.asarray(operator.classes_)
    except Exception:
        return ()
    return tuple(classes.tolist()) if classes.ndim == 1 else ()


def _scores(spec: StageSpec, predictor: Predictor, X: Any, binary: bool) -> tuple[Any, Any]:
    """``predict_proba`` of the copy (or, for a binary classifier without it,
    ``decision_function``); what cannot be had only leaves out the metrics it would give."""

    def failed(method: str, exc: Exception) -> None:
        notice(
            f"stage {spec.owner}.{spec.name}: {method} failed on the stage's input "
            f"({describe(exc, 300)}); the metrics and curves it gives are left out",
            key=f"no-{method}:{spec.owner}.{spec.name}",
            warn=False,
        )

    return class_scores(predictor, X, binary, failed)


def _pictures(predictions: _Predictions) -> Pictures | None:
    """What the writer draws the evaluation pictures from."""
    p = predictions
    task = "classifier" if p.task == "probability" else p.task
    return Pictures.of(task, p.y, p.y_pred, p.proba, p.classes, p.pos_label)


def guarded(session: Session, what: str, call: Any, *args: Any, may_raise: bool = True) -> Any:
    """``call(*args)``, with a failure reported (and None returned) instead of raised."""
    try:
        return call(*args)
    except Warning:
        raise  # a warning turned into an error by the user's filters: not a tracking failure
    except Exception as exc:
        if isinstance(exc, TrackingError) and may_raise:
            raise  # reported already, in strict mode: not wrapped in a second message
        report_failure(what, exc, strict=session.strict, may_raise=may_raise)
        return None
