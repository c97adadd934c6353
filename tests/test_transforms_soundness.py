"""The transforms never give a silent wrong answer: low-precision dtypes, derivatives taken
inside ``fn``, derivative rules of the user's, clamps, stacked layers, compile caching,
inconsistent tracker state and the messages of the public boundary (issue 16)."""

import copy
import logging
import os
import pickle
import sys
import threading
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import normal

import leakyjax as lj

pytestmark = pytest.mark.usefixtures("no_warnings")

KEY = jax.random.key(16)
W = normal(16, (4, 8))
X = normal(17, (16, 4))


def _equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def mlp(params, x, act=jax.nn.relu):
    for w in params[:-1]:
        x = act(x @ w)
    return x @ params[-1]


PARAMS = [W, normal(18, (8, 8)), jnp.ones((8, 1))]

# --- 1. Every inexact real dtype is a float site -----------------------------------------

FLOATS = [
    jnp.float16,
    jnp.bfloat16,
    jnp.float32,
    *(
        getattr(jnp, n)
        for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz")
        if hasattr(jnp, n)
    ),
]


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_low_precision_models_are_rewritten_and_tracked(dtype):
    params = [p.astype(dtype) for p in PARAMS]
    x = X.astype(dtype)
    sites = lj.relu_sites(mlp)(params, x)
    assert [s.rewritable for s in sites] == [True, True] and sites[0].dtype == np.dtype(dtype)
    leaky = jax.jit(lj.leakify(mlp, 0.125))
    twin = jax.jit(lambda p, x: mlp(p, x, lambda z: lj.leaky_relu(z, 0.125)))
    _equal(leaky(params, x), twin(params, x))
    loss = lambda f: lambda p: f(p, x).astype(jnp.float32).sum()  # noqa: E731
    _equal(jax.jit(jax.grad(loss(leaky)))(params), jax.jit(jax.grad(loss(twin)))(params))
    assert not bool(jnp.all(leaky(params, x) == jax.jit(mlp)(params, x)))  # it did change
    tracker = lj.track_dead_units(mlp)
    _, state = jax.jit(tracker.update)(tracker.init(params, x), params, x)
    want = lj.dead_units(
        jax.nn.relu(x.astype(jnp.float32) @ PARAMS[0].astype(dtype).astype(jnp.float32))
    )
    assert set(state) == {s.name for s in sites}
    assert tracker.result(state)[sites[0].name].dead.shape == want.shape


def test_float64_is_a_float_site():
    with jax.enable_x64(True):
        x = jnp.linspace(-1, 1, 5, dtype=jnp.float64)
        _equal(
            jax.jit(lj.leakify(jax.nn.relu, 0.5))(x), jax.jit(lambda v: lj.leaky_relu(v, 0.5))(x)
        )


@pytest.mark.parametrize(
    ("dtype", "kind"), [(jnp.int32, "integer"), (jnp.complex64, "complex"), (jnp.uint8, "integer")]
)
def test_non_float_reasons_name_the_real_kind(dtype, kind):
    (site,) = lj.relu_sites(jax.nn.relu)(jnp.ones(3, dtype))
    assert not site.rewritable
    assert site.reason == f"{kind} ReLU ({np.dtype(dtype).name}): left as it is"


def test_mixed_precision_flax_model_is_leakified_and_tracked():
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(8, dtype=jnp.bfloat16, param_dtype=jnp.float32)(x))
            return nn.Dense(1, dtype=jnp.bfloat16, param_dtype=jnp.float32)(x)

    class Twin(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = lj.leaky_relu(nn.Dense(8, dtype=jnp.bfloat16, param_dtype=jnp.float32)(x), 0.1)
            return nn.Dense(1, dtype=jnp.bfloat16, param_dtype=jnp.float32)(x)

    variables = Net().init(KEY, X)
    (site,) = lj.relu_sites(Net().apply)(variables, X)
    assert site.dtype == jnp.bfloat16 and site.rewritable and site.name == "params/Dense_0"
    leaky = jax.jit(lj.leakify(Net().apply, 0.1))
    twin = jax.jit(Twin().apply)
    _equal(leaky(variables, X), twin(variables, X))
    grad = lambda f: jax.jit(jax.grad(lambda v: f(v, X).astype(jnp.float32).sum()))  # noqa: E731
    _equal(grad(leaky)(variables), grad(twin)(variables))
    tracker = lj.track_dead_units(Net().apply)
    _, state = jax.jit(tracker.update)(tracker.init(variables, X), variables, X)
    z = nn.Dense(8, dtype=jnp.bfloat16, param_dtype=jnp.float32).apply(
        {"params": variables["params"]["Dense_0"]}, X
    )
    np.testing.assert_array_equal(tracker.result(state)["params/Dense_0"].dead, lj.dead_units(z))


# --- 2. Differentiation inside fn, decided from the program ---------------------------------


def _inner_grad(w):
    return jax.nn.relu(w - jax.grad(lambda v: jax.nn.relu(v).sum())(w))


@pytest.mark.parametrize(
    ("fn", "patterns"),
    [
        (_inner_grad, ("relu",)),
        (jax.jit(_inner_grad), ("relu",)),
        (
            lambda w: jnp.maximum(w - jax.grad(lambda v: jnp.maximum(v, 0.0).sum())(w), 0.0),
            ("maximum",),
        ),
        (
            lambda w: (
                jnp.where(w > 0, w, 0.0) - jax.grad(lambda v: jnp.where(v > 0, v, 0.0).sum())(w)
            ),
            ("where",),
        ),
        (lambda w: jax.jvp(jax.nn.relu, (w,), (jnp.ones_like(w),))[1], ("relu",)),
    ],
    ids=["grad", "cached-jit", "maximum", "where", "jvp"],
)
def test_a_derivative_taken_inside_fn_is_refused_on_every_call(fn, patterns):
    w = jnp.array([1.0, -2.0, 0.5])
    for _ in range(3):  # the second and later calls use what JAX cached
        with pytest.raises(ValueError, match="differentiates through a ReLU itself"):
            lj.leakify(fn, patterns=patterns)(w)


def test_a_users_custom_relu_differentiated_inside_is_left_alone_with_a_warning():
    @jax.custom_jvp
    def ste(x):
        return jnp.maximum(x, 0.0)

    ste.defjvps(lambda t, ans, x: t)

    def f(w):
        return jax.nn.relu(w - jax.grad(lambda v: ste(v).sum())(w))

    w = jnp.array([1.0, -2.0, 0.5])
    with pytest.warns(UserWarning, match="ste.*custom_jvp of your own"):
        out = jax.jit(lj.leakify(f, 0.1))(w)
    _equal(out, jax.jit(lambda w: lj.leaky_relu(w - jax.grad(lambda v: ste(v).sum())(w), 0.1))(w))


def test_leakify_is_thread_safe_while_other_threads_differentiate_relus():
    expected = jax.jit(lj.leakify(mlp))(PARAMS, X)
    stop, errors, results = threading.Event(), [], []

    def differentiate():
        while not stop.is_set():
            jax.make_jaxpr(jax.grad(lambda v: jax.nn.relu(v).sum()))(X)

    def transform():
        try:
            for _ in range(15):
                results.append(jax.jit(lj.leakify(mlp))(PARAMS, X))
        except Exception as error:
            errors.append(error)

    others = [threading.Thread(target=differentiate) for _ in range(2)]
    workers = [threading.Thread(target=transform) for _ in range(4)]
    for t in others + workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    for t in others:
        t.join()
    assert not errors
    assert len(results) == 60
    for out in results:
        _equal(out, expected)


# --- 3. A user's own derivative rule ---------------------------------------------------------


def test_a_straight_through_relu_keeps_its_rule():
    @jax.custom_jvp
    def ste(x):
        return jnp.maximum(x, 0.0)

    ste.defjvp(lambda p, t: (ste(p[0]), t[0]))
    x = jnp.array([-1.0, 2.0, -3.0])
    (site,) = lj.relu_sites(ste)(x)
    assert site.kind == "relu" and not site.rewritable and "ste" in site.reason
    with pytest.warns(UserWarning, match="left as they are"):
        g = jax.grad(lambda v: lj.leakify(ste)(v).sum())(x)
    np.testing.assert_array_equal(g, [1.0, 1.0, 1.0])


# --- 4. Clamps ---------------------------------------------------------------------------------


def _layer_norm_relu_variance(x):
    mean = x.mean(-1, keepdims=True)
    var = jax.nn.relu((x * x).mean(-1, keepdims=True) - mean * mean)
    return (x - mean) * jax.lax.rsqrt(var + 1e-6)


def test_a_relu_clamping_a_variance_is_listed_and_left_alone():
    def f(x):
        return jax.nn.relu(_layer_norm_relu_variance(x) @ jnp.ones((4, 3)))

    clamp, activation = lj.relu_sites(f)(X)
    assert clamp.clamp and not clamp.rewritable and "clamp" in clamp.reason
    assert not activation.clamp and activation.rewritable
    with pytest.warns(UserWarning, match="1 site\\(s\\) left as they are.*clamp"):
        out = jax.jit(lj.leakify(f))(X)
    _equal(
        out, jax.jit(lambda x: lj.leaky_relu(_layer_norm_relu_variance(x) @ jnp.ones((4, 3))))(X)
    )
    # Named in sites=, it is rewritten (never silently: the user asked).
    named = jax.jit(lj.leakify(f, sites=[clamp.name, activation.name]))(X)
    assert not bool(jnp.all(named == out)) or bool(jnp.all(_layer_norm_relu_variance(X) >= -1e30))
    tracker = lj.track_dead_units(f, sites=[activation.name])
    assert set(tracker.init(X)) == {activation.name}


def test_a_relu_followed_by_a_flax_layer_norm_is_still_a_site():
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.LayerNorm()(nn.relu(nn.Dense(8)(x)))
            return nn.Dense(1)(x)

    variables = Net().init(KEY, X)
    (site,) = lj.relu_sites(Net().apply)(variables, X)
    assert site.rewritable and not site.clamp


def test_keras_batch_norm_renorm_clamp_is_left_alone():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip("keras runs on another backend here")

    def net(activation):
        layers = [keras.layers.Dense(6), activation, keras.layers.BatchNormalization(renorm=True)]
        net = keras.Sequential([*layers, keras.layers.Dense(1)])
        net.build((None, 4))
        return net

    model = net(keras.layers.ReLU())
    twin = net(keras.layers.Activation(lambda z: lj.leaky_relu(z, 0.1)))
    trainable = [v.value for v in model.trainable_variables]
    state = [v.value for v in model.non_trainable_variables]

    def step(trainable, state, x):
        return model.stateless_call(trainable, state, x, training=True)

    activation, clamp = lj.relu_sites(step)(trainable, state, X)
    assert activation.rewritable and not activation.clamp
    assert clamp.clamp and not clamp.rewritable and "running variance" in clamp.reason
    with pytest.warns(UserWarning, match="1 site\\(s\\) left as they are.*a clamp"):
        out, new_state = jax.jit(lj.leakify(step, 0.1))(trainable, state, X)
    twin_out, twin_state = jax.jit(lambda t, s, x: twin.stateless_call(t, s, x, training=True))(
        trainable, state, X
    )
    # The twin: a Leaky ReLU activation, the variance clamp a ReLU as before.
    _equal((out, new_state), (twin_out, twin_state))
    # Named, it is rewritten (never silently).
    (named,) = [s for s in lj.relu_sites(step)(trainable, state, X) if s.clamp]
    jax.jit(lj.leakify(step, 0.1, sites=[activation.name, named.name]))(trainable, state, X)


def test_maximum_clamps_in_flax_norms_are_clamps_under_the_maximum_pattern():
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(jnp.maximum(nn.LayerNorm()(nn.Dense(8)(x)), 0.0))

    variables = Net().init(KEY, X)
    sites = lj.relu_sites(Net().apply, patterns=("maximum",))(variables, X)
    assert [s.clamp for s in sites] == [True, False]


# --- 5. Stacked layers --------------------------------------------------------------------------


def _stacked(params, x):
    def layer(h, w):
        return jax.nn.relu(h @ w), None

    return jax.lax.scan(layer, x, params["layers"])[0]


def test_lax_scan_over_stacked_layers_is_tracked_per_layer():
    layers = jnp.abs(jax.random.normal(KEY, (4, 4, 4))) + 0.1  # every unit alive on x > 0
    layers = layers.at[0, :, :3].multiply(-1.0).at[2, :, 1].multiply(-1.0)  # dead: 3 then 1
    params, x = {"layers": layers}, jnp.abs(X) + 0.1
    (site,) = lj.relu_sites(_stacked)(params, x)
    assert site.iterations == 4
    tracker = lj.track_dead_units(_stacked)
    state = tracker.init(params, x)
    assert state[site.name].active.shape == (4, 4)
    _, state = jax.jit(tracker.update)(state, params, x)
    r = tracker.result(state)[site.name]
    # By hand: layer by layer.
    h, want = x, []
    for w in layers:
        want.append(lj.dead_units(h @ w))
        h = jax.nn.relu(h @ w)
    np.testing.assert_array_equal(r.dead, jnp.stack(want))
    np.testing.assert_array_equal(r.dead.sum(-1), [3, 0, 1, 0])
    np.testing.assert_array_equal(r.examples, [16] * 4)
    assert r.fraction.shape == (4,) and float(jnp.mean(r.dead)) == 4 / 16


def test_a_scan_over_data_ors_its_iterations():
    def rnn(params, xs):
        def cell(h, x):
            h = jax.nn.relu(h @ params["w"] + x)
            return h, h

        return jax.lax.scan(cell, jnp.zeros(4), xs)[1]

    params, xs = {"w": jnp.eye(4)}, X
    (site,) = lj.relu_sites(rnn)(params, xs)
    assert site.iterations is None
    tracker = lj.track_dead_units(rnn)
    _, state = jax.jit(tracker.update)(tracker.init(params, xs), params, xs)
    assert state[site.name].active.shape == (4,)
    assert int(tracker.result(state)[site.name].examples) == 16


def test_a_scan_over_data_computed_from_the_parameters_ors_its_iterations():
    # An RNN over embeddings (a lookup of the data in a parameter) and over a projection's
    # output: the scan slices data, not layers; its state does not depend on the length.
    def rnn(params, tokens):
        def cell(h, x):
            h = jax.nn.relu(h @ params["w"] + x)
            return h, h

        embedded = params["embed"][tokens]
        projected = jax.nn.relu(embedded @ params["proj"])
        return (
            jax.lax.scan(cell, jnp.zeros(4), embedded)[1]
            + jax.lax.scan(cell, jnp.zeros(4), projected)[1]
        )

    params = {"embed": normal(19, (10, 4)), "w": jnp.eye(4), "proj": -jnp.eye(4)}
    tokens = jnp.array([1, 2, 3, 4, 5])
    sites = lj.relu_sites(rnn)(params, tokens)
    assert [s.iterations for s in sites] == [None, None, None]
    tracker = lj.track_dead_units(rnn)
    state = tracker.init(params, tokens)
    assert [s.active.shape for s in state.values()] == [(4,)] * 3
    _, state = jax.jit(tracker.update)(state, params, tokens)
    _, state = jax.jit(tracker.update)(state, params, tokens[:3])  # a shorter sequence
    result = tracker.result(state)
    # By hand: every time step of both sequences is an example of each unit.
    embedded = params["embed"][tokens]
    h, pre = jnp.zeros(4), []
    for x in embedded:
        pre.append(h @ params["w"] + x)
        h = jax.nn.relu(pre[-1])
    h3 = jnp.zeros(4)
    for x in embedded[:3]:
        pre.append(h3 @ params["w"] + x)
        h3 = jax.nn.relu(pre[-1])
    projection, first, second = (result[s.name] for s in sites)  # program order
    np.testing.assert_array_equal(first.dead, lj.dead_units(jnp.stack(pre)))
    assert int(first.examples) == int(second.examples) == int(projection.examples) == 8
    np.testing.assert_array_equal(
        projection.dead, lj.dead_units(-jnp.concatenate([embedded, embedded[:3]]))
    )


def test_flax_nn_scan_layers_are_tracked_per_layer():
    nn = pytest.importorskip("flax.linen")

    class Block(nn.Module):
        @nn.compact
        def __call__(self, h, _):
            return nn.relu(nn.Dense(4, use_bias=False)(h)), None

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            stack = nn.scan(
                Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=3
            )
            return stack()(x, None)[0]

    x = jnp.abs(X) + 0.1
    variables = Net().init(KEY, x)
    kernel = variables["params"]["ScanBlock_0"]["Dense_0"]["kernel"]
    kernel = jnp.abs(kernel).at[1, :, :2].multiply(-1.0)  # layer 1: units 0 and 1 dead
    variables = {"params": {"ScanBlock_0": {"Dense_0": {"kernel": kernel}}}}
    (site,) = lj.relu_sites(Net().apply)(variables, x)
    assert site.iterations == 3
    tracker = lj.track_dead_units(Net().apply)
    _, state = jax.jit(tracker.update)(tracker.init(variables, x), variables, x)
    dead = tracker.result(state)[site.name].dead
    np.testing.assert_array_equal(dead.sum(-1), [0, 2, 0])
    np.testing.assert_array_equal(dead[1], [True, True, False, False])


def test_haiku_layer_stack_is_tracked_per_layer():
    hk = pytest.importorskip("haiku")

    def forward(x):
        def layer(h):
            return jax.nn.relu(hk.Linear(4, with_bias=False)(h))

        return hk.layer_stack(3)(layer)(x)

    model = hk.without_apply_rng(hk.transform(forward))
    x = jnp.abs(X) + 0.1
    params = model.init(KEY, x)
    ((module, leaves),) = params.items()
    params = {module: {"w": jnp.abs(leaves["w"]).at[2, :, 3].multiply(-1.0)}}
    (site,) = lj.relu_sites(model.apply)(params, x)
    assert site.iterations == 3
    tracker = lj.track_dead_units(model.apply)
    _, state = jax.jit(tracker.update)(tracker.init(params, x), params, x)
    np.testing.assert_array_equal(tracker.result(state)[site.name].dead.sum(-1), [0, 0, 1])


def test_nnx_scan_over_vmap_made_layers_is_tracked_per_layer():
    nnx = pytest.importorskip("flax.nnx")

    class Block(nnx.Module):
        def __init__(self, act, rngs):
            self.linear = nnx.Linear(4, 4, use_bias=False, rngs=rngs)
            self.act = act

        def __call__(self, x):
            return self.act(self.linear(x))

    class Net(nnx.Module):
        def __init__(self, act):
            @nnx.vmap(in_axes=0, out_axes=0)
            def create(key):
                return Block(act, nnx.Rngs(key))

            self.blocks = create(jax.random.split(KEY, 3))

        def __call__(self, x):
            @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
            def body(block, x):
                return block(x)

            return body(self.blocks, x)

    model, twin = Net(jax.nn.relu), Net(lambda z: lj.leaky_relu(z, 0.1))
    kernel = jnp.abs(model.blocks.linear.kernel[...]).at[1, :, :2].multiply(-1.0)
    model.blocks.linear.kernel[...] = kernel  # layer 1: units 0 and 1 dead on x > 0
    twin.blocks.linear.kernel[...] = kernel
    x = jnp.abs(X[:8]) + 0.1
    (site,) = lj.relu_sites(model)(x)
    assert (site.name, site.iterations) == ("blocks/linear [in scan]", 3)
    leaky = nnx.jit(lambda m, x: lj.leakify(m, 0.1)(x))(model, x)
    _equal(leaky, nnx.jit(lambda m, x: m(x))(twin, x))
    tracker = lj.track_dead_units(lambda m, x: m(x))
    state = tracker.init(model, x)
    assert state[site.name].active.shape == (3, 4)
    _, state = nnx.jit(tracker.update)(state, model, x)
    result = tracker.result(state)[site.name]
    h, want = x, []
    for w in kernel:  # by hand: layer by layer
        want.append(lj.dead_units(h @ w))
        h = jax.nn.relu(h @ w)
    np.testing.assert_array_equal(result.dead, jnp.stack(want))
    np.testing.assert_array_equal(result.dead.sum(-1), [0, 2, 0])
    np.testing.assert_array_equal(result.examples, [8, 8, 8])


# --- 6. Compile once ----------------------------------------------------------------------------


class _CompileCounter(logging.Handler):
    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        if "Finished XLA compilation" in record.getMessage():
            self.count += 1


def _compiles(fn, calls):
    counter = _CompileCounter()
    logger = logging.getLogger("jax._src.dispatch")
    logger.addHandler(counter)
    with jax.log_compiles(True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts = []
        for _ in range(calls):
            before = counter.count
            jax.block_until_ready(fn())
            counts.append(counter.count - before)
    logger.removeHandler(counter)
    return counts


def test_eager_calls_of_a_leakified_jit_compile_once():
    leaky = lj.leakify(jax.jit(mlp))
    counts = _compiles(lambda: leaky(PARAMS, X), 5)
    assert counts[0] >= 1 and counts[1:] == [0, 0, 0, 0], counts


def test_eager_tracker_updates_of_a_jitted_model_compile_once():
    tracker = lj.track_dead_units(jax.jit(mlp))
    state = tracker.init(PARAMS, X)
    counts = _compiles(lambda: tracker.update(state, PARAMS, X), 5)
    assert counts[1:] == [0, 0, 0, 0], counts


def test_eager_calls_of_a_leakified_jit_are_the_jitted_twin():
    leaky = lj.leakify(jax.jit(mlp), 0.1)
    twin = jax.jit(lambda p, x: mlp(p, x, lambda z: lj.leaky_relu(z, 0.1)))
    for x in (X, X[:3], X):  # a new shape is a new entry, as in jax.jit
        _equal(leaky(PARAMS, x), twin(PARAMS, x))
    tracker = lj.track_dead_units(jax.jit(mlp))
    state = tracker.init(PARAMS, X)
    eager = tracker.update(tracker.update(state, PARAMS, X)[1], PARAMS, -X)
    jitted = jax.jit(tracker.update)(jax.jit(tracker.update)(state, PARAMS, X)[1], PARAMS, -X)
    _equal(eager, jitted)


def _python_calls(fn):
    """The Python functions that run during one call of ``fn``, as (file, name), for those
    of leakyjax and of JAX."""
    seen = []

    def profile(frame, event, arg):
        path = frame.f_code.co_filename
        if event == "call" and (
            f"{os.sep}leakyjax{os.sep}" in path or f"{os.sep}jax{os.sep}" in path
        ):
            seen.append((os.path.basename(path), frame.f_code.co_name))

    sys.setprofile(profile)
    try:
        out = fn()
    finally:
        sys.setprofile(None)
    jax.block_until_ready(out)
    return seen


def test_eager_calls_of_a_jitted_fn_are_dispatched_as_jax_jit_dispatches():
    """After the first call, an eager call of leakify(jax.jit(f)) (and of the tracker's
    update) runs no Python of leakyjax's tracing nor of JAX's dispatch: JAX's C++ cache keys
    and runs it, as it does jax.jit(twin)'s (so it costs what that costs; the benchmark's
    eager rows measure it)."""
    leaky = lj.leakify(jax.jit(mlp))
    tracker = lj.track_dead_units(jax.jit(mlp))
    state = tracker.init(PARAMS, X)
    twin = jax.jit(lambda p, x: mlp(p, x, lj.leaky_relu))
    calls = {
        "leakify": lambda: leaky(PARAMS, X),
        "tracker": lambda: tracker.update(state, PARAMS, X),
        "twin": lambda: twin(PARAMS, X),
    }
    seen = {}
    for name, call in calls.items():
        call()
        seen[name] = _python_calls(call)
    ours = {"_transforms.py": "__call__", "_tracking.py": "update", "_jax_internals.py": "eager"}
    for name in ("leakify", "tracker"):
        leakyjax = [c for c in seen[name] if c[0] in ours or c[0].startswith("_")]
        assert all(ours.get(file) == fn for file, fn in leakyjax), seen[name]
        # JAX's own Python: at most the property that tells an eager call (no pjit.py cache miss).
        assert {c for c in seen[name] if c not in leakyjax} <= {
            ("core.py", "trace"),
            *seen["twin"],
        }, seen[name]


def test_eager_calls_of_a_leakified_jit_keep_its_static_and_donated_arguments():
    def f(x, n, *, scale):
        for _ in range(n):  # n must be static
            x = jax.nn.relu(x - scale)
        return x

    jitted = jax.jit(f, static_argnums=1, static_argnames="scale", donate_argnums=0)
    twin = jax.jit(
        lambda x, n, *, scale: f(x, n, scale=scale) if n == 0 else _leaky_f(x, n, scale),
        static_argnums=1,
        static_argnames="scale",
        donate_argnums=0,
    )
    leaky = lj.leakify(jitted, 0.25)
    for n, scale in ((2, 0.5), (3, 0.5), (2, 0.5), (2, 1.0)):
        ours, theirs = X + 0.0, X + 0.0
        _equal(leaky(ours, n, scale=scale), twin(theirs, n, scale=scale))
        assert ours.is_deleted() == theirs.is_deleted()  # donated as jax.jit donates
    counts = _compiles(lambda: leaky(X + 0.0, 2, scale=0.5), 2)
    assert counts == [0, 0], counts


def _leaky_f(x, n, scale):
    for _ in range(n):
        x = lj.leaky_relu(x - scale, 0.25)
    return x


def test_warnings_of_an_eager_call_of_a_jitted_fn_name_the_callers_line():
    """The first eager call of leakify(jax.jit(f)) traces inside jax.jit; its warnings are
    still the caller's (so that Python shows each once per line of the user's code)."""
    with pytest.warns(UserWarning, match="found no ReLU") as record:
        lj.leakify(jax.jit(lambda x: x * 2.0))(X)
    assert [w.filename for w in record] == [__file__]
    cond = lambda v: jax.nn.relu(v).sum() < 100.0  # noqa: E731  (a site it cannot track)
    tracker = lj.track_dead_units(jax.jit(lambda x: jax.lax.while_loop(cond, lambda v: v + 1, x)))
    with pytest.warns(UserWarning, match="not tracked") as record:
        state = tracker.init(X)
        tracker.update(state, X)
    assert len(record) == 2
    assert {w.filename for w in record} == {__file__}


def test_a_copied_jitted_fn_is_leakified_and_tracked():
    """A copied (or unpickled) jax.jit function lacks the options JAX keeps on the original;
    it is leakified and tracked as any other function is (helper-7's audit: it raised)."""
    twin = jax.jit(lambda p, x: mlp(p, x, lambda z: lj.leaky_relu(z, 0.1)))
    for leaky in (
        lj.leakify(copy.deepcopy(jax.jit(mlp)), 0.1),
        lj.leakify(copy.copy(jax.jit(mlp)), 0.1),
        copy.deepcopy(lj.leakify(jax.jit(mlp), 0.1)),
    ):
        _equal(leaky(PARAMS, X), twin(PARAMS, X))
        _equal(leaky(PARAMS, -X), twin(PARAMS, -X))
    tracker = lj.track_dead_units(copy.deepcopy(jax.jit(mlp)))
    _, state = tracker.update(tracker.init(PARAMS, X), PARAMS, X)
    _equal(state, jax.jit(tracker.update)(tracker.init(PARAMS, X), PARAMS, X)[1])


def test_eager_calls_of_a_leakified_jit_keep_its_out_shardings():
    # On an Explicit-axes mesh, out_shardings is part of the result's type.
    mesh = jax.make_mesh((1,), ("d",), axis_types=(jax.sharding.AxisType.Explicit,))
    rows, replicated = (jax.NamedSharding(mesh, jax.P(*spec)) for spec in (("d",), ()))
    x = jax.device_put(X[:, 0], rows)
    leaky = lj.leakify(jax.jit(jax.nn.relu, out_shardings=replicated), 0.1)
    twin = jax.jit(lambda x: lj.leaky_relu(x, 0.1), out_shardings=replicated)
    ours, theirs = leaky(x), twin(x)
    _equal(ours, theirs)
    assert ours.sharding == theirs.sharding == replicated


def test_the_trackers_eager_update_names_the_users_function_and_checks_shape_structs():
    def f(x, n, *, mode="a"):
        return jax.nn.relu(x) * n

    tracker = lj.track_dead_units(jax.jit(f, static_argnums=1))
    state = tracker.init(X, 2)
    with pytest.raises(TypeError, match=r"track_dead_units\(\S*f\)\.update(.|\n)* at path mode"):
        tracker.update(state, X, 2, mode="b")  # a str that is not static: JAX's message
    for fn in (jax.jit(f, static_argnums=1), f):
        tracker = lj.track_dead_units(fn)
        with pytest.raises(TypeError, match="track_dead_units.update: .*needs arrays"):
            tracker.update(state, jax.ShapeDtypeStruct(X.shape, X.dtype), 2)


def test_jitted_functions_nested_inside_fn_compile_once():
    inner = jax.jit(mlp)
    leaky = lj.leakify(lambda p, x: inner(p, x) * 2.0)
    counts = _compiles(lambda: leaky(PARAMS, X), 4)
    assert counts[2:] == [0, 0], counts


# --- 7. Tracker state ---------------------------------------------------------------------------


def test_tracker_checks_state_at_update_and_merge():
    tracker = lj.track_dead_units(mlp)
    state = tracker.init(PARAMS, X)
    name = next(iter(state))
    narrow = {**state, name: state[name]._replace(active=jnp.zeros(1, bool))}
    with pytest.raises(ValueError, match=r"active must have shape \(8,\)"):
        tracker.update(narrow, PARAMS, X)
    with pytest.raises(ValueError, match=r"`b`.*active must have shape \(8,\)"):
        tracker.merge(state, narrow)
    floats = {**state, name: state[name]._replace(active=jnp.zeros(8))}
    with pytest.raises(ValueError, match="dtype bool"):
        tracker.update(floats, PARAMS, X)
    ints = {**state, name: state[name]._replace(active=jnp.zeros(8, jnp.int32))}
    with pytest.raises(ValueError, match="dtype bool"):
        tracker.merge(state, ints)
    with pytest.raises(TypeError, match="`state` must be a tracker state"):
        tracker.result([1])


def test_unit_axis_is_checked_at_update():
    tracker = lj.track_dead_units(jax.nn.relu, unit_axis=2)
    state = tracker.init(jnp.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="unit_axis"):
        tracker.update(state, jnp.ones((7, 4)))


def test_a_fresh_state_reports_no_dead_unit():
    tracker = lj.track_dead_units(mlp)
    r = tracker.result(tracker.init(PARAMS, X))
    for result in r.values():
        assert not bool(result.dead.any()) and float(result.fraction) == 0.0
    np.testing.assert_array_equal(lj.dead_units(jnp.zeros((0, 8))), jnp.zeros(8, bool))


@pytest.mark.parametrize("axis_name", [0, ("batch", 1), ()])
def test_axis_name_is_checked_at_construction(axis_name):
    with pytest.raises(TypeError, match="`axis_name` must be"):
        lj.track_dead_units(mlp, axis_name=axis_name)


def test_a_while_condition_site_is_left_out_with_a_warning():
    def f(x):
        return jax.lax.while_loop(lambda c: jax.nn.relu(c).sum() < 10.0, lambda c: c + 1.0, x)

    tracker = lj.track_dead_units(f)
    with pytest.warns(UserWarning, match="not tracked.*while_loop's condition"):
        state = tracker.init(X[0])
    assert state == {}


# --- 8. Messages ---------------------------------------------------------------------------------


def test_an_output_that_is_not_an_array_names_the_users_function():
    def returns_text(x):
        return "text"

    with pytest.raises(TypeError, match="returns_text"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lj.leakify(returns_text)(X)


def test_an_overflowing_slope_names_leakify():
    with pytest.raises(ValueError, match="^leakify: `negative_slope`=100000.0 overflows float16"):
        lj.leakify(jax.nn.relu, 1e5)(X.astype(jnp.float16))


def test_empty_and_unselective_sites_are_not_silent():
    with pytest.raises(ValueError, match="`sites` is empty"):
        lj.leakify(mlp, sites=[])
    with pytest.warns(UserWarning, match="predicate selects none of the 2 sites"):
        lj.leakify(mlp, sites=lambda s: False)(PARAMS, X)
    with pytest.raises(TypeError, match="predicate must take one argument"):
        lj.leakify(mlp, sites=lambda: True)


def test_site_selection_is_linear():
    def many(x):
        for _ in range(400):
            x = jax.nn.relu(x)
        return x

    calls = 0
    original = lj.Site.__eq__

    def counting(self, other):
        nonlocal calls
        calls += 1
        return original(self, other)

    lj.Site.__eq__ = counting
    try:
        jax.make_jaxpr(lj.leakify(many, sites=["*"]))(X)
    finally:
        lj.Site.__eq__ = original
    assert calls < 400


def test_pickling_says_what_it_is():
    leaky = lj.leakify(mlp, 0.2)  # a module-level function: pickled by reference
    again = pickle.loads(pickle.dumps(leaky))
    _equal(jax.jit(again)(PARAMS, X), jax.jit(leaky)(PARAMS, X))
    local = lj.leakify(lambda x: jax.nn.relu(x))
    with pytest.raises((pickle.PicklingError, AttributeError), match="lambda"):
        pickle.dumps(local)


def test_leakify_of_a_leakified_function_rewrites_what_is_left():
    # The first leakify rewrites the first layer; the second, the ReLU it left.
    first = lj.leakify(mlp, 0.5, sites=["0"])
    both = lj.leakify(first, 0.25)
    assert (both.fn, both.negative_slope, both.selection) == (first, 0.25, None)

    def twin(params, x):
        h = lj.leaky_relu(x @ params[0], 0.5)
        return lj.leaky_relu(h @ params[1], 0.25) @ params[2]

    _equal(jax.jit(both)(PARAMS, X), jax.jit(twin)(PARAMS, X))
    kinds = [s.kind for s in lj.relu_sites(both)(PARAMS, X)]
    assert kinds == ["leaky_relu", "leaky_relu"]


def test_shape_dtype_structs_get_one_clear_message():
    spec = jax.ShapeDtypeStruct(X.shape, X.dtype)
    for fn in (jax.nn.relu, lambda x: mlp(PARAMS, x), jax.jit(lambda x: mlp(PARAMS, x))):
        with pytest.raises(TypeError, match="needs arrays, got a jax.ShapeDtypeStruct"):
            lj.leakify(fn)(spec)
    assert jax.eval_shape(lj.leakify(jax.nn.relu), spec).shape == X.shape


def test_python_numbers_come_back_as_python_numbers():
    out = lj.leakify(lambda x: (jax.nn.relu(x), 3, 2.5))(X)
    assert type(out[1]) is int and type(out[2]) is float


# --- Dormancy scores (ReDo's tau) -------------------------------------------------------------


def _dopamine_score(activation):
    # dopamine/labs/redo's estimate_neuron_score, in NumPy float32.
    activation = np.asarray(activation, np.float32)
    score = np.mean(np.abs(activation), axis=tuple(range(activation.ndim - 1)))
    return score / (np.mean(score) + np.float32(1e-9))


def test_dormancy_scores_are_dopamines():
    tracker = lj.track_dead_units(mlp)
    state = tracker.init(PARAMS, X)
    batches = [X, X * 2.0 - 1.0, -X]
    for x in batches:
        _, state = jax.jit(tracker.update)(state, PARAMS, x)
    every = jnp.concatenate(batches)
    first = jax.nn.relu(every @ PARAMS[0])
    second = jax.nn.relu(first @ PARAMS[1])
    r = tracker.result(state)
    for name, activation in zip(r, (first, second), strict=True):
        np.testing.assert_allclose(r[name].score, _dopamine_score(activation), rtol=2e-6)
        # tau = 0 is the dead mask for a ReLU site.
        np.testing.assert_array_equal(r[name].score <= 0.0, r[name].dead)


def test_dormancy_of_a_leaky_site_and_an_all_zero_site():
    def f(x):
        return lj.leaky_relu(x, 0.1), jax.nn.relu(-jnp.abs(x))

    tracker = lj.track_dead_units(f)
    _, state = jax.jit(tracker.update)(tracker.init(X), X)
    leaky, zero = tracker.result(state).values()
    np.testing.assert_allclose(leaky.score, _dopamine_score(lj.leaky_relu(X, 0.1)), rtol=2e-6)
    np.testing.assert_array_equal(zero.score, jnp.zeros(4))
    assert not bool(jnp.any(tracker.result(tracker.init(X))[next(iter(state))].score))


def test_a_tracker_without_scores_keeps_the_rest_bit_for_bit():
    """scores=False: no magnitudes in the state, no abs reduction in the update, score None;
    dead units, fractions and example counts those of the tracker with scores, through jit,
    merge, a named axis and stacked layers."""

    def stacked(params, x):
        x = jax.lax.scan(lambda h, w: (jax.nn.relu(h @ w), None), x @ params[0], params[1])[0]
        return x @ params[2]

    stack = [W, jnp.stack([PARAMS[1], -PARAMS[1], PARAMS[1]]), PARAMS[2]]
    for fn, params in ((mlp, PARAMS), (stacked, stack)):
        with_scores = lj.track_dead_units(fn)
        without = lj.track_dead_units(fn, scores=False)
        states = []
        for tracker in (with_scores, without):
            update = jax.jit(tracker.update)
            a = update(tracker.init(params, X), params, X)[1]
            b = update(tracker.init(params, X), params, -X)[1]
            states.append(tracker.merge(a, b))
        assert all(s.magnitude is None for s in states[1].values())
        full, bare = with_scores.result(states[0]), without.result(states[1])
        for name in full:
            assert bare[name].score is None
            _equal(full[name]._replace(score=None), bare[name])
        jaxprs = [
            str(jax.make_jaxpr(t.update)(s, params, X))
            for t, s in zip((with_scores, without), states, strict=True)
        ]
        assert " abs " in jaxprs[0] and " abs " not in jaxprs[1]
    # Under vmap with a named axis (the observations summed over it), as with scores.
    named = lj.track_dead_units(jax.nn.relu, axis_name="shard", scores=False)
    state = named.init(X[0])
    _, shards = jax.vmap(named.update, in_axes=(None, 0), axis_name="shard")(
        state, X.reshape(4, 4, 4)
    )
    by_one = lj.track_dead_units(jax.nn.relu, scores=False)
    _, whole = by_one.update(by_one.init(X), X)
    (site,) = whole
    _equal(shards[site].active[0], whole[site].active)
    assert int(shards[site].examples[0]) == int(whole[site].examples)


def test_states_with_and_without_scores_are_not_mixed():
    with_scores = lj.track_dead_units(mlp)
    without = lj.track_dead_units(mlp, scores=False)
    full, bare = with_scores.init(PARAMS, X), without.init(PARAMS, X)
    for tracker, wrong, right in ((with_scores, bare, full), (without, full, bare)):
        with pytest.raises(ValueError, match=r"`a`.*magnitude is .*made with scores="):
            tracker.merge(wrong, right)
        with pytest.raises(ValueError, match=r"`b`.*magnitude must be"):
            tracker.merge(right, wrong)
        with pytest.raises(ValueError, match=r"`state`.*magnitude is .*made with scores="):
            tracker.result(wrong)
        with pytest.raises(ValueError, match=r"`state`.*magnitude must be"):
            tracker.update(wrong, PARAMS, X)


def test_an_ensemble_is_tracked_per_member_by_vmapping_the_tracker():
    """The documented rule: a vmap over stacked parameters inside fn is an example axis (a
    unit dead in one member reads as alive), and vmapping the tracker over the members
    tracks each one: (members, units), exactly the per-member trackers' results."""

    def member(params, x):
        return jax.nn.relu(x @ params["w"]) @ params["o"]

    w = jnp.abs(W) + 0.1  # positive inputs: every unit alive; -w: every unit dead
    members = {"w": jnp.stack([w, -w, w.at[:, :3].set(-1.0)]), "o": jnp.ones((3, 8, 1))}
    x = jnp.abs(X)
    inside = lj.track_dead_units(jax.vmap(member, in_axes=(0, None)))
    _, state = inside.update(inside.init(members, x), members, x)
    (together,) = inside.result(state).values()
    assert not bool(together.dead.any()) and int(together.examples) == 3 * x.shape[0]

    tracker = lj.track_dead_units(member)
    states = jax.vmap(lambda p: tracker.init(p, x))(members)
    _, states = jax.jit(jax.vmap(tracker.update, in_axes=(0, 0, None)))(states, members, x)
    (per_member,) = tracker.result(states).values()
    assert per_member.dead.shape == (3, 8)
    for i in range(3):
        one = jax.tree.map(lambda leaf, i=i: leaf[i], members)
        _, alone = tracker.update(tracker.init(one, x), one, x)
        (expected,) = tracker.result(alone).values()
        _equal(per_member.dead[i], expected.dead)
        # A sum batched over the members may round in another order (jax 0.8 does): scores
        # agree to float32 rounding; dead units exactly.
        np.testing.assert_allclose(per_member.score[i], expected.score, rtol=1e-6)
    assert per_member.fraction.tolist() == [0.0, 1.0, 3 / 8]
