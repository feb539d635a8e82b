"""What an operator learned: its fitted attributes as metrics, histories and a document
(``fitted_attributes.json``: arrays summarised, secrets masked), and the early-stopping results
of boosting models."""

from __future__ import annotations

import math
from typing import Any

from attrs import frozen

from tracked.core.params import is_fitted_name, is_setting, public_state
from tracked.core.text import MASK, is_secret_name, mask_secrets

#: Fitted arrays with more elements than this are summarised, not logged whole.
FITTED_ELEMENTS = 1000


@frozen(kw_only=True)
class FittedState:
    """An operator's fitted attributes: metrics, metric histories and a JSON document."""

    scalars: dict[str, float]
    histories: dict[str, list[float]]
    document: dict[str, Any]


#: Fitted attributes that hold labels, not measurements: in the JSON, never metrics.
LABEL_ATTRIBUTES = frozenset({"classes_", "labels_", "categories_"})


def fitted_state(operator: Any) -> FittedState:
    """Scalars become metrics, 1-D numeric arrays (up to 1000 elements) metric histories
    (labels such as ``classes_`` excepted); all of it goes to the JSON document, arrays over
    1000 elements as a summary.

    An operator that is not a scikit-learn estimator (no ``get_params``) has no convention
    that tells its state from its settings: its other public attributes go to the document
    too, arrays only as a summary (what it holds may be its training data).
    """
    import numpy as np

    scalars: dict[str, float] = {}
    histories: dict[str, list[float]] = {}
    document: dict[str, Any] = {}
    plain = not callable(getattr(operator, "get_params", None))
    for name, value in sorted(public_state(operator).items()):
        if is_secret_name(name):  # `auth_token_`: named, never written out
            if is_fitted_name(name) or (plain and not callable(value)):
                document[name] = MASK
            continue
        if not is_fitted_name(name):
            if plain and not callable(value):
                document[name] = _held(value)
            continue
        if isinstance(value, (bool, np.bool_)):
            document[name] = bool(value)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            number = float(value)
            document[name] = _json_number(number)
            if math.isfinite(number):
                scalars[name] = number
        elif isinstance(value, np.ndarray):
            document[name] = _array_entry(value)
            if (
                value.ndim == 1
                and value.dtype.kind in "biuf"
                and value.size <= FITTED_ELEMENTS
                and name not in LABEL_ATTRIBUTES
            ):
                histories[name] = [float(v) for v in value]
        elif isinstance(value, (str, list, tuple, dict)) or value is None:
            document[name] = _jsonable(value)
        else:
            document[name] = f"<{type(value).__module__}.{type(value).__qualname__}>"
    return FittedState(scalars=scalars, histories=histories, document=document)


def _held(value: Any) -> Any:
    """A plain operator's attribute for the document: settings as they are, data as a
    summary of its shape, anything else by its type."""
    if is_setting(value):
        return _jsonable(value)
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        return {"summary": {"type": type(value).__name__, "shape": [int(n) for n in shape]}}
    if isinstance(value, (list, tuple, dict)):
        return {"summary": {"type": type(value).__name__, "length": len(value)}}
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _json_number(number: float) -> float | str:
    return number if math.isfinite(number) else str(number)


def _array_entry(array: Any) -> Any:
    if array.size <= FITTED_ELEMENTS:
        return _jsonable(array.tolist())
    entry: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    if array.dtype.kind in "biuf":
        entry.update(
            min=_json_number(float(array.min())),
            max=_json_number(float(array.max())),
            mean=_json_number(float(array.mean())),
        )
    return {"summary": entry}


def _jsonable(value: Any) -> Any:
    """``value`` made JSON-safe: non-finite floats as strings, unknown objects as text."""
    if isinstance(value, float):
        return _json_number(value)
    if isinstance(value, str):
        return mask_secrets(value)
    if value is None or isinstance(value, (int, bool)):
        return value
    if isinstance(value, dict):
        return {
            str(key): MASK if is_secret_name(str(key)) else _jsonable(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _jsonable(item())
        except Exception:
            pass
    return mask_secrets(str(value))


def boosting_scores(operator: Any) -> dict[str, float]:
    """``best_iteration`` and ``best_score`` of a boosting model fitted with early stopping
    (XGBoost's ``best_iteration`` / ``best_score``, LightGBM's ``best_iteration_`` /
    ``best_score_``); empty for anything else.

    They are properties over the booster, not fitted attributes in the operator's
    ``__dict__``, and XGBoost's raise ``AttributeError`` without early stopping, so each is
    read on its own. LightGBM's ``best_score_`` is per validation set and metric: each
    becomes ``best_score.<set>.<metric>``, and ``best_score`` is the first of them (the
    one early stopping watched, with ``first_metric_only``). LightGBM reports
    ``best_iteration_`` 0 when it did not stop early: no metric then.
    """
    scores: dict[str, float] = {}
    for attribute, key in (("best_iteration", "best_iteration"), ("best_score", "best_score")):
        if _declared(operator, attribute):
            value = _read(operator, attribute)
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                scores[key] = float(value)
    iteration = (
        _read(operator, "best_iteration_") if _declared(operator, "best_iteration_") else None
    )
    if isinstance(iteration, (int, float)) and iteration > 0:
        scores["best_iteration"] = float(iteration)
        best = _read(operator, "best_score_")
        for data_name, by_metric in (best or {}).items():
            for metric, value in (by_metric or {}).items():
                if isinstance(value, (int, float)) and math.isfinite(float(value)):
                    scores.setdefault("best_score", float(value))
                    scores[f"best_score.{data_name}.{metric}"] = float(value)
    return scores


def _declared(operator: Any, name: str) -> bool:
    """Whether ``name`` is a property of the operator's class (never its own attribute:
    reading a user's object's attributes by guess could run anything)."""
    return any(isinstance(vars(cls).get(name), property) for cls in type(operator).__mro__)


def _read(operator: Any, name: str) -> Any:
    try:
        return getattr(operator, name)
    except Exception:  # XGBoost without early stopping; LightGBM not fitted
        return None
