"""The benchmark's command line (its measurements are tested in test_performance.py)."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent


@pytest.mark.parametrize("flags", [[], ["-OO"]], ids=["plain", "docstrings stripped"])
def test_help_runs(flags):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, *flags, "-m", "leakyjax.benchmark", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--rounds" in result.stdout


def test_transforms_measurement_runs_tiny(tiny_benchmark):
    from leakyjax import benchmark

    # jit(grad(leakify(f))) lowers to the hand-written model's program: same compile, same step.
    assert tiny_benchmark["transforms"]["leakify"]["same_program"]
    table = benchmark.format_table(tiny_benchmark)
    for row in ("leakify step time vs hand-written", "training step with tracker vs without"):
        assert row in table
