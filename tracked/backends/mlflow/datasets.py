"""A ``DataSummary`` as an MLflow dataset input: MLflow's schema of the first rows, with the
digest and the profile (shape, size, bytes) of the whole data, which MLflow never sees.

MLflow refuses a dataset whose ``schema`` is over 1,048,575 characters: a frame of 20,000
columns has such a schema. Its schema is then that of its first columns, as many as fit
(the summary's head holds at most 1000), and the input says so: the profile's
``schema_columns`` / ``num_columns`` and the input tag ``tracked.schema_note``.
"""

from __future__ import annotations

import json
from typing import Any

from tracked.backends.mlflow.keys import (
    MAX_DATASET_DIGEST_LENGTH,
    MAX_DATASET_SCHEMA_LENGTH,
    MAX_INPUT_TAG_VALUE_LENGTH,
)
from tracked.core.values import DataSummary

#: The input tag that says the schema covers fewer columns than the data holds.
SCHEMA_NOTE_TAG = "tracked.schema_note"


def dataset_input(summary: DataSummary, *, context: str, name: str) -> Any:
    """The ``DatasetInput`` of ``summary``, tagged with its context (``train``, ``eval``...)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    head = summary.head
    while True:
        sample, profile = _sample_and_profile(summary, name, head)
        entity = sample._to_mlflow_entity()
        if entity.schema is None or len(entity.schema) <= MAX_DATASET_SCHEMA_LENGTH:
            break
        head = head.iloc[:, : head.shape[1] // 2]  # only a frame's schema grows with names
    tags = [InputTag(key="mlflow.data.context", value=context)]
    width = _width(summary.shape)
    if summary.kind == "pandas" and head.shape[1] < width:
        profile["num_columns"], profile["schema_columns"] = width, int(head.shape[1])
        note = (
            f"the schema covers the first {head.shape[1]} of {width} columns "
            "(MLflow's dataset schema holds at most 1,048,575 characters)"
        )
        tags.append(InputTag(key=SCHEMA_NOTE_TAG, value=note[:MAX_INPUT_TAG_VALUE_LENGTH]))
    dataset = Dataset(
        name=name,
        digest=summary.digest[:MAX_DATASET_DIGEST_LENGTH],
        source_type=entity.source_type,
        source=entity.source,
        schema=entity.schema,
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset=dataset, tags=tags)


def _sample_and_profile(summary: DataSummary, name: str, head: Any) -> tuple[Any, dict[str, Any]]:
    """MLflow's dataset of ``head`` (the summary's first rows, or fewer columns of them), and
    the profile of the whole data in the keys MLflow's own pandas and NumPy datasets use."""
    import mlflow.data
    import numpy as np

    if summary.kind == "pandas":
        sample = mlflow.data.from_pandas(head, name=name)
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
    # The schema is the tensor's dtype and shape: from one row of the data's full width
    # (the head may hold fewer columns), made here on the writer.
    full = (1, *summary.shape[1:])
    numeric = getattr(head, "dtype", None) is not None and head.dtype.kind in "biufcmM"
    row = np.zeros(full, dtype=head.dtype) if numeric and head.shape[1:] != full[1:] else head
    sample = mlflow.data.from_numpy(row, name=name)
    profile = {
        "features_shape": list(summary.shape),
        "features_size": _product(summary.shape),
        "features_nbytes": summary.nbytes,
    }
    return sample, profile


def _width(shape: tuple[int, ...]) -> int:
    return _product(shape[1:]) if len(shape) > 1 else 1


def _product(shape: tuple[int, ...]) -> int:
    size = 1
    for n in shape:
        size *= n
    return size
