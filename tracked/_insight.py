"""What a stage learned and what it saw: data digests, summaries, previews, fitted state.

Everything here runs on the caller's thread and is bounded: digests read at most a few
thousand rows, previews keep 20 rows, large fitted arrays are summarised.
"""

from __future__ import annotations

import hashlib
import io
import math
from typing import Any

from attrs import frozen

from tracked._capture import is_fitted_name, is_setting, public_state

PREVIEW_ROWS = 20
#: Arrays up to this many bytes are hashed whole; larger ones through a sample of rows.
WHOLE_HASH_BYTES = 4 * 1024 * 1024
SAMPLED_ROWS = 2048
#: Fitted arrays with more elements than this are summarised, not logged whole.
FITTED_ELEMENTS = 1000


@frozen(kw_only=True)
class DataSummary:
    """A bounded description of the data a stage received or returned."""

    digest: str
    kind: str  # numpy | pandas | other
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    columns: tuple[str, ...] | None
    #: The first rows (a copy), for previews and schemas.
    head: Any


def _as_array(data: Any) -> Any:
    import numpy as np

    if hasattr(data, "toarray") and hasattr(data, "nnz"):  # scipy sparse: dense head only
        return None
    try:
        array = np.asarray(data)
    except Exception:
        return None
    return None if array.dtype == object and array.ndim == 0 else array


def digest_array(array: Any) -> str:
    """blake2b of shape, dtype and the bytes: all of them up to 4 MiB, else 2048 evenly spaced
    rows plus the first and last. Equal digests mean equal shape, dtype and sampled rows."""
    import numpy as np

    h = hashlib.blake2b(digest_size=16)
    h.update(repr((array.shape, array.dtype.str)).encode())
    if array.dtype == object:
        rows = array if array.size * 8 <= WHOLE_HASH_BYTES else _sample_rows(array)
        h.update(repr(rows.tolist()).encode("utf-8", "backslashreplace"))
    elif array.nbytes <= WHOLE_HASH_BYTES:
        h.update(np.ascontiguousarray(array).tobytes())
    else:
        h.update(np.ascontiguousarray(_sample_rows(array)).tobytes())
    return h.hexdigest()


def _sample_rows(array: Any) -> Any:
    import numpy as np

    count = len(array)
    index = np.unique(np.linspace(0, count - 1, num=min(count, SAMPLED_ROWS)).astype(np.int64))
    return array[index]


def summarize(data: Any) -> DataSummary | None:
    """Digest, shape, dtype and head of ``data``; None for what is not array-like."""
    if data is None:
        return None
    if hasattr(data, "iloc") and hasattr(data, "columns"):
        return _summarize_frame(data)
    array = _as_array(data)
    if array is None or array.ndim == 0:
        return None
    return DataSummary(
        digest=digest_array(array),
        kind="numpy",
        shape=tuple(int(n) for n in array.shape),
        dtype=str(array.dtype),
        nbytes=int(array.nbytes),
        columns=None,
        head=array[:PREVIEW_ROWS].copy(),
    )


def _summarize_frame(frame: Any) -> DataSummary:
    import numpy as np

    h = hashlib.blake2b(digest_size=16)
    h.update(
        repr(
            (frame.shape, [str(c) for c in frame.columns], [str(t) for t in frame.dtypes])
        ).encode()
    )
    rows = frame if len(frame) <= SAMPLED_ROWS else frame.iloc[_sample_rows(np.arange(len(frame)))]
    h.update(rows.to_csv(index=False).encode("utf-8", "backslashreplace"))
    return DataSummary(
        digest=h.hexdigest(),
        kind="pandas",
        shape=tuple(int(n) for n in frame.shape),
        dtype=",".join(sorted({str(t) for t in frame.dtypes})),
        nbytes=int(frame.memory_usage(deep=False).sum()),
        columns=tuple(str(c) for c in frame.columns),
        head=frame.iloc[:PREVIEW_ROWS].copy(),
    )


def to_csv(data: Any, columns: tuple[str, ...] | None = None) -> bytes:
    """``data`` (array, DataFrame or head) as CSV, with column names where known."""
    if hasattr(data, "to_csv"):
        return data.to_csv(index=False).encode()
    import numpy as np

    array = np.asarray(data)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    elif array.ndim > 2:
        array = array.reshape(len(array), -1)
    names = columns or tuple(f"x{i}" for i in range(array.shape[1]))
    out = io.StringIO()
    out.write(",".join(names) + "\n")
    for row in array.tolist():
        out.write(",".join(_cell(value) for value in row) + "\n")
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    text = str(value)
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text


# -- fitted attributes ----------------------------------------------------------------------------


@frozen(kw_only=True)
class FittedState:
    """An operator's fitted attributes: metrics, metric histories and a JSON document."""

    scalars: dict[str, float]
    histories: dict[str, list[float]]
    document: dict[str, Any]


#: Fitted attributes that hold labels, not measurements: in the JSON, never metrics.
LABEL_ATTRIBUTES = frozenset({"classes_", "labels_", "categories_"})


def fitted_state(operator: Any) -> FittedState:
    """Scalars become metrics, 1-D numeric arrays (up to 1000 elements) metric histories
    (labels such as ``classes_`` excepted); all of it goes to the JSON document, arrays over
    1000 elements as a summary.

    An operator that is not a scikit-learn estimator (no ``get_params``) has no convention
    that tells its state from its settings: its other public attributes go to the document
    too, arrays only as a summary (what it holds may be its training data).
    """
    import numpy as np

    scalars: dict[str, float] = {}
    histories: dict[str, list[float]] = {}
    document: dict[str, Any] = {}
    plain = not callable(getattr(operator, "get_params", None))
    for name, value in sorted(public_state(operator).items()):
        if not is_fitted_name(name):
            if plain and not callable(value):
                document[name] = _held(value)
            continue
        if isinstance(value, (bool, np.bool_)):
            document[name] = bool(value)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            number = float(value)
            document[name] = _json_number(number)
            if math.isfinite(number):
                scalars[name] = number
        elif isinstance(value, np.ndarray):
            document[name] = _array_entry(value)
            if (
                value.ndim == 1
                and value.dtype.kind in "biuf"
                and value.size <= FITTED_ELEMENTS
                and name not in LABEL_ATTRIBUTES
            ):
                histories[name] = [float(v) for v in value]
        elif isinstance(value, (str, list, tuple, dict)) or value is None:
            document[name] = _jsonable(value)
        else:
            document[name] = f"<{type(value).__module__}.{type(value).__qualname__}>"
    return FittedState(scalars=scalars, histories=histories, document=document)


def _held(value: Any) -> Any:
    """A plain operator's attribute for the document: settings as they are, data as a
    summary of its shape, anything else by its type."""
    if is_setting(value):
        return _jsonable(value)
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        return {"summary": {"type": type(value).__name__, "shape": [int(n) for n in shape]}}
    if isinstance(value, (list, tuple, dict)):
        return {"summary": {"type": type(value).__name__, "length": len(value)}}
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _json_number(number: float) -> float | str:
    return number if math.isfinite(number) else str(number)


def _array_entry(array: Any) -> Any:
    if array.size <= FITTED_ELEMENTS:
        return _jsonable(array.tolist())
    entry: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    if array.dtype.kind in "biuf":
        entry.update(
            min=_json_number(float(array.min())),
            max=_json_number(float(array.max())),
            mean=_json_number(float(array.mean())),
        )
    return {"summary": entry}


def _jsonable(value: Any) -> Any:
    """``value`` made JSON-safe: non-finite floats as strings, unknown objects as text."""
    if isinstance(value, float):
        return _json_number(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _jsonable(item())
        except Exception:
            pass
    return str(value)
