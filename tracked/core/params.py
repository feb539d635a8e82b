"""Hyperparameters as flat text: read once, bounded (values cut, nesting cut), masked."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from tracked.core.report import notice
from tracked.core.text import MASK, captured_text, is_secret_name, to_text

#: Levels of nested mappings (and estimators) read as params; deeper ones are cut, with a
#: warning: a configuration nested that deep is a mistake or a loop (a dict holding itself),
#: and following it would end in a RecursionError.
NESTING_LIMIT = 32

#: The value of a param whose nesting was cut.
CUT_NESTING = f"<cut: nested deeper than {NESTING_LIMIT} levels>"


def params_text(obj: object, depth: int = 0) -> str:
    """``name=value, ...`` for the constructor arguments that differ from their defaults;
    credential-like names, also those of nested estimators, show ``***``."""
    return ", ".join(
        f"{key}={MASK if is_secret_name(key) else _value_text(value, depth)}"
        for key, value in non_default_params(obj).items()
    )


def _value_text(value: object, depth: int = 0) -> str:
    nests = isinstance(value, Mapping) or callable(getattr(value, "get_params", None))
    if nests and depth >= NESTING_LIMIT and not isinstance(value, type):
        return CUT_NESTING
    if callable(getattr(value, "get_params", None)) and not isinstance(value, type):
        return f"{type(value).__name__}({params_text(value, depth + 1)})"
    if is_data(value):  # a setting that holds data is named, never written out
        return f"<{type(value).__name__} of shape {tuple(value.shape)}>"  # type: ignore[attr-defined]
    if isinstance(value, Mapping):  # `headers={"Authorization": ...}` in a run name
        items = (_item_text(key, item, depth + 1) for key, item in value.items())
        return captured_text("{" + ", ".join(items) + "}")
    return captured_text(value)


def _item_text(key: object, item: object, depth: int) -> str:
    """``'key': value`` as ``str(dict)`` shows it, masked."""
    plain = isinstance(key, (str, int, float, bool, type(None)))
    name = captured_text(repr(key) if plain else key)
    if is_secret_name(to_text(key)):
        return f"{name}: {MASK!r}"
    if isinstance(item, str):
        return f"{name}: {captured_text(item)!r}"
    return f"{name}: {_value_text(item, depth)}"


def is_data(value: object) -> bool:
    """Arrays, frames, tensors and sparse matrices (anything with a non-scalar shape)."""
    shape = getattr(value, "shape", None)
    return isinstance(shape, tuple) and len(shape) > 0 and not isinstance(value, type)


#: Longest string that is a setting rather than a text (a document, a serialized blob).
SETTING_TEXT = 250


#: Longest list or tuple of scalars that is a setting (``hidden_layer_sizes``, ``order``).
SETTING_ITEMS = 10


def is_setting(value: object) -> bool:
    """A scalar, a short string, or a short list/tuple of those: what can be a param."""
    import numbers

    if value is None or isinstance(value, (bool, numbers.Number)):
        return not is_data(value)
    if getattr(value, "shape", None) == () and hasattr(value, "dtype"):  # numpy scalars
        return value.dtype.kind in "biufUS"  # type: ignore[attr-defined]
    if isinstance(value, str):
        return len(value) <= SETTING_TEXT
    if isinstance(value, (list, tuple)):
        return (
            len(value) <= SETTING_ITEMS
            and all(item is None or isinstance(item, (bool, numbers.Number, str)) for item in value)
            and all(not isinstance(item, str) or len(item) <= SETTING_TEXT for item in value)
        )
    return False


def public_state(obj: object) -> dict[str, Any]:
    """The public attributes of ``obj``: its ``__dict__`` and ``__slots__``, without ``_``
    names."""
    state: dict[str, Any] = {}
    for klass in reversed(type(obj).__mro__):
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if not name.startswith("_") and hasattr(obj, name):
                state[name] = getattr(obj, name)
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        state.update((k, v) for k, v in attributes.items() if isinstance(k, str))
    return {name: value for name, value in state.items() if not name.startswith("_")}


def _settings(values: Mapping[Any, Any], depth: int = 0) -> dict[Any, Any]:
    """The settings among ``values``, nested mappings kept as mappings of settings (kept
    whole past ``NESTING_LIMIT`` levels, for ``flatten`` to cut and say so)."""
    kept: dict[Any, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and depth >= NESTING_LIMIT:
            kept[key] = value
        elif isinstance(value, Mapping):
            inner = _settings(value, depth + 1)
            if inner:
                kept[key] = inner
        elif is_setting(value):
            kept[key] = value
    return kept


def flatten(params: Mapping[Any, Any], prefix: str = "", *, where: str = "") -> dict[str, str]:
    """Nested mappings flattened with ``__`` (scikit-learn's separator), values as text
    cut to ``CAPTURED_TEXT``; credential-like names (``db__password``) get ``***``.

    Mappings nested deeper than ``NESTING_LIMIT`` levels are cut (their param holds
    ``CUT_NESTING``) with one warning naming ``where`` the params come from (a stage, a
    pipeline); the other params are kept.
    """
    cut: list[str] = []
    flat = _flattened(params, prefix, 0, cut)
    if cut:
        shown = ", ".join(repr(name[:80] + ("..." if len(name) > 80 else "")) for name in cut[:3])
        notice(
            f"{where or 'a record'}: params nested deeper than {NESTING_LIMIT} levels are cut "
            f"({shown}{', ...' if len(cut) > 3 else ''}): a nested configuration that deep, or "
            "one that holds itself, is recorded up to that level; the other params and the "
            "rest of the record are kept",
            key=f"deep-params:{where}",
        )
    return flat


def _flattened(
    params: Mapping[Any, Any], prefix: str, depth: int, cut: list[str]
) -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{captured_text(key)}"
        if isinstance(value, Mapping) and value and depth >= NESTING_LIMIT:
            flat[name] = CUT_NESTING
            cut.append(name)
        elif isinstance(value, Mapping) and value:
            flat.update(_flattened(value, f"{name}__", depth + 1, cut))
        else:
            flat[name] = MASK if is_secret_name(name) else _value_text(value, depth)
    return flat


def is_fitted_name(name: str) -> bool:
    """scikit-learn's convention: fitted attributes end in ``_`` and are not private."""
    return name.endswith("_") and not name.startswith("_")


def operator_params(operator: object, where: str = "") -> dict[str, str]:
    """Hyperparameters of ``operator`` as flat text: settings, never data.

    scikit-learn estimators: ``get_params(deep=True)`` (a param holding an array is named
    by its type and shape). A mapping: its items that are settings, nested mappings joined
    with ``__``. Anything else: its public, non-callable, non-fitted attributes that are
    settings (scalars, strings up to 250 characters, lists/tuples of up to 10 of those);
    arrays, frames and other objects it holds (often its training data) are not params.
    """
    get_params = getattr(operator, "get_params", None)
    if callable(get_params):
        return flatten(get_params(deep=True), where=where)
    if isinstance(operator, Mapping):
        return flatten(_settings(operator), where=where)
    state = public_state(operator).items()
    settings = {k: v for k, v in state if not is_fitted_name(k) and not callable(v)}
    return flatten(_settings(settings), where=where)


def init_params(obj: object) -> dict[str, Any]:
    """Constructor arguments read back as attributes, as ``BaseEstimator.get_params`` does."""
    init = type(obj).__init__
    if init is object.__init__:
        return {}
    params = {}
    for name, parameter in list(inspect.signature(init).parameters.items())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if hasattr(obj, name):
            params[name] = getattr(obj, name)
    return params


def non_default_params(obj: object) -> dict[str, Any]:
    """The constructor arguments whose value differs from the signature's default."""
    init = type(obj).__init__
    if init is object.__init__:
        return {}
    defaults = {
        name: p.default
        for name, p in inspect.signature(init).parameters.items()
        if p.default is not p.empty
    }
    changed = {}
    for name, value in init_params(obj).items():
        default = defaults.get(name, inspect.Parameter.empty)
        try:
            same = value is default or bool(value == default)
        except Exception:  # arrays and other values without a truth value
            same = False
        if not same:
            changed[name] = value
    return changed
