"""The benchmark's command line (its measurements are tested in test_performance.py)."""

import pathlib
import sys

import pytest
from background import Command, tree_first_on_path

ROOT = pathlib.Path(__file__).parent.parent


def _help(flags: tuple[str, ...]) -> Command:
    argv = (sys.executable, *flags, "-m", "leakyjax.benchmark", "--help")
    return Command(argv, env=(tree_first_on_path(ROOT),), timeout=120)


@pytest.mark.background(command=_help)
@pytest.mark.parametrize("flags", [(), ("-OO",)], ids=["plain", "docstrings stripped"])
def test_help_runs(flags, background_run):
    assert background_run.returncode == 0, background_run.output
    assert "--rounds" in background_run.output


def test_transforms_measurement_runs_tiny(tiny_benchmark):
    from leakyjax import benchmark

    # jit(grad(leakify(f))) lowers to the hand-written model's program: same compile, same step.
    assert tiny_benchmark["transforms"]["leakify"]["same_program"]
    table = benchmark.format_table(tiny_benchmark)
    for row in ("leakify step time vs hand-written", "training step with tracker vs without"):
        assert row in table
