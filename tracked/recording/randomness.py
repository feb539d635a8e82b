"""The global random state, given back after tracking's own predictions.

A stage's capture may predict again (metrics, model checks) with a copy of the operator:
whatever that draws from Python's or NumPy's global generator is given back, so that the
user's next draw is an untracked run's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def preserved_random_state() -> Iterator[None]:
    """Restore Python's and NumPy's global random state after the block."""
    import random

    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
