"""Switches for heavy capture: each class attribute leaves one part out of the stage runs,
and the defaults keep everything (the one-pass workflow of the demo is unchanged)."""

from __future__ import annotations

import pytest
from pipelines import Iris

import tracked
from tracked import PipelineDefinitionError, TrackedPipeline


def run(memory, iris, **switches):
    X_train, X_test, y_train, y_test = iris
    pipe = type("Switched", (Iris,), switches)()
    tracked.configure(pipe, backend=memory)
    with pipe:
        pipe.train(X_train, y_train)
        pipe.predict(X_test, y_test)
    [parent] = memory.parents()
    fit, inference = (
        run for run in memory.children(parent.run_id) if run.name.startswith("classification")
    )
    return parent, fit, inference


def pictures(run):
    return sorted(path for path in run.artifacts if path.endswith(".png"))


def test_by_default_every_part_is_recorded(memory, iris):
    parent, fit, inference = run(memory, iris)
    assert "model" in fit.models and "pipeline" in parent.models
    assert any(key.startswith("training_") for key in fit.metrics)
    assert pictures(inference)
    assert fit.datasets and inference.datasets


@pytest.mark.parametrize(
    ("switch", "gone"),
    [
        ("log_models", lambda parent, fit, inference: "model" in fit.models),
        (
            "training_metrics",
            lambda parent, fit, inference: any(k.startswith("training_") for k in fit.metrics),
        ),
        ("log_pictures", lambda parent, fit, inference: bool(pictures(inference))),
        ("log_datasets", lambda parent, fit, inference: bool(fit.datasets or inference.datasets)),
    ],
)
def test_a_switch_turned_off_leaves_out_only_its_part(memory, iris, switch, gone):
    parent, fit, inference = run(memory, iris, **{switch: False})
    assert not gone(parent, fit, inference)
    # The rest is there: the composed model and the evaluation of the prediction pass.
    assert "pipeline" in parent.models
    assert "accuracy" in inference.metrics


def test_a_switch_must_be_a_bool():
    with pytest.raises(PipelineDefinitionError, match="log_pictures"):
        type("Bad", (TrackedPipeline,), {"log_pictures": "no"})
