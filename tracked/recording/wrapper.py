"""The stage wrapper's thin front: what a stage call costs when tracking is off.

``import tracked`` loads this and not the capture machinery behind it (``stage``, and through
it evaluation, composition, the delivery layer): defining a pipeline class needs none of it.
The first tracked call imports it, once per process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tracked.core.names import CONTEXT_ATTRIBUTE
from tracked.recording.spec import SPEC_ATTRIBUTE, StageSpec


def make_stage_wrapper(spec: StageSpec) -> Callable[..., Any]:
    """The wrapt wrapper function for one stage."""

    def stage_wrapper(wrapped, instance, args, kwargs):
        # The tracking-off path: one attribute read, then the user's method.
        if instance is None or not instance.tracking:
            return wrapped(*args, **kwargs)
        context = instance.__dict__.get(CONTEXT_ATTRIBUTE)
        if context is not None and context.killed:
            return wrapped(*args, **kwargs)
        from tracked.recording.stage import tracked_call  # the first tracked call loads it

        return tracked_call(spec, wrapped, instance, args, kwargs)

    async def async_stage_wrapper(wrapped, instance, args, kwargs):
        # An `async def` stage: the wrapper is a coroutine function too, and awaiting it
        # awaits the user's coroutine; the run spans that await.
        if instance is None or not instance.tracking:
            return await wrapped(*args, **kwargs)
        context = instance.__dict__.get(CONTEXT_ATTRIBUTE)
        if context is not None and context.killed:
            return await wrapped(*args, **kwargs)
        from tracked.recording.stage import tracked_call_async

        return await tracked_call_async(spec, wrapped, instance, args, kwargs)

    wrapper = async_stage_wrapper if spec.asynchronous else stage_wrapper
    setattr(wrapper, SPEC_ATTRIBUTE, spec)
    return wrapper
