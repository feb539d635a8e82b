"""Repeated calls of a stage fold into one run: a ``partial_fit`` loop, a serving loop.

The first ``fold_after`` calls of a stage in one phase are runs of their own, captured in
full. The calls after them, while the stage keeps that phase, are one *series*: one child run
whose metrics carry a step per call (``duration_s``, ``rows`` and, given ground truth, the
evaluation metrics: a learning curve, a latency and accuracy trail). A folded call is read
lightly, on the caller's thread: its phase, its rows, the composer's note (so that the
composed model stays right) and, given ground truth, the predictions to score later. No
preview, dataset, picture or model per call.

The series is written in chunks of ``CHUNK_CALLS`` calls (the first creates the run, the last
ends it), so that the writer sees one entry per chunk, never one per call. It ends when the
stage is called in another phase, when the parent run ends, or at ``tracked.flush()``; a fit
series then logs its operator's final state as ``model``, its params and fitted attributes,
and the composed ``pipeline`` model. ``checkpoint_every = k`` also logs the model every k
calls of a fit series (``checkpoint-<call>``).

A stage that calls stages folds by its own calls: the records of the stages a folded call
called are dropped, and its fit series ends with the model and composed model of its
callees' latest records. Only a session that owns its parent run folds: a copy's (a forked
worker's, ``copy.copy``'s) calls are written as they come, as nothing would end its series
with the run it logs under.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from tracked.core.names import (
    FOLDED_CALLS_TAG,
    KIND_TAG,
    OPERATOR_TAG,
    PHASE_TAG,
    RUN_NAME_TAG,
    STAGE_TAG,
)
from tracked.core.params import operator_params
from tracked.core.text import qualified_name
from tracked.core.values import FINISHED, FIT, Metric, StageRecord, now_ms
from tracked.delivery.outbox import SeriesChunk
from tracked.recording.capture import (
    fitted_metrics,
    loggable_model,
    note_for_composer,
    stage_data,
)
from tracked.recording.composition.compose import rows_of
from tracked.recording.composition.verify import compose_after_fit
from tracked.recording.evaluation.evaluate import guarded, predicted
from tracked.recording.evaluation.scoring import Predictor, returned_predictions, task_of
from tracked.recording.randomness import preserved_random_state

if TYPE_CHECKING:
    from tracked.delivery.session import Session
    from tracked.recording.spec import Call

#: Folded calls per entry handed to the writer.
CHUNK_CALLS = 100


#: Seconds after which a series' pending calls are handed on even before a chunk is full.
CHUNK_SECONDS = 10.0


class _Series:
    """One stage's calls in one phase: how many, and the folded ones not yet handed on.

    A plain class: an attrs class would cost ``import tracked`` milliseconds."""

    __slots__ = (
        "calls",
        "duration_s",
        "first_call",
        "last",
        "metrics",
        "pending",
        "phase",
        "run",
        "scores",
        "since",
        "start_ms",
    )

    def __init__(self, phase: str) -> None:
        self.phase = phase
        #: Calls of the stage in this phase so far (individual ones included).
        self.calls = 0
        #: The series' run (its local id) once its first chunk was handed on.
        self.run: str | None = None
        self.first_call = 0
        self.start_ms = 0
        #: The latest folded call: its operator is the one logged when the series ends.
        self.last: Any = None
        self.metrics: list[Metric] = []
        self.scores: list[Any] = []
        self.duration_s = 0.0
        self.pending = 0
        self.since = time.monotonic()


def series_of(session: Session) -> dict[str, _Series]:
    """The session's series by stage name (made, with their finisher, on first use)."""
    series = session.series
    if series is None:
        series = session.series = {}
        session.finishers.append(lambda may_raise: finish_all(session, may_raise=may_raise))
    return series


def fold(call: Call, phase: str, result: Any) -> bool:
    """Count this call of its stage in ``phase``; when it is past ``fold_after``, record it
    in the stage's series (and return True): the caller then records nothing else of it."""
    session, name = call.session, call.spec.name
    limit = session.settings.fold_after
    if limit is None or not session.owned:
        # A copy (a thread's, a worker's) logs under a run it does not end: its calls are
        # written as they come, as nothing would end its series with that run.
        return False
    with session.lock:
        series = series_of(session)
        current = series.get(name)
        if current is None or current.phase != phase:
            if current is not None:
                _finish(session, current, may_raise=True)
            current = series[name] = _Series(phase=phase)
        current.calls += 1
        if current.calls <= limit:
            return False
        _fold_call(call, current, result)
        return True


def _fold_call(call: Call, series: _Series, result: Any) -> None:

    if series.last is None:
        series.first_call, series.start_ms = series.calls, call.start_ms
    step = series.calls - 1
    X, y = stage_data(call)
    stamp = call.start_ms
    series.metrics.append(Metric(key="duration_s", value=call.duration, step=step, timestamp=stamp))
    rows = rows_of(X)
    if rows is not None:
        series.metrics.append(Metric(key="rows", value=rows, step=step, timestamp=stamp))
    operator = call.operator()
    if operator is not None:
        if call.spec.kind == "estimator" and series.phase != FIT:
            # What verifies a later pass; no digests: nothing is fitted on its output.
            call.session.composer.note_inference(call.spec.name, X)
        else:
            note_for_composer(call, series.phase, operator, X, result)
        scored = series.phase != FIT or call.session.settings.training_metrics
        if call.spec.kind == "estimator" and y is not None and scored:
            scores = _step_scores(call, operator, X, y, result, series.phase, step)
            if scores is not None:
                series.scores.append(scores)
    series.last = call
    series.duration_s += call.duration
    series.pending += 1
    every = call.session.settings.checkpoint_every
    checkpoint = series.phase == FIT and every is not None and series.calls % every == 0
    full = series.pending >= CHUNK_CALLS or time.monotonic() - series.since > CHUNK_SECONDS
    if checkpoint or full:
        _hand_on(call.session, series, ends=False, checkpoint=checkpoint, may_raise=True)


def _step_scores(call: Call, operator: Any, X: Any, y: Any, result: Any, phase: str, step: int):
    """What one folded call's evaluation metrics are computed from (by the writer): its
    labels or values against the ground truth, no probabilities (no curves per call)."""
    import numpy as np

    from tracked.recording.evaluation.deferred import Scores

    y_pred = returned_predictions(result, operator, X, y)
    if y_pred is None:
        with preserved_random_state():  # a copy predicts; the global state is given back
            _, y_pred = predicted(call.spec, Predictor(operator), X, None)
        if y_pred is None:
            return None
    task = task_of(operator, y, y_pred)
    if task not in ("classifier", "regressor"):
        return None
    return Scores(
        task=task,
        y_true=np.array(y, copy=True),
        y_pred=np.array(y_pred, copy=True),
        prefix="training_" if phase == FIT else "",
        step=step,
        timestamp=call.start_ms,
    )


def finish_all(session: Session, *, may_raise: bool) -> None:
    """End every open series of ``session`` (the parent run ends, or ``tracked.flush()``)."""
    with session.lock:
        for series in list((session.series or {}).values()):
            _finish(session, series, may_raise=may_raise)


def _finish(session: Session, series: _Series, *, may_raise: bool) -> None:
    """Hand on what is pending of ``series`` as its last chunk, which ends its run; the
    calls counted stay counted (the next call of the stage in that phase starts a new run)."""
    if series.last is None:
        return
    try:
        _hand_on(session, series, ends=True, checkpoint=False, may_raise=may_raise)
    finally:  # a failure reported in strict mode leaves no half-ended series behind
        series.last, series.run = None, None


def _hand_on(
    session: Session, series: _Series, *, ends: bool, checkpoint: bool, may_raise: bool
) -> None:
    """One entry for the series' pending calls: the first creates its run, the last ends it
    (then also with what a fit series leaves: params, fitted attributes, model, composed).

    Composing predicts with the final model: whatever that draws from the global random
    generators is given back, as for a call recorded on its own."""

    with preserved_random_state():
        _hand_on_chunk(session, series, ends=ends, checkpoint=checkpoint, may_raise=may_raise)


def _hand_on_chunk(
    session: Session, series: _Series, *, ends: bool, checkpoint: bool, may_raise: bool
) -> None:
    from tracked.recording.evaluation.deferred import ScoreTrail

    call: Call = series.last
    spec, operator = call.spec, call.operator()
    name = f"{spec.name}:{series.phase} calls {series.first_call}-{series.calls}"
    tags = _chunk_tags(series, operator, name, ends=ends)
    parts = _closing_parts(call, operator, series, ends=ends, checkpoint=checkpoint)
    record = StageRecord(
        stage=spec.name,
        kind=spec.kind,
        phase=series.phase,
        operator=qualified_name(operator) if operator is not None else None,
        start_ms=series.start_ms,
        end_ms=call.start_ms + round(call.duration * 1000),  # the latest call's end
        status=FINISHED,
        params=parts.pop("params", {}),
        tags=tags,
        metrics=tuple(series.metrics) + tuple(parts.pop("metrics", ())),
        scores=ScoreTrail(tuple(series.scores)) if series.scores else None,
        duration_s=series.duration_s,
        **parts,
    )
    series.metrics, series.scores, series.duration_s = [], [], 0.0
    series.pending, series.since = 0, time.monotonic()
    first = series.run is None
    if first:  # named here, before anything can raise: the next chunk logs on it
        series.run = f"{session.local_id}-series-{os.urandom(4).hex()}"
    chunk = SeriesChunk(
        run=series.run,
        new_run=first,
        run_name=name,
        ends_run=ends,
        model_name=f"checkpoint-{series.calls}" if checkpoint else "model",
    )
    session.write_stage(record, may_raise=may_raise, chunk=chunk)


def _chunk_tags(series: _Series, operator: Any, name: str, *, ends: bool) -> dict[str, str]:
    """The first chunk's tags make the run; the last one's give its count and its name
    (each tag is a write to the store: the chunks between carry none)."""
    calls = str(series.calls - series.first_call + 1)
    if series.run is None:
        spec = series.last.spec
        tags = {STAGE_TAG: spec.name, KIND_TAG: spec.kind, PHASE_TAG: series.phase}
        if operator is not None:
            tags[OPERATOR_TAG] = qualified_name(operator)
        return {**tags, FOLDED_CALLS_TAG: calls}
    return {FOLDED_CALLS_TAG: calls, RUN_NAME_TAG: name} if ends else {}


def _closing_parts(
    call: Call, operator: Any, series: _Series, *, ends: bool, checkpoint: bool
) -> dict[str, Any]:
    """What a chunk carries besides the calls' metrics: the operator's params in the first
    one; the model at a checkpoint; and, ending a fit series, the fitted attributes, the
    model and the composed model."""

    parts: dict[str, Any] = {}
    if operator is None:
        # A stage that calls stages: what its callees' latest records hold is its last state.
        return _callees_parts(call) if ends and series.phase == FIT else parts
    session, spec = call.session, call.spec
    if series.run is None:
        what, where = f"read the params of stage {spec.name!r}", f"stage {spec.owner}.{spec.name}"
        parts["params"] = guarded(session, what, operator_params, operator, where) or {}
    fit = series.phase == FIT
    log_model = fit and spec.kind == "estimator" and session.settings.log_models
    if log_model and (ends or checkpoint):
        parts["model"] = loggable_model(spec, operator)
    if fit and ends:
        artifacts: dict[str, Any] = {}
        parts["metrics"] = fitted_metrics(operator, artifacts, now_ms())
        parts["artifacts"] = artifacts
        if spec.kind == "estimator":
            parts["composed"] = compose_after_fit(call, session)
    return parts


def _callees_parts(call: Call) -> dict[str, Any]:
    """The model and composed model that the stages called by the series' latest call
    captured (the latest of each): a fit series of a stage that calls stages logs them."""
    parts: dict[str, Any] = {}
    for _, record, _, _ in call.frame.children:
        if record.model is not None:
            parts["model"] = record.model
        if record.composed is not None:
            parts["composed"] = record.composed
    return parts
