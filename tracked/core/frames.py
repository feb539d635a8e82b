"""Data frames that are not pandas: polars, and anything with the interchange protocol.

The library reads rows of what stages receive and return (samples to check a composed model,
digests, previews, dataset schemas, signatures). pandas frames are read with ``iloc``; other
frames are read here, in their own library where it can slice rows (polars), and converted to
pandas for what MLflow reads (schemas, previews, input examples). When tracked cannot take
rows of a value, it says so as *its* limitation, naming the type it met: a sample that is
silently wrong (a list of columns taken for a list of rows) would otherwise surface later
as a message blaming the user's stage.
"""

from __future__ import annotations

import warnings
from typing import Any


class SamplingError(Exception):
    """tracked could not take rows of a value; the message names its type (our limitation)."""


def type_name(data: object) -> str:
    cls = type(data)
    return f"{cls.__module__}.{cls.__qualname__}"


def is_pandas_frame(data: object) -> bool:
    return hasattr(data, "iloc") and hasattr(data, "columns")


def is_polars_frame(data: object) -> bool:
    module = type(data).__module__ or ""
    return module.split(".")[0] == "polars" and hasattr(data, "columns") and hasattr(data, "head")


def is_other_frame(data: object) -> bool:
    """A data frame that is not pandas: polars, or one with the dataframe interchange protocol
    (``__dataframe__``) or the Arrow stream protocol (``__arrow_c_stream__``)."""
    if data is None or isinstance(data, type) or is_pandas_frame(data):
        return False
    return (
        is_polars_frame(data)
        or callable(getattr(data, "__dataframe__", None))
        or (callable(getattr(data, "__arrow_c_stream__", None)) and hasattr(data, "column_names"))
    )


def to_pandas(frame: Any) -> Any:
    """A pandas DataFrame with the same columns and rows as ``frame`` (a non-pandas frame).

    Raises:
        SamplingError: the frame cannot be converted (names its type).
    """
    import pandas as pd

    try:
        if is_polars_frame(frame):
            try:
                return frame.to_pandas()
            except ImportError:  # polars converts through pyarrow; without it, column by column
                return pd.DataFrame({name: frame[name].to_numpy() for name in frame.columns})
        if callable(getattr(frame, "__arrow_c_stream__", None)):
            import pyarrow

            return pyarrow.table(frame).to_pandas()
        with warnings.catch_warnings():
            # pandas deprecates the protocol for its own frames; other libraries still offer it.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            return pd.api.interchange.from_dataframe(frame, allow_copy=True)
    except Exception as exc:
        msg = (
            f"tracked cannot read a {type_name(frame)} as a table ({type(exc).__name__}: {exc}); "
            "this is a limitation of tracked, not a fault of your pipeline"
        )
        raise SamplingError(msg) from None


def take_rows(frame: Any, index: Any) -> Any:
    """The rows at positions ``index`` (an integer array) of a non-pandas frame, as pandas."""
    if is_polars_frame(frame):
        return to_pandas(frame[[int(i) for i in index]])
    return to_pandas(frame).iloc[index]


def row_bytes(data: Any) -> int | None:
    """About the bytes one row of ``data`` takes (numbers at their size, anything else as a
    pointer), without reading its values; None when it has no shape."""
    shape = getattr(data, "shape", None)
    if not isinstance(shape, tuple) or not shape:
        return None
    nnz = getattr(data, "nnz", None)
    if nnz is not None:  # sparse: its nonzeros and their column indices
        return max(1, int(nnz) * 12 // max(int(shape[0]), 1))
    width = 1
    for n in shape[1:]:
        width *= int(n)
    dtype = getattr(data, "dtype", None)
    itemsize = getattr(dtype, "itemsize", 8) if getattr(dtype, "kind", "O") != "O" else 8
    return max(1, width * int(itemsize or 8))


def polars_itemsize(dtype: Any) -> int:
    """The bytes a value of a polars ``dtype`` takes: its bit width for numbers (``Int32``: 4),
    one for booleans, a pointer's (8) for anything else."""
    name = str(dtype)
    digits = "".join(c for c in name.split("(")[0] if c.isdigit())
    if digits:
        return max(1, int(digits) // 8)
    return 1 if name == "Boolean" else 8


def polars_block(frame: Any, index: Any, names: list[str]) -> Any:
    """The columns ``names`` of a polars frame, at rows ``index`` (None: all), as one numpy
    array (numbers keep their dtype; text and other values are objects)."""
    part = frame.select(names)
    if index is not None:
        part = part[[int(i) for i in index]]
    return part.to_numpy()


def head(data: Any, rows: int) -> Any:
    """A copy of the first ``rows`` rows, in the data's own type where tracked can slice it.

    pandas and polars frames and Series, numpy arrays and anything with ``shape`` and
    ``copy`` keep their type; a list or tuple of rows stays a list; another frame (the
    interchange protocol) becomes pandas; any other object with ``__array__`` becomes a
    numpy array. None for None.

    Raises:
        SamplingError: tracked cannot take rows of this type, or the rows it took do not
            have the data's width (it names the type: tracked's limitation, not the user's).
    """
    if data is None:
        return None
    try:
        if hasattr(data, "iloc"):
            sample = data.iloc[:rows].copy()
        elif is_polars_frame(data) or _is_polars_series(data):
            sample = data.head(rows).clone()
        elif is_other_frame(data):
            sample = to_pandas(data).iloc[:rows].copy()
        elif isinstance(data, (list, tuple)):
            sample = list(data[:rows])
        elif hasattr(data, "shape") and callable(getattr(data, "copy", None)):
            sample = data[:rows].copy()
        elif hasattr(data, "__array__"):
            import numpy as np

            sample = np.asarray(data)[:rows].copy()
        else:
            msg = (
                f"tracked cannot take rows of a {type_name(data)} (not an array, a DataFrame, "
                "a frame with the interchange protocol or a list): a limitation of tracked"
            )
            raise SamplingError(msg)
    except SamplingError:
        raise
    except Exception as exc:
        msg = (
            f"tracked could not take rows of a {type_name(data)} ({type(exc).__name__}: {exc}): "
            "a limitation of tracked, not a fault of your pipeline"
        )
        raise SamplingError(msg) from None
    _check_width(data, sample)
    return sample


def _is_polars_series(data: object) -> bool:
    module = type(data).__module__ or ""
    return module.split(".")[0] == "polars" and type(data).__name__ == "Series"


def _check_width(data: Any, sample: Any) -> None:
    """The sample has the data's shape beyond its rows (else it was not a sample of rows)."""
    full, part = getattr(data, "shape", None), getattr(sample, "shape", None)
    if not isinstance(full, tuple) or part is None:
        return
    if tuple(full[1:]) != tuple(part[1:]):
        msg = (
            f"tracked took a sample of a {type_name(data)} of shape {full} that has shape "
            f"{tuple(part)}: a limitation of tracked, not a fault of your pipeline"
        )
        raise SamplingError(msg)


def for_mlflow(sample: Any) -> Any:
    """``sample`` in a type MLflow infers signatures from: non-pandas frames as pandas."""
    if is_other_frame(sample):
        return to_pandas(sample)
    if _is_polars_series(sample):
        return sample.to_numpy()
    return sample


def unique_columns(names: list[str]) -> list[str]:
    """``names`` with repeats renamed ``a.1``, ``a.2`` (as pandas' CSV reader does), so that
    a schema can be built; names already unique come back unchanged."""
    seen: set[str] = set(names)
    counts: dict[str, int] = {}
    out = []
    for name in names:
        if name not in counts:
            counts[name] = 0
            out.append(name)
            continue
        counts[name] += 1
        candidate = f"{name}.{counts[name]}"
        while candidate in seen:
            counts[name] += 1
            candidate = f"{name}.{counts[name]}"
        seen.add(candidate)
        out.append(candidate)
    return out
