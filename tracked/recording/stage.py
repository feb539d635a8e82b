"""What happens around one tracked call of a stage method (``wrapper`` is the thin front).

The promise: a stage returns and raises exactly what the user's method returns and raises.
The user's call is never inside a ``try`` that could swallow or re-type its exception: the
only handler around it records the failure (which cannot raise) and re-raises the same object.
"""

from __future__ import annotations

import time
from typing import Any

from tracked.backends.mlflow.fluent import autologging_paused
from tracked.core.errors import TrackingError
from tracked.core.report import report_failure
from tracked.core.settings import strict_of
from tracked.core.values import FINISHED, now_ms
from tracked.delivery.context import Context, Frame, context_for
from tracked.delivery.session import Session
from tracked.delivery.writer import writer
from tracked.recording.capture import capture, phase_of
from tracked.recording.composition.compose import Composer
from tracked.recording.evaluation.evaluate import guarded
from tracked.recording.folding import fold
from tracked.recording.phase import snapshot
from tracked.recording.randomness import preserved_random_state
from tracked.recording.spec import Call, StageSpec


def tracked_call(spec, wrapped, instance, args, kwargs):
    """One tracked call of a stage (``wrapper.make_stage_wrapper`` decides it is tracked)."""
    # While a tracked call runs, the background writer holds back (see Writer).
    current = writer()
    current.stage_started()
    try:
        return _tracked_call_body(spec, wrapped, instance, args, kwargs)
    finally:
        current.stage_finished()


class _Running:
    """A stage call under way: what its record is built from once it returns."""

    __slots__ = ("before", "context", "frame", "outer", "session", "start_ms", "started", "token")

    def __init__(
        self, context: Context, session: Session, before: dict[int, Any], frame: Frame
    ) -> None:
        self.context, self.session, self.before, self.frame = context, session, before, frame
        stack = context.stack()
        #: The stage that called this one, if any: this call's run nests under its run.
        self.outer = stack[-1] if stack else None
        self.token = context.push(frame)
        self.start_ms = now_ms()
        self.started = time.perf_counter()

    def finish(self, spec, instance, args, kwargs, *, result=None, error=None) -> None:
        """Record the call (``error`` set when the method raised; then this never raises)."""
        duration = time.perf_counter() - self.started
        self.context.pop(self.token)
        call = Call(
            spec,
            instance,
            self.session,
            self.before,
            self.frame,
            args,
            kwargs,
            self.start_ms,
            duration,
        )
        _record(call, self.outer, result=result, error=error)


def _begin(spec: StageSpec, instance: Any) -> _Running | None:
    """Start tracking a call; None when it is not tracked (tracking failed, or it re-enters
    a stage that is running already)."""
    context = context_for(instance)
    if any(frame.name == spec.name for frame in context.stack()):
        # An override calling super(), or a stage re-entering itself: the outermost call
        # is the one recorded, so one call gives one child run.
        return None
    try:
        session = context.open_session(instance, Composer)
        before = snapshot(instance) if session.usable else None
    except TrackingError:
        raise
    except Exception as exc:
        report_failure(f"prepare tracking of stage {spec.name!r}", exc, strict=strict_of(instance))
        before = None
    if before is None:
        return None
    return _Running(context, session, before, Frame(spec.name))


def _tracked_call_body(spec, wrapped, instance, args, kwargs):
    running = _begin(spec, instance)
    if running is None:
        return wrapped(*args, **kwargs)
    with autologging_paused():
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            running.finish(spec, instance, args, kwargs, error=exc)
            raise
        running.finish(spec, instance, args, kwargs, result=result)
    return result


async def tracked_call_async(spec, wrapped, instance, args, kwargs):
    """One tracked call of an ``async def`` stage."""
    # The writer is not held back over the await: it may be long and is not CPU-bound.
    running = _begin(spec, instance)
    if running is None:
        return await wrapped(*args, **kwargs)
    with autologging_paused():
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            running.finish(spec, instance, args, kwargs, error=exc)
            raise
        current = writer()
        current.stage_started()
        try:
            running.finish(spec, instance, args, kwargs, result=result)
        finally:
            current.stage_finished()
    return result


def _record(
    call: Call, outer: Frame | None, *, result: Any = None, error: BaseException | None = None
) -> None:
    """Capture the call and write it; with ``error`` set this never raises.

    Called by another stage (``outer``), the record waits in that stage's frame, to be
    written as a run nested under that stage's run once that run's record is written.

    Capturing an estimator stage predicts again (metrics, model checks): whatever it draws
    from the global random generators is given back, so that the user's next draw is an
    untracked run's. A transformer stage's capture calls nothing of the operator's.
    """
    decided = None
    if outer is None and error is None and _callees_finished(call.frame.children):
        # A top-level call that returned may be one of a loop: past the stage's first calls
        # in this phase it folds into the stage's series, read lightly (see ``series``);
        # the stages it called are then folded into it too.
        decided = guarded(call.session, f"capture stage {call.spec.name!r}", phase_of, call)
        folding = f"fold a call of stage {call.spec.name!r}"
        if decided is not None and guarded(call.session, folding, fold, call, decided[0], result):
            return
    if call.spec.kind == "transformer":  # nothing is predicted or scored again
        record = _capture_call(call, result, error, decided)
    else:
        with preserved_random_state():
            record = _capture_call(call, result, error, decided)
    children = call.frame.children
    if record is None:  # nothing of its own to nest under: its children move up
        pending = children
    else:
        # The composed model's step is the one it had when captured, not when written.
        pending = [(call.session, record, children, call.session.composer.count - 1)]
    if outer is not None:
        outer.children.extend(pending)
        return
    for session, own, nested, step in pending:
        _write(session, own, nested, step, may_raise=error is None)


def _write(
    session: Session,
    record: Any,
    children: list[Any],
    composed_step: int,
    *,
    may_raise: bool,
    nested_under: tuple[str, str] | None = None,
) -> None:
    run = session.write_stage(
        record, may_raise=may_raise, nested_under=nested_under, composed_step=composed_step
    )
    for child_session, child, grandchildren, step in children:
        under = (run, record.stage) if run is not None and child_session is session else None
        _write(child_session, child, grandchildren, step, may_raise=may_raise, nested_under=under)


def _callees_finished(children: list[Any]) -> bool:
    """Whether every stage the call called returned (a failed one keeps its run)."""
    return all(own.status == FINISHED for _, own, _, _ in children)


def _capture_call(call: Call, result: Any, error: BaseException | None, decided: Any = None) -> Any:
    may_raise = error is None
    try:
        return capture(call, result, error, decided)
    except (TrackingError, Warning):
        # Strict mode, or warnings turned into errors: only on the success path may they
        # reach the caller; a user's exception in flight is never replaced.
        if may_raise:
            raise
        return None
    except Exception as exc:
        report_failure(
            f"capture stage {call.spec.name!r}",
            exc,
            strict=call.session.strict,
            may_raise=may_raise,
        )
        return None
