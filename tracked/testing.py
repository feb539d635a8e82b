"""Helpers for users' own tests of their pipelines.

``MemoryBackend`` records runs in memory:

```python
from tracked.testing import MemoryBackend

def test_my_pipeline():
    backend = MemoryBackend()
    MyPipeline.backend = backend          # or a subclass with `backend = backend`
    ...
    [parent] = backend.parents()
    assert len(backend.children(parent.run_id)) == 6
```

``strict()`` makes tracking failures raise inside a block, so that a test sees them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from tracked.backends.memory import MemoryBackend, MemoryRun
from tracked.core.config import STRICT_VAR

__all__ = ["MemoryBackend", "MemoryRun", "strict"]


@contextmanager
def strict(enabled: bool = True) -> Iterator[None]:
    """Set ``TRACKED_STRICT`` for the duration of the block (restored afterwards)."""
    previous = os.environ.get(STRICT_VAR)
    os.environ[STRICT_VAR] = "1" if enabled else "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(STRICT_VAR, None)
        else:
            os.environ[STRICT_VAR] = previous
