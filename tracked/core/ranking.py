"""Which way is better for a metric: one rule for `tracked compare` and `tracked.sweep`."""

from __future__ import annotations

import re

# Abbreviations of error metrics are matched as whole words of a metric name ("val_rmse",
# "rmse_test"); "loss" and "error" anywhere in it ("log_loss", "max_error", "logloss").
_LOWER_BETTER_WORDS = frozenset({"rmse", "mae", "mse", "rmsle", "msle", "mape", "medae"})


_LOWER_BETTER_PARTS = ("loss", "error")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of ``metric`` is the better one (``tracked.cli.RANKING_RULE``)."""
    name = metric.lower()
    if name.startswith("neg_"):
        return False  # scikit-learn negates error scorers so that higher is better
    words = set(re.split(r"[^a-z0-9]+", name))
    return bool(words & _LOWER_BETTER_WORDS) or any(part in name for part in _LOWER_BETTER_PARTS)
