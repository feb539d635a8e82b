"""Case 3: tracked with synchronous writes (``synchronous = True``): the writer turned off.

Each stage's records are written to the store before the stage call returns, as before the
background writer existed. Case 2's workflow and overhead measurements, with that switch.
"""

from __future__ import annotations

from typing import Any

from cases import tracked
from cases.common import Options


def make_synchronous(pipe: Any) -> None:
    """The switch: write on the caller's thread."""
    pipe.synchronous = True


def unavailable() -> str | None:
    """Why the case cannot run now (it always can)."""
    return None


def run(mode: str, options: Options) -> dict[str, Any]:
    if mode == "workflow":
        return tracked.workflow(options, configure=make_synchronous)
    if mode == "overhead":
        return tracked.overhead(options, configure=make_synchronous)
    msg = f"tracked_sync has no mode {mode!r}"
    raise ValueError(msg)
