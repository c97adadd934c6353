"""The site finder and the naming rules (leakyjax/_sites.py), through lj.relu_sites.

The finder lists every ReLU that leakify and the tracker see, in program order, inside the
wrappers and control flow they re-bind through; the namer names each site after the
parameters that feed its pre-activation. The names Flax, Equinox and Haiku models get are
tested with those models in test_transforms_frameworks.py; which sites cannot be rewritten
(integer, inside a derivative rule or an unsupported primitive, clamps) in test_transforms.py
and test_transforms_soundness.py.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import normal

import leakyjax as lj

pytestmark = pytest.mark.usefixtures("no_warnings")

X = normal(5, (16, 3))
EYES = {k: jnp.eye(3) for k in "abcdef"}


def _names(fn, *args):
    return [s.name for s in lj.relu_sites(fn)(*args)]


def _line(fn, offset):
    """``test_sites.py:N``, N the line ``offset`` lines below ``fn``'s ``def``."""
    return f"test_sites.py:{fn.__code__.co_firstlineno + offset}"


# --- The finder -----------------------------------------------------------------------------


def mlp(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"]


MLP_PARAMS = [
    {"w": normal(1, (3, 8)), "b": normal(2, (8,))},
    {"w": normal(3, (8, 8)), "b": normal(4, (8,))},
    {"w": normal(5, (8, 2))},
]


def test_site_records():
    sites = lj.relu_sites(mlp)(MLP_PARAMS, X)
    assert [s.name for s in sites] == ["0", "1"]
    assert [s.shape for s in sites] == [(16, 8), (16, 8)]
    assert all(s.kind == "relu" and s.dtype == np.float32 for s in sites)
    assert all(s.rewritable and s.reason is None for s in sites)
    assert {s.source for s in sites} == {_line(mlp, 2)}


def test_every_pattern_in_program_order():
    def f(x):
        a = jnp.maximum(x, 0.0)
        b = jnp.where(a > 0, a, 0.0)
        c = lj.leaky_relu(b - 2.0)
        return jax.nn.relu(c - 3.0)

    every = ("relu", "maximum", "where", "leaky_relu")
    sites = lj.relu_sites(f, patterns=every)(X)
    assert [s.kind for s in sites] == ["maximum", "where", "leaky_relu", "relu"]
    # (Not leaky_relu's: its equation is inside leakyjax's own jit, whose traceback stops
    # there, so its source is None today.)
    sources = [s.source for s in sites if s.kind != "leaky_relu"]
    assert sources == [_line(f, 1), _line(f, 2), _line(f, 4)]
    # By default, jax.nn.relu and leakyjax's own: what the tracker watches.
    assert [s.kind for s in lj.relu_sites(f)(X)] == ["leaky_relu", "relu"]
    assert [s.kind for s in lj.relu_sites(f, patterns=("where",))(X)] == ["where"]


def test_found_inside_the_wrappers_and_control_flow_the_transforms_re_bind_through():
    def f(p, x):
        x = jax.jit(lambda x: jax.nn.relu(x @ p["a"]))(x)
        x = jax.checkpoint(lambda x: jax.nn.relu(x @ p["b"]))(x)
        x = jax.lax.cond(x.sum() > 0, lambda x: jax.nn.relu(x @ p["c"]), lambda x: -x, x)
        x = jax.lax.scan(lambda c, row: (c, jax.nn.relu(row @ p["d"])), 0.0, x)[1]
        x = jax.lax.while_loop(
            lambda c: c[1] < 2, lambda c: (jax.nn.relu(c[0] @ p["e"]), c[1] + 1), (x, 0)
        )[0]
        return jax.nn.relu(x @ p["f"])

    sites = lj.relu_sites(f)(EYES, X)
    # Inside a scan, the shape is one iteration's.
    assert [(s.name, s.shape) for s in sites] == [
        ("a", (16, 3)),
        ("b", (16, 3)),
        ("c [in cond]", (16, 3)),
        ("d [in scan]", (3,)),
        ("e [in while_loop]", (16, 3)),
        ("f", (16, 3)),
    ]
    assert all(s.rewritable for s in sites)


def test_relu_sites_computes_nothing():
    big = jax.ShapeDtypeStruct((100_000, 100_000), jnp.float32)  # 40 GB if it were made
    (site,) = lj.relu_sites(lambda x: jax.nn.relu(x).sum())(big)
    assert site.shape == (100_000, 100_000)


def test_source_skips_leakyjax_frames():
    def first(x):
        return jax.nn.relu(x)

    def f(x):
        return jax.nn.relu(x)

    # JAX traces jax.nn.relu's and leakyjax.leaky_relu's jitted bodies once for every caller
    # (here: `first`); each site still names its own caller's line.
    for g in (first, f):
        (plain,) = lj.relu_sites(g)(X)
        (tracked,) = lj.relu_sites(lj.leakify(g))(X)
        assert tracked.kind == "leaky_relu"
        assert plain.source == tracked.source == _line(g, 1)


def test_source_inside_a_flax_remat_in_a_scan_is_the_users_line():
    nn = pytest.importorskip("flax.linen")

    class Block(nn.Module):
        @nn.compact
        def __call__(self, h, _):
            return nn.relu(nn.Dense(3)(h)), None

    for lift in (lambda b: b, nn.remat):
        stack = nn.scan(
            lift(Block), variable_axes={"params": 0}, split_rngs={"params": True}, length=2
        )
        variables = stack().init(jax.random.key(0), X, None)
        # Flax's lifting code (excluded from JAX's tracebacks) is not the caller.
        (site,) = lj.relu_sites(lambda v, x, s=stack: s().apply(v, x, None))(variables, X)
        assert site.source == _line(inspect.unwrap(Block.__call__), 2)


# --- Names ------------------------------------------------------------------------------------


def test_a_layer_is_named_by_the_common_prefix_of_its_parameters_whatever_the_batch():
    params = {
        "encoder": {"dense": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)}},
        "head": {"kernel": jnp.ones((4, 4))},
    }

    def f(p, x):
        d = p["encoder"]["dense"]
        h = jax.nn.relu(x @ d["kernel"] + d["bias"])
        return jax.nn.relu(h @ p["head"]["kernel"])  # one leaf: named by its layer

    for batch in (1, 7):
        assert _names(f, params, jnp.ones((batch, 3))) == ["encoder/dense", "head"]


def test_the_parameters_that_joined_last_name_the_site():
    # The kernel meets the data first; the normalization's scale and shift join after it.
    params = {
        "dense": {"kernel": normal(1, (3, 4))},
        "norm": {"scale": jnp.ones(4), "shift": jnp.zeros(4)},
    }

    def f(p, x):
        h = x @ p["dense"]["kernel"]
        h = (h - h.mean(0)) * p["norm"]["scale"] + p["norm"]["shift"]
        return jax.nn.relu(h)

    assert _names(f, params, X) == ["norm"]


def test_the_next_layer_is_named_by_its_own_parameters():
    params = {name: {"w": jnp.eye(3), "b": jnp.zeros(3)} for name in ("first", "second")}

    def f(p, x):
        for name in ("first", "second"):
            x = jax.nn.relu(x @ p[name]["w"] + p[name]["b"])
        return x

    # "first"'s parameters reach the second pre-activation only through the first site.
    assert _names(f, params, X) == ["first", "second"]


def test_the_parameters_not_the_data_name_a_first_layer():
    params = {"layer": {"kernel": jnp.ones((3, 4))}, "head": {"kernel": jnp.ones((4, 1))}}
    batch = {"image": X}

    def f(p, batch):  # no bias: the kernel and the data join at the same equation
        return jax.nn.relu(batch["image"] @ p["layer"]["kernel"]) @ p["head"]["kernel"]

    # The parameters are the argument with the most leaves, first or last.
    assert _names(f, params, batch) == ["layer"]
    assert _names(lambda batch, p: f(p, batch), batch, params) == ["layer"]
    # An array argument (no key path) names nothing.
    assert _names(lambda p, x: f(p, {"image": x}), params, X) == ["layer"]
    # The rule is the number of leaves: data with more leaves than the parameters names it.
    big_batch = {"image": X, "label": jnp.ones(16), "weight": jnp.ones(16)}
    assert _names(f, params, big_batch) == ["image"]

    # On a tie, the first argument: an RNN over a batch of as many leaves as the parameters
    # is named after them, and its time steps are ORed (not taken for stacked layers).
    def rnn(params, batch):
        def cell(h, x):
            h = jax.nn.relu(h @ params["w"] + x)
            return h, h

        return jax.lax.scan(cell, jnp.zeros(4), batch["x"])[1]

    (site,) = lj.relu_sites(rnn)(
        {"w": jnp.eye(4), "v": jnp.eye(4)}, {"x": jnp.ones((5, 4)), "m": jnp.ones(5)}
    )
    assert (site.name, site.iterations) == ("w [in scan]", None)


def test_without_parameters_the_name_stack_then_the_source_line():
    def scoped(x):
        with jax.named_scope("block"):
            return jax.nn.relu(x)

    def plain(x):
        return jax.nn.relu(x)

    def unrelated(p, x):  # a kernel and a bias with no common key path
        return jax.nn.relu(x @ p[0] + p[1])

    assert _names(scoped, X) == ["block"]
    assert _names(plain, X) == [_line(plain, 1)]
    assert _names(unrelated, [jnp.ones((3, 4)), jnp.ones(4)], X) == [_line(unrelated, 1)]


def test_repeats_get_a_suffix():
    def f(p, x):
        for _ in range(3):
            x = jax.nn.relu(x @ p["a"])  # the same layer three times
        return jax.nn.relu(x @ p["b"])

    assert _names(f, EYES, X) == ["a", "a#2", "a#3", "b"]


def test_control_flow_labels_nest_and_jit_adds_none():
    def f(p, xs):
        def step(c, x):
            c = jax.lax.cond(x.sum() > 0, lambda c: jax.nn.relu(c @ p["a"] + x), lambda c: c, c)
            return jax.nn.relu(c @ p["a"]), None

        h = jax.lax.scan(step, jnp.zeros(3), xs)[0]
        return jax.jit(lambda h: jax.nn.relu(h @ p["a"]))(h)  # jit adds no label

    assert _names(f, EYES, X) == ["a [in scan] [in cond]", "a [in scan]", "a"]


def test_an_nnx_variables_value_is_not_part_of_the_name():
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(3, 4, use_bias=False, rngs=rngs)  # one leaf
            self.out = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return jax.nn.relu(self.out(jax.nn.relu(self.hidden(x))))

    # The leaves' key paths end in `.value` (hidden/kernel/value): the Variable is named.
    assert _names(Net(nnx.Rngs(0)), X) == ["hidden", "out"]


def test_a_site_in_a_library_function_passed_as_fn_has_one_name():
    """jax.nn.relu passed as fn: its site is not named after the line that called the
    transform (JAX < 0.9 keeps the caller's frames in a traceback), so init and update agree."""
    tracker = lj.track_dead_units(jax.nn.relu)
    state = tracker.init(jnp.ones(3))
    _, state = tracker.update(state, -jnp.ones(3))
    assert list(state) == ["relu"]
    (site,) = lj.relu_sites(jax.nn.relu)(jnp.ones(3))
    assert site.name == "relu" and site.source is None
