"""prelu and rrelu."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

import leakyjax as lj


class PreluTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(jnp.float16, jnp.bfloat16, jnp.float32)
    def test_per_channel_equals_leaky_relu_with_broadcast_slope(self, dtype):
        x = jax.random.normal(jax.random.key(0), (2, 3, 4, 5)).astype(dtype)
        x = x.at[0, 0, 0].set(0.0)
        slope = jnp.array([0.1, 0.2, 0.3], jnp.float32)
        y = self.variant(lambda x, s: lj.prelu(x, s, axis=1))(x, slope)
        chex.assert_type(y, dtype)
        expected = lj.leaky_relu(x, slope.reshape(1, 3, 1, 1))
        np.testing.assert_array_equal(y, expected)
        gx = self.variant(jax.grad(lambda x: lj.prelu(x, slope, axis=1).sum()))(
            x.astype(jnp.float32)
        )
        s = np.asarray(slope.astype(jnp.float32)).reshape(1, 3, 1, 1)
        np.testing.assert_array_equal(gx, np.where(x > 0, 1, s * np.ones_like(x, np.float32)))

    @chex.variants(with_jit=True, without_jit=True)
    def test_slope_gradient_has_slope_shape(self):
        x = jnp.array([[-1.0, 2.0, -3.0], [-4.0, 0.0, 6.0]])
        g = self.variant(jax.grad(lambda s: lj.prelu(x, s).sum()))(jnp.array([0.1, 0.2, 0.3]))
        chex.assert_shape(g, (3,))
        np.testing.assert_array_equal(g, [-5.0, 0.0, -3.0])
        g0 = self.variant(jax.grad(lambda s: lj.prelu(x, s).sum()))(jnp.float32(0.2))
        assert g0 == -8.0

    def test_scalar_python_slope(self):
        x = jnp.array([-2.0, 1.0])
        np.testing.assert_array_equal(lj.prelu(x, 0.25), [-0.5, 1.0])

    def test_negative_slopes_allowed(self):
        np.testing.assert_array_equal(lj.prelu(jnp.array([-2.0, 1.0]), jnp.array(-0.5)), [1.0, 1.0])


class RreluTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_slopes_drawn_in_range_and_reproducible(self):
        x = -jnp.ones((1000,))
        key = jax.random.key(3)
        y = self.variant(lj.rrelu)(key, x)
        slopes = -y
        assert jnp.all((slopes >= np.float32(1 / 8)) & (slopes <= np.float32(1 / 3)))
        assert float(jnp.std(slopes)) > 0.05  # they really vary
        np.testing.assert_array_equal(self.variant(lj.rrelu)(key, x), y)
        assert not jnp.array_equal(lj.rrelu(jax.random.key(4), x), y)

    @chex.variants(with_jit=True, without_jit=True)
    def test_backward_uses_forward_slopes(self):
        x = -(2.0 ** (jnp.arange(100) % 8 - 4))  # powers of two: y / x is exact
        key = jax.random.key(0)
        y = lj.rrelu(key, x)
        g = self.variant(jax.grad(lambda x: lj.rrelu(key, x).sum()))(x)
        np.testing.assert_array_equal(g, y / x)
        np.testing.assert_array_equal(jax.grad(lambda x: lj.rrelu(key, x).sum())(jnp.ones(3)), 1.0)

    def test_legacy_key(self):
        x = -jnp.ones(10)
        np.testing.assert_array_equal(
            lj.rrelu(jax.random.PRNGKey(1), x), lj.rrelu(jax.random.key(1), x)
        )

    @chex.variants(with_jit=True, without_jit=True)
    def test_deterministic_is_leaky_relu_at_mean_slope(self):
        x = jnp.array([-2.0, 0.0, 3.0])
        y = self.variant(lambda x: lj.rrelu(None, x, 0.1, 0.3, deterministic=True))(x)
        np.testing.assert_array_equal(y, lj.leaky_relu(x, 0.2))


def test_axis_is_validated_with_a_scalar_slope():
    x = jnp.ones((2, 3))
    for slope in (0.1, jnp.float32(0.1)):
        with pytest.raises(ValueError, match="prelu: `axis`=2 is out of range"):
            lj.prelu(x, slope, axis=2)
        with pytest.raises(TypeError, match="prelu: `axis` must be an int"):
            lj.prelu(x, slope, axis=1.0)
        with pytest.raises(ValueError, match="prelu: `axis`=0 is out of range"):
            lj.prelu(1.0, slope, axis=0)
        np.testing.assert_array_equal(lj.prelu(x, slope, axis=-2), x)
    np.testing.assert_array_equal(lj.prelu(-2.0, 0.5), -1.0)  # no axis: a 0-d x is fine
