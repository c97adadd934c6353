"""The typed user file: its calls work, its rejected calls fail, and mypy and pyright agree.

The type-checker tests are marked `typing` and skip where mypy or pyright is not installed
(`pip install ".[dev]"` brings both, at the versions CI uses).
"""

import importlib.util
import pathlib
import shutil
import subprocess
import sys

import jax
import pytest

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


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.typing
def test_mypy_clean():
    pytest.importorskip("mypy", reason="mypy is not installed (pip install '.[dev]')")
    command = [sys.executable, "-m", "mypy", "--python-executable", sys.executable]
    for target, files in ((["-p", "leakyjax"], len(_modules())), ([str(USAGE)], 1)):
        proc = _run([*command, *target])
        expected = f"Success: no issues found in {files} source file"
        assert proc.returncode == 0 and expected in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.typing
def test_pyright_clean():
    pyright = shutil.which("pyright", path=str(pathlib.Path(sys.executable).parent))
    if pyright is None:
        pytest.skip("pyright is not installed (pip install '.[dev]')")
    proc = _run([pyright, "--pythonpath", sys.executable, str(USAGE), _package()])
    assert proc.returncode == 0, proc.stdout + proc.stderr
