"""The README renders on the package index: its links are absolute, and those into this
repository name files that exist."""

import pathlib
import re
import tomllib

ROOT = pathlib.Path(__file__).parent.parent
SOURCE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Source"]
LINKS = re.findall(r"\]\(([^)\s]+)\)", (ROOT / "README.md").read_text())


def test_readme_links_are_absolute():
    assert LINKS
    assert [link for link in LINKS if not link.startswith("https://")] == []


def test_readme_links_into_the_repository_name_files_that_exist():
    prefix = SOURCE + "/blob/main/"
    paths = [link.removeprefix(prefix).split("#")[0] for link in LINKS if link.startswith(prefix)]
    assert paths
    assert [path for path in paths if not (ROOT / path).is_file()] == []
