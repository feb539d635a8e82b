"""A pipeline's settings, resolved in one place, once per parent run.

Order: the environment (``TRACKED_STRICT``) > the instance's attribute > the class's > the
default here. The class attributes are checked when the class is defined
(``tracked/_settings.py``); the values an instance sets later are read here, when its parent
run opens, and hold for that run: each layer reads ``session.settings``, never the instance.
"""

from __future__ import annotations

from typing import Any

from attrs import fields, frozen

from tracked.records.config import STRICT_VAR, env_flag
from tracked.records.trust import never_trusted, type_name

_UNSET = object()

#: Nested runs a search CV stage records for its best candidates, by default.
MAX_TUNING_RUNS = 5


@frozen(kw_only=True)
class Settings:
    """What a pipeline instance configures (see the configuration table in the docs)."""

    #: The MLflow experiment; None: the class name (or the outer run's experiment).
    experiment: str | None = None
    run_name: str | None = None
    tracking_uri: str | None = None
    backend: Any = None
    strict: bool = False
    nest_under_active_run: bool = True
    synchronous: bool = False
    registered_model_name: str | None = None
    serialization_format: str = "skops"
    #: ``module.Name`` of each declared type (never those of ``os``, ``builtins``...).
    trusted_types: tuple[str, ...] = ()
    scoring: Any = None
    pos_label: Any = None
    log_outputs: str = "preview"
    log_input_example: bool = False
    max_tuning_runs: Any = MAX_TUNING_RUNS
    #: Switches for heavy capture: off leaves that part out of every stage run.
    log_models: bool = True
    training_metrics: bool = True
    log_pictures: bool = True
    log_datasets: bool = True
    #: Calls of a stage in one phase that stay runs of their own before the rest fold into
    #: one series run (None: never fold).
    fold_after: int | None = 2
    #: In a fit series, also log the model every this many calls (None: only at its end).
    checkpoint_every: int | None = None

    @classmethod
    def of(cls, instance: object) -> Settings:
        """The settings of ``instance`` now: its attributes, else its class's, else the
        defaults; ``TRACKED_STRICT`` over ``strict``."""
        values = {
            field.name: value
            for field in fields(cls)
            if (value := getattr(instance, field.name, _UNSET)) is not _UNSET
        }
        if not isinstance(values.get("experiment"), str):
            # None, or a hyperparameter named `experiment` hiding the class attribute.
            values.pop("experiment", None)
        strict = env_flag(STRICT_VAR)
        values["strict"] = bool(values.get("strict", False)) if strict is None else strict
        values["synchronous"] = bool(values.get("synchronous", False))
        for switch in ("log_input_example", "log_models", "training_metrics", "log_pictures"):
            values[switch] = bool(values.get(switch, switch != "log_input_example"))
        values["log_datasets"] = bool(values.get("log_datasets", True))
        values["trusted_types"] = trusted_names(values.get("trusted_types", ()))
        if values.get("serialization_format") is None:
            values.pop("serialization_format", None)
        if values.get("log_outputs") is None:
            values.pop("log_outputs", None)
        return cls(**values)


def trusted_names(declared: Any) -> tuple[str, ...]:
    """The ``module.Name`` of each type in ``declared`` (checked at class definition; an
    instance attribute set later is checked here): not types and never-trusted ones left out."""
    names = []
    for item in declared or ():
        try:
            name = type_name(item)
        except TypeError:
            continue  # not a type: nothing to trust
        if not never_trusted(name):
            names.append(name)
    return tuple(names)
