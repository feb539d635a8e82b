"""Evaluation: which task an operator does, what is scored, and the metrics.

The rule for what is scored: the predictions the stage itself returned, when it returned
predictions for its ``X``; otherwise predictions of a *copy* of the operator (``Predictor``).
Either way the user's objects are never asked to predict again, so the random generators
they hold (a shared ``RandomState``, a ``Generator``) draw exactly as in an untracked run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from tracked.core.settings import scorers
from tracked.recording.counts import COUNTED_ROWS, counted_metrics, label_counts, ranked_auc

CLASSIFICATION_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")


#: Binary classifiers only, from predict_proba (or decision_function for roc_auc).
BINARY_METRICS = ("roc_auc", "log_loss")


REGRESSION_METRICS = ("r2", "rmse", "mae")


#: ``type_of_target`` values that are labels, not measurements.
_LABELS = frozenset({"binary", "multiclass", "multiclass-multioutput", "multilabel-indicator"})


_CONTINUOUS = frozenset({"continuous", "continuous-multioutput"})


#: How far and how much of an object graph ``holds_random_state`` reads before it gives up
#: (and answers True: a copy is the safe side).
_WALK_DEPTH = 8


_WALK_NODES = 20_000


def holds_random_state(obj: object) -> bool:
    """Whether a random generator (``RandomState``, ``Generator``, ``random.Random``) can be
    reached from ``obj``: its attributes, containers and closures, read to a bounded depth.
    True when the walk cannot tell."""
    import random

    import numpy as np

    generators = (np.random.RandomState, np.random.Generator, np.random.BitGenerator)
    generators += (random.Random,)
    seen: set[int] = set()
    stack = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if item is None or isinstance(item, (str, bytes, int, float, bool, complex, type)):
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, generators):
            return True
        if depth >= _WALK_DEPTH or len(seen) > _WALK_NODES:
            return True
        if isinstance(item, np.ndarray):
            if item.dtype == object:
                stack.extend((value, depth + 1) for value in item.ravel().tolist())
            continue
        if isinstance(item, Mapping):
            stack.extend((value, depth + 1) for value in list(item.values()))
            continue
        if isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((value, depth + 1) for value in list(item))
            continue
        closure = getattr(item, "__closure__", None)
        if closure:
            stack.extend((cell.cell_contents, depth + 1) for cell in closure if _filled(cell))
        bound = getattr(item, "__self__", None)
        if bound is not None and not isinstance(bound, type(np)):  # not a module's builtin
            stack.append((bound, depth + 1))
        state = getattr(item, "__dict__", None)
        if isinstance(state, dict):
            stack.extend((value, depth + 1) for value in list(state.values()))
        for klass in type(item).__mro__:
            slots = klass.__dict__.get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if name != "__dict__" and hasattr(item, name):
                    stack.append((getattr(item, name), depth + 1))
    return False


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def unshared(obj: Any) -> Any:
    """``obj`` itself when no random generator can be reached from it, else a deep copy:
    what tracking predicts with, so that it never draws from a generator the user holds."""
    return copy.deepcopy(obj) if holds_random_state(obj) else obj


class Predictor:
    """The operator as it is after the call, deep-copied once, when first needed, if a
    random generator can be reached from it (else the operator itself: no copy to pay for).

    Predicting with the copy draws from the copy's random generators, never from the ones
    the user holds (the operator's own, its params', or shared with the pipeline). The
    global random state is restored by the stage wrapper after capture.
    """

    def __init__(self, operator: Any) -> None:
        self.operator = operator
        self._copy: Any = None
        self._made = False

    def get(self) -> Any:
        if not self._made:
            self._copy = unshared(self.operator)
            self._made = True
        return self._copy

    def call(self, method: str, X: Any) -> Any:
        """``copy.<method>(X)``, or None when the operator has no such method."""
        if not callable(getattr(self.operator, method, None)):
            return None
        return getattr(self.get(), method)(X)


def predicts_without_global_draws(operator: object) -> bool:
    """Whether predicting with a copy of ``operator`` on another thread leaves the global
    random generators alone: it and every estimator among its params are scikit-learn's
    own, none has ``random_state=None`` and no param is a function (a ``func``, a metric).

    scikit-learn's estimators do not draw to predict, by convention; where one does (a
    ``DummyClassifier`` with the ``stratified`` strategy) it draws from its ``random_state``,
    which a copy holds a copy of, unless that is None: the global generator. Anything else
    (a class or function of the user's or of another library) may draw from NumPy's or
    Python's global generator, which another thread cannot draw from unseen.
    """
    if not _scikit_learn_own(operator):
        return False
    try:
        params = operator.get_params(deep=True)  # type: ignore[attr-defined]
    except Exception:
        return False
    for name, value in params.items():
        if callable(getattr(value, "get_params", None)):
            if not _scikit_learn_own(value):
                return False
        elif callable(value) and not isinstance(value, type):
            return False  # a function of the user's (a FunctionTransformer's, a metric)
        if (name == "random_state" or name.endswith("__random_state")) and value is None:
            return False
    return True


def _scikit_learn_own(obj: object) -> bool:
    return type(obj).__module__.partition(".")[0] == "sklearn"


def class_scores(
    predictor: Predictor, X: Any, binary: bool, failed: Callable[[str, Exception], None]
) -> tuple[Any, Any]:
    """``(predict_proba, None)`` of the predictor's operator on ``X``, or for a binary
    classifier without it ``(None, decision_function)``; ``(None, None)`` when neither can
    be had. ``failed(method, exception)`` hears of each method that raised."""
    import numpy as np

    for method in ("predict_proba", "decision_function") if binary else ("predict_proba",):
        try:
            values = predictor.call(method, X)
        except Exception as exc:
            failed(method, exc)
            continue
        if values is not None:
            values = np.asarray(values)
            return (values, None) if method == "predict_proba" else (None, values)
    return None, None


def _target_type(values: Any) -> str | None:
    from sklearn.utils.multiclass import type_of_target

    try:
        return type_of_target(values)
    except Exception:  # ragged, nested or otherwise unreadable values
        return None


def tagged_task(operator: object) -> str | None:
    """``classifier`` or ``regressor`` from scikit-learn's tags; None without them."""
    if not hasattr(operator, "__sklearn_tags__"):
        return None
    from sklearn.utils import get_tags

    try:
        kind = get_tags(operator).estimator_type
    except Exception:  # objects that only look like estimators
        return None
    return kind if kind in ("classifier", "regressor") else None


def task_of(operator: object, y_true: Any = None, y_pred: Any = None) -> str | None:
    """``classifier``, ``regressor``, ``probability`` (a binary classifier whose predictions
    are the probability of class 1, as a statsmodels ``Logit`` result gives) or None.

    scikit-learn's tags decide when the operator has them; otherwise ``classes_`` means a
    classifier, and else the ground truth and the predictions do (``type_of_target``): labels
    predicted for labels are a classification, anything else on numbers a regression.
    """
    tagged = tagged_task(operator)
    if tagged is not None:
        return tagged
    if y_pred is None and not callable(getattr(operator, "predict", None)):
        return None
    if hasattr(operator, "classes_"):
        return "classifier"
    if y_true is None or y_pred is None:
        return None
    truth, predicted = _target_type(y_true), _target_type(y_pred)
    if truth in _CONTINUOUS:
        return "regressor" if predicted in _CONTINUOUS | _LABELS else None
    if truth not in _LABELS:
        return None
    if predicted in _LABELS:
        return "classifier"
    if predicted == "continuous" and truth == "binary" and _probabilities(y_true, y_pred):
        return "probability"
    return "regressor" if predicted in _CONTINUOUS else None


def _probabilities(y_true: Any, y_pred: Any) -> bool:
    import numpy as np

    truth = np.unique(np.asarray(y_true))
    predicted = np.asarray(y_pred, dtype=float)
    return (
        truth.dtype.kind in "biuf"
        and set(truth.tolist()) <= {0, 1}
        and predicted.ndim == 1
        and bool(((predicted >= 0) & (predicted <= 1)).all())
    )


def returned_predictions(result: Any, operator: Any, X: Any, y: Any) -> Any:
    """``result`` when it is predictions for ``X`` (shaped like the ground truth ``y``, one
    per row of ``X``; labels, for a classifier), else None: a fitted estimator, a
    transformed ``X``, probabilities or decision scores."""
    import numpy as np

    if result is None or result is operator or result is y or result is X:
        return None
    if callable(getattr(result, "fit", None)) or callable(getattr(result, "get_params", None)):
        return None
    try:
        shape, truth = np.shape(result), np.shape(y)
    except Exception:
        return None
    if not shape or shape != truth:
        return None
    try:
        from sklearn.utils.validation import _num_samples

        if X is not None and _num_samples(X) != shape[0]:
            return None
    except Exception:
        pass
    if (tagged_task(operator) == "classifier" or hasattr(operator, "classes_")) and (
        _target_type(result) not in _LABELS
    ):
        return None  # a classifier's scores (decision_function), not its labels
    return result


def default_metric_calls(
    task: str, y_true: Any, y_pred: Any
) -> list[tuple[str, Callable[[], float]]]:
    """``(name, compute)`` for each default metric, so that each is computed on its own."""
    from sklearn import metrics

    if task in ("classifier", "probability") and len(y_true) >= COUNTED_ROWS:
        counted = label_counts(y_true, y_pred)
        if counted is not None:  # the same figures, counted once (see counts.py)
            values = counted_metrics(counted[1])
            return [(name, lambda value=value: value) for name, value in values.items()]
    if task in ("classifier", "probability"):
        return [
            ("accuracy", lambda: metrics.accuracy_score(y_true, y_pred)),
            (
                "f1_macro",
                lambda: metrics.f1_score(y_true, y_pred, average="macro", zero_division=0),
            ),
            (
                "precision_macro",
                lambda: metrics.precision_score(y_true, y_pred, average="macro", zero_division=0),
            ),
            (
                "recall_macro",
                lambda: metrics.recall_score(y_true, y_pred, average="macro", zero_division=0),
            ),
        ]
    return [
        ("r2", lambda: metrics.r2_score(y_true, y_pred)),
        ("rmse", lambda: metrics.root_mean_squared_error(y_true, y_pred)),
        ("mae", lambda: metrics.mean_absolute_error(y_true, y_pred)),
    ]


def positive_class(classes: tuple[Any, ...], pos_label: Any) -> int | None:
    """The index of the positive class among a binary classifier's ``classes``: of
    ``pos_label`` when set, else scikit-learn's (``classes_[1]``); None if not binary or
    ``pos_label`` is not one of them."""
    if len(classes) != 2:
        return None
    if pos_label is None:
        return 1
    for index, label in enumerate(classes):
        if _same(label, pos_label):
            return index
    return None


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def binary_metric_calls(
    y_true: Any, proba: Any, decision: Any, classes: tuple[Any, ...], pos_label: Any
) -> list[tuple[str, Callable[[], float]]]:
    """``roc_auc`` (from probabilities, else the decision function) and ``log_loss`` (from
    probabilities) of a binary classifier, where they are defined: the ground truth uses the
    classifier's labels, and both classes occur in it for ``roc_auc``."""
    import numpy as np

    index = positive_class(classes, pos_label)
    if index is None or (proba is None and decision is None):
        return []
    y_true = np.asarray(y_true)
    labels = np.asarray(classes)
    try:
        known = bool(np.isin(y_true, labels).all())
    except Exception:
        known = False
    if not known:  # e.g. the stage encodes labels before its operator sees them
        return []
    from sklearn import metrics

    positive = y_true == labels[index]
    calls: list[tuple[str, Callable[[], float]]] = []
    if positive.any() and not positive.all():
        if proba is not None:
            column = np.asarray(proba)[:, index]
        else:
            column = np.asarray(decision, dtype=float)
            column = column if index == 1 else -column
        calls.append(("roc_auc", lambda: _roc_auc(positive, column)))
    if proba is not None:
        calls.append(
            ("log_loss", lambda: metrics.log_loss(y_true, np.asarray(proba), labels=labels))
        )
    return calls


def _roc_auc(positive: Any, column: Any) -> float:
    """``roc_auc_score``; from ranks past ``COUNTED_ROWS`` rows (the same figure, without
    scikit-learn's checks, which sort every row several times)."""
    from sklearn import metrics

    if len(positive) >= COUNTED_ROWS:
        value = ranked_auc(positive, column)
        if value is not None:
            return value
    return float(metrics.roc_auc_score(positive, column))


def scored(
    scoring: Any, estimator: Any, X: Any, y: Any
) -> tuple[dict[str, float], dict[str, BaseException]]:
    """Each scorer of ``scoring`` on its own: ``({name: value}, {name: why it failed})``."""
    values: dict[str, float] = {}
    failed: dict[str, BaseException] = {}
    for name, scorer in scorers(scoring).items():
        try:
            values[name] = float(scorer(estimator, X, y))
        except Warning:
            raise  # a warning turned into an error by the user's filters
        except Exception as exc:
            failed[name] = exc
    return values, failed
