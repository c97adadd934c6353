"""Self-test of what the transforms assume about the installed JAX (leakyjax/_jax_internals.py).

Each assumption is checked on the construct it describes; a new JAX that changes one fails
here, loudly, before any transform gives a wrong answer.
"""

import copy

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

import leakyjax as lj
from leakyjax import _jax_internals as ji

X = jnp.linspace(-2.0, 2.0, 8).reshape(2, 4)


def _primitives(f, *args):
    return [e.primitive.name for e in jax.make_jaxpr(f)(*args).eqns]


def test_jax_nn_relu_is_recognised():
    (eqn,) = jax.make_jaxpr(jax.nn.relu)(X).eqns
    assert ji.is_relu_custom_jvp(eqn), eqn
    assert [s.kind for s in lj.relu_sites(jax.nn.relu)(X)] == ["relu"]


def test_jax_nn_relu_is_recognised_inside_shard_map():
    # shard_map makes the zero varying (pvary) before the max.
    mesh = jax.make_mesh((1,), ("i",), axis_types=(jax.sharding.AxisType.Explicit,))
    f = jax.shard_map(
        jax.nn.relu, mesh=mesh, in_specs=PartitionSpec("i"), out_specs=PartitionSpec("i")
    )
    x = jax.device_put(X, jax.sharding.NamedSharding(mesh, PartitionSpec("i")))
    assert [s.kind for s in lj.relu_sites(f)(x)] == ["relu"]


def test_leakyjax_marker():
    for f in (
        lj.leaky_relu,
        lambda x: lj.leaky_relu(x, jnp.float32(0.1)),
        lambda x: lj.prelu(x, 0.2),
    ):
        assert [s.kind for s in lj.relu_sites(f)(X)] == ["leaky_relu"]


def test_higher_order_primitive_names():
    assert _primitives(jax.jit(jnp.sin), X) == [ji.JIT]
    assert _primitives(jax.checkpoint(jnp.sin), X) == [ji.CHECKPOINT]
    assert _primitives(lambda x: jax.lax.scan(lambda c, y: (c, y), 0.0, x), X) == [ji.SCAN]
    assert ji.COND in _primitives(lambda x: jax.lax.cond(True, jnp.sin, jnp.cos, x), X)
    assert _primitives(lambda x: jax.lax.while_loop(lambda c: c[0, 0] < 0, jnp.sin, x), X) == [
        ji.WHILE
    ]
    assert _primitives(jax.nn.relu, X) == [ji.CUSTOM_JVP]
    mesh = jax.make_mesh((1,), ("i",), axis_types=(jax.sharding.AxisType.Explicit,))
    f = jax.shard_map(jnp.sin, mesh=mesh, in_specs=PartitionSpec(), out_specs=PartitionSpec())
    assert _primitives(f, X) == [ji.SHARD_MAP]


def test_scan_layout():
    def f(w, x):
        return jax.lax.scan(lambda c, y: ((c[0] + w, c[1] * y), y * w), (w, w), x)

    (eqn,) = jax.make_jaxpr(f)(jnp.float32(2.0), X[0]).eqns
    assert ji.scan_layout(eqn) == (1, 2)
    assert set(ji.scan_options(eqn)) >= {"length", "reverse", "unroll"}


def test_jax_nn_relu_is_told_apart_from_a_users_custom_jvp_relu():
    @jax.custom_jvp
    def mine(x):
        return jnp.maximum(x, 0.0)

    mine.defjvps(lambda t, ans, x: t)
    (theirs,) = jax.make_jaxpr(jax.nn.relu)(X).eqns
    (own,) = jax.make_jaxpr(mine)(X).eqns
    assert ji.is_relu_custom_jvp(own) and not ji.is_jax_nn_relu(own)
    assert ji.is_jax_nn_relu(theirs)


def test_a_relu_differentiated_inside_shows_its_rule_on_its_input():
    # jax.nn.relu's rule is select(x > 0, g, 0): under jax.grad inside the traced function
    # the program keeps the custom_jvp equation for the value and compares its input with 0.
    closed = jax.make_jaxpr(jax.grad(lambda x: jax.nn.relu(x).sum()))(X)
    (site,) = [e for e in closed.eqns if ji.is_jax_nn_relu(e)]
    compared = [e for e in closed.eqns if e.primitive.name in ji.COMPARISONS]
    assert any(site.invars[0] in e.invars for e in compared)


def test_source_location_skips_leakyjax():
    (eqn,) = jax.make_jaxpr(lambda x: lj.leaky_relu(x))(X).eqns  # built in leakyjax's files
    assert ji.source_location(eqn).startswith("test_jax_internals.py:")


def test_array_impl_is_the_type_of_a_concrete_array():
    assert type(jnp.ones(2)) is ji.ArrayImpl


def test_a_jitted_functions_call_options_are_read():
    def f(x, n, *, scale=1.0):
        return x * n * scale

    jitted = jax.jit(f, static_argnums=1, static_argnames="scale", donate_argnums=0)
    options = ji.jit_call_options(jitted)
    assert options is not None
    assert options["static_argnums"] == (1,) and set(options["static_argnames"]) >= {"scale"}
    assert options["donate_argnums"] == (0,)
    assert ji.jit_call_options(f) is None and ji.jit_call_options(jax.nn.relu) is None
    assert "out_shardings" not in options
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    assert ji.jit_call_options(jax.jit(f, out_shardings=device))["out_shardings"] == device
    # A copy keeps no options (JAX rebuilds it without them): called as any function.
    assert ji.jit_call_options(copy.deepcopy(jitted)) is None


def test_an_eager_call_is_told_from_a_traced_one():
    assert ji.eager()
    seen = []
    jax.jit(lambda x: seen.append(ji.eager()) or x)(X)
    jax.grad(lambda x: seen.append(ji.eager()) or x)(1.0)
    jax.vmap(lambda x: seen.append(ji.eager()) or x)(X)
    assert seen == [False, False, False]
