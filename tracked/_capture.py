"""What is read from a pipeline and its operator: identities, params, metrics."""

from __future__ import annotations

import contextlib
import inspect
import re
import weakref
from collections.abc import Mapping
from typing import Any

from tracked._records import FIT, INFERENCE

OPERATOR_ATTRIBUTE = "operator"
CONTEXT_ATTRIBUTE = "_tracked_context"


def qualified_name(obj: object) -> str:
    """``module.QualName`` of ``obj``'s class; a script's classes are ``__main__.X`` also in
    the workers multiprocessing spawns (where the script runs as ``__mp_main__``)."""
    cls = type(obj)
    module = "__main__" if cls.__module__ == "__mp_main__" else cls.__module__
    return f"{module}.{cls.__qualname__}"


def to_text(value: object) -> str:
    """A printable string for any value; never raises.

    Lone surrogates and NUL characters, which stores reject, are escaped.
    """
    if isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except Exception:
            try:
                text = repr(value)
            except Exception:
                text = f"<unprintable {qualified_name(value)}>"
        if not isinstance(text, str):  # a broken __str__ may return anything
            text = f"<unprintable {qualified_name(value)}>"
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with a trailing ``...``."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


MASK = "***"
# A credential word as a whole part of a name: `db__password`, `apiKey`, `client_secret`,
# `AUTH_TOKEN`, `headers__Authorization`, `privateKey`; not `tokenizer`, `max_tokens` or
# `author`, which are not secrets.
_SECRET_NAME = re.compile(
    r"(?:^|[^a-z])(?:password|passwd|pwd|secrets?|token|api_?key|access_?key"
    r"|private_?key|session_?key|credentials?|auth|authorization|bearer|cookies?|dsn)"
    r"(?:[^a-z]|$)"
)
_URI_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s?#]+@")
# `password=...` / `Pwd={...}` in a connection string, `Bearer abc` in a header value.
_ASSIGNED_SECRET = re.compile(
    r"(?i)(?P<key>\b(?:password|passwd|pwd|secret|token|api_?key|access_?key)\s*=\s*)"
    r"(?:\{[^}]*\}|'[^']*'|\"[^\"]*\"|[^;&\s,'\"]+)"
)
_BEARER = re.compile(r"(?i)(?P<key>\bbearer\s+)[A-Za-z0-9._~+/=\-]+")


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_name(name: str) -> bool:
    """Whether a param or tag name looks like it holds a credential (``dbPassword`` too)."""
    return _SECRET_NAME.search(_CAMEL.sub("_", name).lower()) is not None


def mask_uri(text: str) -> str:
    """``text`` with the user and password of every URI in it replaced by ``***``."""
    return _URI_CREDENTIALS.sub(r"\g<scheme>***@", text)


def mask_secrets(text: str) -> str:
    """``text`` with the credentials inside it replaced by ``***``: a URI's user and
    password anywhere in it, ``password=`` / ``pwd=`` values of connection strings and
    ``Bearer`` tokens."""
    text = _ASSIGNED_SECRET.sub(rf"\g<key>{MASK}", text)
    text = _BEARER.sub(rf"\g<key>{MASK}", text)
    return mask_uri(text)


def masked(name: str, value: Any) -> Any:
    """``value`` as it may be logged under ``name``: ``***`` for a credential-like name,
    else with the credentials inside it masked."""
    if is_secret_name(name):
        return MASK
    return mask_secrets(value) if isinstance(value, str) else value


def params_text(obj: object) -> str:
    """``name=value, ...`` for the constructor arguments that differ from their defaults;
    credential-like names, also those of nested estimators, show ``***``."""
    return ", ".join(
        f"{key}={MASK if is_secret_name(key) else _value_text(value)}"
        for key, value in non_default_params(obj).items()
    )


def _value_text(value: object) -> str:
    if callable(getattr(value, "get_params", None)) and not isinstance(value, type):
        return f"{type(value).__name__}({params_text(value)})"
    if is_data(value):  # a setting that holds data is named, never written out
        return f"<{type(value).__name__} of shape {tuple(value.shape)}>"  # type: ignore[attr-defined]
    if isinstance(value, Mapping):  # `headers={"Authorization": ...}` in a run name
        return "{" + ", ".join(_item_text(key, item) for key, item in value.items()) + "}"
    return mask_secrets(to_text(value))


def _item_text(key: object, item: object) -> str:
    """``'key': value`` as ``str(dict)`` shows it, masked."""
    plain = isinstance(key, (str, int, float, bool, type(None)))
    name = repr(key) if plain else to_text(key)
    if is_secret_name(to_text(key)):
        return f"{name}: {MASK!r}"
    if isinstance(item, str):
        return f"{name}: {mask_secrets(item)!r}"
    return f"{name}: {_value_text(item)}"


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


def _settings(values: Mapping[Any, Any]) -> dict[Any, Any]:
    """The settings among ``values``, nested mappings kept as mappings of settings."""
    kept: dict[Any, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            inner = _settings(value)
            if inner:
                kept[key] = inner
        elif is_setting(value):
            kept[key] = value
    return kept


def flatten(params: Mapping[Any, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings flattened with ``__`` (scikit-learn's separator), values as text;
    credential-like names (``db__password``) get ``***``."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{to_text(key)}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}__"))
        else:
            flat[name] = MASK if is_secret_name(name) else _value_text(value)
    return flat


def is_fitted_name(name: str) -> bool:
    """scikit-learn's convention: fitted attributes end in ``_`` and are not private."""
    return name.endswith("_") and not name.startswith("_")


def operator_params(operator: object) -> dict[str, str]:
    """Hyperparameters of ``operator`` as flat text: settings, never data.

    scikit-learn estimators: ``get_params(deep=True)`` (a param holding an array is named
    by its type and shape). A mapping: its items that are settings, nested mappings joined
    with ``__``. Anything else: its public, non-callable, non-fitted attributes that are
    settings (scalars, strings up to 250 characters, lists/tuples of up to 10 of those);
    arrays, frames and other objects it holds (often its training data) are not params.
    """
    get_params = getattr(operator, "get_params", None)
    if callable(get_params):
        return flatten(get_params(deep=True))
    if isinstance(operator, Mapping):
        return flatten(_settings(operator))
    return flatten(
        _settings(
            {
                name: value
                for name, value in public_state(operator).items()
                if not is_fitted_name(name) and not callable(value)
            }
        )
    )


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


# -- phase detection -------------------------------------------------------------------------
#
# Before a stage runs we cannot know which object it will put in ``self.operator`` (the previous
# stage's operator is usually still there), so comparing ``self.operator`` before and after
# calls everything a fit. Instead we note every object the instance holds, with its state;
# after the call, an operator not held before is new (fit), one whose state changed was
# refitted (fit), anything else only ran inference.
#
# The state is every attribute, private ones too (``__dict__`` and ``__slots__``), and those
# of the estimators nested in it: scikit-learn's fitted attributes end in ``_``, but LightGBM
# keeps ``fitted_ = True`` (the same object) across refits and its booster in ``_Booster``;
# XGBoost, statsmodels and hand-written estimators follow no convention at all. Each value is
# kept by identity plus, outside the public fitted attributes, a cheap token (a container's
# length, a few sampled array values), so that a refit in place is seen too, without hashing
# big arrays.
# The snapshot keeps references, so ``is`` comparisons cannot be fooled by reused ids.

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


#: Modules whose functions and types are never trusted in a model, whatever a pipeline lists:
#: loading would hand them arguments (``FunctionTransformer(inverse_func=os.system)``).
NEVER_TRUSTED = frozenset(
    {
        "os", "posix", "nt", "subprocess", "builtins", "shutil", "sys", "importlib", "runpy",
        "pickle", "marshal", "ctypes", "socket", "pty", "code", "codecs", "io", "pathlib",
        "tempfile", "signal", "multiprocessing", "threading", "webbrowser",
    }
)  # fmt: skip
#: The libraries whose own types a skops model may hold without being listed.
OWN_TRUSTED = ("sklearn", "numpy")


def type_name(item: object) -> str:
    """``module.QualName`` of a class or function given as itself or as that string."""
    if isinstance(item, str):
        return item
    module = getattr(item, "__module__", None)
    qualname = getattr(item, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        msg = f"{item!r} is neither a class nor a function nor a 'module.Name' string"
        raise TypeError(msg)
    return f"{module}.{qualname}"


def never_trusted(name: str) -> bool:
    """Whether ``name`` (``module.Name``) comes from a module that is never trusted."""
    return name.split(".", 1)[0] in NEVER_TRUSTED
