"""dead_units and dead_fraction."""

import chex
import jax.numpy as jnp
import numpy as np

import leakyjax as lj


class DeadUnitsTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_dead_where_never_positive(self):
        z = jnp.array([[-1.0, 2.0, 0.0, np.nan], [-3.0, -1.0, -0.0, -1.0]])
        np.testing.assert_array_equal(self.variant(lj.dead_units)(z), [True, False, True, False])
        assert self.variant(lj.dead_fraction)(z) == 0.5

    def test_axes(self):
        z = (-jnp.ones((2, 3, 3, 4))).at[1, 2, 2, 1].set(1.0)
        np.testing.assert_array_equal(lj.dead_units(z, axis=(0, 1, 2)), [True, False, True, True])
        assert lj.dead_fraction(z, axis=(0, 1, 2)) == 0.75
        chex.assert_shape(lj.dead_units(z, axis=-1), (2, 3, 3))
