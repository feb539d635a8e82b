"""SciPy sparse data (arrays and matrices, any format) where stage data is sampled, compared,
digested and previewed.

``np.asarray`` of a sparse matrix is a 0-d object array and ``np.allclose`` on one raises
("adding a nonzero scalar to a sparse array is not supported"): every place that reads stage
data asks ``is_sparse`` first and comes here. scipy is imported only once data is sparse,
which means it is already imported.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

#: Rows densified at a time when comparing: 16 rows of a 50,000-column float matrix are 6 MB.
COMPARE_ROWS = 16


def is_sparse(data: Any) -> bool:
    """Whether ``data`` is a SciPy sparse array or matrix (without importing scipy)."""
    if type(data).__module__.split(".")[0] != "scipy":
        return False
    import scipy.sparse

    return scipy.sparse.issparse(data)


def head(data: Any, rows: int, *, max_nonzeros: int | None = None) -> Any:
    """The first ``rows`` rows, a copy in the same sparse format; with ``max_nonzeros``, as
    many of them (at least one) as hold at most that many nonzeros.

    Compressed formats (CSR, CSC) are sliced as they are; COO by a mask of its row indices;
    other formats (DIA, LIL, DOK, BSR) through CSR. None of these copies more than the rows
    taken, except the conversion of the last kinds.
    """
    import numpy as np

    fmt = data.format
    if fmt == "coo":
        coords = data.coords if hasattr(data, "coords") else (data.row, data.col)
        keep = coords[0] < rows
        part = type(data)(
            (data.data[keep], (coords[0][keep], coords[1][keep])),
            shape=(min(rows, data.shape[0]), data.shape[1]),
        ).tocsr()
    elif fmt in ("csr", "csc"):
        part = data[:rows].tocsr()
    else:
        part = data.tocsr()[:rows]
    if max_nonzeros is not None and part.nnz > max_nonzeros:
        counts = np.diff(part.indptr)
        within = int(np.searchsorted(np.cumsum(counts), max_nonzeros, side="right"))
        part = part[: max(1, within)]
    return part.asformat(fmt, copy=True)


def _rows(data: Any) -> Any:
    """CSR with sorted, summed indices: one layout per content, whatever the input format."""
    csr = data.tocsr(copy=True)
    csr.sum_duplicates()
    csr.sort_indices()
    return csr


def digest(data: Any, sampled_rows: int, whole_bytes: int) -> str:
    """blake2b of shape, dtype and the nonzeros: all of them when they fit in ``whole_bytes``,
    else those of evenly spaced rows (at most ``sampled_rows``, fewer when their nonzeros
    would pass ``whole_bytes``). Equal content gives equal digests in any sparse format
    (CSR, CSC, COO, ...), array or matrix; the rows are taken without converting the whole
    matrix (except the formats that cannot be indexed: DIA, LIL, DOK, BSR)."""
    import numpy as np

    total = int(data.nnz) * (data.dtype.itemsize + 8)
    count = data.shape[0]
    if total > whole_bytes and count > 2:
        per_row = max(total // max(count, 1), 1)
        wanted = min(sampled_rows, max(2, whole_bytes // per_row))
        index = np.unique(np.linspace(0, count - 1, num=min(count, wanted)).astype(np.int64))
        csr = _take(data, index)
    else:
        csr = data.tocsr()
    csr = _rows(csr)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(("sparse", tuple(int(n) for n in data.shape), data.dtype.str)).encode())
    for part in (csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def _take(data: Any, index: Any) -> Any:
    """The rows at ``index`` (sorted positions) as CSR."""
    import numpy as np

    fmt = data.format
    if fmt in ("csr", "csc"):
        return data[index].tocsr()
    if fmt == "coo":
        coords = data.coords if hasattr(data, "coords") else (data.row, data.col)
        keep = np.isin(coords[0], index)
        new_rows = np.searchsorted(index, coords[0][keep])
        return type(data)(
            (data.data[keep], (new_rows, coords[1][keep])), shape=(len(index), data.shape[1])
        ).tocsr()
    return data.tocsr()[index]


def nbytes(data: Any) -> int:
    """The bytes the matrix holds (values and index arrays)."""
    total = 0
    for name in ("data", "indices", "indptr", "row", "col", "offsets"):
        part = getattr(data, name, None)
        total += int(getattr(part, "nbytes", 0) or 0)
    return total


def to_csv(data: Any, limit: int | None = None) -> bytes:
    """The nonzeros as ``row,column,value`` lines (at most ``limit`` of them): a dense preview
    of a 50,000-column text matrix would be megabytes of zeros."""
    coo = _rows(data).tocoo()
    count = coo.nnz if limit is None else min(coo.nnz, limit)
    out = io.StringIO()
    out.write("row,column,value\n")
    for row, column, value in zip(
        coo.row[:count].tolist(), coo.col[:count].tolist(), coo.data[:count].tolist(), strict=True
    ):
        out.write(f"{row},{column},{value}\n")
    return out.getvalue().encode()


def same(a: Any, b: Any, *, exact: bool = False) -> bool:
    """Whether ``a`` and ``b`` (sparse or dense, 2-D or 1-D) hold the same values: equal
    shapes, then ``np.allclose`` (NaN equal to NaN) or, with ``exact``, ``np.array_equal``,
    a few rows at a time so that a wide sparse matrix is never densified whole."""
    import numpy as np

    a_sparse, b_sparse = is_sparse(a), is_sparse(b)
    if not (a_sparse or b_sparse):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and _close(a, b, exact)
    if tuple(a.shape) != tuple(np.shape(b) if not b_sparse else b.shape):
        return False
    a = a.tocsr() if a_sparse else np.asarray(a)
    b = b.tocsr() if b_sparse else np.asarray(b)
    for start in range(0, a.shape[0], COMPARE_ROWS):
        stop = start + COMPARE_ROWS
        left = a[start:stop].toarray() if a_sparse else a[start:stop]
        right = b[start:stop].toarray() if b_sparse else b[start:stop]
        if not _close(left, right, exact):
            return False
    return True


def _close(a: Any, b: Any, exact: bool) -> bool:
    import numpy as np

    if exact or a.dtype.kind not in "biufc" or b.dtype.kind not in "biufc":
        return bool(np.array_equal(a, b))
    return bool(np.allclose(a, b, rtol=1e-7, atol=1e-9, equal_nan=True))
