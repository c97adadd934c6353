"""The changelog page: the repository's CHANGELOG.md when the checkout has one.

``docs/changelog.md`` includes ``../CHANGELOG.md``; where that file does not exist (yet), the
page says so instead of failing the build.
"""

from __future__ import annotations

import pathlib

CHANGELOG = pathlib.Path(__file__).resolve().parents[2] / "CHANGELOG.md"
PLACEHOLDER = "# Changelog\n\nThis checkout has no `CHANGELOG.md` yet.\n"


def _source_read(app, docname: str, source: list[str]) -> None:
    if docname == "changelog" and not CHANGELOG.exists():
        source[0] = PLACEHOLDER


def setup(app):
    app.connect("source-read", _source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
