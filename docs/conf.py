"""Sphinx configuration for the leakyjax documentation.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (no warnings allowed).
The site works offline: MathJax is served from the built site (``sphinx-mathjax-offline``), the
theme (furo) loads nothing from a CDN, and the notebooks are rendered from their committed outputs.
"""

import pathlib
import sys

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the leakyjax of this checkout, installed or not
sys.path.insert(0, str(DOCS / "_ext"))

import leakyjax  # noqa: E402

project = "leakyjax"
author = "the leakyjax authors"
copyright = "the leakyjax authors"
release = version = leakyjax.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # copies MathJax 3 into _static/ and points mathjax_path at it
    "myst_nb",
    "public_api",  # docs/_ext/public_api.py: the API page, generated from leakyjax.__all__
    "changelog",  # docs/_ext/changelog.py: CHANGELOG.md when the checkout has one
]

# `docs/notebooks` is a symlink to `../notebooks`: the notebooks are rendered from their
# committed outputs, never executed by the build.
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "notebooks/figures"]
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no widget JavaScript from a CDN
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# docs/errors.md (owned by the library code, included as it is) goes from "#" to "###".
suppress_warnings = ["myst.header"]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_type_aliases = {"ArrayLike": "jax.typing.ArrayLike", "DTypeLike": "jax.typing.DTypeLike"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"leakyjax {release}"
html_static_path = ["_static"]
html_css_files = ["leakyjax.css"]  # docs/_static/leakyjax.css: code in tables wraps
html_last_updated_fmt = None
pygments_style = "sphinx"
# The search page fetches each result's page for a summary, which browsers refuse on file://:
# without summaries, search works on a site opened from disk as on a served one.
html_show_search_summary = False
