"""The typed user file: its calls work, its rejected calls fail, and mypy and pyright agree.

The type-checker tests are marked `typing` and skip where mypy or pyright is not installed
(`pip install ".[dev]"` brings both, at the versions CI uses).
"""

import importlib.util
import pathlib
import shutil
import sys

import jax
import pytest
from background import Command

import leakyjax

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent
USAGE = HERE / "typing" / "usage.py"


def _load_usage():
    spec = importlib.util.spec_from_file_location("leakyjax_typing_usage", USAGE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_documented_calls_work():
    for result in _load_usage().correct_use():
        assert isinstance(result, (jax.Array, float))


@pytest.mark.parametrize("index", range(len(_load_usage().rejected_calls())))
def test_rejected_call_fails(index):
    with pytest.raises(TypeError):
        _load_usage().rejected_calls()[index]()


def _package() -> str:
    # The leakyjax that the tests import: the source tree, or the installed wheel (whose
    # py.typed is then what makes it checkable for its users).
    return str(pathlib.Path(leakyjax.__file__).parent)


def _modules() -> list[pathlib.Path]:
    return sorted(pathlib.Path(_package()).glob("*.py"))


def _mypy(target: str) -> Command | None:
    if importlib.util.find_spec("mypy") is None:
        return None
    command = (sys.executable, "-m", "mypy", "--python-executable", sys.executable)
    what = ("-p", "leakyjax") if target == "leakyjax" else (str(USAGE),)
    return Command((*command, *what), cwd=str(ROOT))


def _pyright() -> Command | None:
    pyright = shutil.which("pyright", path=str(pathlib.Path(sys.executable).parent))
    if pyright is None:
        return None
    return Command((pyright, "--pythonpath", sys.executable, str(USAGE), _package()), cwd=str(ROOT))


@pytest.mark.typing
@pytest.mark.background(command=_mypy)
@pytest.mark.parametrize("target", ["leakyjax", "usage"])
def test_mypy_clean(target, request):
    if _mypy(target) is None:
        pytest.skip("mypy is not installed (pip install '.[dev]')")
    run = request.getfixturevalue("background_run")
    files = len(_modules()) if target == "leakyjax" else 1
    expected = f"Success: no issues found in {files} source file"
    assert run.returncode == 0 and expected in run.output, run.output


@pytest.mark.typing
@pytest.mark.background(command=_pyright)
def test_pyright_clean(request):
    if _pyright() is None:
        pytest.skip("pyright is not installed (pip install '.[dev]')")
    run = request.getfixturevalue("background_run")
    assert run.returncode == 0, run.output
