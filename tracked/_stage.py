"""The stage wrapper: what happens around one call of a stage method.

The promise: a stage returns and raises exactly what the user's method returns and raises.
The user's call is never inside a ``try`` that could swallow or re-type its exception: the
only handler around it records the failure (which cannot raise) and re-raises the same object.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from attrs import frozen

from tracked._capture import (
    CONTEXT_ATTRIBUTE,
    OPERATOR_ATTRIBUTE,
    detect_phase,
    evaluate,
    operator_params,
    qualified_name,
    snapshot,
)
from tracked._config import is_strict
from tracked._errors import TrackingError
from tracked._records import FAILED, FINISHED, FIT, INFERENCE, KILLED, Metric, StageRecord, now_ms
from tracked._report import describe, notice, report_failure
from tracked._session import ERROR_TAG_LIMIT, Session, context_for, evaluation_metrics

SPEC_ATTRIBUTE = "__tracked_stage__"


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

    def data(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        """``(X, y)`` of a call: the first parameter, and the parameter named ``y``."""
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError:
            return None, None
        names = list(self.signature.parameters)
        x = bound.arguments.get(names[0]) if names else None
        return x, bound.arguments.get("y")


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
    context = context_for(instance)
    stack = context.stack()
    if spec.name in stack:
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

    stack.append(spec.name)
    start_ms = now_ms()
    started = time.perf_counter()
    try:
        result = wrapped(*args, **kwargs)
    except BaseException as exc:
        duration = time.perf_counter() - started
        stack.pop()
        _record(spec, instance, session, before, args, kwargs, start_ms, duration, error=exc)
        raise
    duration = time.perf_counter() - started
    stack.pop()
    _record(spec, instance, session, before, args, kwargs, start_ms, duration)
    return result


def _record(
    spec: StageSpec,
    instance: Any,
    session: Session,
    before: dict[int, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    start_ms: int,
    duration: float,
    error: BaseException | None = None,
) -> None:
    """Capture the call and write it; with ``error`` set this never raises."""
    may_raise = error is None
    try:
        record = _capture(spec, instance, session, before, args, kwargs, start_ms, duration, error)
    except TrackingError:
        if may_raise:
            raise
        return
    except Exception as exc:
        report_failure(
            f"capture stage {spec.name!r}", exc, strict=session.strict, may_raise=may_raise
        )
        return
    session.write_stage(record, may_raise=may_raise)


def _capture(spec, instance, session, before, args, kwargs, start_ms, duration, error):
    operator = getattr(instance, OPERATOR_ATTRIBUTE, None)
    phase = detect_phase(before, operator) if operator is not None else INFERENCE
    tags = {
        "tracked.stage": spec.name,
        "tracked.kind": spec.kind,
        "tracked.phase": phase,
    }
    params: dict[str, str] = {}
    metrics = [Metric(key="duration_s", value=duration, timestamp=start_ms)]
    parent_metrics: tuple[Metric, ...] = ()
    model = None
    status = FINISHED
    if operator is None:
        if error is None:  # a failed stage has a better explanation than a missing operator
            notice(
                f"stage {spec.owner}.{spec.name} left no `self.{OPERATOR_ATTRIBUTE}`: "
                "only its tags and duration are recorded",
                key=f"no-operator:{spec.owner}.{spec.name}",
            )
    else:
        tags["tracked.operator"] = qualified_name(operator)
        if phase == FIT:
            params = _guarded(
                session,
                f"read the params of stage {spec.name!r}",
                operator_params,
                operator,
                may_raise=error is None,
            )
            params = params or {}
    if error is not None:
        status = KILLED if isinstance(error, KeyboardInterrupt) else FAILED
        tags["tracked.error"] = describe(error, ERROR_TAG_LIMIT)
    elif operator is not None and spec.kind == "estimator":
        X, y = spec.data(args, kwargs)
        if y is not None:
            scoring = getattr(instance, "scoring", None)
            values = _guarded(
                session, f"evaluate stage {spec.name!r}", evaluate, operator, X, y, scoring
            )
            if values:
                prefix = "training_" if phase == FIT else ""
                step = session.next_step(prefix or "evaluation")
                metrics.extend(evaluation_metrics(values, prefix, step))
                parent_metrics = evaluation_metrics(values, prefix, step)
        if phase == FIT:
            if callable(getattr(operator, "get_params", None)):
                model = operator
            else:
                notice(
                    f"the operator of stage {spec.owner}.{spec.name} "
                    f"({qualified_name(operator)}) is not a scikit-learn estimator "
                    "(no get_params): its model is not logged",
                    key=f"no-model:{qualified_name(operator)}",
                )
    end_ms = start_ms + round(duration * 1000)
    return StageRecord(
        stage=spec.name,
        kind=spec.kind,
        phase=phase,
        operator=qualified_name(operator) if operator is not None else None,
        start_ms=start_ms,
        end_ms=end_ms,
        status=status,
        error=tags.get("tracked.error"),
        params=params,
        tags=tags,
        metrics=tuple(metrics),
        parent_metrics=parent_metrics,
        model=model,
    )


def _guarded(
    session: Session, what: str, call: Callable[..., Any], *args: Any, may_raise: bool = True
) -> Any:
    """``call(*args)``, with a failure reported (and None returned) instead of raised."""
    try:
        return call(*args)
    except Exception as exc:
        report_failure(what, exc, strict=session.strict, may_raise=may_raise)
        return None
