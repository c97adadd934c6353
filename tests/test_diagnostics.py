"""dead_units and dead_fraction."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


def test_sown_tuples_count_every_call_as_examples():
    """Flax's sow stores a tuple, one array per call: dead means dead in every call (the
    issue's case: 0.3125, where jnp.asarray of the tuple with axis=0 gave 0.963)."""
    flax = pytest.importorskip("flax")
    from flax import linen, nnx

    calls = [jax.random.normal(jax.random.key(i), (4, 16)) - 1.5 for i in range(3)]
    expected = jnp.all(jnp.concatenate(calls) <= 0, axis=0)

    class Sower(linen.Module):
        @linen.compact
        def __call__(self, z):
            self.sow("intermediates", "z", z)
            return z

    _, state = Sower().apply({}, calls[0], mutable="intermediates")
    for z in calls[1:]:
        _, state = Sower().apply({**state}, z, mutable="intermediates")
    sown = state["intermediates"]["z"]
    assert isinstance(sown, tuple) and len(sown) == 3
    np.testing.assert_array_equal(lj.dead_units(sown), expected)
    assert lj.dead_fraction(sown) == jnp.mean(expected)
    assert lj.dead_fraction(sown) != lj.dead_fraction(jnp.asarray(sown))  # the old hint's trap

    class NnxSower(nnx.Module):
        def __call__(self, z):
            self.sow(nnx.Intermediate, "z", z)
            return z

    model = NnxSower()
    for z in calls:
        model(z)
    sown = nnx.pop(model, nnx.Intermediate)["z"]
    sown = sown.get_value() if hasattr(sown, "get_value") else sown.value
    assert isinstance(sown, tuple) and len(sown) == 3, type(sown)
    np.testing.assert_array_equal(lj.dead_units(sown), expected)
    del flax


def test_calls_must_agree_on_units():
    with pytest.raises(ValueError, match="dead_units: the arrays in `preactivations`"):
        lj.dead_units((jnp.ones((2, 3)), jnp.ones((2, 4))))
    with pytest.raises(TypeError, match="one per call, as Flax's sow stores them"):
        lj.dead_units((jnp.ones((2, 3)), "z"))
