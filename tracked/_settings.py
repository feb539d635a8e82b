"""The configuration attributes a pipeline class sets, checked when the class is defined.

A misspelt value (``log_outputs = "ful"``) or a wrong type (``strict = "yes"``) would
otherwise surface only at the first stage call, far from the line at fault, or silently
change what is recorded. Each check below owns one attribute (or one kind of attribute),
names the class and says what to write instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracked.backends.base import is_backend
from tracked.recording.scoring import scorers
from tracked.records.errors import PipelineDefinitionError
from tracked.records.names import LOG_OUTPUTS
from tracked.records.trust import never_trusted, type_name

SERIALIZATION_FORMATS = ("skops", "cloudpickle")

#: Attributes that only need the right type: their values are used as they are.
_TYPED: dict[str, tuple[type, ...]] = {
    "tracking": (bool,),
    "strict": (bool,),
    "nest_under_active_run": (bool,),
    "synchronous": (bool,),
    "log_input_example": (bool,),
    "log_models": (bool,),
    "training_metrics": (bool,),
    "log_pictures": (bool,),
    "log_datasets": (bool,),
    "experiment": (str, type(None)),
    "tracking_uri": (str, type(None)),
    "run_name": (str, type(None)),
    "registered_model_name": (str, type(None)),
}


def check_attributes(cls: type, namespace: Mapping[str, Any]) -> None:
    """Check the configuration attributes a class body sets, naming the class and the fix.

    The checks run in a fixed order, so a class body with several faults always reports
    the same one first.

    Raises:
        PipelineDefinitionError: the first attribute with a wrong type or value.
    """
    name = cls.__name__
    _check_types(name, namespace)
    if namespace.get("experiment") == "":
        msg = f"{name}.experiment must not be empty; use None for the class name"
        raise PipelineDefinitionError(msg)
    _check_choice(name, namespace, "log_outputs", "preview", LOG_OUTPUTS)
    if "trusted_types" in namespace:
        _check_trusted_types(name, namespace["trusted_types"])
    _check_choice(name, namespace, "serialization_format", "skops", SERIALIZATION_FORMATS)
    if namespace.get("backend") is not None:
        _check_backend(name, namespace["backend"])
    if "target" in namespace:
        _check_target(name, namespace["target"])
    if "pos_label" in namespace:
        _check_pos_label(name, namespace["pos_label"])
    if "max_tuning_runs" in namespace:
        _check_max_tuning_runs(name, namespace["max_tuning_runs"])
    if namespace.get("scoring") is not None:
        _check_scoring(name, namespace["scoring"])
    for attribute, least in (("fold_after", 0), ("checkpoint_every", 1)):
        if attribute in namespace:
            _check_count(name, attribute, namespace[attribute], least)


def _check_count(name: str, attribute: str, value: Any, least: int) -> None:
    """``value`` is None or a whole number of calls, at least ``least``."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        msg = (
            f"{name}.{attribute} must be None or a whole number of calls >= {least}, not {value!r}"
        )
        raise PipelineDefinitionError(msg)


def _check_types(name: str, namespace: Mapping[str, Any]) -> None:
    """The flags and names of ``_TYPED`` have their declared types."""
    for attribute, types in _TYPED.items():
        if attribute in namespace and not isinstance(namespace[attribute], types):
            expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            msg = (
                f"{name}.{attribute} must be {expected}, not {type(namespace[attribute]).__name__}"
            )
            raise PipelineDefinitionError(msg)


def _check_choice(
    name: str, namespace: Mapping[str, Any], attribute: str, default: str, choices: tuple[str, ...]
) -> None:
    """An attribute that picks one of a few named behaviours names one that exists."""
    if namespace.get(attribute, default) not in choices:
        msg = f"{name}.{attribute} must be one of {choices}, not {namespace[attribute]!r}"
        raise PipelineDefinitionError(msg)


def _check_trusted_types(name: str, value: Any) -> None:
    """``trusted_types``: a tuple or list of classes (or functions) or ``"module.Name"``
    strings, none from a module that is never trusted (``os``, ``subprocess``, ...)."""
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        msg = (
            f"{name}.trusted_types must be a tuple of classes or 'module.Name' strings, "
            f"not {type(value).__name__}: e.g. trusted_types = (MyEstimator,)"
        )
        raise PipelineDefinitionError(msg)
    for item in value:
        try:
            dotted = type_name(item)
        except TypeError as exc:
            msg = f"{name}.trusted_types: {exc}"
            raise PipelineDefinitionError(msg) from None
        if "." not in dotted.strip(".") or " " in dotted:
            msg = f"{name}.trusted_types: {dotted!r} is not a 'module.Name' type name"
            raise PipelineDefinitionError(msg)
        if never_trusted(dotted):
            msg = (
                f"{name}.trusted_types: {dotted} is never trusted (loading a model that holds "
                "it could run any command); keep such functions out of models, or use "
                "serialization_format = 'cloudpickle' knowingly"
            )
            raise PipelineDefinitionError(msg)


def _check_backend(name: str, backend: object) -> None:
    """``backend``: an object with the backend protocol's methods (None means MLflow)."""
    if not is_backend(backend):
        msg = (
            f"{name}.backend must be None (MLflow) or a backend such as "
            f"tracked.testing.MemoryBackend(), not {backend!r}"
        )
        raise PipelineDefinitionError(msg)


def _check_target(name: str, target: object) -> None:
    """``target``: the name of the stages' ground-truth parameter, so an identifier."""
    if not (isinstance(target, str) and target.isidentifier()):
        msg = (
            f"{name}.target must name the stages' ground-truth parameter (a str such as "
            f'"labels"), not {target!r}'
        )
        raise PipelineDefinitionError(msg)


def _check_pos_label(name: str, label: object) -> None:
    """``pos_label``: one class label, as scikit-learn's binary metrics take it."""
    if label is not None and not isinstance(label, (str, int, float, bool)):
        msg = (
            f"{name}.pos_label must be one class label (a str, int, float or bool) or None "
            f"for scikit-learn's default (the second class), not {type(label).__name__}"
        )
        raise PipelineDefinitionError(msg)


def _check_max_tuning_runs(name: str, runs: object) -> None:
    """``max_tuning_runs``: a count (``True`` is an int to Python, not a count to us)."""
    if runs is not None and (isinstance(runs, bool) or not isinstance(runs, int) or runs < 0):
        msg = (
            f"{name}.max_tuning_runs must be a count (an int >= 0) or None for every "
            f"candidate of a search, not {runs!r}"
        )
        raise PipelineDefinitionError(msg)


def _check_scoring(name: str, scoring: object) -> None:
    """``scoring``: anything scikit-learn accepts, resolved now rather than at the first fit."""
    try:
        scorers(scoring)
    except (ValueError, TypeError) as exc:
        msg = f"{name}.scoring is not valid scikit-learn scoring: {exc}"
        raise PipelineDefinitionError(msg) from None
