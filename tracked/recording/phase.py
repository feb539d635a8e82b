"""What is read from a pipeline and its operator: identities, params, metrics."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Mapping
from typing import Any

from tracked.records.names import CONTEXT_ATTRIBUTE, OPERATOR_ATTRIBUTE
from tracked.records.params import is_fitted_name
from tracked.records.values import FIT, INFERENCE

#: ``tracked.phase_basis``: why a call was given its phase.
BASIS_NEW = "new_operator"


BASIS_FITTED = "fitted_attributes"


BASIS_STATE = "state_changed"


BASIS_UNCHANGED = "state_unchanged"


BASIS_UNKNOWN = "state_unreadable"


_SAMPLE = 16


#: Type -> its slot descriptors (name, descriptor), read once per type.
_slots: weakref.WeakKeyDictionary[type, tuple[tuple[str, Any], ...]] = weakref.WeakKeyDictionary()


def _slot_descriptors(cls: type) -> tuple[tuple[str, Any], ...]:
    try:
        return _slots[cls]
    except (KeyError, TypeError):
        pass
    found = []
    for klass in cls.__mro__:
        names = klass.__dict__.get("__slots__", ())
        if isinstance(names, str):
            names = (names,)
        for name in names:
            if name in ("__dict__", "__weakref__"):
                continue
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"  # private names are mangled
            descriptor = klass.__dict__.get(name)
            if descriptor is not None and hasattr(descriptor, "__get__"):
                found.append((name, descriptor))
    descriptors = tuple(found)
    with contextlib.suppress(TypeError):  # a type that cannot be weakly referenced
        _slots[cls] = descriptors
    return descriptors


def attributes(obj: object) -> dict[str, object] | None:
    """The instance attributes of ``obj``: its ``__dict__`` and every ``__slots__`` entry
    in its MRO that is set; None for an object with neither."""
    state = getattr(obj, "__dict__", None)
    found: dict[str, object] | None = dict(state) if isinstance(state, dict) else None
    for name, descriptor in _slot_descriptors(type(obj)):
        try:
            value = descriptor.__get__(obj, type(obj))
        except AttributeError:  # a slot not set
            continue
        if found is None:
            found = {}
        found.setdefault(name, value)
    return found


def _token(value: object) -> object:
    """What tells a changed value from the same one, cheaply: a sample of an array's values
    and a container's length (both may change in place), else nothing beyond identity."""
    cls = type(value)
    if cls is dict or cls is list or cls is set:
        return len(value)  # type: ignore[arg-type]
    if cls.__name__ == "ndarray" and cls.__module__ == "numpy":
        try:
            if not value.flags.c_contiguous:  # type: ignore[attr-defined]
                return value.shape  # type: ignore[attr-defined]
            flat = value.reshape(-1)  # type: ignore[attr-defined]
            return (value.shape, flat[:: max(1, flat.size // _SAMPLE)][:_SAMPLE].tobytes())  # type: ignore[attr-defined]
        except Exception:
            return None
    return None


def _fitted_state(obj: object, depth: int = 2) -> dict[str, object] | None:
    """State of ``obj`` and of the estimators nested in it (a Pipeline's steps, a
    meta-estimator's ``estimator``), keyed by path: ``(value, token)`` per attribute; None for
    objects without attributes. Keys of fitted (trailing-underscore) attributes end in ``_``."""
    state = attributes(obj)
    if state is None:
        return None
    # Public fitted attributes are compared by identity alone: by scikit-learn's convention a
    # fit assigns them anew, and sampling every coefficient array would cost each stage call.
    fitted: dict[str, object] = {
        name: (value, None if is_fitted_name(name) else _token(value))
        for name, value in state.items()
        if name != CONTEXT_ATTRIBUTE
    }
    if depth > 0:
        for name, value in state.items():
            if is_fitted_name(name) or name.startswith("_"):
                continue
            for path, inner in _nested_estimators(name, value):
                nested = _fitted_state(inner, depth - 1)
                if nested:
                    fitted.update({f"{path}.{key}": item for key, item in nested.items()})
    return fitted


def _nested_estimators(name: str, value: object) -> list[tuple[str, object]]:
    """Estimator-like objects held in ``value``: itself, or inside a list/tuple of steps."""
    if callable(getattr(value, "get_params", None)) and not isinstance(value, type):
        return [(name, value)]
    if isinstance(value, (list, tuple)) and len(value) <= 100:
        found = []
        for index, item in enumerate(value):
            if isinstance(item, tuple) and len(item) >= 2:  # (name, estimator[, columns])
                item = item[1]
            if callable(getattr(item, "get_params", None)) and not isinstance(item, type):
                found.append((f"{name}.{index}", item))
        return found
    return []


def _held_objects(value: object) -> list[object]:
    """``value`` and, one level down, the items of a dict, list or tuple it is."""
    if isinstance(value, dict) and len(value) <= 1000:
        return [value, *value.values()]
    if isinstance(value, (list, tuple)) and len(value) <= 1000:
        return [value, *value]
    return [value]


def snapshot(instance: object) -> dict[int, tuple[object, dict[str, object] | None]]:
    """Identity and state of every object held by ``instance`` (in its ``__dict__`` and its
    ``__slots__``, and in its containers)."""
    held = {}
    state = attributes(instance) or {}
    for name, value in state.items():
        if name in (CONTEXT_ATTRIBUTE, OPERATOR_ATTRIBUTE) or value is None:
            continue
        for item in _held_objects(value):
            if item is not None and id(item) not in held:
                held[id(item)] = (item, _fitted_state(item))
    operator = state.get(OPERATOR_ATTRIBUTE)
    if operator is not None and id(operator) not in held:
        held[id(operator)] = (operator, _fitted_state(operator))
    return held


def _same(old: tuple[object, object], new: tuple[object, object]) -> bool:
    if old[0] is not new[0]:
        return False
    try:
        return bool(old[1] == new[1])
    except Exception:
        return False


def decide_phase(
    before: Mapping[int, tuple[object, dict[str, object] | None]], operator: object
) -> tuple[str, str]:
    """The phase of a call that left ``operator`` in ``self.operator``, and its basis.

    ``fit`` when ``operator`` is new, or when any part of its state (fitted attributes first,
    then any other attribute, private ones too) is another object than before or changed in
    place; ``inference`` when its state is untouched. An operator whose state cannot be read
    (no ``__dict__``, no ``__slots__``) is called ``inference`` with the basis
    ``state_unreadable``: a caller should say so rather than trust it.
    """
    entry = before.get(id(operator))
    if entry is None or entry[0] is not operator:
        return FIT, BASIS_NEW
    old = entry[1]
    new = _fitted_state(operator)
    if old is None or new is None:
        return INFERENCE, BASIS_UNKNOWN
    fitted = {key for key in old.keys() | new.keys() if key.endswith("_")}
    for key in fitted:
        if key not in old or key not in new or not _same(old[key], new[key]):  # type: ignore[arg-type]
            return FIT, BASIS_FITTED
    if old.keys() != new.keys():
        return FIT, BASIS_STATE
    for key, value in old.items():
        if not _same(value, new[key]):  # type: ignore[arg-type]
            return FIT, BASIS_STATE
    return INFERENCE, BASIS_UNCHANGED


def detect_phase(
    before: Mapping[int, tuple[object, dict[str, object] | None]], operator: object
) -> str:
    """``fit`` when ``operator`` is new or was refitted since ``before``, else ``inference``."""
    return decide_phase(before, operator)[0]
