"""Which fitted transformers feed an estimator stage, and whether, applied in order, they
reproduce what it received: the checks a composed model must pass before it is logged."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from attrs import frozen

from tracked.core import frames as _frames
from tracked.core.frames import SamplingError
from tracked.core.report import describe
from tracked.core.sparse import is_sparse, same


@frozen(kw_only=True)
class FittedStage:
    """An operator fitted by a stage, with a sample of what that stage received and the
    digests of what it received and returned (None when not array-like)."""

    stage: str
    kind: str
    operator: Any
    sample: Any
    input_digest: str | None = None
    output_digest: str | None = None


class NotComposable(Exception):
    """Why the fitted stages cannot be composed faithfully (the message says)."""


#: Inference passes kept per fitted transformer (the estimator's input is one of them).
RECENT_PASSES = 4


def feeding(
    fitted_stages: Iterable[FittedStage],
    estimator: FittedStage,
    passes: Mapping[str, list[FittedStage]] | None = None,
) -> list[FittedStage]:
    """The fitted transformers whose data reached ``estimator``, in data-flow order.

    The digest chain says which: the estimator's input digest is the output digest of
    the last of them, whose input digest is the output digest of the one before, and so
    on. Transformers off that chain are left out when they are provably side stages (they
    read the chain's input or a chain stage's output, or a side stage's output: an
    analysis branch). When the digests prove nothing, every fitted transformer is taken
    in fit order, and the chain check decides.
    """
    transformers = [
        fitted
        for fitted in fitted_stages
        if fitted.kind == "transformer" and fitted.stage != estimator.stage
    ]
    chain: list[FittedStage] = []
    wanted = estimator.input_digest
    # Each transformer as fitted, or as it ran in one of its latest inference passes.
    seen = [
        variant
        for fitted in reversed(transformers)
        for variant in (fitted, *reversed((passes or {}).get(fitted.stage, ())))
    ]
    while wanted is not None:
        in_chain = {fitted.stage for fitted in chain}
        feeder = next(
            (
                fitted
                for fitted in seen
                if fitted.output_digest == wanted and fitted.stage not in in_chain
            ),
            None,
        )
        if feeder is None:
            break
        chain.insert(0, feeder)
        wanted = feeder.input_digest
    start = chain[0].input_digest if chain else estimator.input_digest
    if start is None:
        return transformers
    known = {start, *(fitted.output_digest for fitted in chain)}
    chained = {fitted.stage for fitted in chain}
    rest = [fitted for fitted in transformers if fitted.stage not in chained]
    grew = True
    while grew:
        grew = False
        for fitted in list(rest):
            if fitted.input_digest in known:
                rest.remove(fitted)
                known.add(fitted.output_digest)
                grew = True
    return chain if not rest else transformers


def check_operators(stages: list[FittedStage]) -> None:
    """Raise ``NotComposable`` unless every operator is a scikit-learn estimator, the last
    one predicts and the others transform."""
    from sklearn.base import BaseEstimator

    *transformers, estimator = stages
    for fitted in stages:
        if not isinstance(fitted.operator, BaseEstimator):
            msg = (
                f"the operator of stage {fitted.stage!r} "
                f"({type(fitted.operator).__qualname__}) is not a scikit-learn estimator "
                "(sklearn.base.BaseEstimator), so it cannot be part of a scikit-learn Pipeline"
            )
            raise NotComposable(msg)
    if not callable(getattr(estimator.operator, "predict", None)):
        msg = f"the operator of stage {estimator.stage!r} has no predict()"
        raise NotComposable(msg)
    for fitted in transformers:
        if is_sampler(fitted.operator):
            continue
        if not callable(getattr(fitted.operator, "transform", None)):
            msg = f"the operator of stage {fitted.stage!r} has no transform()"
            raise NotComposable(msg)


def is_sampler(operator: Any) -> bool:
    """An imbalanced-learn style sampler: ``fit_resample`` and no ``transform``. It changes
    the rows only while fitting; a composed model (an ``imblearn`` Pipeline) skips it when
    predicting."""
    return callable(getattr(operator, "fit_resample", None)) and not callable(
        getattr(operator, "transform", None)
    )


def check_samples(stages: list[FittedStage]) -> None:
    """Raise ``NotComposable`` unless the inputs of the first and the last stage were kept."""
    first, estimator = stages[0], stages[-1]
    for fitted in (first, estimator):
        if isinstance(fitted.sample, SamplingError):
            msg = f"the input of stage {fitted.stage!r} cannot be sampled: {fitted.sample}"
            raise NotComposable(msg)
    if first.sample is None or estimator.sample is None:
        msg = "the stages' inputs are not row-indexable arrays or DataFrames"
        raise NotComposable(msg)


def check_chain(transformers: list[FittedStage], estimator: FittedStage) -> None:
    """Raise ``NotComposable`` unless the transformers, applied in order to the first one's
    input sample, reproduce the estimator's input sample.

    A sampler resamples rows while fitting and is skipped when predicting: the chain is
    checked in segments, each ending at a sampler's input (what reached the sampler) or at
    the estimator, and each after a sampler starting from the next stage's own input.
    """
    stages = [*transformers, estimator]
    start = 0
    for index, fitted in enumerate(stages):
        if index == len(stages) - 1 or is_sampler(fitted.operator):
            if index > start:
                _check_segment(stages[start:index], fitted)
            start = index + 1
            if start < len(stages) and isinstance(stages[start].sample, SamplingError):
                msg = f"the input of stage {stages[start].stage!r} cannot be sampled"
                raise NotComposable(msg)


def _check_segment(transformers: list[FittedStage], target: FittedStage) -> None:
    """The transformers applied in order to the first one's sample reproduce ``target``'s."""
    data = transformers[0].sample
    try:
        for fitted in transformers:
            data = fitted.operator.transform(data)
        rows = min(_rows(data), _rows(target.sample))
        same_values = same(_leading(data, rows), _leading(target.sample, rows))
    except Exception as exc:
        msg = f"applying the fitted transformers in order failed ({describe(exc)})"
        raise NotComposable(msg) from None
    if not same_values:
        names = " -> ".join(f.stage for f in transformers)
        msg = (
            f"the transformers {names} applied in fit order do not reproduce the input of "
            f"stage {target.stage!r}, so a composed model would predict differently"
        )
        raise NotComposable(msg)


def _rows(data: Any) -> int:
    shape = getattr(data, "shape", None)
    return int(shape[0]) if shape else len(data)


def _leading(data: Any, rows: int) -> Any:
    """The first ``rows`` rows: the samples of wide data hold fewer rows than others'."""
    if _rows(data) == rows:
        return data
    return data.tocsr()[:rows] if is_sparse(data) else _frames.head(data, rows)
