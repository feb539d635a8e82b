"""A ``DataSummary`` as an MLflow dataset input: MLflow's schema of the first rows, with the
digest and the profile (shape, size, bytes) of the whole data, which MLflow never sees."""

from __future__ import annotations

import json
from typing import Any

from tracked.backends.mlflow.keys import MAX_DATASET_DIGEST_LENGTH
from tracked.records.values import DataSummary


def dataset_input(summary: DataSummary, *, context: str, name: str) -> Any:
    """The ``DatasetInput`` of ``summary``, tagged with its context (``train``, ``eval``...)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    sample, profile = _sample_and_profile(summary, name)
    entity = sample._to_mlflow_entity()
    dataset = Dataset(
        name=name,
        digest=summary.digest[:MAX_DATASET_DIGEST_LENGTH],
        source_type=entity.source_type,
        source=entity.source,
        schema=entity.schema,
        profile=json.dumps(profile),
    )
    tags = [InputTag(key="mlflow.data.context", value=context)]
    return DatasetInput(dataset=dataset, tags=tags)


def _sample_and_profile(summary: DataSummary, name: str) -> tuple[Any, dict[str, Any]]:
    """MLflow's dataset of the summary's first rows, and the profile of the whole data in
    the keys MLflow's own pandas and NumPy datasets use."""
    import mlflow.data

    if summary.kind == "pandas":
        sample = mlflow.data.from_pandas(summary.head, name=name)
        return sample, {"num_rows": summary.shape[0], "num_elements": _product(summary.shape)}
    if summary.kind == "sparse":
        # The schema (a tensor of the matrix's width and dtype) from one densified row:
        # a text matrix has tens of thousands of columns.
        sample = mlflow.data.from_numpy(summary.head.tocsr()[:1].toarray(), name=name)
        profile = {
            "features_shape": list(summary.shape),
            "features_size": _product(summary.shape),
            "features_nbytes": summary.nbytes,
            "sparse": True,
        }
        return sample, profile
    sample = mlflow.data.from_numpy(summary.head, name=name)
    profile = {
        "features_shape": list(summary.shape),
        "features_size": _product(summary.shape),
        "features_nbytes": summary.nbytes,
    }
    return sample, profile


def _product(shape: tuple[int, ...]) -> int:
    size = 1
    for n in shape:
        size *= n
    return size
