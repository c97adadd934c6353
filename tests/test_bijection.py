"""inverse_leaky_relu and leaky_relu_log_abs_det_jacobian."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import leakyjax as lj


class BijectionTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_round_trip(self):
        x = jax.random.normal(jax.random.key(0), (10000,)) * 10
        for slope in (0.25, 0.5, 2.0):  # powers of two: a * x / a is exact
            y = lj.leaky_relu(x, slope)
            np.testing.assert_array_equal(self.variant(lj.inverse_leaky_relu)(y, slope), x)
        y = lj.leaky_relu(x, 0.01)
        np.testing.assert_allclose(lj.inverse_leaky_relu(y, 0.01), x, rtol=2e-7)

    def test_derivative_is_reciprocal(self):
        y = jnp.array([-1.0, 0.0, 1.0])
        d = jax.vmap(jax.grad(lambda y: lj.inverse_leaky_relu(y, 0.25)))(y)
        np.testing.assert_array_equal(d, [4.0, 4.0, 1.0])

    @chex.variants(with_jit=True, without_jit=True)
    def test_log_abs_det_jacobian(self):
        x = jnp.array([-2.0, -0.0, 0.0, 3.0])
        ld = self.variant(lj.leaky_relu_log_abs_det_jacobian)(x, 0.5)
        np.testing.assert_array_equal(ld, [np.log(np.float32(0.5))] * 3 + [0.0])
        # it is log|f'(x)| with leaky_relu's derivative
        d = jax.vmap(jax.grad(lambda x: lj.leaky_relu(x, 0.5)))(x)
        np.testing.assert_array_equal(ld, jnp.log(jnp.abs(d)))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("slope", [3.0, 0.01, 60000.0])
def test_inverse_is_an_exactly_rounded_division(dtype, slope):
    # XLA rewrites y / broadcast(a) as y * (1 / a) rounded to the dtype; the inverse must not.
    y = -jax.random.uniform(jax.random.key(0), (4096,), dtype, 0, 100)
    expected = (np.asarray(y, np.float64) / float(jnp.asarray(slope, dtype))).astype(dtype)
    for f in (lj.inverse_leaky_relu, jax.jit(lj.inverse_leaky_relu, static_argnums=1)):
        np.testing.assert_array_equal(f(y, slope), expected)
    np.testing.assert_array_equal(lj.inverse_leaky_relu(y, jnp.asarray(slope, dtype)), expected)
