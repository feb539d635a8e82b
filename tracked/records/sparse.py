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


def head(data: Any, rows: int) -> Any:
    """The first ``rows`` rows, a copy in the same sparse format (COO and DIA cannot be sliced:
    the rows are taken through CSR)."""
    return data.tocsr()[:rows].asformat(data.format, copy=True)


def _rows(data: Any) -> Any:
    """CSR with sorted, summed indices: one layout per content, whatever the input format."""
    csr = data.tocsr(copy=True)
    csr.sum_duplicates()
    csr.sort_indices()
    return csr


def digest(data: Any, sampled_rows: int, whole_bytes: int) -> str:
    """blake2b of shape, dtype and the nonzeros: all of them when they fit in ``whole_bytes``,
    else those of ``sampled_rows`` evenly spaced rows. Equal content gives equal digests in
    any sparse format (CSR, CSC, COO, ...), array or matrix."""
    import numpy as np

    csr = data.tocsr()
    if csr.data.nbytes + csr.indices.nbytes > whole_bytes and csr.shape[0] > sampled_rows:
        count = csr.shape[0]
        index = np.unique(np.linspace(0, count - 1, num=sampled_rows).astype(np.int64))
        csr = csr[index]
    csr = _rows(csr)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(("sparse", tuple(int(n) for n in data.shape), data.dtype.str)).encode())
    for part in (csr.indptr.astype(np.int64), csr.indices.astype(np.int64), csr.data):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def nbytes(data: Any) -> int:
    """The bytes the matrix holds (values and index arrays)."""
    total = 0
    for name in ("data", "indices", "indptr", "row", "col", "offsets"):
        part = getattr(data, name, None)
        total += int(getattr(part, "nbytes", 0) or 0)
    return total


def to_csv(data: Any) -> bytes:
    """The nonzeros as ``row,column,value`` lines: a dense preview of a 50,000-column text
    matrix would be megabytes of zeros."""
    coo = _rows(data).tocoo()
    out = io.StringIO()
    out.write("row,column,value\n")
    for row, column, value in zip(
        coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True
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
