"""Case 3: tracked with synchronous writes -- a HOOK, not measured yet.

tracked has no background writer today: every write already happens on the caller's thread,
so case 2 (``tracked``) *is* the synchronous figure, and this case would only repeat it under
another name. It is therefore reported as "not available" rather than faked.

HOOK (background writer): once tracked writes through a background thread
(``tracked/_writer.py`` in the design notes), fill in ``make_synchronous`` with the switch
that turns the writer off (a class attribute, an environment variable, ...), and the case
runs case 2's workflow and overhead measurements with that switch applied.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from cases import tracked
from cases.common import Options

#: HOOK: the setting that makes tracked write synchronously, applied to each pipeline.
#: None while there is nothing to switch off (this case is then skipped, never faked).
make_synchronous = None


def unavailable() -> str | None:
    """Why the case cannot run now, or None when the hook is filled in."""
    if make_synchronous is not None:
        return None
    if importlib.util.find_spec("tracked._writer") is not None:
        return (
            "tracked now has a background writer: fill in the hook "
            "`make_synchronous` in benchmarks/cases/tracked_sync.py"
        )
    return (
        "no background writer yet: all writes are synchronous (case `tracked` measures them); "
        "hook in benchmarks/cases/tracked_sync.py"
    )


def run(mode: str, options: Options) -> dict[str, Any]:
    reason = unavailable()
    if reason is not None:
        raise NotImplementedError(reason)
    if mode == "workflow":
        return tracked.workflow(options, configure=make_synchronous)
    if mode == "overhead":
        return tracked.overhead(options, configure=make_synchronous)
    msg = f"tracked_sync has no mode {mode!r}"
    raise ValueError(msg)
