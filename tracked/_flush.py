"""``tracked.flush``: wait for what this process tracked so far."""

from __future__ import annotations

import sys


def flush(timeout: float | None = None) -> bool:
    """Wait until everything tracked so far in this process has been written.

    Records whose store is away count as written once they are in the spool. A stage's
    series of folded calls ends here (its last records, a fit series' model, are written),
    and so do the parent runs of instances that were garbage-collected and the group runs
    of clones none of which is open (a search that is done).
    Tracking failures collected meanwhile are reported now (raised, in strict mode).

    Args:
        timeout: seconds to wait at most; None waits ``TRACKED_EXIT_TIMEOUT`` seconds (default
            30), after which the records still waiting stay in the spool for ``tracked sync``
            (one ``TrackingWarning`` says how many).

    Returns:
        True when everything was written, False when the wait ended first (or tracking
        failed: a ``TrackingWarning`` says how).
    """
    runtime = sys.modules.get("tracked.delivery.runtime")
    if runtime is None:  # the delivery layer never loaded: nothing was tracked to wait for
        return True
    return runtime.flush(timeout)
