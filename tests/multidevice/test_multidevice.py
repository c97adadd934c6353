"""leakyjax under sharding, shard_map, jax.export and pmap, on 8 simulated CPU devices."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import leakyjax as lj

COLLECTIVES = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")


@pytest.fixture(scope="module")
def mesh():
    assert len(jax.devices()) == 8, "expected 8 simulated devices"
    return jax.make_mesh((4, 2), ("data", "model"))


def _x(shape=(16, 8)):
    x = jax.random.normal(jax.random.key(0), shape)
    return x.at[0, :3].set(0.0)


def _assert_no_collective(fn, *args):
    hlo = jax.jit(fn).lower(*args).compile().as_text()
    for op in COLLECTIVES:
        assert op not in hlo, op


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: lj.leaky_relu(x),
        lambda x: lj.leaky_relu(x, 0.2, grad_at_zero=1.0),
        lambda x: lj.rrelu(jax.random.key(1), x),
    ],
)
def test_elementwise_keeps_sharding(mesh, fn):
    sharding = NamedSharding(mesh, P("data", "model"))
    x = jax.device_put(_x(), sharding)
    y = jax.jit(fn)(x)
    assert y.sharding.is_equivalent_to(sharding, x.ndim)
    g = jax.jit(jax.grad(lambda x: fn(x).sum()))(x)
    assert g.sharding.is_equivalent_to(sharding, x.ndim)
    _assert_no_collective(fn, x)
    np.testing.assert_array_equal(y, fn(_x()))


@pytest.mark.parametrize("slope_spec", [P(), P("model")])
def test_prelu_with_replicated_or_sharded_slopes(mesh, slope_spec):
    x = jax.device_put(_x(), NamedSharding(mesh, P("data", "model")))
    slope = jax.device_put(jnp.linspace(0.1, 0.8, 8), NamedSharding(mesh, slope_spec))
    y = jax.jit(lj.prelu)(x, slope)
    assert y.sharding.is_equivalent_to(x.sharding, 2)
    _assert_no_collective(lj.prelu, x, slope)
    np.testing.assert_array_equal(y, lj.prelu(_x(), jnp.linspace(0.1, 0.8, 8)))
    gx = jax.jit(jax.grad(lambda x, s: lj.prelu(x, s).sum()))(x, slope)
    assert gx.sharding.is_equivalent_to(x.sharding, 2)


def test_shard_map_equals_unsharded_bit_for_bit(mesh):
    x = _x()

    def local(x):
        y = lj.leaky_relu(x, 0.1)
        g = jax.grad(lambda x: jnp.sum(lj.leaky_relu(x, 0.1) ** 2))(x)
        return y, g

    spec = P("data", "model")
    sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=spec, out_specs=spec))(
        jax.device_put(x, NamedSharding(mesh, spec))
    )
    unsharded = local(x)
    for a, b in zip(sharded, unsharded, strict=True):
        np.testing.assert_array_equal(a, b)


def test_rrelu_slopes_do_not_depend_on_device_count(mesh):
    x = -jnp.ones((16, 8))
    key = jax.random.key(7)
    one = jax.jit(lj.rrelu)(key, x)
    eight = jax.jit(lj.rrelu)(key, jax.device_put(x, NamedSharding(mesh, P("data", "model"))))
    np.testing.assert_array_equal(one, eight)


@pytest.mark.parametrize("slope_as_argument", [False, True])
def test_export_round_trip_with_gradients(slope_as_argument):
    x = jnp.array([-2.0, -0.0, 0.0, 0.5, 3.0])
    a = jnp.float32(0.2)
    if slope_as_argument:
        fn, args = lj.leaky_relu, (x, a)
    else:
        fn, args = (lambda x: lj.leaky_relu(x, 0.2)), (x,)
    exported = jax.export.export(jax.jit(fn))(*args)
    restored = jax.export.deserialize(exported.serialize(vjp_order=1))
    np.testing.assert_array_equal(restored.call(*args), fn(*args))
    argnums = tuple(range(len(args)))
    direct = jax.grad(lambda *a: fn(*a).sum(), argnums=argnums)(*args)
    through = jax.grad(lambda *a: restored.call(*a).sum(), argnums=argnums)(*args)
    for d, t in zip(direct, through, strict=True):
        np.testing.assert_array_equal(d, t)
    np.testing.assert_array_equal(through[0], np.float32([0.2, 0.2, 0.2, 1.0, 1.0]))


def test_ahead_of_time_compile():
    x = jnp.array([-1.0, 0.0, 2.0])
    compiled = jax.jit(functools.partial(lj.leaky_relu, negative_slope=0.3)).lower(x).compile()
    np.testing.assert_array_equal(compiled(x), lj.leaky_relu(x, 0.3))


def test_pmap():
    x = jnp.arange(-8.0, 8.0).reshape(8, 2)
    y = jax.pmap(lambda x: lj.leaky_relu(x, 0.5))(x)
    np.testing.assert_array_equal(y, lj.leaky_relu(x, 0.5))


def test_leakify_through_shard_map_and_sharded_jit(mesh):
    def body(act):
        def f(w, x):
            local = jax.shard_map(
                lambda w, x: act(x @ w), mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data")
            )(w, x)
            return jnp.sum(act(local) ** 2)

        return f

    leaky, twin = lj.leakify(body(jax.nn.relu)), body(lj.leaky_relu)
    w = jax.random.normal(jax.random.key(2), (8, 8))
    x = jax.device_put(_x(), NamedSharding(mesh, P("data")))
    for f, g in ((leaky, twin), (jax.grad(leaky), jax.grad(twin))):
        np.testing.assert_array_equal(jax.jit(f)(w, x), jax.jit(g)(w, x))
    a = jax.jit(jax.grad(leaky)).lower(w, x).as_text().split("\n", 1)[1]
    b = jax.jit(jax.grad(twin)).lower(w, x).as_text().split("\n", 1)[1]
    assert a == b


def test_tracking_a_sharded_batch_equals_one_device(mesh):
    def model(w, x):
        return jnp.sum(jax.nn.relu(x @ w))

    tracker = lj.track_dead_units(model)
    w = jax.random.normal(jax.random.key(3), (8, 8))
    x = _x() - 1.0
    state = tracker.init(w, x)
    sharded = jax.device_put(x, NamedSharding(mesh, P("data")))
    _, on_mesh = jax.jit(tracker.update)(state, w, sharded)
    _, one_device = tracker.update(state, w, x)
    for name in one_device:
        np.testing.assert_array_equal(on_mesh[name].active, one_device[name].active)
        np.testing.assert_array_equal(on_mesh[name].examples, one_device[name].examples)
        # The |activation| sums are added in another order across the shards.
        np.testing.assert_allclose(on_mesh[name].magnitude, one_device[name].magnitude, rtol=1e-6)


def test_leakify_through_pmap():
    # jax (0.8 to 0.12 at least) builds pmap from jit and shard_map, which leakify re-binds
    # through.
    x = _x((8, 3))
    (site,) = lj.relu_sites(jax.pmap(jax.nn.relu))(x)
    assert site.rewritable
    np.testing.assert_array_equal(lj.leakify(jax.pmap(jax.nn.relu))(x), jax.pmap(lj.leaky_relu)(x))
