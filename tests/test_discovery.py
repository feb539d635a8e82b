"""Stages are found through every inheritance path: mixins, overrides, ``stages``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from tracked import PipelineDefinitionError, TrackedPipeline
from tracked._meta import stage_spec_of
from tracked.testing import MemoryBackend


class ScalingMixin:
    def scale(self, X, y=None, stage="transformer"):
        self.operator = self.scaler = StandardScaler().fit(X)
        return self.scaler.transform(X)


class Mixed(ScalingMixin, TrackedPipeline):
    def clf(self, X, y=None, stage="estimator"):
        self.operator = self.model = LogisticRegression().fit(X, y)
        return self.model.predict(X)


def test_a_stage_defined_in_a_plain_mixin_is_a_stage():
    assert {"scale": "transformer", "clf": "estimator"} == Mixed.stage_kinds


def test_the_mixin_itself_is_left_untouched_for_its_other_users():
    assert stage_spec_of(ScalingMixin.__dict__["scale"]) is None

    class Plain(ScalingMixin):
        pass

    assert stage_spec_of(Plain.__dict__.get("scale", Plain.scale)) is None


def test_a_mixin_stage_is_recorded_and_composed():
    backend = MemoryBackend()
    X = np.arange(40.0).reshape(20, 2) * np.array([1.0, 100.0])
    y = np.arange(20) % 2

    class Recorded(Mixed):
        pass

    Recorded.backend = backend
    with Recorded() as pipe:
        pipe.clf(pipe.scale(X), y)
    names = [run.name for run in backend.children(pipe.run_id)]
    assert ["scale:fit", "clf:fit"] == names
    parent = backend.get(pipe.run_id)
    composed = parent.models["pipeline"]
    assert ["scale", "clf"] == [name for name, _ in composed.steps]


def test_a_mixin_between_two_pipelines_and_an_unmarked_override_keep_their_stages():
    class Base(TrackedPipeline):
        def clf(self, X, y=None, stage="estimator"):
            return X

    class Override:
        def clf(self, X, y=None):  # overrides a stage without the marker: still that stage
            return X

    class Derived(Override, ScalingMixin, Base):
        pass

    assert {"clf": "estimator", "scale": "transformer"} == Derived.stage_kinds
    assert stage_spec_of(Override.__dict__["clf"]) is None


def test_a_misspelt_kind_in_a_mixin_is_a_definition_error():
    class Typo:
        def scale(self, X, stage="transfromer"):
            return X

    with pytest.raises(PipelineDefinitionError, match="transfromer"):

        class P(Typo, TrackedPipeline):
            pass


def test_a_mixin_listed_after_the_pipeline_base_gives_its_stages_too():
    class After(TrackedPipeline, ScalingMixin):
        pass

    assert {"scale": "transformer"} == After.stage_kinds


def test_an_unmarked_implementation_of_an_abstract_stage_is_that_stage():
    from abc import ABC, abstractmethod

    class Classifying(ABC):
        @abstractmethod
        def clf(self, X, y=None, stage="estimator"): ...

    class Implemented(Classifying, TrackedPipeline):
        def clf(self, X, y=None):
            return X

    assert {"clf": "estimator"} == Implemented.stage_kinds
    Implemented()  # abstract methods are implemented: it can be made
