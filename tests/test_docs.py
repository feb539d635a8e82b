"""The README stays a true front door (the site's strict build is a step of .ci/checks)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"


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
