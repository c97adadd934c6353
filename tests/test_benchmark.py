"""The benchmark's command line and tables (its measurements are tested in test_performance.py)."""

import json
import pathlib
import sys

import pytest
from background import Command, tree_first_on_path

from leakyjax import benchmark

ROOT = pathlib.Path(__file__).parent.parent
TINY = ["--size", "1024", "--layers", "2", "--width", "16", "--batch", "8", "--rounds", "2"]
MODEL_KINDS = ("MLP", "CNN + BatchNorm", "CNN, no BatchNorm", "transformer block")


def _help(flags: tuple[str, ...]) -> Command:
    argv = (sys.executable, *flags, "-m", "leakyjax.benchmark", "--help")
    return Command(argv, env=(tree_first_on_path(ROOT),), timeout=120)


@pytest.mark.background(command=_help)
@pytest.mark.parametrize("flags", [(), ("-OO",)], ids=["plain", "docstrings stripped"])
def test_help_runs(flags, background_run):
    assert background_run.returncode == 0, background_run.output
    assert "--rounds" in background_run.output


@pytest.mark.slow  # the tiny run (tiny_benchmark) takes about a minute
def test_transforms_measurement_runs_tiny(tiny_benchmark):
    # jit(grad(leakify(f))) lowers to the hand-written model's program: same compile, same step.
    assert tiny_benchmark["transforms"]["leakify"]["same_program"]
    table = benchmark.format_table(tiny_benchmark)
    for row in (
        "leakify step time vs hand-written",
        "training step with tracker vs without",
        "revive (jitted, all sites) vs a training step",
    ):
        assert row in table
    assert tiny_benchmark["ratios"]["revive (jitted, all sites) vs a training step"] > 0
    eager = tiny_benchmark["transforms"]["eager_call_s"]
    assert set(eager) == set(benchmark.EAGER_CALLS)
    assert all(t > 0 for t in eager.values())
    assert set(tiny_benchmark["transforms"]["tracker_step_s"]) == set(benchmark.TRAINING_STEPS)
    for ratio in (
        "training step with tracker, scores vs no scores",
        "eager call of leakify(jax.jit(f)) vs jax.jit(twin)",
        "eager tracker.update of jax.jit(f) vs jax.jit(tracker.update)",
    ):
        assert tiny_benchmark["ratios"][ratio] > 0 and f"| {ratio} | " in table
    assert "| ms per call (lower is better) |" in table
    assert "| us per call (lower is better) |" in table


@pytest.mark.slow
def test_memory_rows_by_model_kind(tiny_benchmark):
    tiny = tiny_benchmark
    memory = tiny["memory"]
    assert tuple(memory) == MODEL_KINDS
    table = benchmark.format_table(tiny).splitlines()
    for kind in MODEL_KINDS:
        row = memory[kind]
        for field in ("temp_bytes", "residuals", "residual_bytes"):
            assert set(row[field]) == {"leakyjax", "jax.nn", "leakify", "relu"}, (kind, field)
            assert all(isinstance(v, int) and v > 0 for v in row[field].values()), (kind, row)
        for ratio in ("backward temp bytes vs jax.nn", "backward temp bytes, leakify(f, 0.0) vs f"):
            assert tiny["ratios"][f"{kind}: {ratio}"] > 0
            assert any(line.startswith(f"| {kind}: {ratio} | ") for line in table), (kind, ratio)
        assert any(line.startswith(f"| {kind} | ") for line in table), kind
    # Where the activation feeds a matmul, which keeps y anyway, the backward pass is leaner:
    # the MLP, and the transformer block's MLP on (batch, tokens, features).
    for kind in ("MLP", "transformer block"):
        assert tiny["ratios"][f"{kind}: backward temp bytes vs jax.nn"] < 1, kind
        assert tiny["ratios"][f"{kind}: backward temp bytes, leakify(f, 0.0) vs f"] < 1, kind
    # Where it feeds a convolution after BatchNorm it is not: docs/memory.md says so and why.
    # If this fails, XLA changed, and so must the docs.
    assert tiny["ratios"]["CNN + BatchNorm: backward temp bytes vs jax.nn"] > 1
    # No boolean mask is saved by leakyjax; reverse mode saves fewer arrays than with jax.nn.
    assert memory["MLP"]["residuals"]["leakyjax"] < memory["MLP"]["residuals"]["jax.nn"]


@pytest.mark.slow  # the benchmark's memory rows compile four models
def test_json_has_the_memory_rows(capsys):
    benchmark.main([*TINY, "--json"])
    result = json.loads(capsys.readouterr().out)
    assert tuple(result["memory"]) == MODEL_KINDS
    assert result["memory"]["CNN + BatchNorm"]["temp_bytes"]["leakyjax"] > 0
    assert "transformer block: backward temp bytes vs jax.nn" in result["ratios"]
