"""The floor every layer stands on: values, names and text helpers.

Lives here: the record values (``values``: ``Metric``, ``StageRecord``, ``DataSummary``, run
statuses), tag and metric names (``names``), the library's errors and warnings (``errors``),
how failures and notices reach the user (``report``), settings read from the environment
(``config``), the pipeline settings declared once (``settings``), the user's own folders when
there is no writable home (``homes``), text, secret masking and param text (``text``,
``params``), the trust rules for serialized models (``trust``), metric ranking (``ranking``)
and the data shape helpers for sparse matrices and dataframes (``sparse``, ``frames``).

May import: the standard library, attrs, numpy/scipy/pandas lazily, and nothing else of
``tracked``. Every other layer may import it.
"""
