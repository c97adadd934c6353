"""The docstring examples run against the leakyjax that the tests import.

The examples are collected from the imported package (not from files by path), so a run
against an installed wheel checks the installed modules, and the source tree cannot shadow
them.
"""

import doctest
import importlib
import pkgutil

import pytest

import leakyjax


def _examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder()
    names = [leakyjax.__name__] + [
        info.name for info in pkgutil.walk_packages(leakyjax.__path__, leakyjax.__name__ + ".")
    ]
    tests = []
    for name in names:
        module = importlib.import_module(name)
        tests += [t for t in finder.find(module, name) if t.examples]
    return sorted(tests, key=lambda t: t.name)


EXAMPLES = _examples()


def test_every_public_function_has_an_example():
    documented = {t.name.rsplit(".", 1)[-1] for t in EXAMPLES}
    assert set(leakyjax.__all__) <= documented, set(leakyjax.__all__) - documented


@pytest.mark.parametrize("example", EXAMPLES, ids=[t.name for t in EXAMPLES])
def test_docstring_example(example):
    output = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(example, out=output.append)
    assert result.failed == 0, "".join(output)
