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


@pytest.mark.parametrize("init", [lj.he_normal, lj.he_uniform])
def test_empty_shape_gives_empty_array(init):
    # was a ZeroDivisionError from jax.nn.initializers (fan 0)
    for shape in [(0, 1), (3, 0), (0, 0, 4, 5)]:
        w = init(0.2)(jax.random.key(0), shape)
        chex.assert_shape(w, shape)
        chex.assert_type(w, jnp.float32)
    chex.assert_type(
        init(0.2, mode="fan_out")(jax.random.key(0), (0, 2), jnp.bfloat16), jnp.bfloat16
    )


@pytest.mark.parametrize("init", [lj.he_normal, lj.he_uniform])
def test_fan_out_mode(init):
    fan_in, fan_out = 50, 4000
    w = init(0.5, mode="fan_out")(jax.random.key(0), (fan_in, fan_out))
    expected = 2.0 / ((1.0 + 0.25) * fan_out)
    np.testing.assert_allclose(float(jnp.var(w)), expected, rtol=0.01)


@pytest.mark.parametrize("init", [lj.he_normal, lj.he_uniform])
def test_returns_a_jax_initializer(init):
    """The signature of jax.nn.initializers.Initializer, and its dtype=None and out_sharding."""
    import inspect

    ours = inspect.signature(init(0.2)).parameters
    theirs = inspect.signature(jax.nn.initializers.Initializer.__call__).parameters
    assert list(ours) == [p for p in theirs if p != "self"]
    assert ours["out_sharding"].default is None
    key = jax.random.key(0)
    f = init(0.2, dtype=jnp.bfloat16)
    chex.assert_type(f(key, (4, 5), None), jnp.bfloat16)
    chex.assert_type(f(key, (4, 5), dtype=None), jnp.bfloat16)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("d",))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    w = f(key, (4, 5), jnp.float32, out_sharding=sharding)
    np.testing.assert_array_equal(w, f(key, (4, 5), jnp.float32))
    assert w.sharding.is_equivalent_to(sharding, w.ndim)


def _measured_fan(w, slope=0.2):
    """The fan the initializer used, from the variance it drew: 2 / ((1 + a^2) var)."""
    return 2.0 / ((1.0 + slope**2) * float(jnp.var(w)))


def _assert_fan(w, fan):
    np.testing.assert_allclose(_measured_fan(w), fan, rtol=0.03)


class FrameworkTableTest(chex.TestCase):
    """Each row of the README's table, with the real framework: the fan the weights got."""

    def test_flax_nnx_and_linen_kernel_in_out(self):
        pytest.importorskip("flax")
        from flax import linen, nnx

        layer = nnx.Linear(512, 64, kernel_init=lj.he_normal(0.2), rngs=nnx.Rngs(0))
        chex.assert_shape(layer.kernel[...], (512, 64))
        _assert_fan(layer.kernel[...], 512)
        conv = nnx.Conv(64, 128, (3, 3), kernel_init=lj.he_normal(0.2), rngs=nnx.Rngs(0))
        chex.assert_shape(conv.kernel[...], (3, 3, 64, 128))  # HWIO
        _assert_fan(conv.kernel[...], 3 * 3 * 64)
        dense = linen.Dense(64, kernel_init=lj.he_uniform(0.2))
        params = dense.init(jax.random.key(0), jnp.ones((1, 512)))
        _assert_fan(params["params"]["kernel"], 512)
        # prelu takes an nnx.Param as its slope, as jnp functions do
        slope = nnx.Param(jnp.full((64,), 0.25))
        np.testing.assert_array_equal(lj.prelu(-jnp.ones((2, 64)), slope), -0.25)

    def test_equinox_linear_out_in_and_conv_oihw(self):
        eqx = pytest.importorskip("equinox")
        key = jax.random.key(0)
        linear = eqx.nn.Linear(512, 64, key=key)
        chex.assert_shape(linear.weight, (64, 512))  # (out, in)
        init = lj.he_normal(0.2, in_axis=-1, out_axis=-2)
        linear = eqx.tree_at(lambda m: m.weight, linear, init(key, linear.weight.shape))
        _assert_fan(linear.weight, 512)
        # the default axes would read 64 as the fan: 8x the variance
        np.testing.assert_allclose(_measured_fan(lj.he_normal(0.2)(key, (64, 512))), 64, rtol=0.03)
        conv = eqx.nn.Conv2d(64, 128, 3, key=key)
        chex.assert_shape(conv.weight, (128, 64, 3, 3))  # OIHW
        init = lj.he_normal(0.2, in_axis=1, out_axis=0)
        conv = eqx.tree_at(lambda m: m.weight, conv, init(key, conv.weight.shape))
        _assert_fan(conv.weight, 64 * 3 * 3)

    def test_haiku_init_shape_dtype(self):
        hk = pytest.importorskip("haiku")

        def forward(x):
            w_init = lambda shape, dtype: lj.he_normal(0.2)(hk.next_rng_key(), shape, dtype)  # noqa: E731
            x = hk.Linear(64, w_init=w_init)(x)
            return hk.Conv2D(32, 3, w_init=w_init)(x.reshape(1, 8, 8, 1))

        params = hk.transform(forward).init(jax.random.key(0), jnp.ones((1, 512)))
        _assert_fan(params["linear"]["w"], 512)
        chex.assert_shape(params["conv2_d"]["w"], (3, 3, 1, 32))  # HWIO
        w = lj.he_normal(0.2)(jax.random.key(1), (3, 3, 256, 32))  # the same rule, more draws
        _assert_fan(w, 3 * 3 * 256)

    def test_plain_jax(self):
        w = lj.he_normal(0.2)(jax.random.key(0), (512, 64))
        _assert_fan(w, 512)
