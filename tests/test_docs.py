"""The documentation site builds strictly."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason='mkdocs is not installed: pip install -e ".[docs]" (the test extra includes it)',
)
def test_the_site_builds_in_strict_mode(tmp_path):
    """Broken links, missing anchors, pages left out of the nav and docstring warnings fail."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("TrackedPipeline", "group", "sweep", "flush", "TrackingError", "testing"):
        assert f'id="tracked.{name}"' in api
    changelog = (tmp_path / "site" / "changelog" / "index.html").read_text()
    assert "Unreleased" in changelog

