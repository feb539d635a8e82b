"""What is read from a pipeline and its operator: identities, params, metrics."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Mapping
from typing import Any

from tracked.core.names import CONTEXT_ATTRIBUTE, OPERATOR_ATTRIBUTE
from tracked.core.params import is_fitted_name
from tracked.core.values import FIT, INFERENCE

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


#: Elements of a rebound array compared by value; a larger one rebound is called changed.
EQUAL_ELEMENTS = 1_000_000


#: Items of a rebound list, tuple or dict compared by value, and how deep.
_EQUAL_ITEMS = 1000


_EQUAL_DEPTH = 3


def equal_value(old: object, new: object, depth: int = _EQUAL_DEPTH) -> bool:
    """Whether a rebound attribute holds what it held: True only when that is shown cheaply.

    Arrays up to ``EQUAL_ELEMENTS`` elements (the call built the new one, so comparing costs
    no more than that did), pandas objects (``equals``), lists, tuples and dicts of those (up
    to ``_EQUAL_ITEMS`` items, ``_EQUAL_DEPTH`` levels), and scalars and strings. Any other
    object is equal only to itself: a new estimator, a booster, a model file is a new state.
    """
    if old is new:
        return True
    cls = type(old)
    if cls is not type(new):
        return False
    if cls.__name__ == "ndarray" and cls.__module__ == "numpy":
        return _equal_arrays(old, new)
    if cls in (list, tuple):
        return (
            depth > 0
            and len(old) == len(new) <= _EQUAL_ITEMS  # type: ignore[arg-type]
            and all(equal_value(a, b, depth - 1) for a, b in zip(old, new, strict=True))  # type: ignore[call-overload]
        )
    if cls is dict:
        return (
            depth > 0
            and len(old) <= _EQUAL_ITEMS  # type: ignore[arg-type]
            and old.keys() == new.keys()  # type: ignore[attr-defined]
            and all(equal_value(old[k], new[k], depth - 1) for k in old)  # type: ignore[index]
        )
    if cls.__module__.partition(".")[0] == "pandas" and callable(getattr(old, "equals", None)):
        if len(old) * max(1, len(getattr(old, "columns", ()))) > EQUAL_ELEMENTS:  # type: ignore[arg-type]
            return False
        try:
            return bool(old.equals(new))  # type: ignore[attr-defined]
        except Exception:
            return False
    if isinstance(old, (str, bytes, bool, int, float, complex)) or cls.__module__ == "numpy":
        try:
            return bool(old == new) or (old != old and new != new)  # NaN holds NaN
        except Exception:
            return False
    return False


def _equal_arrays(old: Any, new: Any) -> bool:
    # Imported here, not at the top: `import tracked` does not import numpy, and an array
    # reaching this line means numpy is loaded already.
    import numpy as np

    if old.shape != new.shape or old.dtype != new.dtype or old.size > EQUAL_ELEMENTS:
        return False
    try:
        return bool(np.array_equal(old, new, equal_nan=old.dtype.kind in "fc"))
    except Exception:
        return False


def _is_fitted_key(key: str) -> bool:
    """Whether a state key (``name`` or ``path.name``) names a public fitted attribute."""
    return is_fitted_name(key.rsplit(".", 1)[-1])


def decide_phase(
    before: Mapping[int, tuple[object, dict[str, object] | None]], operator: object
) -> tuple[str, str]:
    """The phase of a call that left ``operator`` in ``self.operator``, and its basis.

    A call that leaves what the operator learned as it was is inference, whatever caches it
    rebinds. The rule, in order:

    - ``operator`` not held before the call: ``fit`` (``new_operator``);
    - a public fitted attribute (trailing ``_``, no leading ``_``; of the operator or of an
      estimator nested in it) added, removed or rebound: ``fit`` (``fitted_attributes``).
      By scikit-learn's convention only a fit assigns them, anew even on identical data,
      so their identity is enough and their arrays are never read;
    - any other attribute (private ones, ``__slots__``) removed, changed in place (its
      token: a container's length, sampled array values), or rebound to a value that is
      not shown equal (``equal_value``): ``fit`` (``state_changed``). Rebound to an equal
      value (a pandas-output ``ColumnTransformer``'s feature names, a stacking model's
      output widths) it is a cache, not learning;
    - any other attribute added: a cache when the operator held fitted or private state
      before (a ``FeatureUnion``'s feature names built on its first pandas ``transform``),
      otherwise its first fit (``state_changed``);
    - else ``inference`` (``state_unchanged``).

    An operator whose state cannot be read (no ``__dict__``, no ``__slots__``) is called
    ``inference`` with the basis ``state_unreadable``: a caller should say so rather than
    trust it. An operator that keeps all it learned in private attributes and is refitted to
    equal values (identical data, deterministic) is inference: nothing it holds changed.
    """
    entry = before.get(id(operator))
    if entry is None or entry[0] is not operator:
        return FIT, BASIS_NEW
    old = entry[1]
    new = _fitted_state(operator)
    if old is None or new is None:
        return INFERENCE, BASIS_UNKNOWN
    fitted = {key for key in old.keys() | new.keys() if _is_fitted_key(key)}
    for key in fitted:
        if key not in old or key not in new or not _same(old[key], new[key]):  # type: ignore[arg-type]
            return FIT, BASIS_FITTED
    for key, value in old.items():
        if key in fitted:
            continue
        if key not in new:
            return FIT, BASIS_STATE
        was, now = value, new[key]
        if was[0] is now[0]:  # type: ignore[index]
            if not _same(was, now):  # type: ignore[arg-type]
                return FIT, BASIS_STATE  # changed in place
        elif not equal_value(was[0], now[0]):  # type: ignore[index]
            return FIT, BASIS_STATE
    if new.keys() - old.keys() and not _held_state(old):
        return FIT, BASIS_STATE
    return INFERENCE, BASIS_UNCHANGED


def _held_state(state: Mapping[str, object]) -> bool:
    """Whether an operator's state holds anything a fit leaves: a fitted or private
    attribute (its own or a nested estimator's)."""
    return any(_is_fitted_key(key) or key.rsplit(".", 1)[-1].startswith("_") for key in state)
