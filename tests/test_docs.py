"""The documentation: the site builds strictly, and the README stays a true front door."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"


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


def test_the_readme_test_command_is_what_ci_runs():
    """README's quick start says how to run the tests; .ci/run runs exactly that line."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    commands = [line for block in blocks for line in block.splitlines() if "pytest" in line]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert 'pip install -e ".[test]" && pytest' == commands[0]
    assert commands[0] in ci


def test_the_readme_is_short_and_its_links_resolve():
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert any(t.startswith("docs/") for t in local)
    assert [] == [t for t in local if not (ROOT / t).exists()]
