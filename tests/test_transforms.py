"""leakify and relu_sites on plain JAX: bit for bit the hand-written twin, every wrapper."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import eval_jaxpr as _eval_jaxpr
from helpers import normal as _normal
from jax.sharding import PartitionSpec

import leakyjax as lj

pytestmark = pytest.mark.usefixtures("no_warnings")


def _same_program(f, g, *args):
    """``jit(f)`` and ``jit(g)`` lower to the same StableHLO (but for the module's name)."""
    a = jax.jit(f).lower(*args).as_text().split("\n", 1)[1]
    b = jax.jit(g).lower(*args).as_text().split("\n", 1)[1]
    assert a == b


def _assert_equal_trees(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


# --- Models written with jax.nn.relu, and their twins written with lj.leaky_relu ---------


def mlp(params, x, act=jax.nn.relu):
    for layer in params[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def cnn(params, x, act=jax.nn.relu):  # NHWC
    for k in params["convs"]:
        x = jax.lax.conv_general_dilated(
            x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        x = act(x)
    return x.mean(axis=(1, 2)) @ params["head"]


def rnn(params, xs, act=jax.nn.relu):
    def step(h, x):
        h = act(h @ params["w"] + x @ params["u"])
        return h, h

    return jax.lax.scan(step, jnp.zeros(params["w"].shape[0]), xs)[1]


def _twin(model, slope=0.01, grad_at_zero=None):
    return functools.partial(
        model, act=lambda x: lj.leaky_relu(x, slope, grad_at_zero=grad_at_zero)
    )


MLP_PARAMS = [
    {"w": _normal(1, (3, 8)), "b": _normal(2, (8,))},
    {"w": _normal(3, (8, 8)), "b": jnp.zeros(8)},
    {"w": _normal(4, (8, 2)), "b": jnp.zeros(2)},
]
X = _normal(5, (16, 3)).at[0].set(0.0)  # a row of zeros: pre-activations at the kink
CNN_PARAMS = {
    "convs": [_normal(6, (3, 3, 2, 4)), _normal(7, (3, 3, 4, 4))],
    "head": _normal(8, (4, 3)),
}
IMAGES = _normal(9, (2, 5, 5, 2))
RNN_PARAMS = {"w": _normal(10, (4, 4)), "u": _normal(11, (3, 4))}
SEQ = _normal(12, (6, 3))

MODELS = {
    "mlp": (mlp, MLP_PARAMS, X),
    "cnn": (cnn, CNN_PARAMS, IMAGES),
    "rnn": (rnn, RNN_PARAMS, SEQ),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("slope,grad_at_zero", [(0.01, None), (0.2, 1.0), (0.0, None)])
def test_bit_identical_to_the_twin(name, slope, grad_at_zero):
    model, params, x = MODELS[name]
    leaky = lj.leakify(model, slope, grad_at_zero=grad_at_zero)
    twin = _twin(model, slope, grad_at_zero)

    def loss(f):
        return lambda p, x: jnp.sum(f(p, x) ** 2)

    np.testing.assert_array_equal(jax.jit(leaky)(params, x), jax.jit(twin)(params, x))
    # Eagerly, the traced program runs equation by equation, as jax.core.eval_jaxpr runs
    # it; the twin called eagerly can differ in the last bits where JAX compiles its own
    # small functions as one (jnp.mean, on jax 0.8).
    np.testing.assert_array_equal(leaky(params, x), _eval_jaxpr(twin, params, x))
    _assert_equal_trees(
        jax.jit(jax.grad(loss(leaky), argnums=(0, 1)))(params, x),
        jax.jit(jax.grad(loss(twin), argnums=(0, 1)))(params, x),
    )
    _same_program(jax.grad(loss(leaky)), jax.grad(loss(twin)), params, x)


def test_differs_from_relu_where_it_should():
    out, relu_out = lj.leakify(mlp, 0.1)(MLP_PARAMS, X), mlp(MLP_PARAMS, X)
    assert not np.array_equal(out, relu_out)


def test_forward_mode_vmap_and_higher_order_compose():
    leaky, twin = lj.leakify(mlp), _twin(mlp)
    t = jax.tree.map(jnp.ones_like, MLP_PARAMS)
    for transform, args in (
        (lambda f: lambda p: jax.jvp(lambda p: f(p, X), (p,), (t,)), (MLP_PARAMS,)),
        (lambda f: jax.vmap(f, in_axes=(None, 0)), (MLP_PARAMS, X[:, None])),
        (lambda f: jax.hessian(lambda x: f(MLP_PARAMS, x).sum()), (X[1],)),
    ):
        # Compiled, as the promise is (two eager programs may differ in the last bit).
        _assert_equal_trees(jax.jit(transform(leaky))(*args), jax.jit(transform(twin))(*args))


def test_eager_call_of_a_leakified_function_is_the_twin():
    f = lj.leakify(lambda x: jax.nn.relu(x) * 2)
    np.testing.assert_array_equal(f(X), _eval_jaxpr(lambda x: lj.leaky_relu(x) * 2, X))


# --- Wrappers and control flow -------------------------------------------------------------


def _both(body):
    """``body(act)``: a function written with ``act``; returns (leakified, twin)."""
    return lj.leakify(body(jax.nn.relu)), body(lj.leaky_relu)


def _check(body, *args):
    leaky, twin = _both(body)
    np.testing.assert_array_equal(jax.jit(leaky)(*args), jax.jit(twin)(*args))
    g = jax.jit(jax.grad(lambda *a: jnp.sum(leaky(*a))))
    h = jax.jit(jax.grad(lambda *a: jnp.sum(twin(*a))))
    np.testing.assert_array_equal(g(*args), h(*args))
    _same_program(
        jax.grad(lambda *a: jnp.sum(leaky(*a))), jax.grad(lambda *a: jnp.sum(twin(*a))), *args
    )


def test_inner_jit_keeps_static_args_and_donation():
    def body(act):
        @functools.partial(jax.jit, static_argnums=1, donate_argnums=0)
        def inner(x, scale):
            return act(x * scale)

        return lambda x: inner(x + 1, 3.0)

    _check(body, X)
    jaxpr = jax.make_jaxpr(_both(body)[0])(X)
    (inner,) = [e for e in jaxpr.eqns if e.params.get("name") == "inner"]
    assert inner.params["donated_invars"] == (True,)


def test_cond_and_switch():
    def body(act):
        return lambda x: (
            jax.lax.cond(x.sum() > 0, act, lambda x: -act(x), x)
            + jax.lax.switch(1, [jnp.sin, act, jnp.cos], x)
        )

    _check(body, X)
    _check(body, -X)


def test_while_and_fori_loops():
    def body(act):
        def f(x):
            y = jax.lax.fori_loop(0, 3, lambda i, c: act(c * 2.0 - 1.0), x)
            z = jax.lax.while_loop(
                lambda c: c[1] < 2, lambda c: (act(c[0] - 1.0), c[1] + 1), (x, 0)
            )
            return y + z[0]

        return f

    leaky, twin = _both(body)
    np.testing.assert_array_equal(jax.jit(leaky)(X), jax.jit(twin)(X))
    # while_loop has no reverse mode: forward mode instead.
    np.testing.assert_array_equal(
        jax.jvp(leaky, (X,), (jnp.ones_like(X),))[1], jax.jvp(twin, (X,), (jnp.ones_like(X),))[1]
    )


def test_scan_with_carry_consts_and_reverse():
    def body(act):
        def f(w, xs):
            def step(c, x):
                c = act(c @ w + x)
                return c, act(-c)

            return jax.lax.scan(step, jnp.ones(3), xs, reverse=True, unroll=2)

        return f

    w = _normal(20, (3, 3))
    leaky, twin = _both(body)
    _assert_equal_trees(jax.jit(leaky)(w, SEQ), jax.jit(twin)(w, SEQ))
    _check(lambda act: lambda w, xs: body(act)(w, xs)[1], w, SEQ)


def test_checkpoint_keeps_its_policy():
    policy = jax.checkpoint_policies.nothing_saveable

    def body(act):
        return lambda x: jax.checkpoint(lambda x: act(jnp.sin(x)) * 2, policy=policy)(x)

    _check(body, X)
    (eqn,) = jax.make_jaxpr(_both(body)[0])(X).eqns
    assert eqn.params["policy"] is policy


def test_closed_call():
    from jax.extend.core import primitives

    def body(act):
        def f(x):
            inner = jax.make_jaxpr(lambda x: act(x) + 1)(x)
            params = primitives.closed_call_p.get_bind_params({"call_jaxpr": inner})
            subfuns, params = params if isinstance(params, tuple) else ((), params)
            return primitives.closed_call_p.bind(*subfuns, x, **params)[0]

        return f

    leaky, twin = _both(body)
    np.testing.assert_array_equal(jax.jit(leaky)(X), jax.jit(twin)(X))
    np.testing.assert_array_equal(leaky(X), _eval_jaxpr(twin, X))


def test_shard_map():
    mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))

    def body(act):
        spec = PartitionSpec("data")
        return jax.shard_map(lambda x: act(x) - 1, mesh=mesh, in_specs=spec, out_specs=spec)

    x = jax.device_put(X, jax.sharding.NamedSharding(mesh, PartitionSpec("data")))
    _check(body, x)


# --- Patterns -----------------------------------------------------------------------------


def test_maximum_and_where_are_opt_in():
    def f(x):
        return jnp.maximum(x, 0.0) + jnp.where(x > 0, x, 0.0) * 2

    with pytest.warns(UserWarning, match="found no ReLU"):
        np.testing.assert_array_equal(lj.leakify(f)(X), f(X))
    both = lj.leakify(f, patterns=("maximum", "where"))
    np.testing.assert_array_equal(both(X), lj.leaky_relu(X) + lj.leaky_relu(X) * 2)
    kinds = [s.kind for s in lj.relu_sites(f, patterns=("maximum", "where"))(X)]
    assert kinds == ["maximum", "where"]
    only = lj.leakify(f, patterns="where")  # one pattern by name
    np.testing.assert_array_equal(only(X), jnp.maximum(X, 0.0) + lj.leaky_relu(X) * 2)


def test_maximum_with_zero_first_and_relu6_style_clips_are_not_relu():
    def f(x):
        return jnp.maximum(0.0, x) + jnp.minimum(jnp.maximum(x, 1.0), 6.0)

    (site,) = lj.relu_sites(f, patterns=("maximum",))(X)
    assert site.kind == "maximum"


def test_clip_at_zero_is_a_maximum_site():
    # jnp.clip(x, 0) is max(x, 0) inside jnp.clip's jit, the zero passed in as an argument:
    # the same site as jnp.maximum(x, 0), not left as it is beside it.
    def f(x):
        return jnp.clip(x, 0) + 2 * jnp.maximum(x, 0.0) + 3 * jnp.clip(x, min=0.0, max=6.0)

    def twin(x):
        clipped = jnp.minimum(lj.leaky_relu(x, 0.2), 6.0)
        return lj.leaky_relu(x, 0.2) + 2 * lj.leaky_relu(x, 0.2) + 3 * clipped

    kinds = [s.kind for s in lj.relu_sites(f, patterns=("maximum",))(X)]
    assert kinds == ["maximum"] * 3
    got = jax.jit(lj.leakify(f, 0.2, patterns=("maximum",)))(X)
    np.testing.assert_array_equal(got, jax.jit(twin)(X))
    # A clip at another bound is no ReLU.
    assert lj.relu_sites(lambda x: jnp.clip(x, 1.0), patterns=("maximum",))(X) == ()


def test_a_normalization_clamp_is_left_alone_by_default():
    def layer_norm_relu(x):
        mean = x.mean(-1, keepdims=True)
        var = jnp.maximum(0.0, (x * x).mean(-1, keepdims=True) - mean * mean)
        return jax.nn.relu((x - mean) * jax.lax.rsqrt(var + 1e-6))

    assert [s.kind for s in lj.relu_sites(layer_norm_relu)(X)] == ["relu"]
    out = lj.leakify(layer_norm_relu)(X)
    assert bool(jnp.all(jnp.isfinite(out)))


def test_integer_relu_is_skipped_with_a_warning():
    def f(x):
        return jax.nn.relu(x.astype(jnp.int32)).astype(jnp.float32) + jax.nn.relu(x)

    (int_site, float_site) = lj.relu_sites(f)(X)
    assert not int_site.rewritable and "integer" in int_site.reason
    assert float_site.rewritable
    with pytest.warns(UserWarning, match="left as they are.*integer"):
        out = lj.leakify(f)(X)
    np.testing.assert_array_equal(out, jax.nn.relu(X.astype(jnp.int32)) + lj.leaky_relu(X))


def test_relus_in_custom_derivative_rules_are_listed_and_left_alone():
    @jax.custom_jvp
    def softish(x):
        return jax.nn.relu(x) + 1

    softish.defjvp(lambda p, t: (softish(*p), t[0]))

    @jax.custom_vjp
    def clipped(x):
        return jax.nn.relu(x)

    clipped.defvjp(lambda x: (clipped(x), None), lambda _, g: (g,))

    def f(x):
        return softish(x) + clipped(x) + jax.nn.relu(x)

    sites = lj.relu_sites(f)(X)
    assert [s.rewritable for s in sites] == [False, False, True]
    assert "softish" in sites[0].reason and "custom_jvp" in sites[0].reason
    assert "custom_vjp" in sites[1].reason
    with pytest.warns(UserWarning, match="2 site\\(s\\) left as they are"):
        out = lj.leakify(f)(X)
    np.testing.assert_array_equal(out, softish(X) + clipped(X) + lj.leaky_relu(X))


def test_relus_in_other_primitives_are_listed_and_left_alone():
    def f(x):
        matvec = lambda v: v * 2.0  # noqa: E731
        solve = lambda mv, b: jax.nn.relu(b) / 2.0  # noqa: E731
        return jax.lax.custom_linear_solve(matvec, x, solve) + jax.nn.relu(x)

    blocked, outside = lj.relu_sites(f)(X)  # solve's ReLU, then the one outside
    assert not blocked.rewritable and "`custom_linear_solve`" in blocked.reason
    assert outside.rewritable
    with pytest.warns(UserWarning, match="1 site\\(s\\) left as they are"):
        out = lj.leakify(f)(X)
    np.testing.assert_array_equal(out, jax.nn.relu(X) / 2.0 + lj.leaky_relu(X))


def test_differentiating_through_a_relu_inside_is_refused():
    def meta(params, x):
        inner = jax.grad(lambda p: mlp(p, x).sum())(params)
        return mlp(jax.tree.map(lambda p, g: p - 0.1 * g, params, inner), x)

    with pytest.raises(ValueError, match="innermost"):
        lj.leakify(meta)(MLP_PARAMS, X)
    # Applied innermost, it is what the user meant, and a relu without derivative is fine.
    assert len(lj.relu_sites(meta)(MLP_PARAMS, X)) == 4
    lj.leakify(lambda x: jax.grad(jnp.sin)(x) + jax.nn.relu(x))(1.0)
    assert jax.nn.relu.jvp.__name__ != "recording_jvp"


def test_no_site_warns():
    with pytest.warns(UserWarning, match="found no ReLU"):
        lj.leakify(jnp.tanh)(X)


# --- Site selection (the finder and the names: test_sites.py) ---------------------------


def test_site_selection_by_name_glob_and_predicate():
    def f(p, x):
        return jax.nn.relu(jax.nn.relu(x @ p["a"]) @ p["b"])

    p = {"a": jnp.eye(3), "b": -jnp.eye(3)}
    x = jnp.array([[1.0, -1.0, 2.0]])
    only_b = lj.leaky_relu(jax.nn.relu(x @ p["a"]) @ p["b"])
    np.testing.assert_array_equal(lj.leakify(f, sites=["b"])(p, x), only_b)
    np.testing.assert_array_equal(lj.leakify(f, sites="[b]")(p, x), only_b)  # a glob
    np.testing.assert_array_equal(lj.leakify(f, sites=lambda s: s.name == "b")(p, x), only_b)
    with pytest.raises(ValueError, match="matches no site; the sites are \\['a', 'b'\\]"):
        lj.leakify(f, sites=["c"])(p, x)


# --- Bad input at the boundary ------------------------------------------------------------


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda: lj.leakify(3), TypeError, "leakify: `fn` must be callable"),
        (
            lambda: lj.leakify(mlp, "0.1"),
            TypeError,
            "leakify: `negative_slope` must be a real scalar",
        ),
        (
            lambda: lj.leakify(mlp, float("nan")),
            ValueError,
            "leakify: `negative_slope` must be finite",
        ),
        (
            lambda: lj.leakify(mlp, 0.1, grad_at_zero=2.0),
            ValueError,
            "leakify: `grad_at_zero`=2.0 is not a subgradient",
        ),
        (
            lambda: lj.leakify(mlp, patterns=("relu", "gelu")),
            ValueError,
            "leakify: `patterns` must name",
        ),
        (
            lambda: lj.leakify(mlp, patterns=("leaky_relu",)),
            ValueError,
            "leakify: `patterns` must name",
        ),
        (lambda: lj.leakify(mlp, patterns=[1]), TypeError, "leakify: `patterns` must be a tuple"),
        (lambda: lj.leakify(mlp, sites=3), TypeError, "leakify: `sites` must be None"),
        (lambda: lj.relu_sites(None), TypeError, "relu_sites: `fn` must be callable"),
        (
            lambda: lj.track_dead_units(mlp, unit_axis=1.0),
            TypeError,
            "track_dead_units: `unit_axis` must be an int",
        ),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert str(info.value).startswith(message), info.value


def test_a_traced_slope_is_refused():
    with pytest.raises(
        TypeError, match="leakify: `negative_slope` must be a concrete Python number"
    ):
        jax.jit(lambda a: lj.leakify(mlp, a)(MLP_PARAMS, X))(0.1)
