"""he_normal, he_uniform and gain."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import leakyjax as lj


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.0])
def test_gain_formula(slope):
    assert lj.gain(slope) == math.sqrt(2.0 / (1.0 + slope * slope))


@pytest.mark.parametrize("init", [lj.he_normal, lj.he_uniform])
@pytest.mark.parametrize("slope", [0.0, 0.2, 0.5])
def test_variance_is_two_over_one_plus_slope_squared_fan_in(init, slope):
    fan_in, fan_out = 400, 500
    w = init(slope)(jax.random.key(0), (fan_in, fan_out))
    chex.assert_shape(w, (fan_in, fan_out))
    chex.assert_type(w, jnp.float32)
    expected = 2.0 / ((1.0 + slope**2) * fan_in)
    # 200,000 draws: the sample variance is within 1% of the truth with overwhelming odds.
    np.testing.assert_allclose(float(jnp.var(w)), expected, rtol=0.01)


def test_zero_slope_equals_jax_he():
    key = jax.random.key(1)
    np.testing.assert_array_equal(
        lj.he_normal(0.0)(key, (8, 4)), jax.nn.initializers.he_normal()(key, (8, 4))
    )
    np.testing.assert_array_equal(
        lj.he_uniform(0.0)(key, (8, 4)), jax.nn.initializers.he_uniform()(key, (8, 4))
    )


def test_axes_and_dtype():
    w = lj.he_normal(0.1, in_axis=0, out_axis=1, dtype=jnp.bfloat16)(
        jax.random.key(0), (3, 3, 64, 32)
    )
    chex.assert_type(w, jnp.bfloat16)
    w = lj.he_uniform(0.1)(jax.random.key(0), (4, 5), jnp.float16)
    chex.assert_type(w, jnp.float16)


def test_deep_net_keeps_activation_scale():
    # Through 30 layers of width 256 with slope 0.5, the slope-aware initializer keeps
    # the second moment of the activations near its start; jax's he_normal (made for
    # ReLU) makes it grow by (2 / (1 + a^2)) ** 30 / 2 ** 30 ... i.e. shrink or grow.
    slope, width, depth = 0.5, 256, 30
    keys = jax.random.split(jax.random.key(0), depth + 1)
    x = jax.random.normal(keys[0], (512, width))

    def second_moment(init):
        h = x
        for k in keys[1:]:
            h = lj.leaky_relu(h @ init(k, (width, width)), slope)
        return float(jnp.mean(h**2))

    ours = second_moment(lj.he_normal(slope))
    theirs = second_moment(jax.nn.initializers.he_normal())
    start = float(jnp.mean(x**2))
    assert 0.5 < ours / start < 2.0
    assert theirs / start > 100.0  # (2 / (1 + 0.25)) ** 30 / 2 ** 0 blows up
