"""unit_wiring and revive: units followed by data flow, dead units revived without changing
the function (issue 18, first part)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import normal as _normal

import leakyjax as lj

pytestmark = pytest.mark.usefixtures("no_warnings")

KEY = jax.random.key(18)


def mlp(params, x):
    h = jax.nn.relu(x @ params["hidden"]["w"] + params["hidden"]["b"])
    h = jax.nn.relu(h @ params["deep"]["w"] + params["deep"]["b"])
    return h @ params["out"]["w"]


MLP = {
    "hidden": {"w": _normal(0, (6, 8)), "b": _normal(1, (8,)).at[:3].set(-50.0)},
    "deep": {"w": _normal(2, (8, 8)), "b": _normal(3, (8,)).at[5].set(-50.0)},
    "out": {"w": _normal(4, (8, 2))},
}


def _dead(fn, params, x, jit=jax.jit, **kw):
    tracker = lj.track_dead_units(fn, **kw)
    _, state = jit(tracker.update)(tracker.init(params, x), params, x)
    return {name: r.dead for name, r in tracker.result(state).items()}


def _unchanged_outside(old, new, wiring, masks):
    """Every entry outside the revived slices is bit-identical."""
    touched = {}
    for name, mask in masks.items():
        for s in wiring[name].incoming + wiring[name].outgoing:
            leaf = _leaf(old, s.path)
            where = _entries(np.asarray(mask), s, leaf.shape)
            touched[s.path] = touched.get(s.path, np.zeros(leaf.shape, bool)) | where
    for path, where in touched.items():
        np.testing.assert_array_equal(
            np.asarray(_leaf(new, path))[~where], np.asarray(_leaf(old, path))[~where]
        )
    for path, leaf in _flat(old).items():  # the leaves no slice is in: all of them
        if path not in touched:
            np.testing.assert_array_equal(np.asarray(_flat(new)[path]), np.asarray(leaf))
    return touched


def _entries(mask, s, shape):
    """Where a leaf of ``shape`` holds the masked units of slice ``s`` (for a stacked site,
    ``mask[iteration, unit]``)."""
    if s.iterations is not None and s.iteration_axis is None:
        mask = mask[s.iterations[0]]
    where = np.zeros(shape, bool)
    for index in np.ndindex(*shape):
        unit = s.units[index[s.axis]]
        if s.iteration_axis is None:
            where[index] = unit >= 0 and mask[unit]
        else:
            layer = s.iterations[index[s.iteration_axis]]
            where[index] = unit >= 0 and layer >= 0 and mask[layer, unit]
    return where


def _flat(tree):
    return {
        "/".join(_key(k) for k in p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _leaf(tree, path):
    return _flat(tree)[path]


def _key(k):
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def test_plain_mlp_wiring():
    x = _normal(5, (32, 6))
    wiring = lj.unit_wiring(mlp)(MLP, x)
    hidden = wiring["hidden"]
    assert hidden.revivable and hidden.reason is None
    assert [(s.path, s.axis, s.role) for s in hidden.incoming] == [
        ("hidden/w", 1, "weight"),
        ("hidden/b", 0, "bias"),
    ]
    assert [(s.path, s.axis, s.role) for s in hidden.outgoing] == [("deep/w", 0, "weight")]
    np.testing.assert_array_equal(hidden.outgoing[0].units, np.arange(8))
    assert wiring["deep"].outgoing[0].path == "out/w"


def test_revive_keeps_the_function_on_inputs_where_the_units_are_dead():
    x = _normal(6, (1000, 6))
    dead = _dead(mlp, MLP, x)
    assert dead["hidden"][:3].all() and dead["deep"][5]
    new, _ = jax.jit(lj.revive(mlp))(jax.random.key(1), dead, MLP, x)
    np.testing.assert_array_equal(jax.jit(mlp)(new, x), jax.jit(mlp)(MLP, x))
    wiring = lj.unit_wiring(mlp)(MLP, x)
    touched = _unchanged_outside(MLP, new, wiring, dead)
    # The incoming weights were re-drawn, the biases zeroed, the outgoing weights zeroed.
    assert not (new["hidden"]["w"][:, :3] == MLP["hidden"]["w"][:, :3]).any()
    np.testing.assert_array_equal(new["hidden"]["b"][:3], 0.0)
    np.testing.assert_array_equal(new["deep"]["w"][:3], 0.0)
    assert touched["deep/w"][:3].all() and touched["deep/w"][:, 5].all()


def test_eager_equals_jit_and_an_all_false_mask_changes_nothing():
    x = _normal(7, (64, 6))
    dead = _dead(mlp, MLP, x)
    eager = lj.revive(mlp)(jax.random.key(2), dead, MLP, x)
    jitted = jax.jit(lj.revive(mlp))(jax.random.key(2), dead, MLP, x)
    jax.tree.map(np.testing.assert_array_equal, eager, jitted)
    none = {name: jnp.zeros_like(mask) for name, mask in dead.items()}
    same, _ = lj.revive(mlp)(jax.random.key(2), none, MLP, x)
    jax.tree.map(np.testing.assert_array_equal, same, MLP)


def test_revived_units_learn_again():
    x = _normal(8, (256, 6))
    y = jnp.sin(x.sum(-1, keepdims=True)).repeat(2, axis=-1)
    dead = _dead(mlp, MLP, x)
    params, _ = lj.revive(mlp)(jax.random.key(3), dead, MLP, x)

    @jax.jit
    def step(p):
        g = jax.grad(lambda p: jnp.mean((mlp(p, x) - y) ** 2))(p)
        return jax.tree.map(lambda a, b: a - 0.05 * b, p, g)

    for _ in range(20):
        params = step(params)
    again = _dead(mlp, params, x)
    assert not again["hidden"][:3].any()


TREEDEF = jax.tree_util.tree_structure(MLP)


def _like_params(t):
    return jax.tree_util.tree_structure(t) == TREEDEF


def _moments(state):
    return [s for s in jax.tree_util.tree_leaves(state, is_leaf=_like_params) if _like_params(s)]


def test_optax_moments_are_reset_at_the_revived_slices():
    optax = pytest.importorskip("optax")
    x = _normal(9, (64, 6))
    dead = _dead(mlp, MLP, x)
    wiring = lj.unit_wiring(mlp)(MLP, x)
    grads = jax.grad(lambda p: jnp.sum(mlp(p, x) ** 2))(MLP)
    for optimizer in (
        optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)),
        optax.chain(optax.adamw(1e-3)),
        optax.chain(optax.sgd(1e-2, momentum=0.9)),
    ):
        state = optimizer.init(MLP)
        _, state = optimizer.update(grads, state, MLP)
        _, new_state = lj.revive(mlp)(jax.random.key(4), dead, MLP, x, opt_state=state)
        moments, new_moments = _moments(state), _moments(new_state)
        assert moments and len(moments) == len(new_moments)
        for old, moment in zip(moments, new_moments, strict=True):
            touched = _unchanged_outside(old, moment, wiring, dead)
            for path, where in touched.items():
                np.testing.assert_array_equal(np.asarray(_leaf(moment, path))[where], 0.0)
        # Step counts are left as they are.
        counts = [
            leaf
            for leaf in jax.tree_util.tree_leaves(state)
            if jnp.issubdtype(leaf.dtype, jnp.integer)
        ]
        new_counts = [
            leaf
            for leaf in jax.tree_util.tree_leaves(new_state)
            if jnp.issubdtype(leaf.dtype, jnp.integer)
        ]
        jax.tree.map(np.testing.assert_array_equal, counts, new_counts)


def test_flax_nhwc_cnn_flattened_into_dense_zeroes_rows_p_times_c_plus_j():
    nn = pytest.importorskip("flax.linen")

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3))(x))
            x = x.reshape((x.shape[0], -1))
            return nn.Dense(3)(x)

    model = CNN()
    x = _normal(10, (1000, 5, 5, 2))
    variables = model.init(KEY, x[:2])
    bias = variables["params"]["Conv_0"]["bias"].at[1].set(-1e3)
    variables = {
        "params": {**variables["params"], "Conv_0": {**variables["params"]["Conv_0"], "bias": bias}}
    }
    wiring = lj.unit_wiring(model.apply)(variables, x[:2])
    (name,) = wiring
    conv = wiring[name]
    assert conv.revivable
    (out,) = conv.outgoing
    assert out.path == "params/Dense_0/kernel" and out.axis == 0
    np.testing.assert_array_equal(out.units, np.tile(np.arange(4), 25))  # row p * C + j
    dead = _dead(model.apply, variables, x)
    assert dead[name].tolist() == [False, True, False, False]
    new, _ = lj.revive(model.apply)(jax.random.key(5), dead, variables, x[:2])
    kernel = new["params"]["Dense_0"]["kernel"]
    zeroed = np.asarray((kernel == 0).all(axis=1))
    np.testing.assert_array_equal(zeroed, np.arange(100) % 4 == 1)
    np.testing.assert_array_equal(jax.jit(model.apply)(new, x), jax.jit(model.apply)(variables, x))


def test_equinox_mlp_and_nchw_conv():
    eqx = pytest.importorskip("equinox")
    model = eqx.nn.MLP(6, 2, 8, 2, key=KEY)
    forward = lambda m, x: jax.vmap(m)(x)  # noqa: E731
    x = _normal(11, (1000, 6))
    model = eqx.tree_at(lambda m: m.layers[0].bias, model, model.layers[0].bias.at[2].set(-1e3))
    wiring = lj.unit_wiring(forward)(model, x[:2])
    first = wiring["layers/0"]
    assert [(s.path, s.axis, s.role) for s in first.incoming] == [
        ("layers/0/weight", 0, "weight"),
        ("layers/0/bias", 0, "bias"),
    ]
    assert [(s.path, s.axis) for s in first.outgoing] == [("layers/1/weight", 1)]
    dead = _dead(forward, model, x, jit=eqx.filter_jit)
    new, _ = lj.revive(forward)(jax.random.key(6), dead, model, x[:2])
    np.testing.assert_array_equal(new.layers[1].weight[:, 2], 0.0)
    run = eqx.filter_jit(forward)
    np.testing.assert_array_equal(run(new, x), run(model, x))
    # A leakified module as the parameters: its leaves' paths are the module's.
    leaky = lj.leakify(model)
    wiring = lj.unit_wiring(lambda m, x: jax.vmap(m)(x))(leaky, x[:2])
    assert [s.path for s in wiring["layers/0"].incoming] == ["layers/0/weight", "layers/0/bias"]

    conv = eqx.nn.Conv2d(2, 3, 3, key=KEY)
    head = eqx.nn.Linear(3, 1, key=KEY)

    def net(params, x):  # NCHW per example, pooled over positions, then a dense head
        conv, head = params
        h = jax.nn.relu(conv(x))
        return head(h.mean(axis=(1, 2)))

    batched = lambda p, x: jax.vmap(net, in_axes=(None, 0))(p, x)  # noqa: E731
    conv = eqx.tree_at(lambda c: c.bias, conv, conv.bias.at[0].set(-1e3))
    xs = _normal(12, (50, 2, 6, 6))
    wiring = lj.unit_wiring(batched)((conv, head), xs[:2])
    (site,) = wiring.values()
    assert site.revivable, site.reason
    assert (site.incoming[0].path, site.incoming[0].axis) == ("0/weight", 0)  # OIHW
    assert [(s.path, s.axis) for s in site.outgoing] == [("1/weight", 1)]
    dead = _dead(batched, (conv, head), xs, jit=eqx.filter_jit, unit_axis=1)
    new, _ = lj.revive(batched)(jax.random.key(7), dead, (conv, head), xs[:2])
    run = eqx.filter_jit(batched)
    np.testing.assert_array_equal(run(new, xs), run((conv, head), xs))


def test_haiku_mlp():
    hk = pytest.importorskip("haiku")
    model = hk.without_apply_rng(hk.transform(lambda x: hk.nets.MLP([8, 8, 2])(x)))
    x = _normal(13, (1000, 6))
    params = model.init(KEY, x[:2])
    params["mlp/~/linear_0"]["b"] = params["mlp/~/linear_0"]["b"].at[4].set(-1e3)
    wiring = lj.unit_wiring(model.apply)(params, x[:2])
    assert wiring["mlp/~/linear_0"].outgoing[0].path == "mlp/~/linear_1/w"
    dead = _dead(model.apply, params, x)
    new, _ = lj.revive(model.apply)(jax.random.key(8), dead, params, x[:2])
    np.testing.assert_array_equal(new["mlp/~/linear_1"]["w"][4], 0.0)
    np.testing.assert_array_equal(jax.jit(model.apply)(new, x), jax.jit(model.apply)(params, x))


def test_residual_block_inner_site_revivable_stream_refused():
    def block(p, x):
        h = jax.nn.relu(x @ p["a"])
        inner = jax.nn.relu(h @ p["b"])
        return jax.nn.relu(h + inner @ p["c"]) @ p["d"]

    p = {k: _normal(i, (4, 4)) for i, k in enumerate("abcd")}
    # Units 0 and 2 of the inner site: negative weights from a non-negative input.
    p["b"] = p["b"].at[:, jnp.array([0, 2])].set(-1.0 - jnp.abs(_normal(24, (4, 2))))
    x = _normal(20, (1000, 4))
    wiring = lj.unit_wiring(block)(p, x)
    assert wiring["a"].reason == "its activation reaches a residual `add` with another stream"
    assert wiring["b"].revivable
    stream = [w for name, w in wiring.items() if name not in ("a", "b")]
    assert len(stream) == 1 and stream[0].reason == (
        "its pre-activation also depends on something other than its own parameter slices (a "
        "residual input, another layer's output or a shared weight)"
    )
    with pytest.raises(ValueError, match="cannot be revived.*residual"):
        lj.revive(block)(KEY, {"a": jnp.zeros(4, bool)}, p, x)
    dead = {"b": _dead(block, p, x)["b"]}
    assert dead["b"].tolist() == [True, False, True, False]
    new, _ = jax.jit(lj.revive(block))(jax.random.key(11), dead, p, x)
    np.testing.assert_array_equal(jax.jit(block)(new, x), jax.jit(block)(p, x))
    touched = _unchanged_outside(p, new, wiring, dead)
    assert touched["c"][jnp.array([0, 2])].all() and (new["c"][jnp.array([0, 2])] == 0.0).all()


def test_shared_parameters_and_other_outputs_are_refused():
    def shared(p, x):
        h = jax.nn.relu(x @ p["w"] + p["b"])
        h = jax.nn.relu(h @ p["w"] + p["b"])  # the same kernel and bias again
        return h @ p["out"]

    p = {"w": _normal(40, (4, 4)), "b": _normal(41, (4,)), "out": _normal(42, (4, 1))}
    x = _normal(43, (5, 4))
    reasons = {w.reason for w in lj.unit_wiring(shared)(p, x).values()}
    assert reasons == {"a weight it uses is also used elsewhere (shared weights)"}
    p["v"] = _normal(44, (4, 4))

    def bias_shared(p, x):
        h = jax.nn.relu(x @ p["w"] + p["b"])
        return jax.nn.relu(h @ p["v"] + p["b"]) @ p["out"]

    reasons = {w.reason for w in lj.unit_wiring(bias_shared)(p, x).values()}
    assert reasons == {"its bias is also used elsewhere (shared with another layer)"}

    def returns_pre_activation(p, x):
        z = x @ p["w"] + p["b"]
        return jax.nn.relu(z) @ p["out"], z

    (site,) = lj.unit_wiring(returns_pre_activation)(p, x).values()
    assert site.reason == "its pre-activation is also an output of the function"


def test_layernorm_model_what_is_revivable_and_what_is_refused():
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.LayerNorm()(nn.relu(nn.Dense(6, name="before")(x)))
            h = nn.relu(nn.LayerNorm(name="norm")(nn.Dense(6, name="normed")(h)))
            h = nn.relu(nn.Dense(6, name="after")(h))
            return nn.Dense(2, name="head")(h)

    model = Net()
    x = _normal(25, (1000, 3))
    variables = model.init(KEY, x[:2])
    after = variables["params"]["after"]
    bias = after["bias"].at[jnp.array([1, 5])].set(-1e3)
    variables = {"params": {**variables["params"], "after": {**after, "bias": bias}}}
    wiring = lj.unit_wiring(model.apply)(variables, x)
    assert {name: w.reason for name, w in wiring.items()} == {
        "params/before": "its activation is reduced over units (a sum, or a normalization or "
        "softmax across the site, such as LayerNorm)",
        "params/norm": "its pre-activation is normalized or reduced across units (a LayerNorm, "
        "say): each unit depends on the others",
        "params/after": None,
    }
    dead = _dead(model.apply, variables, x)
    assert dead["params/after"].tolist() == [False, True, False, False, False, True]
    dead = {"params/after": dead["params/after"]}
    new, _ = jax.jit(lj.revive(model.apply))(jax.random.key(12), dead, variables, x)
    run = jax.jit(model.apply)
    np.testing.assert_array_equal(run(new, x), run(variables, x))
    _unchanged_outside(variables, new, wiring, dead)


def test_stacked_layers_under_nn_scan_are_revived_per_iteration():
    nn = pytest.importorskip("flax.linen")

    class Block(nn.Module):
        @nn.compact
        def __call__(self, h, _):
            return nn.relu(nn.Dense(4)(h)), None

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            stack = nn.scan(
                Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3
            )
            return nn.Dense(2)(stack()(x, None)[0])

    x = _normal(26, (1000, 4))
    variables = Net().init(KEY, x[:2])
    layers = variables["params"]["ScanBlock_0"]["Dense_0"]
    bias = layers["bias"].at[1, 2].set(-1e3).at[2, 0].set(-1e3)
    variables = {
        "params": {**variables["params"], "ScanBlock_0": {"Dense_0": {**layers, "bias": bias}}}
    }
    (name,) = wiring = lj.unit_wiring(Net().apply)(variables, x[:2])
    site = wiring[name]
    assert site.site.iterations == 3 and site.revivable, site.reason
    stacked = "params/ScanBlock_0/Dense_0/"
    assert [
        (s.path, s.axis, s.iteration_axis, s.iterations.tolist())
        for s in site.incoming + site.outgoing
    ] == [
        (stacked + "kernel", 2, 0, [0, 1, 2]),  # layer l's output features: iteration l
        (stacked + "bias", 1, 0, [0, 1, 2]),
        (stacked + "kernel", 1, 0, [-1, 0, 1]),  # layer l + 1's input features
        ("params/Dense_0/kernel", 0, None, [2]),  # the head: the last iteration
    ]
    dead = _dead(Net().apply, variables, x)
    assert dead[name].shape == (3, 4) and dead[name][1, 2] and dead[name][2, 0]
    new, _ = jax.jit(lj.revive(Net().apply))(jax.random.key(13), dead, variables, x)
    run = jax.jit(Net().apply)
    np.testing.assert_array_equal(run(new, x), run(variables, x))
    touched = _unchanged_outside(variables, new, wiring, dead)
    kernel = new["params"]["ScanBlock_0"]["Dense_0"]["kernel"]
    assert (kernel[2, 2] == 0.0).all() and (new["params"]["Dense_0"]["kernel"][0] == 0.0).all()
    assert touched[stacked + "kernel"][1, :, 2].all() and not touched[stacked + "kernel"][0].any()
    with pytest.raises(ValueError, match=r"must have shape \(3, 4\), one row per layer"):
        lj.revive(Net().apply)(KEY, {name: dead[name][0]}, variables, x[:2])

    def reversed_stack(params, x):
        return (
            jax.lax.scan(
                lambda h, p: (jax.nn.relu(h @ p["w"]), None), x, params["layers"], reverse=True
            )[0]
            @ params["head"]
        )

    params = {"layers": {"w": _normal(27, (3, 4, 4))}, "head": _normal(28, (4, 1))}
    (site,) = lj.unit_wiring(reversed_stack)(params, x[:2]).values()
    assert site.site.iterations == 3 and site.reason == (
        "inside a scan over 3 stacked layers (nn.scan, nnx.scan, hk.layer_stack) that "
        "unit_wiring could not unroll (a reversed scan, or a site inside further control flow)"
    )


def test_nnx_scan_over_stacked_blocks_is_revived_per_iteration_in_place():
    nnx = pytest.importorskip("flax.nnx")

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(4, 4, rngs=rngs)

        def __call__(self, x):
            return nnx.relu(self.linear(x))

    class Net(nnx.Module):
        def __init__(self, rngs):
            @nnx.split_rngs(splits=3)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def make(rngs):
                return Block(rngs)

            self.blocks = make(rngs)
            self.head = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
            def step(h, block):
                return block(h)

            return self.head(step(x, self.blocks))

    model = Net(nnx.Rngs(0))
    model.blocks.linear.bias[...] = model.blocks.linear.bias[...].at[1, 3].set(-1e3)
    x = _normal(29, (1000, 4))
    wiring = lj.unit_wiring(model)(x[:2])
    assert list(wiring) == ["blocks/linear [in scan]"]
    site = wiring["blocks/linear [in scan]"]
    assert [(s.path, s.iteration_axis, s.iterations.tolist()) for s in site.outgoing] == [
        ("blocks/linear/kernel/value", 0, [-1, 0, 1]),
        ("head/kernel/value", None, [2]),
    ]
    tracker = lj.track_dead_units(nnx.clone(model))
    _, state = tracker.update(tracker.init(x), x)
    dead = {name: r.dead for name, r in tracker.result(state).items()}
    assert dead["blocks/linear [in scan]"][1, 3]
    before = nnx.clone(model)
    assert lj.revive(model)(jax.random.key(14), dead, x[:2])[0] is model
    np.testing.assert_array_equal(model(x), before(x))
    _unchanged_outside(nnx.state(before), nnx.state(model), wiring, dead)
    assert (model.blocks.linear.kernel[...][2, 3] == 0.0).all()


def test_bad_masks_are_clear_errors():
    x = _normal(22, (16, 6))
    revive = lj.revive(mlp)
    with pytest.raises(ValueError, match="'nope', which is not a site; the sites are"):
        revive(KEY, {"nope": jnp.zeros(8, bool)}, MLP, x)
    with pytest.raises(ValueError, match=r"must have shape \(8,\)"):
        revive(KEY, {"hidden": jnp.zeros(3, bool)}, MLP, x)
    with pytest.raises(TypeError, match="must be a bool mask"):
        revive(KEY, {"hidden": jnp.zeros(8)}, MLP, x)
    with pytest.raises(TypeError, match="`dead` must be a dict"):
        revive(KEY, [jnp.zeros(8, bool)], MLP, x)
    with pytest.raises(TypeError, match="`argnums` must be"):
        lj.unit_wiring(mlp, argnums="params")

    def split(first, last, x):  # the consuming layer in another argument
        return mlp({**first, "out": last}, x)

    first = {k: MLP[k] for k in ("hidden", "deep")}
    (reason,) = {w.reason for w in [lj.unit_wiring(split)(first, MLP["out"], x)["deep"]]}
    assert reason == "a parameter it needs is not in `argnums`"
    both = lj.unit_wiring(split, argnums=(0, 1))(first, MLP["out"], x)["deep"]
    assert both.revivable and both.outgoing[0].path == "1/w"


# --- Normalization layers, NNX modules, residual blocks, stacked layers (issue 18, §1 and §2)


def _linen_batchnorm():
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train):
            h = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(6)(x)))
            return nn.Dense(2)(h)

    model = Net()
    variables = model.init(KEY, jnp.ones((2, 3)), train=False)
    bn = variables["params"]["BatchNorm_0"]
    variables = {
        "params": {
            **variables["params"],
            "BatchNorm_0": {**bn, "bias": _normal(30, (6,)).at[jnp.array([1, 4])].set(-1e3)},
        },
        "batch_stats": {
            "BatchNorm_0": {"mean": _normal(31, (6,)), "var": jnp.exp(_normal(32, (6,)))}
        },
    }
    train = lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])  # noqa: E731
    evaluate = lambda v, x: model.apply(v, x, train=False)  # noqa: E731
    return variables, train, evaluate


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_linen_batchnorm_scale_bias_and_statistics_are_revived(mode):
    optax = pytest.importorskip("optax")
    variables, train, evaluate = _linen_batchnorm()
    fn = train if mode == "train" else evaluate
    x = _normal(33, (1000, 3))
    (name,) = wiring = lj.unit_wiring(fn)(variables, x)
    site = wiring[name]
    assert site.revivable, site.reason
    assert [(s.path, s.axis, s.role) for s in site.incoming] == [
        ("params/Dense_0/kernel", 1, "weight"),
        ("params/Dense_0/bias", 0, "bias"),
        ("batch_stats/BatchNorm_0/mean", 0, "mean"),
        ("batch_stats/BatchNorm_0/var", 0, "var"),
        ("params/BatchNorm_0/scale", 0, "scale"),
        ("params/BatchNorm_0/bias", 0, "bias"),
    ]
    assert [(s.path, s.axis) for s in site.outgoing] == [("params/Dense_1/kernel", 0)]
    dead = _dead(fn, variables, x)
    assert dead[name].tolist() == [False, True, False, False, True, False]
    tx = optax.adam(1e-2)
    grads = jax.grad(lambda p: jnp.sum(evaluate({**variables, "params": p}, x) ** 2))(
        variables["params"]
    )
    _, opt_state = tx.update(grads, tx.init(variables["params"]), variables["params"])
    new, new_state = jax.jit(lj.revive(fn))(
        jax.random.key(9), dead, variables, x, opt_state=opt_state
    )
    for run in (jax.jit(train), jax.jit(evaluate)):
        out, revived_out = run(variables, x), run(new, x)
        if isinstance(out, tuple):
            # Train mode: the output, and the running statistics of the other units.
            stats, revived_stats = out[1]["batch_stats"], revived_out[1]["batch_stats"]
            keep = ~np.asarray(dead[name])
            for k in ("mean", "var"):
                np.testing.assert_array_equal(
                    revived_stats["BatchNorm_0"][k][keep], stats["BatchNorm_0"][k][keep]
                )
            out, revived_out = out[0], revived_out[0]
        np.testing.assert_array_equal(revived_out, out)
    _unchanged_outside(variables, new, wiring, dead)
    revived = np.asarray(dead[name])
    assert (new["params"]["BatchNorm_0"]["scale"][revived] == 1.0).all()
    assert (new["params"]["BatchNorm_0"]["bias"][revived] == 0.0).all()
    assert (new["batch_stats"]["BatchNorm_0"]["mean"][revived] == 0.0).all()
    assert (new["batch_stats"]["BatchNorm_0"]["var"][revived] == 1.0).all()
    assert (new["params"]["Dense_1"]["kernel"][revived] == 0.0).all()
    # The moments of the parameters (Optax over variables["params"]): zero at the revived
    # slices, bit-identical elsewhere.
    for old, moment in ((opt_state[0].mu, new_state[0].mu), (opt_state[0].nu, new_state[0].nu)):
        params_wiring = {
            name: site._replace(
                incoming=tuple(
                    s._replace(path=s.path.removeprefix("params/"))
                    for s in site.incoming
                    if s.path.startswith("params/")
                ),
                outgoing=tuple(
                    s._replace(path=s.path.removeprefix("params/")) for s in site.outgoing
                ),
            )
        }
        touched = _unchanged_outside(old, moment, params_wiring, dead)
        for path, where in touched.items():
            np.testing.assert_array_equal(np.asarray(_leaf(moment, path))[where], 0.0)
    assert new_state[0].count == opt_state[0].count


def test_batchnorm_statistics_outside_argnums():
    variables, train, evaluate = _linen_batchnorm()
    x = _normal(34, (16, 3))

    def split_train(params, stats, x):
        return train({"params": params, "batch_stats": stats}, x)

    def split_eval(params, stats, x):
        return evaluate({"params": params, "batch_stats": stats}, x)

    args = (variables["params"], variables["batch_stats"], x)
    # In train mode the running statistics are only updated: revivable without them.
    (site,) = lj.unit_wiring(split_train)(*args).values()
    assert site.revivable and all(s.role not in ("mean", "var") for s in site.incoming)
    # In eval mode they normalize the unit: needed.
    (site,) = lj.unit_wiring(split_eval)(*args).values()
    assert site.reason == "a parameter it needs is not in `argnums`"
    (site,) = lj.unit_wiring(split_eval, argnums=(0, 1))(*args).values()
    assert site.revivable
    assert [s.path for s in site.incoming if s.role in ("mean", "var")] == [
        "1/BatchNorm_0/mean",
        "1/BatchNorm_0/var",
    ]


def test_nnx_batchnorm_module_is_revived_in_place_and_returned():
    nnx = pytest.importorskip("flax.nnx")
    optax = pytest.importorskip("optax")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(3, 6, rngs=rngs)
            self.bn = nnx.BatchNorm(6, rngs=rngs)
            self.out = nnx.Linear(6, 2, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.bn(self.linear(x))))

    model = Net(nnx.Rngs(0))
    model.bn.bias[...] = _normal(35, (6,)).at[jnp.array([0, 3])].set(-1e3)
    model.bn.mean[...] = _normal(36, (6,))
    model.bn.var[...] = jnp.exp(_normal(37, (6,)))
    x = _normal(38, (1000, 3))
    wiring = lj.unit_wiring(model)(x[:8])
    assert list(wiring) == ["bn"]
    assert [(s.path, s.role) for s in wiring["bn"].incoming] == [
        ("linear/kernel/value", "weight"),
        ("linear/bias/value", "bias"),
        ("bn/mean/value", "mean"),
        ("bn/var/value", "var"),
        ("bn/scale/value", "scale"),
        ("bn/bias/value", "bias"),
    ]
    probe = nnx.clone(model)
    tracker = lj.track_dead_units(probe)
    _, state = tracker.update(tracker.init(x), x)
    dead = {name: r.dead for name, r in tracker.result(state).items()}
    assert dead["bn"].tolist() == [True, False, False, True, False, False]
    params = nnx.state(model, nnx.Param)
    tx = optax.sgd(1e-2, momentum=0.9)
    opt_state = tx.init(params)
    opt_state = jax.tree.map(lambda v: v + 1.0, opt_state)  # nonzero momentum everywhere
    before = nnx.clone(model)
    old_state = nnx.state(before)
    revived, new_opt_state = lj.revive(model)(jax.random.key(10), dead, x[:8], opt_state=opt_state)
    assert revived is model
    _unchanged_outside(old_state, nnx.state(model), wiring, dead)
    bn = np.asarray(dead["bn"])
    assert (model.bn.mean[...][bn] == 0.0).all() and (model.bn.var[...][bn] == 1.0).all()
    assert (model.bn.scale[...][bn] == 1.0).all() and (model.bn.bias[...][bn] == 0.0).all()
    # Eval mode (running statistics) and train mode (this batch's): the same outputs.
    for train in (False, True):
        for m in (model, before):
            m.train() if train else m.eval()
        np.testing.assert_array_equal(model(x), before(x))
    param_wiring = {
        "bn": wiring["bn"]._replace(
            incoming=tuple(s for s in wiring["bn"].incoming if s.role not in ("mean", "var"))
        )
    }
    old_trace, new_trace = opt_state[0].trace, new_opt_state[0].trace
    touched = _unchanged_outside(old_trace, new_trace, param_wiring, dead)
    for path, where in touched.items():
        np.testing.assert_array_equal(np.asarray(_leaf(new_trace, path))[where], 0.0)
