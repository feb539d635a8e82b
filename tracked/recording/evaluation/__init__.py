"""Evaluation of one stage call: which metrics (``scoring``), computed where (``evaluate``: on
the caller, or deferred to the writer in ``deferred``), and the pictures (``plots``)."""
