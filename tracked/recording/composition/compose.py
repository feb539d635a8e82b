"""The whole fitted workflow as one model: the operators of the fit pass, in order.

When an estimator stage finishes a fit, the transformers whose data reached it (the digest
chain says which; side stages are left out) and the estimator itself are composed into one
scikit-learn ``Pipeline``. Before it is logged, the composition is checked against what the
stages actually did: the transformers applied to a sample of the first stage's input must
reproduce the estimator stage's input. A composition that would predict differently is never
logged. The composed model is a snapshot: later prediction passes are verified against it,
not against the live operators, which the workflow may refit in place.
"""

from __future__ import annotations

import copy
from typing import Any

from attrs import evolve, frozen

from tracked.backends.mlflow.models import served_model, served_predictions
from tracked.core import frames as _frames
from tracked.core.frames import SamplingError
from tracked.core.report import describe
from tracked.core.sparse import head as sparse_head
from tracked.core.sparse import is_sparse, same
from tracked.recording.composition.chain import (
    RECENT_PASSES,
    FittedStage,
    NotComposable,
    check_chain,
    check_operators,
    check_samples,
    feeding,
    is_sampler,
)

#: Rows kept from each fit-phase stage's input, to check a composition and serve as examples
#: (fewer, at least ``EXAMPLE_ROWS``, when they would take more than ``SAMPLE_BYTES``).
SAMPLE_ROWS = 200


SAMPLE_BYTES = 4 * 1024 * 1024


EXAMPLE_ROWS = 5


def head(data: Any, rows: int) -> Any:
    """A copy of the first ``rows`` rows of an array, DataFrame (pandas, polars, any frame with
    the interchange protocol), SciPy sparse matrix or sequence; None for None.

    Raises:
        SamplingError: tracked cannot take rows of this type (the message names it).
    """
    if is_sparse(data):
        return sparse_head(data, rows)
    return _frames.head(data, rows)


def _sample(data: Any, rows: int) -> Any:
    """``head(data, rows)`` cut to ``SAMPLE_BYTES`` (at least ``EXAMPLE_ROWS`` rows), or the
    ``SamplingError`` saying why there is none."""
    width = _frames.row_bytes(data)
    if width:
        rows = min(rows, max(EXAMPLE_ROWS, SAMPLE_BYTES // width))
    try:
        return head(data, rows)
    except SamplingError as exc:
        return exc


@frozen(kw_only=True)
class Composed:
    """A composition ready to log.

    ``model`` is a snapshot (a deep copy made when composed): what is logged and what later
    prediction passes are verified against, whatever happens to the live operators since.
    ``input_example`` (the first rows of the first stage's input) is what the signature is
    inferred from; ``logged_example`` is what is stored with the model: None unless the class
    sets ``log_input_example``, and cut to fewer rows when it would pass ``EXAMPLE_BYTES``.
    """

    model: Any
    input_example: Any
    stages: tuple[str, ...]
    #: What ``model`` predicted on ``input_example`` (for the signature): predicted here,
    #: so that the writer never predicts with it (any operator may be in it), and never
    #: draws from the global random state.
    output_example: Any = None
    logged_example: Any = None
    #: What was cut from the logged example, to tell the user (None: nothing).
    example_note: str | None = None


#: An input example stored with a model is cut to the rows that fit in this many bytes.
EXAMPLE_BYTES = 64 * 1024


class Composer:
    """Keeps, per parent run, the latest fitted operator of each stage in fit order."""

    def __init__(self) -> None:
        self._fitted: dict[str, FittedStage] = {}
        self._inference_inputs: dict[str, Any] = {}
        #: Per fitted transformer, what its latest inference calls received and returned: in a
        #: loop (a transformer fitted on the first batch, the estimator updated on every
        #: batch) the estimator's input comes from those, not from the transformer's fit.
        self._passes: dict[str, list[FittedStage]] = {}
        self.latest: Composed | None = None
        #: Stages of the latest composed model refitted since it was composed.
        self._refitted: list[str] = []
        self.count = 0
        #: A sample of what the first stage of ``latest`` was fitted on.
        self._fit_sample: Any = None
        #: ``latest``, as pyfunc serves it, and why it fails its fit frame (None: it does not).
        self._serving: tuple[Composed, Any, Any] | None = None

    @property
    def fitted_kinds(self) -> set[str]:
        """The kinds of stage fitted so far in this parent run."""
        return {fitted.kind for fitted in self._fitted.values()}

    def note_fit(
        self,
        stage: str,
        kind: str,
        operator: Any,
        X: Any,
        *,
        input_digest: str | None = None,
        output_digest: str | None = None,
    ) -> None:
        # A refitted stage moves to the end: the order is that of the latest fit pass.
        self._fitted.pop(stage, None)
        self._passes.pop(stage, None)
        self._fitted[stage] = FittedStage(
            stage=stage,
            kind=kind,
            operator=operator,
            sample=_sample(X, SAMPLE_ROWS),
            input_digest=input_digest,
            output_digest=output_digest,
        )
        if self.latest is not None and stage in self.latest.stages:
            self._refitted.append(stage)

    def compose(self, estimator_stage: str, *, log_input_example: bool = False) -> Composed:
        """The transformers whose output reached ``estimator_stage``, then its operator.

        Raises:
            NotComposable: an operator lacks ``transform``/``predict``, the inputs were not
                kept, or the transformers do not reproduce what the estimator received.
        """

        estimator = self._fitted[estimator_stage]
        stages = [*feeding(self._fitted.values(), estimator, self._passes), estimator]
        check_operators(stages)
        # From here on, copies: what is logged and verified is this state of the operators
        # (the live ones may be refitted in place later), and checking predicts with the
        # composition without advancing the random generators the user holds.
        stages = _snapshot(stages)
        check_samples(stages)
        if len(stages) > 1:
            check_chain(stages[:-1], stages[-1])
        model = _pipeline(stages)
        example, output = _predicted_example(model, stages[0].sample, estimator_stage)
        logged, note = bounded_example(example) if log_input_example else (None, None)
        self.count += 1
        self._refitted = []
        self._fit_sample = stages[0].sample
        self.latest = Composed(
            model=model,
            input_example=example,
            stages=tuple(fitted.stage for fitted in stages),
            output_example=output,
            logged_example=logged,
            example_note=note,
        )
        return self.latest

    def note_inference(
        self,
        stage: str,
        X: Any,
        *,
        input_digest: str | None = None,
        output_digest: str | None = None,
    ) -> None:
        """Keep a sample of what an inference-phase stage received, to verify the model; for
        a fitted transformer, also the pass it made (the estimator may be fitted on it)."""
        sample = _sample(X, SAMPLE_ROWS)
        self._inference_inputs[stage] = sample
        fitted = self._fitted.get(stage)
        if fitted is None or fitted.kind != "transformer" or output_digest is None:
            return
        passes = self._passes.setdefault(stage, [])
        passes.append(
            evolve(fitted, sample=sample, input_digest=input_digest, output_digest=output_digest)
        )
        del passes[:-RECENT_PASSES]

    def verify(
        self, estimator_stage: str, X: Any, result: Any, input_digest: str | None = None
    ) -> tuple[bool, str | None] | None:
        """Whether the latest composed model, as ``mlflow.pyfunc`` serves it once logged,
        takes the frame its first stage was fitted on and the input this inference pass
        started from, and predicts there what the model and the stages did; if not, why.

        The pass's input is the first composed stage's input that led, through the composed
        transformers' latest inference passes (digests: ``input_digest`` is the estimator
        stage's), to ``X``: like is compared with like. None when there is nothing to
        compare: no composed model ending in that stage, inputs not kept, or ``X`` not made
        by the composed transformers here (the estimator stage called on rows transformed
        elsewhere, or on a slice of an earlier pass's output).
        """
        latest = self.latest
        if latest is None or latest.stages[-1] != estimator_stage:
            return None
        sample = (
            _sample(X, SAMPLE_ROWS)
            if len(latest.stages) == 1
            else self._pass_input(latest.stages[:-1], input_digest)
        )
        if sample is None or isinstance(sample, SamplingError):
            return None
        # The sample may hold fewer rows than SAMPLE_ROWS (wide data): compare as many.
        produced = _sample(result, rows_of(sample) or SAMPLE_ROWS)
        if produced is None or isinstance(produced, SamplingError):
            return None
        if rows_of(sample) != rows_of(produced):
            return None  # not this pass's input: nothing like-for-like to compare
        try:
            served = self._served(latest)
        except Exception as exc:
            return False, f"MLflow cannot make a pyfunc model of it ({type(exc).__name__}: {exc})"
        refused = self._fit_frame_refused(latest, served)
        if refused is not None:
            return False, refused
        try:
            if same(served_predictions(served, _frames.for_mlflow(sample)), produced, exact=True):
                return True, None
        except Exception as exc:
            return False, (
                "loaded with mlflow.pyfunc, it cannot predict on this pass's input "
                f"({describe(exc)}){_dtype_hint(sample)}"
            )
        if self._refitted:
            names = ", ".join(repr(name) for name in dict.fromkeys(self._refitted))
            return False, (
                f"stage {names} was refitted after the model was logged, and the estimator "
                "stage was not: the logged model is the earlier fit pass's; fit the estimator "
                "stage again to log a model of the current workflow"
            )
        if not same(latest.model.predict(sample), produced, exact=True):
            return False, (
                "the stages do more than their operators' transform()/predict(); do not "
                "serve that model"
            )
        return False, (
            "loaded with mlflow.pyfunc, it predicts differently from the model itself on this "
            "pass's input: the signature's schema enforcement changes the data"
            f"{_dtype_hint(sample)}"
        )

    def _pass_input(self, transformers: tuple[str, ...], digest: str | None) -> Any:
        """The input of ``transformers[0]`` in the passes (latest inference passes, or the
        fit) that, through ``transformers`` in order, made the data of digest ``digest``;
        None when none did. Without digests (data tracked cannot digest), the first stage's
        latest inference input."""
        if digest is None:
            return self._inference_inputs.get(transformers[0])
        wanted, found = digest, None
        for stage in reversed(transformers):
            # Its latest inference passes, then its fit (the training data, transformed).
            variants = (*reversed(self._passes.get(stage, ())), self._fitted.get(stage))
            found = next((v for v in variants if v is not None and v.output_digest == wanted), None)
            if found is None:
                fitted = self._fitted.get(stage)
                if fitted is not None and is_sampler(fitted.operator):
                    continue  # a sampler passes rows through when predicting: not called then
                return None
            wanted = found.input_digest
        return found.sample if found is not None else None

    def _served(self, latest: Composed) -> Any:
        """``latest`` as pyfunc serves it (made once per composed model)."""
        if self._serving is None or self._serving[0] is not latest:
            served = served_model(latest.model, latest.input_example, latest.output_example)
            self._serving = (latest, served, _UNCHECKED)
        return self._serving[1]

    def _fit_frame_refused(self, latest: Composed, served: Any) -> str | None:
        """Why pyfunc fails ``latest`` on the frame its first stage was fitted on (a sample),
        or None when it predicts there what the model does (checked once per model)."""
        assert self._serving is not None
        verdict = self._serving[2]
        if verdict is _UNCHECKED:
            verdict = _fit_frame_verdict(latest, served, self._fit_sample)
            self._serving = (latest, served, verdict)
        return verdict  # type: ignore[return-value]


#: Not yet checked on the frame the first stage was fitted on.
_UNCHECKED = object()


def _fit_frame_verdict(latest: Composed, served: Any, sample: Any) -> str | None:
    if sample is None or isinstance(sample, SamplingError):
        return None
    try:
        expected = latest.model.predict(sample)
    except Exception:
        return None  # the model itself fails there: the check after fitting said so
    try:
        predicted = served_predictions(served, _frames.for_mlflow(sample))
    except Exception as exc:
        return (
            "loaded with mlflow.pyfunc, it cannot predict on the frame its first stage was "
            f"fitted on ({type(exc).__name__}: {exc}){_dtype_hint(sample)}"
        )
    if not same(predicted, expected, exact=True):
        return (
            "loaded with mlflow.pyfunc, it predicts differently on the frame its first stage "
            "was fitted on: the signature's schema enforcement changes the data"
            f"{_dtype_hint(sample)}"
        )
    return None


def _dtype_hint(sample: Any) -> str:
    """What to do about columns whose dtype pyfunc's schema enforcement cannot keep."""
    dtypes = getattr(sample, "dtypes", None)
    if not hasattr(dtypes, "items"):
        return ""
    names = [
        f"{name!r} ({dtype})"
        for name, dtype in dtypes.items()
        if str(dtype) in ("boolean", "category")
        or str(dtype).startswith(("Int", "UInt"))
        or getattr(dtype, "tz", None) is not None
    ]
    if not names:
        return ""
    return (
        f"; columns {', '.join(names)} have dtypes MLflow's signature types cannot carry: "
        "give the first stage plain numpy dtypes (float64 for integers with missing values, "
        "as MLflow advises; object for booleans with missing values), or leave those "
        "columns out"
    )


def _pipeline(stages: list[FittedStage]) -> Any:
    """A scikit-learn ``Pipeline`` of the stages' operators; an imbalanced-learn one when a
    sampler is among them (it resamples while fitting and is skipped when predicting).

    Raises:
        NotComposable: a sampler, and imbalanced-learn is not installed.
    """
    steps = [(fitted.stage, fitted.operator) for fitted in stages]
    if not any(is_sampler(fitted.operator) for fitted in stages):
        from sklearn.pipeline import Pipeline

        return Pipeline(steps)
    try:
        from imblearn.pipeline import Pipeline as SamplingPipeline
    except ImportError:
        msg = (
            "a sampler (fit_resample) can only be composed into an imbalanced-learn Pipeline: "
            "pip install imbalanced-learn"
        )
        raise NotComposable(msg) from None
    return SamplingPipeline(steps)


def bounded_example(example: Any) -> tuple[Any, str | None]:
    """``example`` cut to the rows that fit in ``EXAMPLE_BYTES`` (None when one row does not),
    and a note of what was cut (None when nothing was)."""
    rows = rows_of(example)
    if rows is None:
        return None, "the input example is not row-indexable, so it is not stored"
    kept = rows
    while kept > 0 and _size(head(example, kept)) > EXAMPLE_BYTES:
        kept //= 2
    if kept == rows:
        return example, None
    limit = f"{EXAMPLE_BYTES // 1024} KB"
    if kept == 0:
        return None, f"one row of the input example is over {limit}: no example is stored"
    return head(example, kept), f"the input example is cut to {kept} of {rows} rows ({limit})"


def rows_of(data: Any) -> int | None:
    """The rows of ``data`` (its first dimension, else its length); None when it has none."""
    shape = getattr(data, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    try:
        return len(data)
    except TypeError:
        return None


def _size(data: Any) -> int:
    """About the bytes ``data`` takes in MLflow's JSON input example."""
    import json

    import numpy as np

    if is_sparse(data):
        return int(data.nnz) * 24 + rows_of(data) * 8
    if hasattr(data, "to_json"):
        return len(data.to_json(orient="split"))
    array = np.asarray(data)
    if array.dtype.kind in "biufc":
        return int(array.size) * 24
    return len(json.dumps(array.tolist(), default=str))


def _snapshot(stages: list[FittedStage]) -> list[FittedStage]:
    """The stages with deep copies of their operators (copied together, so that what they
    share stays shared)."""
    try:
        copies = copy.deepcopy([fitted.operator for fitted in stages])
    except Exception as exc:
        msg = f"the fitted operators cannot be copied ({type(exc).__name__}: {exc})"
        raise NotComposable(msg) from None
    return [
        evolve(fitted, operator=operator) for fitted, operator in zip(stages, copies, strict=True)
    ]


def _predicted_example(model: Any, sample: Any, estimator_stage: str) -> tuple[Any, Any]:
    """The first rows of the first stage's input as MLflow takes them, and what ``model``
    predicts on them (for the signature)."""
    example = head(sample, EXAMPLE_ROWS)
    try:
        mlflow_example = _frames.for_mlflow(example)
    except SamplingError as exc:
        raise NotComposable(str(exc)) from None
    try:
        output = model.predict(example)
    except Exception as exc:
        msg = (
            f"the composed model cannot predict on the first stage's input ({describe(exc)}); "
            f"perhaps stage {estimator_stage!r} changes its input before its operator sees it"
        )
        raise NotComposable(msg) from None
    return mlflow_example, output
