"""What a stage learned and what it saw: data digests, summaries, previews, fitted state.

Everything here runs on the caller's thread and is bounded: digests read at most a few
thousand rows, previews keep 20 rows, large fitted arrays are summarised.
"""

from __future__ import annotations

import hashlib
from typing import Any

from attrs import frozen

from tracked.records import frames as _frames
from tracked.records import sparse as _sparse
from tracked.records.text import mask_secrets
from tracked.records.values import DataSummary

PREVIEW_ROWS = 20


#: A preview keeps at most this many columns and bytes (a note on the run says what was cut).
PREVIEW_COLUMNS = 100


PREVIEW_BYTES = 64 * 1024


#: The longest text a float64, int64 or bool takes in CSV: previews of at most
#: ``PREVIEW_COLUMNS`` such columns stay under ``PREVIEW_BYTES`` without being measured.
_NUMBER_CHARS = 25


#: Arrays up to this many bytes are hashed whole; larger ones through a sample of rows.
WHOLE_HASH_BYTES = 4 * 1024 * 1024


SAMPLED_ROWS = 2048


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
    if _sparse.is_sparse(data):
        return _summarize_sparse(data)
    if _frames.is_other_frame(data):
        return _summarize_other_frame(data)
    if not _array_like(data):
        return None
    array = _as_array(data)
    if array is None or array.ndim == 0 or not _holds_values(array):
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

    rows = frame if len(frame) <= SAMPLED_ROWS else frame.iloc[_sample_rows(np.arange(len(frame)))]
    return DataSummary(
        digest=_frame_digest(frame.shape, frame.columns, frame.dtypes, rows),
        kind="pandas",
        shape=tuple(int(n) for n in frame.shape),
        dtype=",".join(sorted({str(t) for t in frame.dtypes})),
        nbytes=int(frame.memory_usage(deep=False).sum()),
        columns=tuple(str(c) for c in frame.columns),
        head=_schema_ready(frame.iloc[:PREVIEW_ROWS].copy()),
    )


def _summarize_sparse(matrix: Any) -> DataSummary | None:
    if len(matrix.shape) != 2:
        return None
    return DataSummary(
        digest=_sparse.digest(matrix, SAMPLED_ROWS, WHOLE_HASH_BYTES),
        kind="sparse",
        shape=tuple(int(n) for n in matrix.shape),
        dtype=str(matrix.dtype),
        nbytes=_sparse.nbytes(matrix),
        columns=None,
        head=_sparse.head(matrix, PREVIEW_ROWS),
    )


def _summarize_other_frame(frame: Any) -> DataSummary:
    """A polars (or interchange-protocol) frame: rows are taken in its own library, and what
    MLflow reads (the head, for schemas and previews) is converted to pandas."""
    import numpy as np

    if not _frames.is_polars_frame(frame):
        return _summarize_frame(_frames.to_pandas(frame))
    count = int(frame.shape[0])
    index = np.arange(count) if count <= SAMPLED_ROWS else _sample_rows(np.arange(count))
    rows = _frames.take_rows(frame, index)
    dtypes = [str(t) for t in frame.dtypes]
    try:
        nbytes = int(frame.estimated_size())
    except Exception:
        nbytes = int(rows.memory_usage(deep=False).sum() * count / max(len(rows), 1))
    return DataSummary(
        digest=_frame_digest(frame.shape, frame.columns, dtypes, rows),
        # The head is pandas: MLflow reads schemas and previews from it.
        kind="pandas",
        shape=tuple(int(n) for n in frame.shape),
        dtype=",".join(sorted(set(dtypes))),
        nbytes=nbytes,
        columns=tuple(str(c) for c in frame.columns),
        head=_schema_ready(_frames.to_pandas(frame.head(PREVIEW_ROWS))),
    )


def _frame_digest(shape: Any, columns: Any, dtypes: Any, rows: Any) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((tuple(shape), [str(c) for c in columns], [str(t) for t in dtypes])).encode())
    h.update(rows.to_csv(index=False).encode("utf-8", "backslashreplace"))
    return h.hexdigest()


def _schema_ready(head: Any) -> Any:
    """The head with unique column names: MLflow builds no schema for repeated names."""
    names = [str(c) for c in head.columns]
    unique = _frames.unique_columns(names)
    if unique != list(head.columns):
        head.columns = unique
    return head


def _array_like(data: Any) -> bool:
    """Arrays, sequences and what converts to an array: not estimators and other objects."""
    return isinstance(data, (list, tuple)) or any(
        hasattr(data, name) for name in ("__array__", "__array_interface__", "__array_struct__")
    )


_SCALARS = (str, bytes, int, float, complex, bool)


def _holds_values(array: Any) -> bool:
    """Whether an object array holds values (text, numbers) rather than objects such as
    fitted estimators, whose reprs are no preview of data."""
    if array.dtype != object:
        return True
    import datetime
    import decimal

    import numpy as np

    sample = array.reshape(-1)[:PREVIEW_ROWS]
    return all(
        item is None or isinstance(item, (*_SCALARS, np.generic, datetime.date, decimal.Decimal))
        for item in sample
    )


@frozen(kw_only=True)
class Preview:
    """What ``output_preview.csv`` holds: a head cut to the preview's bounds, and a note of
    what was cut (None when nothing but rows beyond ``PREVIEW_ROWS`` was left out)."""

    content: Any  # bytes, or a (data, columns) pair rendered later by the writer
    note: str | None


def preview(summary: DataSummary) -> Preview:
    """The preview of a stage output: at most ``PREVIEW_ROWS`` rows, ``PREVIEW_COLUMNS``
    columns and ``PREVIEW_BYTES`` bytes.

    Numeric data within the column bound cannot exceed the byte bound, so it is rendered
    later (by the writer); anything else is rendered now, to know what the bytes cut.
    """
    head, columns = summary.head, summary.columns
    if columns is not None:  # a column named after a connection string shows no password
        columns = tuple(mask_secrets(str(name)) for name in columns)
    names = getattr(head, "columns", None)
    if names is not None and hasattr(head, "set_axis"):
        clean = [mask_secrets(str(name)) for name in names]
        if clean != [str(name) for name in names]:
            head = head.set_axis(clean, axis=1)
    if _sparse.is_sparse(head):
        content, kept = _sparse_csv(head, PREVIEW_BYTES)
        if kept == head.nnz:
            return Preview(content=content, note=None)
        return Preview(
            content=content,
            note=(
                f"the nonzeros of the first {head.shape[0]} rows as row,column,value: "
                f"{kept} of {head.nnz}, to stay under {PREVIEW_BYTES // 1024} KB"
            ),
        )
    width = _width(head)
    cut: list[str] = []
    if width > PREVIEW_COLUMNS:
        head = head.iloc[:, :PREVIEW_COLUMNS] if hasattr(head, "iloc") else _first_columns(head)
        if columns is not None:
            columns = columns[:PREVIEW_COLUMNS]
        cut.append(f"the first {PREVIEW_COLUMNS} of {width} columns")
    if _numeric(head):
        content: Any = (head, columns)
    else:
        content, kept = render_csv(head, columns, max_bytes=PREVIEW_BYTES)
        if kept < len(head):
            cut.append(f"{kept} of {len(head)} rows, to stay under {PREVIEW_BYTES // 1024} KB")
    if not cut:
        return Preview(content=content, note=None)
    rows = summary.shape[0] if summary.shape else len(head)
    return Preview(content=content, note=f"of {rows} rows, " + "; ".join(cut))


def _width(head: Any) -> int:
    shape = getattr(head, "shape", None)
    if not shape or len(shape) < 2:
        return 1
    width = 1
    for n in shape[1:]:
        width *= int(n)
    return width


def _first_columns(head: Any) -> Any:
    import numpy as np

    array = np.asarray(head)
    return array.reshape(len(array), -1)[:, :PREVIEW_COLUMNS]


def _numeric(head: Any) -> bool:
    dtypes = head.dtypes if hasattr(head, "dtypes") else [head.dtype]
    return all(getattr(dtype, "kind", "O") in "biuf" for dtype in dtypes)


def to_csv(data: Any, columns: tuple[str, ...] | None = None) -> bytes:
    """``data`` (array, DataFrame or head) as CSV, with column names where known."""
    return render_csv(data, columns)[0]


def render_csv(
    data: Any, columns: tuple[str, ...] | None = None, *, max_bytes: int | None = None
) -> tuple[bytes, int]:
    """``data`` as CSV (column names where known) and the number of rows written: whole
    rows only, as many as fit in ``max_bytes`` (None: all of them)."""
    if _sparse.is_sparse(data):
        return _sparse_csv(data, max_bytes)
    if _frames.is_other_frame(data):
        data = _frames.to_pandas(data)
    if hasattr(data, "to_csv"):
        if max_bytes is None:
            return data.to_csv(index=False).encode(), len(data)
        names = [str(c) for c in data.columns] if hasattr(data, "columns") else [str(data.name)]
        lines = data.to_csv(index=False, header=False).encode().splitlines(keepends=True)
        if len(lines) != len(data):  # a cell with a line break: one row at a time
            lines = [
                data.iloc[i : i + 1].to_csv(index=False, header=False).encode()
                for i in range(len(data))
            ]
        return _within(",".join(_cell(n) for n in names).encode() + b"\n", lines, max_bytes)
    import numpy as np

    array = np.asarray(data)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    elif array.ndim > 2:
        array = array.reshape(len(array), -1)
    names = columns or tuple(f"x{i}" for i in range(array.shape[1]))
    header = (",".join(names) + "\n").encode()
    lines = [(",".join(_cell(value) for value in row) + "\n").encode() for row in array.tolist()]
    return _within(header, lines, max_bytes)


def _sparse_csv(data: Any, max_bytes: int | None) -> tuple[bytes, int]:
    """Sparse data as its nonzeros (``row,column,value``), and how many were written."""
    header, *lines = _sparse.to_csv(data).splitlines(keepends=True)
    return _within(header, lines, max_bytes)


def _within(header: bytes, lines: list[bytes], max_bytes: int | None) -> tuple[bytes, int]:
    out, size = [header], len(header)
    for line in lines:
        if max_bytes is not None and size + len(line) > max_bytes:
            break
        out.append(line)
        size += len(line)
    return b"".join(out), len(out) - 1


def _cell(value: Any) -> str:
    text = str(value)
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text
