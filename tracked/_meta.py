"""The metaclass: finds stages when a class is defined, checks them, wraps each once."""

from __future__ import annotations

import inspect
import weakref
from abc import ABCMeta
from collections.abc import Mapping
from types import FunctionType
from typing import Any

import wrapt

from tracked.core.errors import PipelineDefinitionError
from tracked.core.names import CONTEXT_ATTRIBUTE
from tracked.core.settings import check_declared, class_setting
from tracked.core.values import STAGE_KINDS
from tracked.recording.spec import SPEC_ATTRIBUTE, StageSpec
from tracked.recording.wrapper import make_stage_wrapper

_NO_DEFAULT = object()


class BoundStage(wrapt.BoundFunctionWrapper):
    """A stage bound to an instance (or reached through its class)."""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        # Pickled by reference, as a plain bound method is: joblib and multiprocessing can
        # ship `pipe.stage` to workers.
        owner = self._self_instance
        if owner is None:
            owner = self._self_owner
        return getattr, (owner, self.__name__)


class StageFunction(wrapt.FunctionWrapper):
    """The wrapper the metaclass puts in the class namespace for each stage."""

    __bound_function_wrapper__ = BoundStage


class FitFunction(wrapt.FunctionWrapper):
    """The wrapper of a pipeline's scikit-learn ``fit`` that is not a stage: its
    beginning ends the previous fit's parent run (see ``Context.fitting``)."""

    __bound_function_wrapper__ = BoundStage


def _fit_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    context = getattr(instance, "__dict__", {}).get(CONTEXT_ATTRIBUTE)
    if context is None or not context.owned_by(instance):
        return wrapped(*args, **kwargs)
    with context.fitting():
        return wrapped(*args, **kwargs)


def _wrap_fit(cls: type) -> None:
    # Only a plain `fit` the class defines itself: a stage named `fit` is a stage, and an
    # inherited one is wrapped in the class that defines it.
    raw = vars(cls).get("fit")
    if isinstance(raw, FunctionType) and stage_spec_of(raw) is None:
        type.__setattr__(cls, "fit", FitFunction(raw, _fit_wrapper))


def stage_spec_of(obj: object) -> StageSpec | None:
    """The spec of a wrapped stage, None for anything else."""
    if isinstance(obj, wrapt.FunctionWrapper):
        return getattr(obj._self_wrapper, SPEC_ATTRIBUTE, None)
    return None


def _stage_default(function: object) -> object:
    try:
        signature = inspect.signature(function)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return _NO_DEFAULT
    parameter = signature.parameters.get("stage")
    if parameter is None or parameter.default is parameter.empty:
        return _NO_DEFAULT
    return parameter.default


def _kinds() -> str:
    return " or ".join(repr(kind) for kind in STAGE_KINDS)


def _check_kind(cls_name: str, method: str, kind: object, where: str) -> str:
    if kind not in STAGE_KINDS:
        msg = (
            f"{cls_name}.{method}: {where} is {kind!r}; a stage kind must be {_kinds()} "
            "(check the spelling)"
        )
        raise PipelineDefinitionError(msg)
    return kind  # type: ignore[return-value]


def _declared_stage(cls_name: str, name: str, value: object) -> str | None:
    """The kind a namespace entry declares with its ``stage=`` default, if any."""
    inner = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
    if not callable(inner) or stage_spec_of(inner) is not None:
        return None
    default = _stage_default(inner)
    if not isinstance(default, str):
        return None
    kind = _check_kind(cls_name, name, default, "the default of `stage`")
    if not isinstance(value, FunctionType):
        msg = (
            f"{cls_name}.{name} declares stage={default!r} but is a "
            f"{type(value).__name__}; a stage must be a plain method that sets self.operator"
        )
        if hasattr(value, "cache_info"):  # functools.cache / lru_cache
            msg += (
                " (a cached stage would skip its own calls, and their records, on repeats: "
                "cache what the stage computes inside it, not the stage)"
            )
        raise PipelineDefinitionError(msg)
    return kind


def _inherited(cls: type, name: str) -> tuple[type, object] | None:
    """The first class in the MRO after ``cls`` that defines ``name``, with its value."""
    for base in cls.__mro__[1:]:
        if name in base.__dict__:
            return base, base.__dict__[name]
    return None


def discover(cls: type, namespace: Mapping[str, Any]) -> dict[str, str]:
    """Methods of ``cls`` to wrap, with their kinds.

    Raises:
        PipelineDefinitionError: a misspelt kind, an unknown method in ``stages``, or a
            ``stages`` entry that contradicts the method's own ``stage=`` default.
    """
    name_of_cls = cls.__name__
    found: dict[str, str] = {}
    for name, value in namespace.items():
        kind = _declared_stage(name_of_cls, name, value)
        if kind is not None:
            found[name] = kind
        elif isinstance(value, FunctionType):
            # An override without the marker stays a stage of the kind its base declared.
            inherited = _inherited(cls, name)
            spec = stage_spec_of(inherited[1]) if inherited else None
            if spec is not None:
                found[name] = spec.kind

    stages = namespace.get("stages")  # a mapping: checked with the other settings
    if stages is not None:
        for method, kind in stages.items():
            _check_kind(name_of_cls, method, kind, f"stages[{method!r}]")
            value = namespace.get(method, _NO_DEFAULT)
            if value is _NO_DEFAULT:
                inherited = _inherited(cls, method)
                if inherited is None:
                    msg = (
                        f"{name_of_cls}.stages names {method!r}, "
                        f"but {name_of_cls} has no such method"
                    )
                    raise PipelineDefinitionError(msg)
                value = inherited[1]
            spec = stage_spec_of(value)
            declared = spec.kind if spec is not None else found.get(method)
            if declared is not None and declared != kind:
                msg = (
                    f"{name_of_cls}.stages[{method!r}] is {kind!r} but the method is declared "
                    f"a {declared!r} stage; make them agree"
                )
                raise PipelineDefinitionError(msg)
            if not isinstance(value, FunctionType) and spec is None:
                msg = f"{name_of_cls}.stages names {method!r}, which is not a plain method"
                raise PipelineDefinitionError(msg)
            if spec is None:
                found[method] = kind
    return found


# -- instrumenting through the MRO ------------------------------------------------------------

#: Classes whose stages are all wrapped. Not a class attribute: cloudpickle would copy it.
_instrumented: weakref.WeakSet[type] = weakref.WeakSet()


def _mro_names(cls: type) -> list[str]:
    names: dict[str, None] = {}
    for klass in cls.__mro__:
        if klass is object:
            continue
        names.update(dict.fromkeys(vars(klass)))
    return list(names)


def _resolve(cls: type, name: str) -> tuple[type, object] | None:
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass, vars(klass)[name]
    return None


def _unwrapped_stages(cls: type) -> dict[str, tuple[str, object]]:
    """Plain functions that ``cls`` reaches by attribute lookup and that are stages, but
    that no class of ours has wrapped: ``{name: (kind, function)}``.

    A function is a stage when it declares a ``stage=`` default, when a later class in the
    MRO defines a stage of that name (an override keeps the stage), or when ``stages`` names
    it. Functions whose defining class is another ``TrackedMeta`` class are left to it.

    Raises:
        PipelineDefinitionError: a misspelt kind.
    """
    found: dict[str, tuple[str, object]] = {}
    declared = class_setting(cls, "stages")
    declared = declared if isinstance(declared, Mapping) else {}
    for name in _mro_names(cls):
        resolved = _resolve(cls, name)
        if resolved is None:
            continue
        owner, value = resolved
        if owner is not cls and isinstance(owner, TrackedMeta):
            continue
        if stage_spec_of(value) is not None:
            continue
        # A misspelt kind, or a stage that is not a plain method, is refused as in a class body.
        kind = _declared_stage(cls.__name__, name, value)
        if not isinstance(value, FunctionType):
            continue
        if kind is None:
            # An override keeps the stage it overrides: wrapped in a pipeline class, or
            # declared by its `stage=` default in a mixin or an abstract base.
            for base in cls.__mro__[cls.__mro__.index(owner) + 1 :]:
                overridden = vars(base).get(name)
                spec = stage_spec_of(overridden)
                if spec is not None:
                    kind = spec.kind
                    break
                if isinstance(overridden, FunctionType):
                    default = _stage_default(overridden)
                    if default in STAGE_KINDS:
                        kind = default  # type: ignore[assignment]
                        break
        if kind is None and declared.get(name) in STAGE_KINDS:
            kind = declared[name]
        if kind is not None:
            found[name] = (kind, value)
    return found


def _instrument_one(cls: type) -> None:
    # Wrapped in the subclass's own namespace: a mixin itself, and its other users, stay
    # untouched.
    for name, (kind, raw) in _unwrapped_stages(cls).items():
        spec = StageSpec.of(raw, kind, cls.__name__)  # type: ignore[arg-type]
        type.__setattr__(cls, name, StageFunction(raw, make_stage_wrapper(spec)))
    _wrap_fit(cls)


def instrument(cls: type) -> None:
    """Wrap every stage ``cls`` and its bases reach and no wrapper covers yet (cheap when
    done already). A class that cannot be instrumented says so with a ``TrackingWarning``:
    its calls would otherwise record nothing, silently."""
    if cls in _instrumented:
        return
    try:
        for klass in reversed(cls.__mro__):
            if isinstance(klass, TrackedMeta):
                _instrument_one(klass)
    except Exception as exc:
        from tracked.core.report import report_failure

        report_failure(
            f"instrument the stages of {cls.__module__}.{cls.__qualname__} (its stage calls "
            "are not recorded)",
            exc,
            strict=False,
        )
        return
    _instrumented.add(cls)


# -- the metaclass ------------------------------------------------------------------------------


class TrackedMeta(ABCMeta):
    """Wraps the stage methods of every ``TrackedPipeline`` subclass as the class is made.

    It derives from ``ABCMeta`` so that pipelines can also inherit from abstract base classes
    without a metaclass conflict.

    Wrapping is idempotent and also done lazily, when an instance is created or unpickled:
    cloudpickle rebuilds a class defined in ``__main__`` (a script, a notebook) in a worker
    from its plain functions, after ``__new__`` has run, so ``__new__`` alone would leave
    the worker's copy without a single stage.
    """

    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any):
        cls = super().__new__(mcls, name, bases, namespace, **kwargs)
        check_declared(cls, namespace)
        for method, kind in discover(cls, namespace).items():
            raw = namespace.get(method)
            if raw is None:
                raw = _inherited(cls, method)[1]  # type: ignore[index]
            spec = StageSpec.of(raw, kind, name)
            setattr(cls, method, StageFunction(raw, make_stage_wrapper(spec)))
        # Stages found through the MRO (a plain mixin's), checked as our own are.
        _instrument_one(cls)
        return cls

    def __setattr__(cls, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        # A method set after the class was made (cloudpickle's rebuild of a `__main__`
        # class, a monkeypatch) is wrapped when the next instance is made. Other settings
        # (`P.backend = ...`) cannot make stages and cost nothing.
        if callable(value) or name == "stages":
            _instrumented.clear()

    def __call__(cls, *args: Any, **kwargs: Any):
        instance = super().__call__(*args, **kwargs)
        # Captured after the user's __init__: the environment's kill switch and the group run
        # the instance belongs to.
        from tracked.delivery.context import Context
        from tracked.delivery.groups import current_group

        state = getattr(instance, "__dict__", None)
        if state is not None and CONTEXT_ATTRIBUTE not in state:
            state[CONTEXT_ATTRIBUTE] = Context(instance, group=current_group())
        return instance

    @property
    def stage_kinds(cls) -> dict[str, str]:
        """The class's stages by method name, including inherited ones."""
        kinds: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attribute, value in vars(klass).items():
                spec = stage_spec_of(value)
                if spec is not None:
                    kinds[attribute] = spec.kind
        return kinds
