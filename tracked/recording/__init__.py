"""One stage call -> one record: what the library learns from a call, on the caller's side.

Lives here: the stage wrapper (``wrapper``, the thin front ``import tracked`` loads; ``stage``,
the tracked call behind it, loaded by the first tracked call) and its value types (``spec``);
``capture``, which turns a finished call into a ``StageRecord``, and what it reads: phase
(``phase``), fitted state (``fitted``), data digests, summaries and previews (``data``),
search CV summaries (``search``); ``evaluation/`` (which metrics, computed where, and the
pictures); ``composition/`` (the composed servable model and its verification); ``folding``
(repeated calls of a stage folded into one series run) and ``randomness`` (the user's random
state kept as it was).

May import: ``tracked.delivery`` (to hand records on), ``tracked.backends`` (the MLflow
autologging pause), ``tracked.core``. Never the public modules above it.
"""
