"""The ``public-api`` directive: the API reference, generated from ``leakyjax.__all__``.

Every public name gets its autodoc entry, grouped by the private module that defines it (one
section per title: :data:`TITLES`, or else the first line of the module's docstring), functions
before classes, so a name added to ``__all__`` appears on the API page without editing it. A
``NamedTuple``'s fields are left out of its members (autodoc would document each as "Alias for
field number N", and again where the class's docstring lists them under Attributes).
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
    "leakyjax._transforms": "Transforms: leakify and relu_sites",
    "leakyjax._sites": "Transforms: leakify and relu_sites",  # Site, which relu_sites returns
    "leakyjax._tracking": "Dead-unit tracking: track_dead_units",
    "leakyjax._wiring": "Reviving units: unit_wiring and revive",
    "leakyjax._bijection": "The bijection (normalizing flows)",
}


def public_api(package: str) -> dict[str, list[str]]:
    """``{section title: [public names]}`` in the order of :data:`TITLES`, then of ``__all__``;
    in a section, functions first, then classes (each in the order of ``__all__``)."""
    module = importlib.import_module(package)
    groups: dict[str, list[str]] = {title: [] for title in TITLES.values()}
    for name in module.__all__:
        obj = getattr(module, name)
        groups.setdefault(_title(getattr(obj, "__module__", package)), []).append(name)
    return {
        title: sorted(names, key=lambda n: inspect.isclass(getattr(module, n)))
        for title, names in groups.items()
        if names
    }


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
        for title, names in public_api(package).items():
            lines += [title, "-" * len(title), ""]
            for name in names:
                obj = getattr(module, name)
                if inspect.isclass(obj):
                    lines += [f".. autoclass:: {package}.{name}", "   :members:"]
                    if issubclass(obj, tuple) and hasattr(obj, "_fields"):  # a NamedTuple
                        lines += [f"   :exclude-members: {', '.join(obj._fields)}"]
                    lines += [""]
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
