"""What a finished stage call becomes: one immutable ``StageRecord``.

Everything is read here, on the caller's thread, because the operator and the data may
change once the call has returned: params, fitted attributes, evaluation metrics and
pictures, data digests and previews, the composed model.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tracked._capture import (
    OPERATOR_ATTRIBUTE,
    detect_phase,
    evaluate,
    operator_params,
    qualified_name,
    task_of,
)
from tracked._compose import Composed, NotComposable
from tracked._insight import DataSummary, fitted_state, summarize, to_csv
from tracked._records import (
    FIT,
    INFERENCE,
    VERIFIED_REASON_TAG,
    VERIFIED_TAG,
    Metric,
    StageRecord,
    now_ms,
    status_for,
)
from tracked._report import describe, notice, report_failure
from tracked._session import ERROR_TAG_LIMIT, Session, evaluation_metrics

if TYPE_CHECKING:
    from tracked._deferred import Scores
    from tracked._plots import Pictures
    from tracked._stage import Call, StageSpec

LOG_OUTPUTS = ("preview", "full", "none")


def capture(call: Call, result: Any, error: BaseException | None) -> StageRecord:
    """The record of one stage call (``error`` set when the user's method raised)."""
    spec, session = call.spec, call.session
    operator = call.operator()
    phase = detect_phase(call.before, operator) if operator is not None else INFERENCE
    tags = {"tracked.stage": spec.name, "tracked.kind": spec.kind, "tracked.phase": phase}
    params: dict[str, str] = {}
    metrics = [Metric(key="duration_s", value=call.duration, timestamp=call.start_ms)]
    evaluation: tuple[Metric, ...] = ()
    parent_tags: dict[str, str] = {}
    artifacts: dict[str, bytes] = {}
    model = composed = pictures = scores = None
    X, y = spec.data(call.args, call.kwargs)
    inputs = summarize(X)
    outputs = None
    if inputs is not None:
        tags["tracked.input_digest"] = inputs.digest
    if operator is None:
        if error is None:  # a failed stage has a better explanation than a missing operator
            notice(
                f"stage {spec.owner}.{spec.name} assigned no `self.{OPERATOR_ATTRIBUTE}`: "
                "only its tags and duration are recorded",
                key=f"no-operator:{spec.owner}.{spec.name}",
            )
    else:
        tags["tracked.operator"] = qualified_name(operator)
        if phase == FIT:
            what = f"read the params of stage {spec.name!r}"
            params = _guarded(session, what, operator_params, operator, may_raise=error is None)
    if error is not None:
        tags["tracked.error"] = describe(error, ERROR_TAG_LIMIT)
    else:
        outputs = summarize(result)
        if outputs is not None:
            tags["tracked.output_digest"] = outputs.digest
            artifacts.update(_output_files(call, result, outputs))
    if error is None and operator is not None:
        if phase == FIT:
            session.composer.note_fit(
                spec.name,
                spec.kind,
                operator,
                X,
                input_digest=inputs.digest if inputs is not None else None,
                output_digest=outputs.digest if outputs is not None else None,
            )
            metrics.extend(_fitted(operator, artifacts, call.start_ms))
        else:
            session.composer.note_inference(spec.name, X)
        if spec.kind == "estimator":
            evaluation, pictures, scores = _evaluate(call, operator, X, y, phase)
            metrics.extend(evaluation)
            if phase == FIT:
                model = _loggable_model(spec, operator)
                composed = _compose(call, session)
            else:
                parent_tags = _verify_composed(spec, session, X, result)
    context = _context(spec.kind, phase, y)
    return StageRecord(
        stage=spec.name,
        kind=spec.kind,
        phase=phase,
        operator=qualified_name(operator) if operator is not None else None,
        start_ms=call.start_ms,
        end_ms=call.start_ms + round(call.duration * 1000),
        status=status_for(type(error) if error is not None else None),
        error=tags.get("tracked.error"),
        params=params or {},
        tags=tags,
        metrics=tuple(metrics),
        parent_metrics=evaluation,
        parent_tags=parent_tags,
        model=model,
        composed=composed,
        pictures=pictures,
        scores=scores,
        artifacts=artifacts,
        datasets=((inputs, context),) if inputs is not None else (),
        duration_s=call.duration,
    )


def _context(kind: str, phase: str, y: Any) -> str:
    """The MLflow dataset context of a stage's input: fit, evaluation or inference."""
    if phase == FIT:
        return "fit"
    return "evaluation" if kind == "estimator" and y is not None else "inference"


def _output_files(call: Call, result: Any, outputs: DataSummary) -> dict[str, Any]:
    mode = getattr(call.instance, "log_outputs", "preview")
    if mode == "none":
        return {}
    if mode == "full":
        return {"output.csv": to_csv(result, outputs.columns)}
    # The head is a copy already; its CSV is written by the writer.
    from tracked._deferred import CsvFile

    return {"output_preview.csv": CsvFile(outputs.head, outputs.columns)}


def _fitted(operator: Any, artifacts: dict[str, bytes], stamp: int) -> list[Metric]:
    """What the operator learned: ``fitted.<name>`` metrics and fitted_attributes.json."""
    if not isinstance(getattr(operator, "__dict__", None), dict):
        return []
    state = fitted_state(operator)
    artifacts["fitted_attributes.json"] = json.dumps(state.document, indent=1).encode()
    metrics = [
        Metric(key=f"fitted.{name}", value=value, timestamp=stamp)
        for name, value in state.scalars.items()
    ]
    for name, values in state.histories.items():
        metrics.extend(
            Metric(key=f"fitted.{name}", value=value, step=step, timestamp=stamp)
            for step, value in enumerate(values)
        )
    return metrics


def _evaluate(
    call: Call, operator: Any, X: Any, y: Any, phase: str
) -> tuple[tuple[Metric, ...], Pictures | None, Scores | None]:
    """Evaluation of an estimator stage given ground truth (``training_`` on fit): the
    metrics, computed now for a ``scoring`` of the user's and later (``Scores``) for the
    default set; on inference also what the evaluation pictures are drawn from."""
    if y is None:
        return (), None, None
    spec, session = call.spec, call.session
    scoring = getattr(call.instance, "scoring", None)
    task = task_of(operator)
    try:
        y_pred = operator.predict(X) if callable(getattr(operator, "predict", None)) else None
        values = evaluate(operator, X, y, scoring, y_pred=y_pred) if scoring is not None else {}
    except Exception as exc:
        # Usually the stage reshapes its input before the operator sees it, so the operator
        # cannot predict on what the stage received: a fact about the pipeline, not a failure.
        notice(
            f"stage {spec.owner}.{spec.name} is not evaluated: its operator could not score "
            f"the stage's own input ({describe(exc, 300)})",
            key=f"no-evaluation:{spec.owner}.{spec.name}",
        )
        return (), None, None
    pictures = None
    if phase != FIT and y_pred is not None:
        pictures = _guarded(
            session,
            f"prepare the evaluation pictures of {spec.name!r}",
            _pictures,
            operator,
            X,
            y,
            y_pred,
        )
    prefix = "training_" if phase == FIT else ""
    if scoring is None:
        if task is None or y_pred is None:
            return (), pictures, None
        import numpy as np

        from tracked._deferred import Scores

        step = session.next_step(prefix or "evaluation")
        y_true = np.array(y, copy=True)
        return (), pictures, Scores(task, y_true, np.asarray(y_pred), prefix, step, now_ms())
    if not values:
        return (), pictures, None
    step = session.next_step(prefix or "evaluation")
    return evaluation_metrics(values, prefix, step), pictures, None


def _pictures(operator: Any, X: Any, y: Any, y_pred: Any) -> Pictures | None:
    """What the writer draws the evaluation pictures from."""
    from tracked._plots import Pictures

    return Pictures.of(task_of(operator), operator, X, y, y_pred)


def _loggable_model(spec: StageSpec, operator: Any) -> Any:
    if callable(getattr(operator, "get_params", None)):
        return operator
    notice(
        f"the operator of stage {spec.owner}.{spec.name} ({qualified_name(operator)}) is not "
        "a scikit-learn estimator (no get_params): its model is not logged",
        key=f"no-model:{qualified_name(operator)}",
    )
    return None


def _compose(call: Call, session: Session) -> Composed | None:
    """The fitted workflow as one model, or None with a warning that says why."""
    spec = call.spec
    log_example = bool(getattr(call.instance, "log_input_example", False))
    try:
        composed = session.composer.compose(spec.name, log_input_example=log_example)
    except NotComposable as exc:
        notice(
            f"no composed `pipeline` model after stage {spec.owner}.{spec.name}: {exc}",
            key=f"not-composable:{spec.owner}.{spec.name}:{exc}",
        )
    except Exception as exc:
        report_failure(
            f"compose the pipeline model after stage {spec.name!r}", exc, strict=session.strict
        )
    else:
        if composed.example_note is not None:
            notice(
                f"composed `pipeline` model after stage {spec.owner}.{spec.name}: "
                f"{composed.example_note}",
                key=f"example-cut:{spec.owner}.{spec.name}",
                warn=False,  # asked for, and cut as documented: a line on the logger
            )
        return composed
    return None


def _verify_composed(spec: StageSpec, session: Session, X: Any, result: Any) -> dict[str, str]:
    """Check the logged composed model against this prediction pass; tag the parent."""
    outcome = session.composer.verify(spec.name, X, result)
    if outcome is None:
        return {}
    verdict, reason = outcome
    if not verdict:
        notice(
            f"the composed `pipeline` model of run {session.run_id} predicts differently from "
            f"the stages' own prediction pass ending in {spec.owner}.{spec.name}: {reason}",
            key=f"unfaithful:{session.run_id}:{reason}",
        )
        return {VERIFIED_TAG: "false", VERIFIED_REASON_TAG: reason or ""}
    return {VERIFIED_TAG: "true", VERIFIED_REASON_TAG: ""}


def _guarded(session: Session, what: str, call: Any, *args: Any, may_raise: bool = True) -> Any:
    """``call(*args)``, with a failure reported (and None returned) instead of raised."""
    try:
        return call(*args)
    except Warning:
        raise  # a warning turned into an error by the user's filters: not a tracking failure
    except Exception as exc:
        report_failure(what, exc, strict=session.strict, may_raise=may_raise)
        return None
