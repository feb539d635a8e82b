"""The stage wrapper: what happens around one call of a stage method.

The promise: a stage returns and raises exactly what the user's method returns and raises.
The user's call is never inside a ``try`` that could swallow or re-type its exception: the
only handler around it records the failure (which cannot raise) and re-raises the same object.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from attrs import frozen

from tracked._capture import (
    CONTEXT_ATTRIBUTE,
    OPERATOR_ATTRIBUTE,
    snapshot,
)
from tracked._config import is_strict
from tracked._context import Frame, context_for
from tracked._errors import TrackingError
from tracked._observe import capture
from tracked._outer import autologging_paused
from tracked._records import now_ms
from tracked._report import report_failure
from tracked._session import Session
from tracked._writer import writer

SPEC_ATTRIBUTE = "__tracked_stage__"
VERIFIED_TAG = "tracked.pipeline_verified"


@frozen
class StageSpec:
    """A stage as found at class definition."""

    name: str
    kind: str
    owner: str
    signature: inspect.Signature

    @classmethod
    def of(cls, function: Callable[..., Any], kind: str, owner: str) -> StageSpec:
        signature = inspect.signature(function)
        # Drop ``self``: wrapt hands the wrapper the bound method's arguments.
        parameters = list(signature.parameters.values())[1:]
        return cls(function.__name__, kind, owner, signature.replace(parameters=parameters))

    def data(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], target: str = "y"
    ) -> tuple[Any, Any]:
        """``(X, y)`` of a call: the first parameter, and the ground truth, the parameter
        named ``target`` (or a keyword of that name caught by ``**kwargs``)."""
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError:
            return None, None
        names = list(self.signature.parameters)
        x = bound.arguments.get(names[0]) if names else None
        if target in self.signature.parameters:
            return x, bound.arguments.get(target)
        for parameter in self.signature.parameters.values():
            if parameter.kind is parameter.VAR_KEYWORD:
                return x, bound.arguments.get(parameter.name, {}).get(target)
        return x, None

    def accepts(self, name: str) -> bool:
        """Whether a call can pass ``name`` (a parameter of that name, or ``**kwargs``)."""
        return any(
            parameter.name == name or parameter.kind is parameter.VAR_KEYWORD
            for parameter in self.signature.parameters.values()
        )


def make_stage_wrapper(spec: StageSpec) -> Callable[..., Any]:
    """The wrapt wrapper function for one stage."""

    def stage_wrapper(wrapped, instance, args, kwargs):
        # The tracking-off path: one attribute read, then the user's method.
        if instance is None or not instance.tracking:
            return wrapped(*args, **kwargs)
        context = instance.__dict__.get(CONTEXT_ATTRIBUTE)
        if context is not None and context.killed:
            return wrapped(*args, **kwargs)
        return _tracked_call(spec, wrapped, instance, args, kwargs)

    setattr(stage_wrapper, SPEC_ATTRIBUTE, spec)
    return stage_wrapper


def _tracked_call(spec, wrapped, instance, args, kwargs):
    # While a tracked call runs, the background writer holds back (see Writer).
    current = writer()
    current.stage_started()
    try:
        return _tracked_call_body(spec, wrapped, instance, args, kwargs)
    finally:
        current.stage_finished()


def _tracked_call_body(spec, wrapped, instance, args, kwargs):
    context = context_for(instance)
    stack = context.stack()
    if any(frame.name == spec.name for frame in stack):
        # An override calling super(), or a stage re-entering itself: the outermost call
        # is the one recorded, so one call gives one child run.
        return wrapped(*args, **kwargs)
    try:
        session = context.open_session(instance)
        before = snapshot(instance) if session.usable else None
    except TrackingError:
        raise
    except Exception as exc:
        report_failure(f"prepare tracking of stage {spec.name!r}", exc, strict=is_strict(instance))
        before = None
    if before is None:
        return wrapped(*args, **kwargs)

    frame = Frame(spec.name)
    stack.append(frame)
    with autologging_paused():
        start_ms = now_ms()
        started = time.perf_counter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            duration = time.perf_counter() - started
            stack.pop()
            call = Call(spec, instance, session, before, frame, args, kwargs, start_ms, duration)
            _record(call, error=exc)
            raise
        duration = time.perf_counter() - started
        stack.pop()
        call = Call(spec, instance, session, before, frame, args, kwargs, start_ms, duration)
        _record(call, result=result)
    return result


@frozen
class Call:
    """One finished stage call, as the wrapper saw it."""

    spec: StageSpec
    instance: Any
    session: Session
    before: dict[int, Any]
    frame: Frame
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    start_ms: int
    duration: float

    def operator(self) -> Any:
        """What the call assigned to ``self.operator`` (None if it assigned nothing).

        Assignments are seen through ``TrackedPipeline.operator``, a data descriptor, per
        thread: an operator left over from an earlier stage, or set by another thread, is
        not this call's. A class that redefines ``operator`` falls back to reading it.
        """
        if self.frame.assigned:
            return self.frame.operator
        if isinstance(getattr(type(self.instance), OPERATOR_ATTRIBUTE, None), OperatorSlot):
            return None
        return getattr(self.instance, OPERATOR_ATTRIBUTE, None)


class OperatorSlot:
    """``TrackedPipeline.operator``: stored in the instance, and noticed by running stages."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        try:
            return instance.__dict__[self.name]
        except KeyError:
            msg = f"{type(instance).__name__!r} object has no attribute {self.name!r}"
            raise AttributeError(msg) from None

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.name] = value
        context = instance.__dict__.get(CONTEXT_ATTRIBUTE)
        if context is not None:
            context.operator_assigned(value)

    def __delete__(self, instance: Any) -> None:
        try:
            del instance.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None


def _record(call: Call, *, result: Any = None, error: BaseException | None = None) -> None:
    """Capture the call and write it; with ``error`` set this never raises.

    Capturing an estimator stage predicts again (metrics, model checks): whatever it draws
    from the global random generators is given back, so that the user's next draw is an
    untracked run's. A transformer stage's capture calls nothing of the operator's.
    """
    if call.spec.kind == "transformer":  # nothing is predicted or scored again
        _record_call(call, result, error)
        return
    with preserved_random_state():
        _record_call(call, result, error)


def _record_call(call: Call, result: Any, error: BaseException | None) -> None:
    may_raise = error is None
    try:
        record = capture(call, result, error)
    except (TrackingError, Warning):
        # Strict mode, or warnings turned into errors: only on the success path may they
        # reach the caller; a user's exception in flight is never replaced.
        if may_raise:
            raise
        return
    except Exception as exc:
        report_failure(
            f"capture stage {call.spec.name!r}",
            exc,
            strict=call.session.strict,
            may_raise=may_raise,
        )
        return
    call.session.write_stage(record, may_raise=may_raise)


@contextmanager
def preserved_random_state() -> Iterator[None]:
    """Restore Python's and NumPy's global random state after the block."""
    import random

    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
