"""``TrackedPipeline``: the base class users subclass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from tracked._meta import TrackedMeta, instrument
from tracked.delivery.context import context_for
from tracked.recording.compose import Composer
from tracked.recording.spec import OperatorSlot
from tracked.records.names import CONTEXT_ATTRIBUTE
from tracked.records.params import init_params, params_text
from tracked.records.settings import Settings
from tracked.records.values import FINISHED, status_for

#: Configuration that ``sklearn.base.clone`` carries over when it is set on the instance.
CLONED_SETTINGS = ("tracking", *(field.name for field in attrs.fields(Settings)))


class TrackedPipeline(metaclass=TrackedMeta):
    """Base class of a workflow whose stage methods are recorded in MLflow.

    A method is a stage when its signature has a parameter ``stage`` whose default is
    ``"transformer"`` or ``"estimator"`` (or when ``stages`` names it). Every call of a stage
    becomes a child run of the instance's parent run, with the params of ``self.operator``,
    the fitted model of estimator stages and evaluation metrics when ``y`` is given.

    Configuration (class attributes; ``tracking`` and ``strict`` may also be set per instance):

    Attributes:
        experiment: MLflow experiment name; None means the class name.
        tracking: False runs stage methods untouched: nothing is logged and mlflow is never
            imported. ``TRACKED_ENABLED=0`` in the environment switches tracking off for
            every instance created afterwards, whatever the class says.
        tracking_uri: the MLflow store; None lets MLflow resolve it (``MLFLOW_TRACKING_URI``,
            else ``sqlite:///mlflow.db`` in the current directory).
        backend: None for MLflow, or another backend such as
            [`tracked.testing.MemoryBackend`][tracked.testing.MemoryBackend].
        strict: raise [`tracked.TrackingError`][tracked.TrackingError] on tracking failures
            instead of warning (``TRACKED_STRICT=1`` sets it for every pipeline).
        scoring: evaluation metrics, in scikit-learn's ``scoring`` convention (a scorer name,
            a list of names, or a dict of name to scorer); None means accuracy, f1_macro,
            precision_macro and recall_macro for classifiers, r2, rmse and mae for regressors.
        run_name: name of the parent run; None means the class name and the hyperparameters
            that differ from their defaults.
        registered_model_name: register every composed ``pipeline`` model as a new version of
            this MLflow registered model (None: do not register).
        serialization_format: ``"skops"`` (default; loads only the types it trusts, without
            pickle) or ``"cloudpickle"`` (any Python object; loading runs code, so trust the
            source).
        trusted_types: the types (classes, or ``"module.Name"`` strings) beyond
            scikit-learn's and NumPy's own that a skops model may hold, e.g. imbalanced-learn's
            ``Pipeline``; a model holding other types is not logged (a warning lists them).
            Functions of ``os``, ``subprocess``, ``builtins`` and the like are never trusted.
        nest_under_active_run: nest the parent run under the calling thread's active MLflow
            run (``mlflow.start_run()``) or ``MLFLOW_RUN_ID`` (``mlflow run``), in that run's
            experiment unless ``experiment`` is set; False keeps it top-level.
        log_outputs: what each stage's output leaves as an artifact: ``"preview"`` (the first
            20 rows as output_preview.csv), ``"full"`` (all of it as output.csv) or ``"none"``.
        stages: ``{"method": "transformer" | "estimator"}`` for methods whose signature you
            cannot edit (inherited from a class you do not own).
        synchronous: write each stage's records before the stage call returns, instead of
            handing them to the background writer (which the ``with`` exit, ``close()`` and
            ``tracked.flush()`` wait for).
        target: the name of the stages' ground-truth parameter (default ``"y"``).
        pos_label: the positive class of a binary classifier, for ``roc_auc`` and the curves;
            None means scikit-learn's (``classes_[1]``).
        max_tuning_runs: how many of a search CV's best candidates get a child run of their
            own under the search's stage run (None: all of them).
        log_input_example: store the first rows of the workflow's input (at most 5, cut to
            64 KB) with the composed ``pipeline`` model as its input example; off by default
            (they may be personal data). The signature is logged either way.
        log_models: log each fitted estimator stage's ``model`` (default True); the composed
            ``pipeline`` model is logged either way.
        training_metrics: compute the ``training_`` metrics of a fit (default True).
        log_pictures: draw the evaluation pictures of a scored inference (default True).
        log_datasets: record each stage's input as an MLflow dataset (default True).
        fold_after: calls of a stage in one phase kept as runs of their own (default 2; None:
            all); later ones fold into one series run, a metric step per call.
        checkpoint_every: also log a fit series' model every this many calls (default None).
    """

    experiment: ClassVar[str | None] = None
    tracking: bool = True
    tracking_uri: ClassVar[str | None] = None
    backend: ClassVar[Any] = None
    strict: bool = False
    scoring: ClassVar[Any] = None
    run_name: ClassVar[str | None] = None
    registered_model_name: ClassVar[str | None] = None
    serialization_format: ClassVar[str] = "skops"
    trusted_types: ClassVar[tuple[Any, ...]] = ()
    nest_under_active_run: ClassVar[bool] = True
    log_outputs: ClassVar[str] = "preview"
    stages: ClassVar[Mapping[str, str]] = {}
    synchronous: ClassVar[bool] = False
    target: ClassVar[str] = "y"
    pos_label: ClassVar[Any] = None
    max_tuning_runs: ClassVar[int | None] = 5
    log_input_example: ClassVar[bool] = False
    log_models: ClassVar[bool] = True
    training_metrics: ClassVar[bool] = True
    log_pictures: ClassVar[bool] = True
    log_datasets: ClassVar[bool] = True
    fold_after: ClassVar[int | None] = 2
    checkpoint_every: ClassVar[int | None] = None

    #: The object a stage works with: assign it in every stage (``self.operator = ...``).
    operator = OperatorSlot()

    def __new__(cls, *args: Any, **kwargs: Any):
        # Also runs when an instance is unpickled in a worker, where cloudpickle may have
        # rebuilt a `__main__` class from plain functions: its stages are wrapped here.
        instrument(cls)
        return super().__new__(cls)

    # -- the parent run ---------------------------------------------------------------------

    def __enter__(self):
        """Open the parent run now (when tracking is on) and return the pipeline."""
        if self._tracking_active():
            context_for(self).open_session(self, Composer, explicit=True)
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        """End the parent run: FINISHED, FAILED if the block raised, KILLED on Ctrl-C."""
        self._end(status_for(exc_type))

    def close(self) -> None:
        """End the parent run (FINISHED). The next stage call opens a new one."""
        self._end(FINISHED)

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
        return session.run_id if session is not None else None

    @property
    def model_uri(self) -> str | None:
        """URI of the newest composed ``pipeline`` model (``models:/<id>``), or None.

        Waits for the writer to log what the pipeline did so far.
        """
        session = self._last_session()
        return session.model_uri if session is not None else None

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
        as scikit-learn does), which keeps this instance's own settings (``tracking``,
        ``strict`` and the other configuration attributes set on the instance).

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
            state[name] = pipe.__dict__[name]
    context = pipe.__dict__.get(CONTEXT_ATTRIBUTE)
    if context is not None and context.owned_by(pipe) and pipe._tracking_active():
        context_for(twin).clone_of(context)
    return twin
