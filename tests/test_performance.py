"""The memory and fusion properties (not timings: those are the benchmark's job)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import leakyjax as lj
from leakyjax import benchmark

LAYERS, BATCH, WIDTH = 3, 32, 64


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_mlp_keeps_no_mask(dtype):
    params = benchmark.mlp_params(jax.random.key(0), LAYERS, WIDTH, dtype)
    x = jax.random.normal(jax.random.key(1), (BATCH, WIDTH), dtype)

    def loss(act):
        return lambda p: benchmark.mlp_loss(act, p, x)

    ours, ours_bool = benchmark.residual_bytes(loss(lj.leaky_relu), params)
    theirs, theirs_bool = benchmark.residual_bytes(loss(jax.nn.leaky_relu), params)
    assert ours_bool == 0
    assert theirs_bool == LAYERS * BATCH * WIDTH
    assert theirs - ours >= LAYERS * BATCH * WIDTH

    # Same gradients, bit for bit (compiled: two eager programs may differ in the last bit),
    # as the mask rule (an array slope uses it) ...
    def grads(act):
        return jax.jit(jax.grad(loss(act)))(params)

    slope = jnp.asarray(0.01, dtype)
    _, masked_bool = benchmark.residual_bytes(loss(lambda z: lj.leaky_relu(z, slope)), params)
    assert masked_bool == LAYERS * BATCH * WIDTH
    ours = grads(lj.leaky_relu)
    jax.tree.map(np.testing.assert_array_equal, ours, grads(lambda z: lj.leaky_relu(z, slope)))
    # ... and as jax.nn.leaky_relu, which differs only at exact zeros (none here).
    jax.tree.map(np.testing.assert_array_equal, ours, grads(jax.nn.leaky_relu))


def test_other_conventions_fall_back_to_the_mask():
    x = jnp.ones((8, 8))
    for f in (
        lambda x: lj.leaky_relu(x, 0.1, grad_at_zero=1.0),
        lambda x: lj.leaky_relu(x, -0.5),
        lambda x: lj.leaky_relu(x, jnp.float32(0.1)),
    ):
        _, booleans = benchmark.residual_bytes(lambda x, f=f: jnp.sum(f(x) ** 2), x)
        assert booleans > 0


def _fusions(hlo: str) -> dict[str, str]:
    """Fused computations' bodies by name, from compiled HLO text."""
    bodies, name = {}, None
    for line in hlo.splitlines():
        if line.startswith("%fused") or line.startswith("fused"):
            name = line.split()[0].lstrip("%")
            bodies[name] = ""
        elif line.startswith("}"):
            name = None
        elif name:
            bodies[name] += line + "\n"
    return bodies


def test_activation_fuses_with_bias_add():
    x, w, b = jnp.ones((64, 128)), jnp.ones((128, 256)), jnp.ones(256)
    hlo = jax.jit(lambda x, w, b: lj.leaky_relu(x @ w + b)).lower(x, w, b).compile().as_text()
    bodies = [body for body in _fusions(hlo).values() if " select(" in body]
    assert len(bodies) == 1
    assert " add(" in bodies[0] and " compare(" in bodies[0]
    assert "custom-call" not in hlo


def test_backward_is_one_select_per_element():
    x = jnp.ones((64, 128))
    for f in (lj.leaky_relu, jax.nn.leaky_relu):
        hlo = jax.jit(jax.grad(lambda x, f=f: jnp.sum(f(x) * x))).lower(x).compile().as_text()
        selects = hlo.count(" select(")
        if f is lj.leaky_relu:
            # one in the forward (recomputed y), one for the derivative
            assert selects == 2, hlo
        else:
            assert selects > 2


@pytest.mark.slow  # the tiny run (tiny_benchmark) takes about a minute
def test_benchmark_runs_tiny(tiny_benchmark):
    table = benchmark.format_table(tiny_benchmark)
    assert "forward vs jax.nn" in table
    mlp = tiny_benchmark["mlp"]
    assert mlp["leakyjax"]["residual_bytes"] < mlp["jax.nn"]["residual_bytes"]
