"""Stage discovery, validation and wrapping when a class is defined."""

from __future__ import annotations

import abc

import pytest
import wrapt

from tracked import PipelineDefinitionError, TrackedPipeline
from tracked._meta import stage_spec_of


def test_a_stage_default_marks_a_method_as_a_stage():
    class Pipe(TrackedPipeline):
        def scale(self, X, stage="transformer"):
            return X

        def fit_model(self, X, y=None, stage="estimator"):
            return X

        def helper(self, X):
            return X

    assert {"scale": "transformer", "fit_model": "estimator"} == Pipe.stage_kinds
    assert isinstance(Pipe.__dict__["scale"], wrapt.FunctionWrapper)
    assert not isinstance(Pipe.__dict__["helper"], wrapt.FunctionWrapper)


def test_a_misspelt_kind_is_an_error_when_the_class_is_defined():
    with pytest.raises(PipelineDefinitionError) as info:

        class Typo(TrackedPipeline):
            def scale(self, X, stage="transfomer"):
                return X

    message = str(info.value)
    assert "Typo.scale" in message
    assert "'transfomer'" in message
    assert "'estimator' or 'transformer'" in message
    assert isinstance(info.value, TypeError)


def test_a_non_string_stage_default_is_an_ordinary_argument():
    class Pipe(TrackedPipeline):
        def run(self, X, stage=None):
            return X

    assert {} == Pipe.stage_kinds


def test_a_stage_default_on_a_staticmethod_is_an_error():
    with pytest.raises(PipelineDefinitionError, match=r"Pipe.scale .* staticmethod"):

        class Pipe(TrackedPipeline):
            @staticmethod
            def scale(X, stage="transformer"):
                return X


def test_stages_mapping_marks_inherited_methods_of_a_foreign_base():
    class Foreign:
        def transform_data(self, X):
            return X

    class Pipe(TrackedPipeline, Foreign):
        stages = {"transform_data": "transformer"}

    assert {"transform_data": "transformer"} == Pipe.stage_kinds
    # The foreign class is left alone: only the subclass sees the wrapper.
    assert not isinstance(Foreign.__dict__["transform_data"], wrapt.FunctionWrapper)


def test_stages_mapping_with_an_unknown_method_is_an_error():
    with pytest.raises(PipelineDefinitionError, match=r"Pipe.stages names 'nope'"):

        class Pipe(TrackedPipeline):
            stages = {"nope": "transformer"}


def test_stages_mapping_with_an_unknown_kind_is_an_error():
    with pytest.raises(PipelineDefinitionError, match=r"Pipe.run: stages\['run'\] is 'estimatr'"):

        class Pipe(TrackedPipeline):
            stages = {"run": "estimatr"}

            def run(self, X):
                return X


def test_stages_mapping_that_contradicts_the_signature_is_an_error():
    with pytest.raises(PipelineDefinitionError, match="make them agree"):

        class Pipe(TrackedPipeline):
            stages = {"run": "estimator"}

            def run(self, X, stage="transformer"):
                return X


def test_stages_must_be_a_mapping():
    with pytest.raises(PipelineDefinitionError, match="must be a mapping"):

        class Pipe(TrackedPipeline):
            stages = ["run"]


def test_a_subclass_that_does_not_override_reuses_the_wrapper():
    class Base(TrackedPipeline):
        def scale(self, X, stage="transformer"):
            return X

    class Child(Base):
        pass

    class GrandChild(Child):
        pass

    assert "scale" not in Child.__dict__
    assert "scale" not in GrandChild.__dict__
    assert {"scale": "transformer"} == GrandChild.stage_kinds


def test_an_override_without_the_marker_stays_a_stage_of_its_base_kind():
    class Base(TrackedPipeline):
        def scale(self, X, stage="transformer"):
            return X

    class Child(Base):
        def scale(self, X):
            return super().scale(X)

    assert "transformer" == stage_spec_of(Child.__dict__["scale"]).kind


def test_a_stage_is_never_wrapped_twice():
    class Base(TrackedPipeline):
        def scale(self, X, stage="transformer"):
            return X

    wrapper = Base.__dict__["scale"]
    assert not isinstance(wrapper.__wrapped__, wrapt.FunctionWrapper)

    class Child(Base):
        stages = {"scale": "transformer"}

    assert "scale" not in Child.__dict__


@pytest.mark.parametrize(
    ("attribute", "value", "expected"),
    [
        ("tracking", "yes", "Pipe.tracking must be bool, not str"),
        ("strict", 1, "Pipe.strict must be bool, not int"),
        ("experiment", 3, "Pipe.experiment must be str or None, not int"),
        ("experiment", "", "Pipe.experiment must not be empty"),
        ("tracking_uri", 5, "Pipe.tracking_uri must be str or None, not int"),
        ("backend", "memory", "Pipe.backend must be None"),
        ("scoring", "not-a-scorer", "Pipe.scoring is not valid scikit-learn scoring"),
        ("log_outputs", "all", "Pipe.log_outputs must be one of ('preview', 'full', 'none')"),
        ("serialization_format", "pickle", "Pipe.serialization_format must be one of"),
        ("registered_model_name", 7, "Pipe.registered_model_name must be str or None"),
        ("nest_under_active_run", "no", "Pipe.nest_under_active_run must be bool, not str"),
    ],
)
def test_bad_class_attributes_are_errors_naming_the_class(attribute, value, expected):
    with pytest.raises(PipelineDefinitionError) as info:
        type("Pipe", (TrackedPipeline,), {attribute: value})
    assert expected in str(info.value)


def test_valid_scoring_forms_are_accepted():
    for scoring in ("accuracy", ["accuracy", "f1_macro"], {"acc": "accuracy"}):
        type("Pipe", (TrackedPipeline,), {"scoring": scoring})


def test_pipelines_can_also_be_abstract_base_classes():
    class Base(TrackedPipeline, abc.ABC):
        @abc.abstractmethod
        def scale(self, X, stage="transformer"): ...

    class Concrete(Base):
        def scale(self, X, stage="transformer"):
            return X

    with pytest.raises(TypeError, match="abstract"):
        Base()
    assert {"scale": "transformer"} == Concrete.stage_kinds
