"""The documentation, tested as a reader uses it.

- Every ```python block of every page in docs/ runs, in order, in one namespace per page (the
  framework a page imports is skipped where it is not installed). A block shown but not run uses
  the ``{code-block} python`` directive instead. A block preceded by the MyST comment line
  ``% test: xfail(REASON)`` is expected to fail (strictly: it fails the suite once it passes).
- Code lines on the pages and in the notebooks (code and printed output) are at most 88
  characters; each guide's Transforms part opens with the dying-ReLU recipe; the figures and
  claims of the README and the pages that a run can check are checked: the comparison table's
  bad-argument row against ``jax.nn.leaky_relu``, the saved-residual bytes against the
  benchmark's MLP, the property-test case count, what the bad-input summary says of NaN and
  infinities.
- The site builds with ``sphinx -W`` (no warnings), every internal link and anchor resolves, and
  headless Chromium shows the landing page, the API page, a notebook and the search page with
  nothing loaded from outside the site, math typeset by MathJax and images displayed. At 1400
  px no code block or table cell of any page is cut off and every figure shows at close to its
  natural width; at 400 px no page scrolls sideways. Screenshots (the landing page; a few pages
  at both widths) go to $LEAKYJAX_DOCS_ARTIFACTS (or the test's tmp dir).
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


@pytest.mark.slow
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


RECIPE = "### Recipe: fix dying ReLUs in a model you already have"


def test_every_guide_has_a_transforms_section_with_code():
    for guide in sorted(DOCS.glob("guides/*.md")):
        text = guide.read_text()
        assert "\n## Transforms\n" in text, guide.name
        section = text.split("\n## Transforms\n", 1)[1].split("\n## ", 1)[0]
        assert "lj.leakify(" in section and "lj.track_dead_units(" in section, guide.name
        assert BLOCK.search(section), guide.name
        # It opens with the recipe: the tracker in a training loop, then training through
        # leakify, in code that runs (test_code_blocks_run).
        assert section.lstrip().startswith(RECIPE + "\n"), guide.name
        recipe = section.split(RECIPE, 1)[1].split("\n### ", 1)[0]
        code = "".join(m["code"] for m in BLOCK.finditer(recipe))
        for piece in ("for _ in range(steps):", "tracker.update(", "has_aux=True", "lj.leakify("):
            assert piece in code, (guide.name, piece)


def test_transforms_is_a_guide():
    """The toc lists the transforms page with the guides, not in the reference."""
    index = (DOCS / "index.md").read_text()
    trees = dict(
        re.findall(r"```\{toctree\}\n(?::[^\n]*\n)*?:caption: (\w+)\n(.*?)```", index, re.S)
    )
    assert "transforms" in trees["Guides"].split()
    assert "transforms" not in trees["Reference"].split()


WIDTH = 88  # characters of code the text column shows at 1400 px (test_pages_fit_the_column)
FENCE = re.compile(r"^```(?:python|bash|text|\{code-block\} \w+)\n(.*?)^```", re.S | re.M)


def test_code_lines_fit_the_column():
    """Code on the site, and what the notebooks print, is at most 88 characters a line."""
    import json

    long = []
    for page in sorted(DOCS.glob("**/*.md")):
        for block in FENCE.findall(page.read_text()):
            long += [(page.name, line) for line in block.splitlines() if len(line) > WIDTH]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text())["cells"]:
            texts = ["".join(cell["source"])] if cell["cell_type"] == "code" else []
            for output in cell.get("outputs", []):
                texts.append("".join(output.get("text", "")))
                texts.append("".join(output.get("data", {}).get("text/plain", "")))
            for text in texts:
                long += [(notebook.name, ln) for ln in text.splitlines() if len(ln) > WIDTH]
    assert not long, "\n".join(f"{name}: {len(line)}: {line}" for name, line in long)


# --- Figures and claims in the README and on the pages, checked by a run -----------------------

README = ROOT / "README.md"


def _table_row(text: str, first_cell: str) -> list[str]:
    (row,) = [r for r in text.splitlines() if r.startswith(f"| {first_cell} |")]
    return [cell.strip() for cell in row.strip("|").split(" | ")]


def test_bad_argument_row_is_what_jax_nn_does():
    """The comparison table's "bad arguments" row (the README's, and the zero-convention
    page's), against jax.nn.leaky_relu and lj.leaky_relu called with those slopes."""
    import jax
    import jax.numpy as jnp

    import leakyjax as lj

    x = jnp.array([[-1.0, 0.0, 2.0]])
    raises = {"a `str` slope": ("0.1", TypeError), "not broadcasting": (jnp.ones(2), ValueError)}
    silent = {  # the output jax.nn gives, where leakyjax raises
        "NaN": (float("nan"), lambda y: bool(jnp.isnan(y[0, 0]))),
        "infinite": (float("inf"), lambda y: float(y[0, 0]) == -float("inf")),
        "boolean": (True, lambda y: bool((y == x).all())),
        "complex": (0.1j, lambda y: jnp.iscomplexobj(y)),
    }
    for page in (README, DOCS / "zero_convention.md"):
        _, jax_nn, leakyjax = _table_row(page.read_text(), "bad arguments")
        assert jax_nn == (
            "a `str` slope or one that does not broadcast raises at once, with JAX's own "
            "message; a NaN, infinite, boolean or complex slope is used as given, silently"
        ), page.name
        assert leakyjax.startswith("`TypeError`/`ValueError` naming the argument"), page.name
    for f in (jax.nn.leaky_relu, jax.jit(jax.nn.leaky_relu)):
        for slope, error in raises.values():
            with pytest.raises(error) as info:
                f(x, slope)
            assert not str(info.value).startswith("leaky_relu:")  # not leakyjax's message
        for slope, gives in silent.values():
            assert gives(f(x, slope))
    for slope, _ in [*raises.values(), *silent.values()]:
        with pytest.raises((TypeError, ValueError), match="`negative_slope`"):
            lj.leaky_relu(x, slope)


def test_residual_bytes_are_the_benchmarks():
    """The README's saved-residual figures: what leakyjax.benchmark measures on its MLP."""
    import jax

    from leakyjax import benchmark

    readme = README.read_text()
    layers, batch, width, saved = 4, 512, 1024, 4 * 512 * 1024
    assert f"{layers} x {batch} x {width} bytes = {saved:,} bytes (2 MiB)" in readme
    assert saved == 2 * 2**20
    params = benchmark.mlp_params(jax.random.key(0), layers, width)
    x = jax.random.normal(jax.random.key(1), (batch, width))
    kept = {
        name: benchmark.residual_bytes(lambda p, a=act: benchmark.mlp_loss(a, p, x), params)
        for name, act in (("leakyjax", benchmark.lj.leaky_relu), ("jax.nn", jax.nn.leaky_relu))
    }
    assert kept["jax.nn"][0] - kept["leakyjax"][0] == kept["jax.nn"][1] == saved
    assert kept["leakyjax"][1] == 0  # no boolean mask at all
    ratio = f"{kept['leakyjax'][0] / kept['jax.nn'][0]:.3f}"
    assert _table_row(readme, "MLP saved residual bytes vs jax.nn")[1] == ratio
    assert f"measures the same on an MLP: {ratio} times" in (DOCS / "memory.md").read_text()


def test_benchmark_section_opens_with_its_tables_verdict():
    """The benchmark section (the benchmark page) opens with a verdict whose figures are its
    tables', and each table's ratio column says whether higher or lower is better."""
    readme = README.read_text()
    section = readme.split("## Benchmark\n", 1)[1].split("\n## ", 1)[0]
    verdict = section.strip().split("\n\n")[0]
    assert verdict.startswith("**In short.**")

    def ratio(row: str) -> float:
        return float(_table_row(section, row)[1])

    # "at the speed of jax.nn.leaky_relu, within noise"
    speed_rows = [
        "forward throughput vs jax.nn (fresh outputs)",
        "forward throughput vs jax.nn (donated buffers)",
        "forward+backward throughput vs jax.nn",
        "MLP step time (4 x 1024, batch 512) vs jax.nn",
    ]
    assert "at the speed of `jax.nn.leaky_relu`, within noise" in verdict
    assert all(0.95 <= ratio(row) <= 1.05 for row in speed_rows)
    eager = re.search(r"(\d+)% slower than", verdict)
    assert eager and int(eager[1]) == round(
        100 * (ratio("eager call latency (64 elements) vs jax.nn") - 1)
    )
    saved = f"{ratio('MLP saved residual bytes vs jax.nn'):.3f} times what"
    assert saved in " ".join(verdict.split())
    headers = [line for line in section.splitlines() if line.startswith("| ") and "ratio" in line]
    assert len(headers) == 2
    assert all(h.split(" | ")[0].endswith(("higher is better", "lower is better")) for h in headers)


def test_dead_units_figures_are_the_notebooks():
    """The README's figures from notebooks/dead_units.ipynb are those of its committed run
    (whose claims test_notebooks.py checks by running it again)."""
    import json

    results = json.loads((ROOT / "notebooks/figures/dead_units_results.json").read_text())

    def spread(accuracies: list[float]) -> str:
        low, high = (f"{a:.3f}".rstrip("0") for a in (min(accuracies), max(accuracies)))
        return low if low == high else f"{low}-{high}"

    def two_places(accuracies: list[float]) -> str:
        return spread([round(a, 2) for a in accuracies])

    baseline = (
        results["baseline"]["relu"]["test_acc"] + results["baseline"]["leakified"]["test_acc"]
    )
    text = " ".join(README.read_text().split())
    assert f"(test accuracy {spread(baseline)} either way)" in text
    relu, leaky = (results["shock"][m]["test_acc"] for m in ("relu", "leakified"))
    assert (
        f"the ReLU model stays at {two_places(relu)} while the leakified one recovers to "
        f"{two_places(leaky)}"
    ) in text


def test_plasticity_figures_are_the_notebooks():
    """The README's figures from notebooks/plasticity.ipynb are those of its committed full
    run (whose claims its last cell checks; test_notebooks.py runs it again, small)."""
    import json

    results = json.loads((ROOT / "notebooks/figures/plasticity_results.json").read_text())
    assert not results["config"]["small"] and results["runs"] == 30
    assert results["config"]["examples"] == 1_000_000 and results["bin_size"] == 20_000
    curves = results["curves"]

    def last(name: str) -> str:  # the mean of the last 5 bins, the last 100,000 examples
        return f"{sum(curves[name][-5:]) / 5:.2f}"

    text = " ".join(README.read_text().split())
    assert (
        f"ReLU backprop's error rises from {curves['relu'][0]:.2f} to {last('relu')} (last "
        f"100,000 examples) and stays above a linear learner's "
        f"{results['linear_baseline']:.2f} from {results['crossings']['relu']:,} examples on; "
        f"`leakify` does not help ({last('leakify')}); `revive` of the dead units every "
        f"{results['config']['revive_every']:,} examples"
    ) in text
    assert (
        results["crossings"]["revive"] is None
        and max(curves["revive"]) < results["linear_baseline"]
    )
    assert (
        f"keeps it below the baseline throughout ({last('revive')} at the end; "
        f"{last('revive N=2,000')} reviving every 2,000)"
    ) in text
    assert f"continual backprop built on `unit_wiring` at {last('cbp')}." in text


def test_demo_run_time_is_the_committed_runs():
    """The demo's run time, as the README and the landing page give it: the committed run's,
    which the notebook's last cell prints (and saves with its results)."""
    import json

    results = json.loads((ROOT / "notebooks/figures/mlp_demo_results.json").read_text())
    took = f"the committed run took {round(results['seconds'])} s on 2 CPU cores"
    for text in (README.read_text(), (DOCS / "index.md").read_text()):
        assert took in " ".join(text.split())


def test_property_case_count_is_the_tests():
    """The numbers of generated cases the README and the zero-convention page give are the
    sums of the examples the property tests ask for: all of them in CI's "full" profile, a
    tenth under the default one (conftest.py prints the count they ran)."""
    import strategies

    declared = re.findall(
        r"^@s\.examples\((\d+)\)", (ROOT / "tests/test_properties.py").read_text(), re.M
    )
    full = f"{sum(map(int, declared)):,}"
    default = f"{sum(int(n) // strategies.FRACTION['default'] for n in declared):,}"
    readme = README.read_text()
    assert f"{default} property-test cases (CI runs all {full})" in readme
    for text in (readme, (DOCS / "zero_convention.md").read_text()):
        assert re.search(rf"run {full}\s+generated\s+cases", text)


def test_bad_input_summary_on_nan_and_infinities():
    """What the bad-input page's summary says NaN and infinities in x give."""
    import jax
    import jax.numpy as jnp

    import leakyjax as lj

    summary = (DOCS / "errors.md").read_text().split("**In short.**", 1)[1].split("\n\n")[0]
    assert "raises at once" in summary and "names the function and the argument" in summary
    assert "`jax.experimental.checkify`" in summary
    assert "NaN gives NaN, with derivative `grad_at_zero`" in summary
    x = jnp.array([jnp.nan, jnp.inf, -jnp.inf])
    for slope, at_minus_inf in ((0.1, -jnp.inf), (-0.5, jnp.inf), (0.0, 0.0)):
        f = lambda x, a=slope: lj.leaky_relu(x, a, grad_at_zero=0.5)  # noqa: E731
        y, d_dx = f(x), jax.vmap(jax.grad(f))(x)
        assert jnp.isnan(y[0]) and y[1] == jnp.inf and y[2] == at_minus_inf
        assert d_dx.tolist() == [0.5, 1.0, float(jnp.float32(slope))]


def test_transforms_cost_figures_are_the_readmes():
    """docs/transforms.md repeats the README benchmark table's transforms rows, verbatim."""
    readme = (ROOT / "README.md").read_text()
    rows = [
        r for r in readme.splitlines() if r.startswith("|") and ("leakify" in r or "tracker" in r)
    ]
    assert len(rows) == 7, rows
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
        *(
            f"notebooks/{n}.html"
            for n in ("tour", "mlp_demo", "data_parallel", "dead_units", "plasticity")
        ),
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
        ("notebooks/plasticity.html", 0, 1),
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


DESKTOP, PHONE = 1400, 400  # window widths, in CSS pixels
# A figure shown narrower than its natural width shrinks its text in proportion: at most this.
MAX_SHRINK = 1.25
# Full-page screenshots at both widths, to $LEAKYJAX_DOCS_ARTIFACTS (or the test's tmp dir), to
# look at: a page of each kind.
SCREENSHOTS = ["index.html", "errors.html", "guides/flax_nnx.html", "notebooks/dead_units.html"]


@pytest.mark.slow
def test_pages_fit_the_column(site, browser, tmp_path):
    """Every page at 1400 px: no code block, output or table cell is cut off at the right (all
    of it shows without scrolling), and each figure is shown at close to its natural size.
    At 400 px, the page itself does not scroll sideways (code blocks and tables may)."""
    artifacts = pathlib.Path(os.environ.get("LEAKYJAX_DOCS_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    problems, checked = [], 0
    for page_path in sorted(site.rglob("*.html")):
        path = page_path.relative_to(site).as_posix()
        for width in (DESKTOP, PHONE):
            shot = None
            if path in SCREENSHOTS:
                shot = artifacts / f"docs-{path.replace('/', '-')[:-5]}-{width}px.png"
            page = browser.open(page_path.as_uri(), screenshot=shot, width=width, full_page=True)
            if width == PHONE:
                if page["overflow"] > 1:
                    problems.append(f"{path} at {width} px scrolls sideways by {page['overflow']}")
                continue
            checked += 1
            problems += [
                f"{path}: <{cut['tag']}> cut off by {cut['by']} px: {cut['text']!r}"
                for cut in page["clipped"]
            ]
            for image in page["images"]:
                if image["displayed"] and image["width"] / image["displayed"] > MAX_SHRINK:
                    problems.append(
                        f"{path}: {image['src'].rsplit('/', 1)[-1]} shown at "
                        f"{image['displayed']:.0f} px of its {image['width']}"
                    )
    assert checked >= 20
    assert not problems, "\n".join(problems)
    print(f"screenshots in {artifacts}")


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


@pytest.mark.slow  # compiles the benchmark's four models (about 30 s)
def test_backward_temp_bytes_are_the_benchmarks():
    """The README's compiled temporary-bytes ratios (Memory and Benchmark) are what
    leakyjax.benchmark.memory() measures, to the digits printed."""
    import jax

    from leakyjax import benchmark

    readme = README.read_text()
    measured = benchmark.memory()
    documented = re.search(r"on CPU with jax ([0-9.]+) \(XLA", readme)
    assert documented, "the README names the jax version of its memory figures"
    if jax.__version__ != documented[1]:
        # Another XLA: the README's verdicts, leaner on dense layers, not on convolutions.
        for kind, verdict in [
            ("MLP", "<"),
            ("transformer block", "<"),
            ("CNN, no BatchNorm", ">"),
            ("CNN + BatchNorm", ">"),
        ]:
            temp = measured[kind]["temp_bytes"]
            ratio = temp["leakyjax"] / temp["jax.nn"]
            assert (ratio < 1) if verdict == "<" else (ratio > 1), (kind, ratio, jax.__version__)
        return
    rows = {
        "MLP": ("MLP (3 x 256, batch 512)", "MLP"),
        "transformer block": ("transformer block (64 tokens, MLP 512)", "transformer block"),
        "CNN, no BatchNorm": ("CNN without BatchNorm (small ResNet)", "CNN without BatchNorm"),
        "CNN + BatchNorm": ("CNN with BatchNorm (training mode)", "CNN + BatchNorm"),
    }
    for kind, (memory_row, benchmark_row) in rows.items():
        temp = measured[kind]["temp_bytes"]
        leaky = f"{temp['leakyjax'] / temp['jax.nn']:.3f}"
        rewritten = f"{temp['leakify'] / temp['relu']:.3f}"
        assert _table_row(readme, memory_row)[1:3] == [leaky, rewritten], kind
        assert _table_row(readme, f"backward temp bytes vs jax.nn: {benchmark_row}")[1] == leaky
