"""The ``public-api`` directive: the API reference, generated from ``leakyjax.__all__``.

Every public name gets its autodoc entry, grouped by the private module that defines it (one
section per module, titled by :data:`TITLES` or else the first line of the module's docstring),
so a name added to ``__all__`` appears on the API page without editing it.
"""

from __future__ import annotations

import importlib
import inspect

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

# Section order and titles for the modules known today; any other module follows, titled by its
# docstring.
TITLES = {
    "leakyjax._activation": "Leaky ReLU",
    "leakyjax._family": "PReLU and RReLU",
    "leakyjax._initializers": "Initializers",
    "leakyjax._diagnostics": "Dead units",
    "leakyjax._bijection": "The bijection (normalizing flows)",
}


def public_api(package: str) -> dict[str, list[str]]:
    """``{defining module: [public names]}`` in the order of :data:`TITLES`, then of ``__all__``."""
    module = importlib.import_module(package)
    groups: dict[str, list[str]] = {name: [] for name in TITLES}
    for name in module.__all__:
        obj = getattr(module, name)
        groups.setdefault(getattr(obj, "__module__", package), []).append(name)
    return {mod: names for mod, names in groups.items() if names}


def _title(module_name: str) -> str:
    if module_name in TITLES:
        return TITLES[module_name]
    doc = inspect.getdoc(importlib.import_module(module_name)) or module_name
    return doc.splitlines()[0].rstrip(".")


class PublicApi(SphinxDirective):
    required_arguments = 1  # the package

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        module = importlib.import_module(package)
        lines = []
        for module_name, names in public_api(package).items():
            title = _title(module_name)
            lines += [title, "-" * len(title), ""]
            for name in names:
                obj = getattr(module, name)
                if inspect.isclass(obj):
                    lines += [f".. autoclass:: {package}.{name}", "   :members:", ""]
                elif callable(obj):
                    lines += [f".. autofunction:: {package}.{name}", ""]
                else:
                    lines += [f".. autodata:: {package}.{name}", ""]
        self.env.note_dependency(module.__file__)
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source=package), container)
        return container.children


def setup(app):
    app.add_directive("public-api", PublicApi)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
