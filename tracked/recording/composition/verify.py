"""The composed model around a stage call: composed after an estimator stage's fit, checked
against each prediction pass (the parent run's ``tracked.pipeline_verified`` tag)."""

from __future__ import annotations

from typing import Any

from tracked.core.names import (
    VERIFIED_REASON_TAG,
    VERIFIED_TAG,
)
from tracked.core.report import notice, report_failure
from tracked.delivery.session import Session
from tracked.recording.composition.chain import NotComposable
from tracked.recording.composition.compose import Composed
from tracked.recording.spec import Call, StageSpec


def compose_after_fit(call: Call, session: Session) -> Composed | None:
    """The fitted workflow as one model, or None with a warning that says why."""
    spec = call.spec
    log_example = call.session.settings.log_input_example
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


def verify_pass(
    spec: StageSpec, session: Session, X: Any, result: Any, input_digest: str | None = None
) -> dict[str, str]:
    """Check the logged composed model against this prediction pass; tag the parent."""
    outcome = session.composer.verify(spec.name, X, result, input_digest)
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
