"""``TrackedPipeline``: the base class users subclass."""

from __future__ import annotations

import copy
from typing import Any

from attrs import fields

from tracked._meta import TrackedMeta, instrument
from tracked.core.names import CONTEXT_ATTRIBUTE, SETTINGS_ATTRIBUTE
from tracked.core.params import init_params, params_text
from tracked.core.report import guarded_entry
from tracked.core.settings import Settings, strict_of
from tracked.core.values import FINISHED, status_for
from tracked.recording.spec import OperatorSlot

#: What ``sklearn.base.clone`` carries over from the instance: its switch and its own settings
#: (``tracked.configure``), plus settings set the deprecated way (``pipe.strict = True``).
CLONED_SETTINGS = ("tracking", SETTINGS_ATTRIBUTE, *(field.name for field in fields(Settings)))


class TrackedPipeline(metaclass=TrackedMeta):
    """Base class of a workflow whose stage methods are recorded in MLflow.

    A method is a stage when its signature has a parameter ``stage`` whose default is
    ``"transformer"`` or ``"estimator"`` (or when ``stages`` names it). Every call of a stage
    becomes a child run of the instance's parent run, with the params of ``self.operator``,
    the fitted model of estimator stages and evaluation metrics when ``y`` is given.

    Settings are declared in the class body (``experiment = "iris-demo"``), overridden for
    one instance with [`tracked.configure`][tracked.configure], and listed with their
    defaults on the configuration page. The instance's attributes are yours: tracked reads
    only ``tracking`` (``pipe.tracking = False`` switches one instance off) and ``operator``.
    """

    #: The switch: False runs the stages untouched (``TRACKED_ENABLED=0`` for every instance).
    tracking = fields(Settings).tracking.default

    #: The object a stage works with: assign it in every stage (``self.operator = ...``).
    operator = OperatorSlot()

    def __new__(cls, *args: Any, **kwargs: Any):
        # Also runs when an instance is unpickled in a worker, where cloudpickle may have
        # rebuilt a `__main__` class from plain functions: its stages are wrapped here.
        instrument(cls)
        return super().__new__(cls)

    # -- the parent run ---------------------------------------------------------------------

    # The entry points below are guarded as stage calls are: a tracking failure (the store's
    # library failing to import included) is a TrackingWarning (raised in strict mode),
    # and the user's code runs on.

    def __enter__(self):
        """Open the parent run now (when tracking is on) and return the pipeline."""
        if self._tracking_active():
            self._guarded("open the parent run", self._open)
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        """End the parent run: FINISHED, FAILED if the block raised, KILLED on Ctrl-C."""
        status = status_for(exc_type)
        # The block's own exception is never replaced.
        self._guarded("end the parent run", lambda: self._end(status), may_raise=exc_type is None)

    def close(self) -> None:
        """End the parent run (FINISHED). The next stage call opens a new one."""
        self._guarded("end the parent run", lambda: self._end(FINISHED))

    def _guarded(self, what: str, call: Any, *, may_raise: bool = True) -> Any:
        # Strictness is asked only when something failed: an untracked `with`, a `run_id`
        # read, pays nothing for it.
        return guarded_entry(
            what, call, strict=lambda: strict_of(self), may_raise=may_raise, default=None
        )

    def _open(self) -> None:
        # The delivery layer and the composer load with the first tracked run, not with
        # `import tracked` (as the capture machinery does, see recording/wrapper.py).
        from tracked.delivery.context import context_for
        from tracked.recording.composition.compose import Composer

        context_for(self).open_session(self, Composer, explicit=True)

    def _end(self, status: str) -> None:
        context = self.__dict__.get(CONTEXT_ATTRIBUTE)
        if context is not None and context.owned_by(self):
            context.close(status)

    def _tracking_active(self) -> bool:
        context = self.__dict__.get(CONTEXT_ATTRIBUTE)
        return bool(self.tracking) and not (context is not None and context.killed)

    def _last_session(self) -> Any:
        context = self.__dict__.get(CONTEXT_ATTRIBUTE)
        if context is None or not context.owned_by(self):
            return None
        return context.last_session

    @property
    def run_id(self) -> str | None:
        """Id of the current (or, once ended, the latest) parent run; None when untracked.

        ``local-...`` while the run is only in the spool (its store was away): ``tracked
        sync`` gives it a store id later. Reading it waits for the writer to create the run.
        """
        session = self._last_session()
        if session is None:
            return None
        return self._guarded("read the parent run's id", lambda: session.run_id)

    @property
    def model_uri(self) -> str | None:
        """URI of the newest composed ``pipeline`` model (``models:/<id>``), or None.

        Waits for the writer to log what the pipeline did so far.
        """
        session = self._last_session()
        if session is None:
            return None
        return self._guarded("read the composed model's URI", lambda: session.model_uri)

    def __getstate__(self) -> dict[str, Any]:
        # A copy (pickle, copy.copy, deepcopy) gets its own tracking context, decided now:
        # made while a parent run is open, it logs under that run; made before, it opens its own.
        state = dict(self.__dict__)
        context = state.get(CONTEXT_ATTRIBUTE)
        if context is not None:
            state[CONTEXT_ATTRIBUTE] = context.split()
        return state

    # -- scikit-learn's estimator conventions ---------------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments read back as attributes (``BaseEstimator.get_params``)."""
        params = init_params(self)
        if not deep:
            return params
        nested = dict(params)
        for name, value in params.items():
            get_params = getattr(value, "get_params", None)
            if callable(get_params) and not isinstance(value, type):
                nested.update({f"{name}__{key}": v for key, v in get_params(deep=True).items()})
        return nested

    def __sklearn_clone__(self):
        """``sklearn.base.clone``: a fresh instance with the same constructor arguments (cloned
        as scikit-learn does), which keeps this instance's own settings (``tracking`` and what
        [`tracked.configure`][tracked.configure] set).

        A clone made while this instance's parent run is open nests its parent run under
        that run, and that run's end ends it too (``cross_val_score`` inside ``with pipe:``).
        """
        return _clone(self)

    def set_params(self, **params: Any):
        """Set constructor arguments by name; ``name__param`` reaches nested estimators."""
        valid = init_params(self)
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                msg = (
                    f"invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters are {sorted(valid)}"
                )
                raise ValueError(msg)
            if sub:
                valid[name].set_params(**{sub: value})
            else:
                setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({params_text(self)})"


def _clone(pipe: TrackedPipeline) -> TrackedPipeline:
    """``pipe.__sklearn_clone__()``: see its docstring."""
    from sklearn.base import clone

    params = {name: clone(value, safe=False) for name, value in pipe.get_params(deep=False).items()}
    twin = type(pipe)(**params)
    state = twin.__dict__
    for name in CLONED_SETTINGS:
        if name in pipe.__dict__ and name not in params:
            state[name] = copy.copy(pipe.__dict__[name])
    context = pipe.__dict__.get(CONTEXT_ATTRIBUTE)
    if context is not None and context.owned_by(pipe) and pipe._tracking_active():
        from tracked.delivery.context import context_for  # loaded already: a run was open

        context_for(twin).clone_of(context)
    return twin
