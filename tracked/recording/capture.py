"""What a finished stage call becomes: one immutable ``StageRecord``.

Everything is read here, on the caller's thread, because the operator and the data may
change once the call has returned: params, fitted attributes, evaluation metrics and
pictures, data digests and previews, the composed model.
"""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attrs import define, field

from tracked.core.names import (
    DURATION_METRIC,
    ERROR_TAG,
    ERROR_TAG_LIMIT,
    FITTED_METRIC_PREFIX,
    INPUT_DIGEST_TAG,
    KIND_TAG,
    OPERATOR_ATTRIBUTE,
    OPERATOR_TAG,
    OUTPUT_DIGEST_TAG,
    PHASE_BASIS_TAG,
    PHASE_TAG,
    PREVIEW_TAG,
    STAGE_TAG,
)
from tracked.core.params import operator_params
from tracked.core.report import describe, notice
from tracked.core.settings import class_setting
from tracked.core.text import qualified_name
from tracked.core.values import (
    FIT,
    INFERENCE,
    DataSummary,
    Metric,
    NestedRun,
    StageRecord,
    status_for,
)
from tracked.recording.composition.compose import Composed
from tracked.recording.composition.verify import compose_after_fit, verify_pass
from tracked.recording.data import PREVIEW_BYTES, preview, summarize, to_csv
from tracked.recording.evaluation.evaluate import evaluate, guarded
from tracked.recording.fitted import boosting_scores, fitted_state
from tracked.recording.phase import BASIS_UNKNOWN, decide_phase

if TYPE_CHECKING:
    from tracked.recording.evaluation.deferred import Scores
    from tracked.recording.evaluation.plots import Pictures
    from tracked.recording.search import SearchSummary
    from tracked.recording.spec import Call, StageSpec


BASIS_NESTED = "nested_stages"


#: A plain function (a lambda made in the stage): never fitted, whatever its identity says.
BASIS_STATELESS = "stateless_function"


@define(kw_only=True)
class _Seen:
    """What one stage call was: operator, phase, data in and out, and the data's summaries."""

    operator: Any
    phase: str
    X: Any
    y: Any
    result: Any
    error: BaseException | None
    inputs: DataSummary | None
    outputs: DataSummary | None = None


@define(kw_only=True)
class _Draft:
    """What a stage call's record gathers, filled in as the call is read."""

    tags: dict[str, str]
    metrics: list[Metric]
    params: dict[str, str] = field(factory=dict)
    artifacts: dict[str, Any] = field(factory=dict)
    evaluation: tuple[Metric, ...] = ()  # also the parent run's metrics
    parent_tags: dict[str, str] = field(factory=dict)
    model: Any = None
    composed: Composed | None = None
    pictures: Pictures | None = None
    scores: Scores | None = None
    nested: tuple[NestedRun, ...] = ()


def capture(
    call: Call,
    result: Any,
    error: BaseException | None,
    decided: tuple[str, str | None] | None = None,
) -> StageRecord:
    """The record of one stage call (``error`` set when the user's method raised);
    ``decided``: its phase and basis, when ``phase_of`` told them already."""
    spec, operator = call.spec, call.operator()
    phase, basis = decided if decided is not None else phase_of(call)
    tags = {STAGE_TAG: spec.name, KIND_TAG: spec.kind, PHASE_TAG: phase}
    if basis is not None:
        tags[PHASE_BASIS_TAG] = basis
    X, y = stage_data(call)
    seen = _Seen(
        operator=operator, phase=phase, X=X, y=y, result=result, error=error, inputs=summarize(X)
    )
    if seen.inputs is not None:
        tags[INPUT_DIGEST_TAG] = seen.inputs.digest
    duration = Metric(key=DURATION_METRIC, value=call.duration, timestamp=call.start_ms)
    draft = _Draft(tags=tags, metrics=[duration])
    _read_operator(call, seen, draft)
    _read_result(call, seen, draft)
    if error is None and operator is not None:
        _read_work(call, seen, draft)
    return _stage_record(call, seen, draft)


def stage_data(call: Call) -> tuple[Any, Any]:
    """The call's X and y; a notice when an estimator stage has no ground-truth parameter."""
    spec = call.spec
    target = ground_truth_name(call.instance)
    X, y = spec.data(call.args, call.kwargs, target)
    if spec.kind == "estimator" and not spec.accepts(target):
        notice(
            f"estimator stage {spec.owner}.{spec.name} has no ground-truth parameter "
            f"{target!r}, so it is never evaluated: add a `{target}=None` parameter, or name "
            'yours on the class (`target = "labels"`)',
            key=f"no-target:{spec.owner}.{spec.name}:{target}",
        )
    return X, y


def _read_operator(call: Call, seen: _Seen, draft: _Draft) -> None:
    """The operator's name and, when they are due, its params; a notice when there is none."""
    spec, session, operator = call.spec, call.session, seen.operator
    if operator is None:
        if seen.error is None and not call.frame.children:
            # A failed stage has a better explanation than a missing operator; one that
            # called other stages is recorded by them.
            notice(
                f"stage {spec.owner}.{spec.name} assigned no `self.{OPERATOR_ATTRIBUTE}`: "
                "only its tags and duration are recorded",
                key=f"no-operator:{spec.owner}.{spec.name}",
            )
        return
    draft.tags[OPERATOR_TAG] = qualified_name(operator)
    if seen.phase == FIT or session.params_logged.get(spec.name) != id(operator):
        # Fits log their params; so does the first call of an operator that was never
        # fitted in this session (made in ``__init__``, a callable object, a function).
        read, where = operator_params, f"stage {spec.owner}.{spec.name}"
        what, may_raise = f"read the params of stage {spec.name!r}", seen.error is None
        draft.params = guarded(session, what, read, operator, where, may_raise=may_raise) or {}
        session.params_logged[spec.name] = id(operator)


def _read_result(call: Call, seen: _Seen, draft: _Draft) -> None:
    """The error's tag; or the result's summary, its digest tag and its files."""
    if seen.error is not None:
        draft.tags[ERROR_TAG] = describe(seen.error, ERROR_TAG_LIMIT)
        return
    data = result_data(seen.operator, seen.result)
    seen.outputs = summarize(data)
    if seen.outputs is not None:
        draft.tags[OUTPUT_DIGEST_TAG] = seen.outputs.digest
        draft.artifacts.update(_output_files(call, data, seen.outputs, draft.tags))


def _read_work(call: Call, seen: _Seen, draft: _Draft) -> None:
    """What the operator did in a call that returned: what a fit learned and, unless the stage
    called other stages, a sample kept, a search, an evaluation, a composed model or its check."""
    spec, session, operator = call.spec, call.session, seen.operator
    if call.frame.children:
        # It called other stages: what its operator saw is their output, not its input, so
        # it is neither scored on that input nor composed from it (its callees are).
        if seen.phase == FIT:
            draft.metrics.extend(fitted_metrics(operator, draft.artifacts, call.start_ms))
            if spec.kind == "estimator" and session.settings.log_models:
                draft.model = loggable_model(spec, operator)
        return
    note_for_composer(call, seen.phase, operator, seen.X, seen.result, seen.inputs, seen.outputs)
    if seen.phase == FIT:
        draft.metrics.extend(fitted_metrics(operator, draft.artifacts, call.start_ms))
        if spec.kind == "estimator":
            _read_search(call, operator, draft)
    if spec.kind != "estimator":
        return
    # Training metrics predict on the whole training set: a switch can leave them out.
    y = seen.y if seen.phase != FIT or session.settings.training_metrics else None
    evaluation = evaluate(call, operator, seen.X, y, seen.phase, seen.result, draft.tags)
    draft.evaluation, draft.pictures, draft.scores = evaluation
    draft.metrics.extend(draft.evaluation)
    if seen.phase == FIT:
        draft.model = loggable_model(spec, operator) if session.settings.log_models else None
        draft.composed = compose_after_fit(call, session)
    else:
        digest = seen.inputs.digest if seen.inputs is not None else None
        draft.parent_tags = verify_pass(spec, session, seen.X, seen.result, digest)


def note_for_composer(
    call: Call,
    phase: str,
    operator: Any,
    X: Any,
    result: Any,
    inputs: DataSummary | None = None,
    outputs: DataSummary | None = None,
) -> None:
    """Tell the session's composer what the call fitted or transformed (with the digests
    of its data, summarized here unless given)."""
    spec, composer = call.spec, call.session.composer
    inputs = inputs if inputs is not None else summarize(X)
    outputs = outputs if outputs is not None else summarize(result_data(operator, result))
    digests = {
        "input_digest": inputs.digest if inputs is not None else None,
        "output_digest": outputs.digest if outputs is not None else None,
    }
    if phase == FIT:
        composer.note_fit(spec.name, spec.kind, operator, X, **digests)
    else:
        composer.note_inference(spec.name, X, **digests)


def result_data(operator: Any, result: Any) -> Any:
    """The data a stage returned: ``X`` of an ``(X, y)`` pair (a sampler's ``fit_resample``,
    or any pair of a table and a target of as many rows), else the result itself."""
    if not isinstance(result, tuple) or len(result) != 2:
        return result
    X, y = result
    if callable(getattr(operator, "fit_resample", None)):
        return X
    rows, target = getattr(X, "shape", None), getattr(y, "shape", None)
    if rows and target and len(target) == 1 and len(rows) >= 2 and rows[0] == target[0]:
        return X
    return result


def _read_search(call: Call, operator: Any, draft: _Draft) -> None:
    """A fitted search CV's best params, metrics, files and candidate runs (if it is one)."""
    what = f"read the search results of {call.spec.name!r}"
    search = guarded(call.session, what, _search, call, operator)
    if search is not None:
        draft.params = {**draft.params, **search.params}
        draft.metrics.extend(search.metrics)
        draft.artifacts.update(search.artifacts)
        draft.nested = search.candidates


def _stage_record(call: Call, seen: _Seen, draft: _Draft) -> StageRecord:
    spec, operator, context = call.spec, seen.operator, _context(call.spec.kind, seen.phase, seen.y)
    settings = call.session.settings
    return StageRecord(
        stage=spec.name,
        kind=spec.kind,
        phase=seen.phase,
        operator=qualified_name(operator) if operator is not None else None,
        start_ms=call.start_ms,
        end_ms=call.start_ms + round(call.duration * 1000),
        status=status_for(type(seen.error) if seen.error is not None else None),
        error=draft.tags.get(ERROR_TAG),
        params=draft.params,
        tags=draft.tags,
        metrics=tuple(draft.metrics),
        parent_metrics=draft.evaluation,
        parent_tags=draft.parent_tags,
        model=draft.model,
        composed=draft.composed,
        pictures=draft.pictures if settings.log_pictures else None,
        scores=draft.scores,
        artifacts=draft.artifacts,
        datasets=((seen.inputs, context),)
        if seen.inputs is not None and settings.log_datasets
        else (),
        duration_s=call.duration,
        nested_runs=draft.nested,
    )


def phase_of(call: Call) -> tuple[str, str | None]:
    """The phase of a call, and its basis (the ``tracked.phase_basis`` tag).

    A stage that assigned no operator but called other stages is a fit when any of them
    fitted; an unreadable operator state is inference (with a warning); a function never fits.
    """
    operator = call.operator()
    if operator is None:
        if call.frame.children:
            fitted = any(_fitted_within(child) for child in call.frame.children)
            return (FIT if fitted else INFERENCE), BASIS_NESTED
        return INFERENCE, None
    phase, basis = decide_phase(call.before, operator)
    if basis == BASIS_UNKNOWN:
        spec = call.spec
        notice(
            f"stage {spec.owner}.{spec.name}: the state of its operator "
            f"({qualified_name(operator)}) cannot be read (no __dict__ or __slots__), so "
            "whether it was fitted cannot be told; it is recorded as inference "
            f"(tag {PHASE_BASIS_TAG}={BASIS_UNKNOWN})",
            key=f"phase-unknown:{qualified_name(operator)}",
        )
    if phase == FIT and _stateless(operator):
        return INFERENCE, BASIS_STATELESS  # a function made anew in each call has nothing to fit
    return phase, basis


def _fitted_within(child: tuple[Any, StageRecord, list[Any], int]) -> bool:
    record, grandchildren = child[1], child[2]
    return record.phase == FIT or any(_fitted_within(inner) for inner in grandchildren)


def _context(kind: str, phase: str, y: Any) -> str:
    """The MLflow dataset context of a stage's input: fit, evaluation or inference."""
    if phase == FIT:
        return "fit"
    return "evaluation" if kind == "estimator" and y is not None else "inference"


def _output_files(
    call: Call, result: Any, outputs: DataSummary, tags: dict[str, str]
) -> dict[str, Any]:
    mode = call.session.settings.log_outputs
    if mode == "none":
        return {}
    if mode == "full":
        return {"output.csv": to_csv(result, outputs.columns)}
    shown = preview(outputs)
    if shown.note is not None:
        tags[PREVIEW_TAG] = shown.note
    if isinstance(shown.content, bytes):
        return {"output_preview.csv": shown.content}
    # The head is a copy already; its CSV is written by the writer, bounded like every
    # preview (what is rendered later is numeric and within it).
    from tracked.recording.evaluation.deferred import CsvFile

    return {"output_preview.csv": CsvFile(*shown.content, max_bytes=PREVIEW_BYTES)}


def fitted_metrics(operator: Any, artifacts: dict[str, bytes], stamp: int) -> list[Metric]:
    """What the operator learned: ``fitted.<name>`` metrics and fitted_attributes.json."""
    has_state = isinstance(getattr(operator, "__dict__", None), dict) or hasattr(
        type(operator), "__slots__"
    )
    if not has_state or isinstance(operator, Mapping) or _stateless(operator):
        return []
    state = fitted_state(operator)
    artifacts["fitted_attributes.json"] = json.dumps(state.document, indent=1).encode()
    metrics = [
        Metric(key=f"{FITTED_METRIC_PREFIX}{name}", value=value, timestamp=stamp)
        for name, value in state.scalars.items()
    ]
    metrics.extend(
        Metric(key=name, value=value, timestamp=stamp)
        for name, value in boosting_scores(operator).items()
    )
    for name, values in state.histories.items():
        metrics.extend(
            Metric(key=f"{FITTED_METRIC_PREFIX}{name}", value=value, step=step, timestamp=stamp)
            for step, value in enumerate(values)
        )
    return metrics


def ground_truth_name(instance: object) -> str:
    """The name of the stages' ground-truth parameter: the class's ``target``, or ``y``.

    Read from the class, which defines the stages' signatures: a hyperparameter of the same
    name (``self.target = "species"``, a column) is the user's, not a setting of ours.
    """
    return class_setting(type(instance), "target")


def _stateless(operator: Any) -> bool:
    """A plain function (a lambda, a builtin, a ``functools.partial`` of one): never fitted."""
    import numpy as np

    plain = (types.FunctionType, types.BuiltinFunctionType, functools.partial, np.ufunc)
    return isinstance(operator, plain)


def _search(call: Call, operator: Any) -> SearchSummary | None:
    """A fitted search CV's best params and score, results and best candidates."""
    from tracked.recording.search import is_search, summarize_search

    if not is_search(operator):
        return None
    max_runs = call.session.settings.max_tuning_runs
    return summarize_search(operator, call.spec.name, max_runs, call.start_ms)


def loggable_model(spec: StageSpec, operator: Any) -> Any:
    if callable(getattr(operator, "get_params", None)):
        return operator
    notice(
        f"the operator of stage {spec.owner}.{spec.name} ({qualified_name(operator)}) is not "
        "a scikit-learn estimator (no get_params): its model is not logged",
        key=f"no-model:{qualified_name(operator)}",
    )
    return None
