"""mkdocs hook: the configuration page's tables, built from the declarations in the code.

``<!-- settings table -->`` becomes ``tracked.core.settings.table()`` and
``<!-- environment table -->`` ``tracked.core.config.environment_table()``: a setting or
variable is documented where it is declared, once.
"""

from __future__ import annotations

from tracked.core.config import environment_table
from tracked.core.settings import table

MARKERS = {"<!-- settings table -->": table, "<!-- environment table -->": environment_table}


def on_page_markdown(markdown: str, **_: object) -> str:
    for marker, render in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
