"""What a stage learned and what it saw: data digests, summaries, previews, fitted state.

Everything here runs on the caller's thread and is bounded whatever the shape of the data:
digests hash at most 4 MiB of values from the data's buffers (never a text rendering), the
first rows kept for previews and schemas hold at most 20 rows, 1000 columns and 1 MiB,
previews at most 100 columns and 64 KB.
"""

from __future__ import annotations

import hashlib
from typing import Any

from attrs import frozen

from tracked.core import frames as _frames
from tracked.core import sparse as _sparse
from tracked.core.text import mask_secrets
from tracked.core.values import DataSummary

PREVIEW_ROWS = 20


#: A preview keeps at most this many columns and bytes (a note on the run says what was cut).
PREVIEW_COLUMNS = 100


PREVIEW_BYTES = 64 * 1024


#: The longest text a float64, int64 or bool takes in CSV: previews of at most
#: ``PREVIEW_COLUMNS`` such columns stay under ``PREVIEW_BYTES`` without being measured.
_NUMBER_CHARS = 25


#: A digest hashes at most this many bytes of values (see ``digest_array``).
WHOLE_HASH_BYTES = 4 * 1024 * 1024


#: A digest of larger data reads at most this many rows.
SAMPLED_ROWS = 2048


#: The first rows kept for previews and schemas hold at most this many columns: a schema of
#: 20,000 columns does not fit in MLflow's dataset ``schema`` field, and a preview shows 100.
HEAD_COLUMNS = 1000


#: ... and at most this many bytes of values (fewer rows, at least one, when wider).
HEAD_BYTES = 1024 * 1024


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
    """blake2b of shape, dtype and at most ``WHOLE_HASH_BYTES`` of the values.

    Data that holds no more is hashed whole. Larger data is hashed through a sample
    (``sample_positions``): evenly spaced rows, the first and the last among them, at most
    ``SAMPLED_ROWS`` and as many as fit; rows wider than that budget through evenly spaced
    values of each. Equal digests mean equal shape, dtype and sampled values; the cost is
    bounded whatever the shape.
    """
    import numpy as np

    h = hashlib.blake2b(digest_size=16)
    h.update(repr((array.shape, array.dtype.str)).encode())
    if array.ndim == 0:
        h.update(array.tobytes() if array.dtype != object else repr(array.item()).encode())
        return h.hexdigest()
    itemsize = array.dtype.itemsize if array.dtype != object else 8
    width = 1
    for n in array.shape[1:]:
        width *= int(n)
    rows, columns = sample_positions(len(array), width, itemsize)
    sample = array if rows is None else array[rows]
    if columns is not None:
        sample = sample.reshape(len(sample), -1)[:, columns]
    if array.dtype == object:
        h.update(repr(sample.tolist()).encode("utf-8", "backslashreplace"))
    else:
        h.update(np.ascontiguousarray(sample).tobytes())
    return h.hexdigest()


def sample_positions(rows: int, width: int, itemsize: int) -> tuple[Any, Any]:
    """The rows and columns a digest reads of data of ``rows`` x ``width`` values of
    ``itemsize`` bytes: (None, None) for all of it when it fits in ``WHOLE_HASH_BYTES``; else
    evenly spaced rows (first and last included, at most ``SAMPLED_ROWS``, at least two) and,
    when even two rows are over the budget, evenly spaced columns (None: every column)."""

    row_bytes = max(width * itemsize, 1)
    if rows * row_bytes <= WHOLE_HASH_BYTES:
        return None, None
    count = min(rows, SAMPLED_ROWS, max(2, WHOLE_HASH_BYTES // row_bytes))
    index = _spaced(rows, count)
    if len(index) * row_bytes <= WHOLE_HASH_BYTES:
        return index, None
    return index, _spaced(width, max(1, WHOLE_HASH_BYTES // (len(index) * max(itemsize, 1))))


def _spaced(total: int, count: int) -> Any:
    """``count`` evenly spaced positions of ``total``, the first and the last included."""
    import numpy as np

    return np.unique(np.linspace(0, total - 1, num=min(total, count)).astype(np.int64))


def head_rows(row_bytes: int) -> int:
    """The rows of a head (at most ``PREVIEW_ROWS``) whose values fit in ``HEAD_BYTES``."""
    return max(1, min(PREVIEW_ROWS, HEAD_BYTES // max(row_bytes, 1)))


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
        head=_array_head(array),
    )


def _array_head(array: Any) -> Any:
    """A copy of the first rows, as many as fit in ``HEAD_BYTES``; of a 2-D array at most
    ``HEAD_COLUMNS`` columns, and of rows wider than ``HEAD_BYTES`` the first
    ``HEAD_COLUMNS`` values of each (flattened)."""
    width = 1
    for n in array.shape[1:]:
        width *= int(n)
    itemsize = array.dtype.itemsize if array.dtype != object else 8
    kept = min(width, HEAD_COLUMNS) if array.ndim == 2 else width
    rows = array[: head_rows(kept * itemsize)]
    if array.ndim == 2 and width > HEAD_COLUMNS:
        return rows[:, :HEAD_COLUMNS].copy()
    if array.ndim > 2 and width * itemsize > HEAD_BYTES:
        return rows.reshape(len(rows), -1)[:, :HEAD_COLUMNS].copy()
    return rows.copy()


def _summarize_frame(frame: Any) -> DataSummary:
    """A pandas frame read by its dtype groups: no per-column Python loop over its values,
    no text rendering; the digest reads at most ``WHOLE_HASH_BYTES`` of values."""
    groups = _dtype_groups(list(frame.dtypes))
    rows, width = (int(n) for n in frame.shape)
    row_bytes = sum(_itemsize(dtype) * len(positions) for dtype, positions in groups.items())
    index, columns = sample_positions(rows, width, max(1, row_bytes // max(1, width)))

    def blocks() -> Any:
        for dtype, positions in groups.items():
            kept = _kept(positions, columns)
            if len(kept):
                part = frame.iloc[:, kept] if index is None else frame.iloc[index, kept]
                yield str(dtype), kept, part.to_numpy()

    return DataSummary(
        digest=_frame_digest(frame.shape, frame.columns, groups, blocks()),
        kind="pandas",
        shape=tuple(int(n) for n in frame.shape),
        dtype=",".join(sorted({str(t) for t in groups})),
        nbytes=int(row_bytes * rows),
        columns=tuple(str(c) for c in frame.columns),
        head=_schema_ready(frame.iloc[: _head_rows(row_bytes, width), :HEAD_COLUMNS].copy()),
    )


def _head_rows(row_bytes: int, width: int) -> int:
    """The head's rows of a frame whose rows take ``row_bytes``, once cut to its columns."""
    return head_rows(row_bytes * min(width, HEAD_COLUMNS) // max(width, 1))


def _dtype_groups(dtypes: list[Any]) -> dict[Any, Any]:
    """The column positions of each dtype, in order of first appearance."""
    import numpy as np

    groups: dict[Any, list[int]] = {}
    for position, dtype in enumerate(dtypes):
        groups.setdefault(dtype, []).append(position)
    return {dtype: np.asarray(positions, dtype=np.int64) for dtype, positions in groups.items()}


def _itemsize(dtype: Any) -> int:
    """The bytes a value of ``dtype`` takes (a pointer's for objects and text)."""
    import numpy as np

    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        return int(dtype.itemsize)
    return int(getattr(dtype, "itemsize", 8) or 8)


def _kept(positions: Any, columns: Any) -> Any:
    """The ``positions`` among the sampled ``columns`` (all of them when None)."""
    import numpy as np

    return positions if columns is None else positions[np.isin(positions, columns)]


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
        head=_sparse.head(matrix, PREVIEW_ROWS, max_nonzeros=HEAD_BYTES // 16),
    )


def _summarize_other_frame(frame: Any) -> DataSummary:
    """A polars (or interchange-protocol) frame: rows and columns are taken in its own
    library, read by dtype groups like a pandas frame; what MLflow reads (the head, for
    schemas and previews) is converted to pandas."""
    if not _frames.is_polars_frame(frame):
        return _summarize_frame(_frames.to_pandas(frame))
    rows, width = (int(n) for n in frame.shape)
    dtypes = list(frame.dtypes)
    groups = _dtype_groups(dtypes)
    row_bytes = sum(_frames.polars_itemsize(d) * len(p) for d, p in groups.items())
    index, columns = sample_positions(rows, width, max(1, row_bytes // max(1, width)))
    try:
        nbytes = int(frame.estimated_size())
    except Exception:
        nbytes = row_bytes * rows
    names = list(frame.columns)

    def blocks() -> Any:
        for dtype, positions in groups.items():
            kept = _kept(positions, columns)
            if len(kept):
                yield str(dtype), kept, _frames.polars_block(frame, index, [names[i] for i in kept])

    head = frame.head(_head_rows(row_bytes, width)).select(names[:HEAD_COLUMNS])
    head = _frames.to_pandas(head)
    return DataSummary(
        digest=_frame_digest(frame.shape, names, groups, blocks()),
        # The head is pandas: MLflow reads schemas and previews from it.
        kind="pandas",
        shape=(rows, width),
        dtype=",".join(sorted({str(t) for t in groups})),
        nbytes=nbytes,
        columns=tuple(str(c) for c in names),
        head=_schema_ready(head),
    )


def _frame_digest(shape: Any, columns: Any, groups: dict[Any, Any], blocks: Any) -> str:
    """blake2b of the shape, the column names, each dtype's column positions and the values
    of each ``(dtype, positions, values)`` block: numbers as their bytes, anything else
    through pandas' value hashes (never a text rendering of the frame)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((tuple(shape), [str(c) for c in columns])).encode())
    for dtype, positions in groups.items():
        h.update(str(dtype).encode() + b"\0" + positions.tobytes())
    for dtype, positions, values in blocks:
        h.update(str(dtype).encode() + b"\0" + positions.tobytes())
        h.update(_value_bytes(values))
    return h.hexdigest()


def _value_bytes(values: Any) -> bytes:
    """The bytes of a block's values: their buffer for numbers, dates and booleans; pandas'
    value hashes (``hash_array``: by value for text, missing values included) otherwise."""
    import numpy as np

    if values.dtype.kind in "biufcmM":
        return np.ascontiguousarray(values).tobytes()
    from pandas.util import hash_array

    flat = np.asarray(values, dtype=object).ravel()
    try:
        return hash_array(flat, categorize=False).tobytes()
    except TypeError:  # values pandas cannot hash (a list in a cell): their text
        return repr(flat.tolist()).encode("utf-8", "backslashreplace")


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
    head = summary.head
    # Cut to the preview's columns before masking: a frame may have 20,000 names.
    columns = summary.columns[:PREVIEW_COLUMNS] if summary.columns is not None else None
    if columns is not None:  # a column named after a connection string shows no password
        columns = tuple(mask_secrets(str(name)) for name in columns)
    if hasattr(head, "iloc") and getattr(head, "ndim", 1) == 2:
        head = head.iloc[:, :PREVIEW_COLUMNS]
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
    width = _width(summary.shape)
    rows = summary.shape[0] if summary.shape else len(head)
    cut: list[str] = []
    if _width(head.shape) > PREVIEW_COLUMNS:
        head = _first_columns(head)
    if width > PREVIEW_COLUMNS:
        cut.append(f"the first {PREVIEW_COLUMNS} of {width} columns")
    if len(head) < min(PREVIEW_ROWS, rows):
        cut.append(f"the first {len(head)} rows, to stay under {HEAD_BYTES // 1024} KB of values")
    if _numeric(head):
        content: Any = (head, columns)
    else:
        content, kept = render_csv(head, columns, max_bytes=PREVIEW_BYTES)
        if kept < len(head):
            cut.append(f"{kept} of {len(head)} rows, to stay under {PREVIEW_BYTES // 1024} KB")
    if not cut:
        return Preview(content=content, note=None)
    return Preview(content=content, note=f"of {rows} rows, " + "; ".join(cut))


def _width(shape: Any) -> int:
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
    # A nonzero takes at least 6 bytes as text: more than max_bytes / 6 of them never fit.
    limit = None if max_bytes is None else max_bytes // 6 + 1
    header, *lines = _sparse.to_csv(data, limit).splitlines(keepends=True)
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
