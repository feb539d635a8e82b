"""One stage call -> one record: what the library learns from a call, on the caller's side.

Lives here: the stage wrapper (``wrapper``, the thin front ``import tracked`` loads; ``stage``,
the tracked call behind it, loaded by the first tracked call) and its value types (``spec``),
phase detection (``phase``), fitted state (``fitted``), data digests, summaries and previews
(``data``), evaluation and scorers (``scoring``), deferred work the writer finishes later
(``deferred``: scores, CSV files; ``plots``; ``search`` for search CV summaries), and the
composed servable model (``compose``). ``observe.capture`` turns a finished call into a
``StageRecord``.

May import: ``tracked.delivery`` (to hand records on), ``tracked.backends`` (the MLflow
autologging pause), ``tracked.records``. Never the public modules above it.
"""
