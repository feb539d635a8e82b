"""Every setting of a pipeline, declared once: its name, type, default, check and doc text.

A pipeline class declares its settings in its body (``experiment = "iris-demo"``), where they
are checked when the class is defined; ``tracked.configure(pipe, ...)`` overrides them for
one instance; ``TRACKED_STRICT`` and ``TRACKED_ENABLED`` win over both. The instance's own
attributes are the user's (hyperparameters may be called ``scoring`` or ``target``): apart
from ``tracking``, no setting is read from them. Everything else about a setting is derived
from the field below: the checks, the resolution, the configuration page's table (built by
``docs/hooks/settings.py``) and the list of reserved names.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from attrs import field, fields, frozen

from tracked.core.config import ENABLED_VAR, STRICT_VAR, env_flag
from tracked.core.errors import PipelineDefinitionError
from tracked.core.names import LOG_OUTPUTS, SETTINGS_ATTRIBUTE
from tracked.core.trust import never_trusted, type_name

#: The methods every backend has (the protocol of ``tracked/backends/base.py``).
BACKEND_METHODS = (
    "start_run",
    "log",
    "log_model",
    "log_artifact",
    "log_dataset",
    "end_run",
    "register_model",
    "tag_model_version",
)

SERIALIZATION_FORMATS = ("skops", "cloudpickle")


# -- checks: each says what the value must be, or returns it usable -------------------------


def is_backend(obj: object) -> bool:
    """Whether ``obj`` has every backend method."""
    return all(callable(getattr(obj, name, None)) for name in BACKEND_METHODS)


def scorers(scoring: str | Iterable[str] | Mapping[str, Any]) -> dict[str, Callable[..., float]]:
    """scikit-learn's ``scoring`` convention resolved to ``{name: scorer}``.

    Raises:
        ValueError: for an unknown scorer name (scikit-learn's message lists the valid ones).
    """
    from sklearn.metrics import get_scorer

    if isinstance(scoring, str):
        return {scoring: get_scorer(scoring)}
    if isinstance(scoring, Mapping):
        return {
            str(name): get_scorer(scorer) if isinstance(scorer, str) else scorer
            for name, scorer in scoring.items()
        }
    return {name: get_scorer(name) for name in scoring}


class _Invalid(ValueError):
    """A setting's value does not fit; the message completes ``<Class>.<setting> ...``."""


def _choice(choices: tuple[str, ...]) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value not in choices:
            raise _Invalid(f"must be one of {choices}, not {value!r}")

    return check


def _count(least: int, what: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _Invalid(f"must be None or {what} >= {least}, not {value!r}")
        if value is not None and value < least:
            raise _Invalid(f"must be None or {what} >= {least}, not {value!r}")

    return check


def _experiment(value: Any) -> None:
    if value == "":
        raise _Invalid("must not be empty; use None for the class name")


def _backend(value: Any) -> None:
    if value is not None and not is_backend(value):
        raise _Invalid(
            "must be None (MLflow) or a backend such as tracked.testing.MemoryBackend(), "
            f"not {value!r}"
        )


def _scoring(value: Any) -> None:
    if value is None:
        return
    try:
        scorers(value)
    except (ValueError, TypeError) as exc:
        raise _Invalid(f"is not valid scikit-learn scoring: {exc}") from None


def _trusted_types(value: Any) -> None:
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise _Invalid(
            "must be a tuple of classes or 'module.Name' strings, "
            f"not {type(value).__name__}: e.g. trusted_types = (MyEstimator,)"
        )
    for item in value:
        try:
            dotted = type_name(item)
        except TypeError as exc:
            raise _Invalid(f": {exc}") from None
        if "." not in dotted.strip(".") or " " in dotted:
            raise _Invalid(f": {dotted!r} is not a 'module.Name' type name")
        if never_trusted(dotted):
            raise _Invalid(
                f": {dotted} is never trusted (loading a model that holds it could run any "
                "command); keep such functions out of models, or use "
                "serialization_format = 'cloudpickle' knowingly"
            )


def _target(value: Any) -> None:
    if not (isinstance(value, str) and value.isidentifier()):
        raise _Invalid(
            f'must name the stages\' ground-truth parameter (a str such as "labels"), not {value!r}'
        )


def _pos_label(value: Any) -> None:
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise _Invalid(
            "must be one class label (a str, int, float or bool) or None for scikit-learn's "
            f"default (the second class), not {type(value).__name__}"
        )


def _stages(value: Any) -> None:
    if not isinstance(value, Mapping):
        raise _Invalid(f"must be a mapping of method name to kind, not {type(value).__name__}")


def setting(
    default: Any,
    doc: str,
    *,
    types: tuple[type, ...] | None = None,
    check: Callable[[Any], None] | None = None,
    shown: str | None = None,
    instance: bool = True,
) -> Any:
    """One setting: ``default``, ``doc`` (markdown, for the configuration page), the
    ``types`` its value must have and a further ``check``; ``shown`` is the default as the
    page prints it; ``instance=False`` for settings only a class body can make (``stages``)."""
    return field(
        default=default,
        metadata={"doc": doc, "types": types, "check": check, "shown": shown, "instance": instance},
    )


_OPTIONAL_STR = (str, type(None))


@frozen(kw_only=True)
class Settings:
    """What a pipeline configures: one field per setting (the configuration page's table)."""

    experiment: str | None = setting(
        None,
        "MLflow experiment, created if missing",
        types=_OPTIONAL_STR,
        check=_experiment,
        shown="None (the class name)",
    )
    tracking: bool = setting(
        True,
        "False: stages run untouched, nothing is logged, mlflow is not imported. The one "
        "setting also read from the instance (`pipe.tracking = False`); `TRACKED_ENABLED=0` "
        "switches it off everywhere",
        types=(bool,),
    )
    tracking_uri: str | None = setting(
        None,
        "MLflow store; None lets MLflow resolve it (`MLFLOW_TRACKING_URI`, else "
        "`sqlite:///mlflow.db`)",
        types=_OPTIONAL_STR,
    )
    backend: Any = setting(
        None,
        "another backend, e.g. `tracked.testing.MemoryBackend()`",
        check=_backend,
        shown="None (MLflow)",
    )
    strict: bool = setting(
        False,
        "tracking failures raise `tracked.TrackingError` instead of warning "
        "(`TRACKED_STRICT=1` or `0` decides for every pipeline)",
        types=(bool,),
    )
    scoring: Any = setting(
        None,
        "evaluation metrics in scikit-learn's `scoring` convention (a scorer name, a list of "
        "names, or a dict of name to scorer); None: accuracy, f1_macro, precision_macro and "
        "recall_macro for classifiers, r2, rmse and mae for regressors",
        check=_scoring,
    )
    run_name: str | None = setting(
        None,
        "name of the parent run; None: the class name and the hyperparameters that differ "
        "from their defaults",
        types=_OPTIONAL_STR,
    )
    registered_model_name: str | None = setting(
        None,
        "register every composed `pipeline` model as a new version of this registered model",
        types=_OPTIONAL_STR,
    )
    serialization_format: str = setting(
        "skops",
        '`"skops"` (loads only the types it trusts, without pickle) or `"cloudpickle"` (any '
        "Python object; loading runs code), for the logged models",
        check=_choice(SERIALIZATION_FORMATS),
    )
    trusted_types: tuple[Any, ...] = setting(
        (),
        "types (classes, or `\"module.Name\"` strings) beyond scikit-learn's and NumPy's own "
        "that a skops model may hold; functions of `os`, `subprocess`, `builtins` and the like "
        "are never trusted",
        check=_trusted_types,
    )
    nest_under_active_run: bool = setting(
        True,
        "nest the parent run under an active MLflow run or `MLFLOW_RUN_ID`",
        types=(bool,),
    )
    log_outputs: str = setting(
        "preview",
        '`"preview"` (20 rows), `"full"` or `"none"`: each stage\'s output as an artifact',
        check=_choice(LOG_OUTPUTS),
    )
    stages: Mapping[str, str] = setting(
        MappingProxyType({}),
        '`{"method": "transformer" | "estimator"}` for methods you cannot edit (inherited '
        "from a class you do not own); class body only",
        check=_stages,
        shown="{}",
        instance=False,
    )
    synchronous: bool = setting(
        False,
        "True: each stage's records are written before the stage call returns, instead of by "
        "the background writer",
        types=(bool,),
    )
    log_input_example: bool = setting(
        False,
        "store the first rows of the input (≤ 5, ≤ 64 KB) with the composed model as its "
        "input example (they may be personal data)",
        types=(bool,),
    )
    target: str = setting(
        "y", "the name of the stages' ground-truth parameter", check=_target, instance=False
    )
    pos_label: Any = setting(
        None,
        "the positive class of binary metrics and curves; None: scikit-learn's (`classes_[1]`)",
        check=_pos_label,
    )
    max_tuning_runs: int | None = setting(
        5,
        "how many of a search CV's best candidates get a nested run (None: all)",
        check=_count(0, "a count (an int)"),
    )
    log_models: bool = setting(
        True,
        "log each fitted estimator stage's `model` (the composed `pipeline` is logged either way)",
        types=(bool,),
    )
    training_metrics: bool = setting(
        True,
        "compute the `training_` metrics of a fit (it predicts on the whole training set: on "
        "the caller's thread, or the writer's for a model that holds its training data, see "
        "[random state](recording.md#random-state))",
        types=(bool,),
    )
    log_pictures: bool = setting(
        True, "draw the evaluation pictures of an inference pass with ground truth", types=(bool,)
    )
    log_datasets: bool = setting(
        True, "record each stage's input as an MLflow dataset", types=(bool,)
    )
    fold_after: int | None = setting(
        2,
        "calls of a stage in one phase that stay runs of their own; later ones fold into one "
        "series run ([loops](loops.md)). None: never fold",
        check=_count(0, "a whole number of calls"),
    )
    checkpoint_every: int | None = setting(
        None,
        "in a fit series, also log the model every this many calls, as `checkpoint-<call>`",
        check=_count(1, "a whole number of calls"),
    )

    @classmethod
    def of(cls, instance: object) -> Settings:
        """The settings of ``instance`` now: ``TRACKED_STRICT``/``TRACKED_ENABLED`` over its
        overrides (``tracked.configure``) over its class's declarations over the defaults."""
        values = declared(type(instance))
        values.update(_deprecated_instance_settings(instance))
        values.update(overrides(instance))
        if "tracking" in vars(instance):
            values["tracking"] = vars(instance)["tracking"]
        strict = env_flag(STRICT_VAR)
        if strict is not None:
            values["strict"] = strict
        if env_flag(ENABLED_VAR) is False:
            values["tracking"] = False
        values["trusted_types"] = trusted_names(values.get("trusted_types", ()))
        return cls(**values)


#: Every setting's name, in the order of the configuration page.
NAMES = tuple(f.name for f in fields(Settings))
_FIELDS = {f.name: f for f in fields(Settings)}


def problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for setting ``name`` (completing ``<owner>.<name> ...``),
    or None when it fits."""
    meta = _FIELDS[name].metadata
    types = meta["types"]
    if types is not None and not isinstance(value, types):
        expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
        return f"must be {expected}, not {type(value).__name__}"
    if meta["check"] is not None:
        try:
            meta["check"](value)
        except _Invalid as exc:
            return str(exc)
    return None


def check_declared(cls: type, namespace: Mapping[str, Any]) -> None:
    """Check the settings a class body declares, in the table's order.

    Raises:
        PipelineDefinitionError: the first setting whose value does not fit, naming the class,
            the setting and what to write instead.
    """
    for name in NAMES:
        if name in namespace and (wrong := problem(name, namespace[name])) is not None:
            sep = "" if wrong.startswith(":") else " "
            msg = f"{cls.__name__}.{name}{sep}{wrong}"
            raise PipelineDefinitionError(msg)


def declared(cls: type) -> dict[str, Any]:
    """The settings ``cls`` and its bases declare in their class bodies (nearest first)."""
    values: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name in NAMES:
            if name in vars(klass):
                values[name] = vars(klass)[name]
    return values


def class_setting(cls: type, name: str) -> Any:
    """One setting as ``cls`` declares it (or its default)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    return _FIELDS[name].default


def strict_of(instance: object) -> bool:
    """Whether tracking failures raise for ``instance``, before its parent run opens (its
    session's settings say it after): ``TRACKED_STRICT`` > ``configure`` > the class body."""
    env = env_flag(STRICT_VAR)
    if env is not None:
        return env
    own = overrides(instance)
    if "strict" in own:
        return bool(own["strict"])
    state = getattr(instance, "__dict__", {})
    if isinstance(state.get("strict"), bool) and "strict" not in _hyperparameters(type(instance)):
        # The deprecated spelling (``pipe.strict = True``), as Settings.of honours it (and
        # warns about it once the parent run opens).
        return state["strict"]
    return bool(class_setting(type(instance), "strict"))


def overrides(instance: object) -> dict[str, Any]:
    """What ``tracked.configure`` set on ``instance``."""
    return dict(getattr(instance, "__dict__", {}).get(SETTINGS_ATTRIBUTE, {}))


def configure(pipe: Any, **settings: Any) -> Any:
    """Override settings for this one pipeline instance; returns the instance.

    ``tracked.configure(pipe, tracking_uri="http://127.0.0.1:5000", strict=True)``: the
    values are checked now and apply from the next parent run on. Copies and clones of the
    instance keep them.

    Raises:
        TypeError: a name that is no setting, or one only a class body can set (``stages``,
            ``target``).
        PipelineDefinitionError: a value that does not fit its setting.
    """
    for name, value in settings.items():
        if name not in _FIELDS or not _FIELDS[name].metadata["instance"]:
            allowed = ", ".join(n for n in NAMES if _FIELDS[n].metadata["instance"])
            msg = f"configure() takes no setting {name!r}; the settings it takes: {allowed}"
            raise TypeError(msg)
        if (wrong := problem(name, value)) is not None:
            sep = "" if wrong.startswith(":") else " "
            msg = f"configure(..., {name}=...) {type(pipe).__name__}.{name}{sep}{wrong}"
            raise PipelineDefinitionError(msg)
    state = pipe.__dict__
    if "tracking" in settings:  # the switch is the instance's own attribute: the wrapper reads it
        state["tracking"] = settings.pop("tracking")
    state[SETTINGS_ATTRIBUTE] = {**state.get(SETTINGS_ATTRIBUTE, {}), **settings}
    return pipe


def _hyperparameters(cls: type) -> frozenset[str]:
    init = cls.__init__
    if init is object.__init__:
        return frozenset()
    try:
        return frozenset(inspect.signature(init).parameters)
    except (TypeError, ValueError):
        return frozenset()


def _deprecated_instance_settings(instance: object) -> dict[str, Any]:
    """Settings assigned as instance attributes outside ``__init__``'s parameters
    (``pipe.tracking_uri = ...``): honoured for this release, with a FutureWarning that
    shows ``tracked.configure``. A constructor argument of the same name is a hyperparameter
    and never read."""
    state = getattr(instance, "__dict__", {})
    hyper = _hyperparameters(type(instance))
    found = {
        name: state[name]
        for name in NAMES
        if name in state and name not in hyper and name != "tracking"
    }
    for name, value in found.items():
        if problem(name, value) is not None or not _FIELDS[name].metadata["instance"]:
            continue
        warnings.warn(
            f"setting {name!r} as an attribute of a {type(instance).__name__} instance is "
            f"deprecated: write tracked.configure(pipe, {name}=...) (instance attributes are "
            "yours: a hyperparameter may have any name)",
            # FutureWarning, not DeprecationWarning: shown by default to whoever runs the script.
            FutureWarning,
            stacklevel=4,
        )
    return {
        name: value
        for name, value in found.items()
        if problem(name, value) is None and _FIELDS[name].metadata["instance"]
    }


def trusted_names(declared: Any) -> tuple[str, ...]:
    """The ``module.Name`` of each type in ``declared`` (checked already): never-trusted
    ones left out."""
    names = []
    for item in declared or ():
        try:
            name = type_name(item)
        except TypeError:
            continue  # not a type: nothing to trust
        if not never_trusted(name):
            names.append(name)
    return tuple(names)


def table() -> str:
    """The configuration page's table of settings, in markdown."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for f in fields(Settings):
        shown = f.metadata["shown"] or (
            repr(f.default) if isinstance(f.default, str) else str(f.default)
        )
        shown = f"`{shown}`" if isinstance(f.default, str) else shown
        doc = f.metadata["doc"].replace("|", "\\|")
        rows.append(f"| `{f.name}` | {shown} | {doc} |")
    return "\n".join(rows)
