"""The process's registries: which sessions are open, busy or holding reports, and which
stores were found away lately.

One instance, ``REGISTRY``, shared by the sessions (which enter and leave it) and the
runtime (which walks it at flush, exit and fork). Single set and dict operations are atomic
under the GIL and every walk iterates over a copy, so no lock is needed; a forked child
clears it (``forget``) and starts again from the sessions it inherits.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from attrs import define, field

#: How long a store found away sends new sessions straight to the spool.
AWAY_BACKOFF_S = 30.0


@define
class Registry:
    #: Parent runs this process opened and has not ended.
    open: set[Any] = field(factory=set)
    #: Sessions with entries the writer has not done yet (ended ones included).
    busy: set[Any] = field(factory=set)
    #: Sessions holding reports that the writer collected and no caller has seen yet.
    with_reports: set[Any] = field(factory=set)
    #: Tracking URI -> monotonic time until which new sessions go straight to the spool.
    away: dict[str, float] = field(factory=dict)
    #: This process is a forked child: its sessions write synchronously (see ``Session``).
    forked_child: bool = False
    #: Contexts whose instance was garbage-collected with a parent run open: appended by a
    #: weakref finalizer (which may run anywhere, so it only appends), ended at the next
    #: session's start, ``tracked.flush()`` or exit.
    abandoned: collections.deque[Any] = field(factory=collections.deque)
    #: The group runs of clones (``CloneGroup``) not ended yet.
    clone_groups: set[Any] = field(factory=set)

    def store_away(self, uri: str) -> None:
        self.away[uri] = time.monotonic() + AWAY_BACKOFF_S

    def store_recently_away(self, uri: str) -> bool:
        until = self.away.get(uri)
        return until is not None and time.monotonic() < until

    def forget(self) -> list[Any]:
        """In a forked child: clear everything, return the sessions that were open."""
        inherited = list(self.open)
        self.open.clear()
        self.with_reports.clear()
        self.busy.clear()  # the parent's writer does those entries, not the child's
        self.abandoned.clear()
        self.clone_groups.clear()  # the parent process ends its groups
        self.forked_child = True
        return inherited


REGISTRY = Registry()
