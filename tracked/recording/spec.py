"""What the metaclass knows of a stage (its kind and signature), one call's bound arguments, and
the ``operator`` slot.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import frozen

from tracked.core.errors import PipelineDefinitionError
from tracked.core.names import CONTEXT_ATTRIBUTE, OPERATOR_ATTRIBUTE

if TYPE_CHECKING:  # the delivery layer loads with the first tracked call
    from tracked.delivery.context import Frame
    from tracked.delivery.session import Session

SPEC_ATTRIBUTE = "__tracked_stage__"


@frozen
class StageSpec:
    """A stage as found at class definition."""

    name: str
    kind: str
    owner: str
    signature: inspect.Signature
    #: An ``async def`` stage: its run spans the await.
    asynchronous: bool = False

    @classmethod
    def of(cls, function: Callable[..., Any], kind: str, owner: str) -> StageSpec:
        """The spec of ``function``, a stage of class ``owner``.

        Raises:
            PipelineDefinitionError: ``function`` is a generator (sync or async): its body
                runs after the call returned, piecemeal, so no run could span it.
        """
        name = function.__name__
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            msg = (
                f"{owner}.{name} is a generator function (it yields): a stage must return its "
                "result, since its run spans the call; return a list (or an array), or make it "
                "a plain method that is not a stage"
            )
            raise PipelineDefinitionError(msg)
        signature = inspect.signature(function)
        # Drop ``self``: wrapt hands the wrapper the bound method's arguments.
        parameters = list(signature.parameters.values())[1:]
        return cls(
            name,
            kind,
            owner,
            signature.replace(parameters=parameters),
            asynchronous=inspect.iscoroutinefunction(function),
        )

    def data(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], target: str = "y"
    ) -> tuple[Any, Any]:
        """``(X, y)`` of a call: the first parameter, and the ground truth, the parameter
        named ``target`` (or a keyword of that name caught by ``**kwargs``).

        A stage whose first parameter is ``*args`` takes the first positional argument as
        ``X`` and, when no parameter is named ``target`` and no keyword of that name was
        passed, the second as ``y``: ``def fit(self, *args, stage="estimator")`` called as
        ``fit(X, y)`` records ``X`` and ``y``, not the tuple.
        """
        try:
            bound = self.signature.bind_partial(*args, **kwargs)
        except TypeError:
            return None, None
        parameters = list(self.signature.parameters.values())
        first = parameters[0] if parameters else None
        if first is not None and first.kind is first.VAR_POSITIONAL:
            positional = bound.arguments.get(first.name, ())
            x = positional[0] if positional else None
            y = self._named(bound, target)
            if y is None and target not in self.signature.parameters and len(positional) > 1:
                y = positional[1]
            return x, y
        x = bound.arguments.get(first.name) if first is not None else None
        return x, self._named(bound, target)

    def _named(self, bound: inspect.BoundArguments, target: str) -> Any:
        """The argument for ``target``: its parameter, or a keyword ``**kwargs`` caught."""
        if target in self.signature.parameters:
            return bound.arguments.get(target)
        for parameter in self.signature.parameters.values():
            if parameter.kind is parameter.VAR_KEYWORD:
                return bound.arguments.get(parameter.name, {}).get(target)
        return None

    def accepts(self, name: str) -> bool:
        """Whether a call can pass ``name`` (a parameter of that name, or ``**kwargs``)."""
        # ``*args`` first: the ground truth is its second positional argument.
        return any(
            parameter.name == name
            or parameter.kind is parameter.VAR_KEYWORD
            or (index == 0 and parameter.kind is parameter.VAR_POSITIONAL)
            for index, parameter in enumerate(self.signature.parameters.values())
        )


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
        if self.frame.children:  # what is there now, the stages it called assigned
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
