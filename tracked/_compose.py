"""The whole fitted workflow as one model: the operators of the fit pass, in order.

When an estimator stage finishes a fit, the transformers fitted before it in the same
parent run and the estimator itself are composed into one scikit-learn ``Pipeline``. Before
it is logged, the composition is checked against what the stages actually did: the
transformers applied to a sample of the first stage's input must reproduce the estimator
stage's input. A composition that would predict differently is never logged.
"""

from __future__ import annotations

from typing import Any

from attrs import evolve, frozen

from tracked._scoring import unshared

#: Rows kept from each fit-phase stage's input, to check a composition and serve as examples.
SAMPLE_ROWS = 200
EXAMPLE_ROWS = 5


def head(data: Any, rows: int) -> Any:
    """A copy of the first ``rows`` rows of an array, DataFrame or sequence (None if not)."""
    if data is None:
        return None
    try:
        if hasattr(data, "iloc"):
            return data.iloc[:rows].copy()
        if hasattr(data, "shape") and hasattr(data, "copy"):
            return data[:rows].copy()
        return list(data[:rows])
    except Exception:  # something that is not row-indexable: it cannot be composed
        return None


@frozen(kw_only=True)
class FittedStage:
    """An operator fitted by a stage, with a sample of what that stage received."""

    stage: str
    kind: str
    operator: Any
    sample: Any


@frozen(kw_only=True)
class Composed:
    """A composition ready to log: the model and a small input example."""

    model: Any
    input_example: Any
    stages: tuple[str, ...]
    #: What ``model`` predicted on ``input_example`` (for the signature): predicted here,
    #: so that the writer never predicts, and never draws from the global random state.
    output_example: Any = None


class NotComposable(Exception):
    """Why the fitted stages cannot be composed faithfully (the message says)."""


class Composer:
    """Keeps, per parent run, the latest fitted operator of each stage in fit order."""

    def __init__(self) -> None:
        self._fitted: dict[str, FittedStage] = {}
        self._inference_inputs: dict[str, Any] = {}
        self.latest: Composed | None = None
        self.count = 0

    @property
    def fitted_kinds(self) -> set[str]:
        """The kinds of stage fitted so far in this parent run."""
        return {fitted.kind for fitted in self._fitted.values()}

    def note_fit(self, stage: str, kind: str, operator: Any, X: Any) -> None:
        # A refitted stage moves to the end: the order is that of the latest fit pass.
        self._fitted.pop(stage, None)
        self._fitted[stage] = FittedStage(
            stage=stage, kind=kind, operator=operator, sample=head(X, SAMPLE_ROWS)
        )

    def compose(self, estimator_stage: str) -> Composed:
        """The transformers fitted so far, then ``estimator_stage``'s operator.

        Raises:
            NotComposable: an operator lacks ``transform``/``predict``, the inputs were not
                kept, or the transformers do not reproduce what the estimator received.
        """
        from sklearn.pipeline import Pipeline

        estimator = self._fitted[estimator_stage]
        transformers = [
            fitted
            for fitted in self._fitted.values()
            if fitted.kind == "transformer" and fitted.stage != estimator_stage
        ]
        from sklearn.base import BaseEstimator

        for fitted in [*transformers, estimator]:
            if not isinstance(fitted.operator, BaseEstimator):
                msg = (
                    f"the operator of stage {fitted.stage!r} "
                    f"({type(fitted.operator).__qualname__}) is not a scikit-learn estimator "
                    "(sklearn.base.BaseEstimator), so it cannot be part of a scikit-learn Pipeline"
                )
                raise NotComposable(msg)
        if not callable(getattr(estimator.operator, "predict", None)):
            msg = f"the operator of stage {estimator_stage!r} has no predict()"
            raise NotComposable(msg)
        for fitted in transformers:
            if not callable(getattr(fitted.operator, "transform", None)):
                msg = f"the operator of stage {fitted.stage!r} has no transform()"
                raise NotComposable(msg)
        # From here on, copies where random generators are held: checking and logging predict
        # with the composition, and the generators the user holds must not be advanced.
        try:
            copies = unshared([fitted.operator for fitted in [*transformers, estimator]])
        except Exception as exc:
            msg = f"the fitted operators cannot be copied ({type(exc).__name__}: {exc})"
            raise NotComposable(msg) from None
        *transformers, estimator = (
            evolve(fitted, operator=operator)
            for fitted, operator in zip([*transformers, estimator], copies, strict=True)
        )
        first = transformers[0] if transformers else estimator
        if first.sample is None or estimator.sample is None:
            msg = "the stages' inputs are not row-indexable arrays or DataFrames"
            raise NotComposable(msg)
        if transformers:
            _check_chain(transformers, estimator)
        steps = [(fitted.stage, fitted.operator) for fitted in [*transformers, estimator]]
        model = Pipeline(steps)
        example = head(first.sample, EXAMPLE_ROWS)
        try:
            output = model.predict(example)
        except Exception as exc:
            msg = (
                "the composed model cannot predict on the first stage's input "
                f"({type(exc).__name__}: {exc}); perhaps stage {estimator_stage!r} changes its "
                "input before its operator sees it"
            )
            raise NotComposable(msg) from None
        self.count += 1
        self.latest = Composed(
            model=model,
            input_example=example,
            stages=tuple(name for name, _ in steps),
            output_example=output,
        )
        return self.latest

    def note_inference(self, stage: str, X: Any) -> None:
        """Keep a sample of what an inference-phase stage received, to verify the model."""
        self._inference_inputs[stage] = head(X, SAMPLE_ROWS)

    def verify(self, estimator_stage: str, X: Any, result: Any) -> bool | None:
        """Whether the latest composed model predicts what this inference pass produced.

        Compares, on a sample, the model applied to the first composed stage's latest
        inference input with what ``estimator_stage`` returned. None when there is nothing
        to compare (no composed model ending in that stage, or inputs not kept).
        """
        import numpy as np

        latest = self.latest
        if latest is None or latest.stages[-1] != estimator_stage:
            return None
        first = latest.stages[0]
        sample = (
            head(X, SAMPLE_ROWS) if first == estimator_stage else self._inference_inputs.get(first)
        )
        produced = head(result, SAMPLE_ROWS)
        if sample is None or produced is None:
            return None
        try:
            expected = np.asarray(latest.model.predict(sample))
            actual = np.asarray(produced)
            return expected.shape == actual.shape and bool(np.array_equal(expected, actual))
        except Exception:
            return False


def _check_chain(transformers: list[FittedStage], estimator: FittedStage) -> None:
    import numpy as np

    data = transformers[0].sample
    try:
        for fitted in transformers:
            data = fitted.operator.transform(data)
        produced = np.asarray(data)
        received = np.asarray(estimator.sample)
        same = produced.shape == received.shape and bool(
            np.allclose(produced, received, rtol=1e-7, atol=1e-9, equal_nan=True)
        )
    except Exception as exc:
        msg = f"applying the fitted transformers in order failed ({type(exc).__name__}: {exc})"
        raise NotComposable(msg) from None
    if not same:
        names = " -> ".join(f.stage for f in transformers)
        msg = (
            f"the transformers {names} applied in fit order do not reproduce the input of "
            f"stage {estimator.stage!r}, so a composed model would predict differently"
        )
        raise NotComposable(msg)
