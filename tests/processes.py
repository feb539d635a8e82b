"""Python programs run by the tests as real processes: one way to start them and check them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def run_python(
    *args: str, cwd: Path, env: dict[str, str], input: str | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """``python *args`` in ``cwd`` with ``env``, bounded by ``timeout``; it must exit 0 (the
    failure shows its stderr)."""
    done = subprocess.run(
        [sys.executable, *args],
        input=input,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    return done
