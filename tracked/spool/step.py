"""One named write of a replay: what it does, in words, and what must be done first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import frozen


@frozen
class Step:
    name: str
    #: What it does, in words (for a failure's message).
    what: str
    run: Callable[[], dict[str, Any] | None]
    #: A step of the same entry that must be done first (else this one waits for a replay
    #: in which it is): registering needs the composed model logged.
    needs: str | None = None


def content_bytes(content: Any) -> bytes:
    """An artifact's content: bytes, or drawn now from what it is made of (``render()``)."""
    return content if isinstance(content, bytes) else content.render()


def raise_again(error: BaseException) -> None:
    raise error
