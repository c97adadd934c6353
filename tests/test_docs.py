"""The documentation, tested as a reader uses it.

- Every ```python block of every page in docs/ runs, in order, in one namespace per page (the
  framework a page imports is skipped where it is not installed). A block shown but not run uses
  the ``{code-block} python`` directive instead. A block preceded by the MyST comment line
  ``% test: xfail(REASON)`` is expected to fail (strictly: it fails the suite once it passes).
- The site builds with ``sphinx -W`` (no warnings), every internal link and anchor resolves, and
  headless Chromium shows the landing page, the API page, a notebook and the search page with
  nothing loaded from outside the site, math typeset by MathJax and images displayed. The
  screenshot of the landing page goes to $LEAKYJAX_DOCS_ARTIFACTS (or the test's tmp dir).
"""

from __future__ import annotations

import ast
import html.parser
import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import time
import types
import urllib.parse

import pytest
from background import Command, tree_first_on_path

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Pages whose code is tested elsewhere: docs/errors.md, row by row, by tests/test_errors.py.
TESTED_ELSEWHERE = {"errors.md"}
BLOCK = re.compile(
    r"^(?:% test: xfail\((?P<xfail>[^\n]*)\)\n)?```python\n(?P<code>.*?)^```", re.S | re.M
)


def _pages() -> list[pathlib.Path]:
    pages = sorted(DOCS.glob("*.md")) + sorted(DOCS.glob("guides/*.md"))
    return [p for p in pages if p.name not in TESTED_ELSEWHERE and BLOCK.search(p.read_text())]


def page_blocks(page: pathlib.Path) -> list[tuple[str, str | None]]:
    return [(m["code"], m["xfail"]) for m in BLOCK.finditer(page.read_text())]


def run_blocks(page: pathlib.Path, blocks: list[tuple[str, str | None]]) -> None:
    """Runs the blocks in order in one namespace, first skipping for a missing framework."""
    for code, _ in blocks:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                pytest.importorskip(module.split(".")[0])
    # A module of its own, so that dataclasses (Flax, Equinox) can find the classes' module.
    module = types.ModuleType(f"docs_{page.stem}")
    sys.modules[module.__name__] = module
    try:
        for number, (code, _) in enumerate(blocks, 1):
            where = f"{page.relative_to(ROOT)}, python block {number}"
            exec(compile(code, where, "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]


def _cases():
    for page in _pages():
        blocks = page_blocks(page)
        runs = [i for i, (_, xfail) in enumerate(blocks) if xfail is None]
        name = str(page.relative_to(DOCS))
        yield pytest.param(page, tuple(runs), id=name)
        for index, (_, reason) in enumerate(blocks):
            if reason is not None:
                # The blocks before it, then it: it must fail until the reason is fixed.
                before = [i for i in runs if i < index]
                yield pytest.param(
                    page,
                    (*before, index),
                    id=f"{name}-xfail-block{index + 1}",
                    marks=pytest.mark.xfail(strict=True, reason=reason),
                )


SKIPPED = 75  # tests/run_doc_blocks.py's exit code for a framework that is not installed


def _blocks_run(page: pathlib.Path, indices: tuple[int, ...]) -> Command:
    # A process of its own per page: the pages run beside the in-process tests.
    argv = (sys.executable, str(ROOT / "tests" / "run_doc_blocks.py"), str(page))
    return Command((*argv, *map(str, indices)), cwd=str(ROOT), env=(tree_first_on_path(ROOT),))


@pytest.mark.background(command=_blocks_run)
@pytest.mark.parametrize(("page", "indices"), list(_cases()))
def test_code_blocks_run(page, indices, background_run):
    if background_run.returncode == SKIPPED:
        pytest.skip(background_run.output.strip().splitlines()[-1])
    assert background_run.returncode == 0, background_run.output[-5000:]


def test_every_guide_has_code():
    guides = sorted(DOCS.glob("guides/*.md"))
    assert [p.stem for p in guides] == ["equinox", "flax_linen", "flax_nnx", "haiku", "jax"]
    assert all(page_blocks(p) for p in guides)


def test_every_guide_has_a_transforms_section_with_code():
    for guide in sorted(DOCS.glob("guides/*.md")):
        text = guide.read_text()
        assert "\n## Transforms\n" in text, guide.name
        section = text.split("\n## Transforms\n", 1)[1].split("\n## ", 1)[0]
        assert "lj.leakify(" in section and "lj.track_dead_units(" in section, guide.name
        assert BLOCK.search(section), guide.name


def test_transforms_cost_figures_are_the_readmes():
    """docs/transforms.md repeats the README benchmark table's transforms rows, verbatim."""
    readme = (ROOT / "README.md").read_text()
    rows = [
        r for r in readme.splitlines() if r.startswith("|") and ("leakify" in r or "tracker" in r)
    ]
    assert len(rows) == 4, rows
    page = (DOCS / "transforms.md").read_text()
    missing = [r for r in rows if r not in page.splitlines()]
    assert not missing, f"README rows not on docs/transforms.md (or changed there): {missing}"


# --- The built site ---------------------------------------------------------------------------


def _require(module: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed ({why}): pip install '.[docs]'")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    for module in ("sphinx", "myst_nb", "furo"):
        _require(module, "needed to build the documentation")
    out = tmp_path_factory.mktemp("docs")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html"]
    command += ["-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    start = time.monotonic()
    build = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    seconds = time.monotonic() - start
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr
    assert "WARNING" not in build.stderr, build.stderr
    print(f"docs built in {seconds:.1f} s into {out / 'html'}")
    return out / "html"


class _Html(html.parser.HTMLParser):
    """The ids a page defines and the URLs it refers to: [(tag, attribute, url)]."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name in ("href", "src") and value is not None:
                self.urls.append((tag, name, value))


def _parse(path: pathlib.Path) -> _Html:
    parser = _Html()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.slow
def test_site_pages(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    expected = {
        "index.html",
        "api.html",
        "zero_convention.html",
        "memory.html",
        "transforms.html",
        "errors.html",
        "benchmark.html",
        "notebooks.html",
        "changelog.html",
        "search.html",
        *(f"guides/{g}.html" for g in ("jax", "flax_nnx", "flax_linen", "equinox", "haiku")),
        *(f"notebooks/{n}.html" for n in ("tour", "mlp_demo", "data_parallel", "dead_units")),
    }
    assert expected <= pages, expected - pages


@pytest.mark.slow
def test_api_page_documents_all_of_leakyjax_all(site):
    import leakyjax

    ids = _parse(site / "api.html").ids
    missing = [name for name in leakyjax.__all__ if f"leakyjax.{name}" not in ids]
    assert not missing, f"not on the API page: {missing}"


@pytest.mark.slow
def test_internal_links_resolve(site):
    cache: dict[pathlib.Path, _Html] = {}

    def parsed(path):
        if path not in cache:
            cache[path] = _parse(path)
        return cache[path]

    broken, external_assets, checked = [], [], 0
    for page in sorted(site.rglob("*.html")):
        for tag, attribute, url in parsed(page).urls:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme or parts.netloc:
                # A link to another site is fine; an asset from one is not.
                if not (tag == "a" and attribute == "href") and parts.scheme != "data":
                    external_assets.append(f"{page.relative_to(site)}: <{tag} {attribute}={url}>")
                continue
            target = page if not parts.path else (page.parent / urllib.parse.unquote(parts.path))
            target = target / "index.html" if target.is_dir() else target
            checked += 1
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {url} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                if urllib.parse.unquote(parts.fragment) not in parsed(target).ids:
                    broken.append(f"{page.relative_to(site)}: {url} (no such anchor)")
    assert checked > 500
    assert not broken, "\n".join(broken)
    assert not external_assets, "\n".join(external_assets)


@pytest.fixture(scope="module")
def browser(site, tmp_path_factory):
    pytest.importorskip(
        "websocket", reason="websocket-client drives Chromium: pip install '.[docs]'"
    )
    from tests import docs_browser

    executable = os.environ.get("LEAKYJAX_CHROMIUM") or docs_browser.find_chromium()
    if executable is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")
    with docs_browser.Chromium(executable, tmp_path_factory.mktemp("chromium") / "profile") as c:
        yield c


def _check_offline(site, url, page):
    outside = [u for u in page["requests"] if not u.startswith((site.as_uri(), "data:"))]
    assert not outside, f"{url} loaded from outside the site: {outside}"
    assert not page["failed"], f"{url}: failed to load {page['failed']}"
    assert not page["errors"], f"{url}: {page['errors']}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "min_math", "min_images"),
    [
        ("index.html", 2, 0),
        ("api.html", 30, 0),
        ("transforms.html", 1, 0),
        ("notebooks/mlp_demo.html", 0, 4),
        ("notebooks/dead_units.html", 0, 2),
    ],
)
def test_page_in_browser(site, browser, path, min_math, min_images, tmp_path):
    url = (site / path).as_uri()
    screenshot = None
    if path == "index.html":
        artifacts = pathlib.Path(os.environ.get("LEAKYJAX_DOCS_ARTIFACTS", tmp_path))
        artifacts.mkdir(parents=True, exist_ok=True)
        screenshot = artifacts / "docs-landing-page.png"
    page = browser.open(url, screenshot=screenshot)
    _check_offline(site, url, page)
    # Math: MathJax typeset it, and no TeX source is left in what the reader sees.
    assert page["math"] >= min_math, page["math"]
    for tex in ("\\(", "\\)", "\\[", "$$", "\\begin", "\\frac", "\\mathrm"):
        assert tex not in page["text"], f"{url} shows raw TeX {tex!r}"
    # Images: each one loaded and has pixels.
    assert len(page["images"]) >= min_images
    blank = [image["src"] for image in page["images"] if image["width"] == 0]
    assert not blank, f"{url}: images not displayed: {blank}"
    if screenshot is not None:
        assert screenshot.stat().st_size > 10_000
        print(f"screenshot of the landing page: {screenshot}")


@pytest.mark.slow
def test_search_page_in_browser(site, browser):
    url = (site / "search.html").as_uri() + "?q=grad_at_zero"
    finished = "document.body.innerText.includes('Search finished')"
    page = browser.open(url, wait_for=finished)
    _check_offline(site, url, page)
    found = re.search(r"Search finished, found (\d+) pages?", page["text"])
    assert found and int(found[1]) >= 3, page["text"][-500:]
    results = page["text"][found.end() :]
    assert "API reference" in results and "The zero convention and exactness" in results
