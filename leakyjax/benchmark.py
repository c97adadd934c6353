"""Benchmark leakyjax against jax.nn on this machine: ``python -m leakyjax.benchmark``.

Every figure is a ratio measured side by side in one process: the candidates run interleaved,
after warm-up, over several rounds, and the median is reported. Prints a table (or ``--json``).

1. forward throughput (GB/s moved) of leakyjax, ``jax.nn.leaky_relu`` and an XLA copy of the
   same array (the bandwidth roofline), with fresh output buffers and with donated ones;
2. forward + backward throughput of the same three;
3. an MLP training step: time and saved-residual bytes, leakyjax vs ``jax.nn.leaky_relu`` vs
   ``jax.nn.relu``;
4. eager call latency on a small array (the notebook case);
5. the transforms: ``jax.jit(jax.grad(leakify(f)))`` of an MLP written with ``jax.nn.relu``
   against the same MLP written with ``leakyjax.leaky_relu`` by hand (trace + lower time, first
   call with compilation, step time, and whether they lower to the same program), and the
   overhead of ``track_dead_units`` on a jitted training step (``tracker.update`` through
   ``value_and_grad(..., has_aux=True)`` against the plain step; the tracker always keeps
   the dormancy scores' sums, so this is its cost with scores), and the cost of one jitted
   ``revive`` call (every site, an Adam-shaped optimizer state) against the plain step;
6. the memory of the backward pass by model kind (an MLP, a CNN with and without BatchNorm, a
   transformer block, all in plain JAX): the temporary bytes XLA allocates for
   ``jax.jit(jax.grad(loss))`` (compiled, not run) and the arrays reverse mode saves, for
   ``leakyjax.leaky_relu`` against ``jax.nn.leaky_relu`` and for ``leakify(f, 0.0)`` against ``f``
   written with ``jax.nn.relu``. Compiled, not run: about 30 s on 2 CPU cores, whatever
   the flags.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import re
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import leakyjax as lj

# The candidates of the elementwise measurements: the "copy" is a pass over x (negation)
# that XLA cannot elide, the bandwidth roofline.
_ELEMENTWISE: dict[str, Callable] = {
    "leakyjax": lj.leaky_relu,
    "jax.nn": jax.nn.leaky_relu,
    "copy": lambda x: -x,
}
# The candidates of the MLP and eager measurements.
_ACTIVATIONS: dict[str, Callable] = {
    "leakyjax": lj.leaky_relu,
    "jax.nn": jax.nn.leaky_relu,
    "relu": jax.nn.relu,
}


def _log(quiet: bool, *args: object) -> None:
    if not quiet:
        print(*args, file=sys.stderr, flush=True)


def _interleaved(
    candidates: dict[str, Callable[[], object]], rounds: int, repeats: int
) -> dict[str, float]:
    """Median seconds per call of each candidate, timed in interleaved rounds (each round
    starting from the next candidate, so that none always runs after the same one)."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():  # warm-up: compile and touch the buffers
        jax.block_until_ready(fn())
    order = list(candidates.items())
    for r in range(rounds):
        for name, fn in order[r % len(order) :] + order[: r % len(order)]:
            start = time.perf_counter()
            for _ in range(repeats):
                out = fn()
            jax.block_until_ready(out)
            times[name].append((time.perf_counter() - start) / repeats)
    return {name: statistics.median(t) for name, t in times.items()}


def _forward(size: int, rounds: int, repeats: int, donate: bool) -> dict[str, float]:
    """GB/s of the forward pass (bytes read + written over seconds)."""
    fns = _ELEMENTWISE
    x0 = jax.random.normal(jax.random.key(0), (size,), jnp.float32)
    nbytes = 2 * x0.nbytes
    if donate:
        # Each call takes its input's buffer for its output: no fresh pages, the real roofline.
        jitted = {k: jax.jit(f, donate_argnums=0) for k, f in fns.items()}
        state = {k: x0 + 0 for k in fns}

        def make(name: str) -> Callable[[], object]:
            def run() -> object:
                state[name] = jitted[name](state[name])
                return state[name]

            return run

        candidates = {k: make(k) for k in fns}
    else:
        jitted = {k: jax.jit(f) for k, f in fns.items()}
        candidates = {k: functools.partial(f, x0) for k, f in jitted.items()}
    seconds = _interleaved(candidates, rounds, repeats)
    return {k: nbytes / s / 1e9 for k, s in seconds.items()}


def _forward_backward(size: int, rounds: int, repeats: int) -> dict[str, float]:
    """GB/s of value-and-grad of sum(f(x) * c): reads x and c, writes y and dx."""
    fns = _ELEMENTWISE
    x0 = jax.random.normal(jax.random.key(0), (size,), jnp.float32)
    c = jax.random.normal(jax.random.key(1), (size,), jnp.float32)

    def make(f: Callable) -> Callable[[], object]:
        step = jax.jit(lambda x, c: jax.vjp(f, x)[1](c)[0])
        return lambda: step(x0, c)

    seconds = _interleaved({k: make(f) for k, f in fns.items()}, rounds, repeats)
    nbytes = 3 * x0.nbytes  # read x, read the cotangent, write dx (y is fused away or recomputed)
    return {k: nbytes / s / 1e9 for k, s in seconds.items()}


def _residuals(f: Callable, *args: object) -> list[jax.ShapeDtypeStruct]:
    """The distinct arrays reverse mode keeps for the backward pass of f (the vjp's closure),
    found by tracing, not by running f."""

    def kept(*args: object) -> list:
        _, vjp_fn = jax.vjp(f, *args)
        leaves = {id(leaf): leaf for leaf in jax.tree.leaves(vjp_fn) if hasattr(leaf, "dtype")}
        return list(leaves.values())

    return jax.eval_shape(kept, *args)


def _nbytes(leaf: jax.ShapeDtypeStruct) -> int:
    return math.prod(leaf.shape) * leaf.dtype.itemsize


def residual_bytes(f: Callable, *args: object) -> tuple[int, int]:
    """(unique bytes, boolean bytes) of what reverse mode keeps for the backward pass of f."""
    leaves = _residuals(f, *args)
    total = sum(_nbytes(leaf) for leaf in leaves)
    booleans = sum(_nbytes(leaf) for leaf in leaves if leaf.dtype == jnp.bool_)
    return total, booleans


def compiled_temp_bytes(f: Callable, *args: object) -> int | None:
    """The temporary bytes XLA allocates to run ``jax.jit(f)`` on these arguments: compiled,
    not run. This is what the backward pass keeps after XLA's fusion and rematerialization
    (the buffers of the arguments and outputs are not counted). None where the backend does
    not report it."""
    analysis = jax.jit(f).lower(*args).compile().memory_analysis()
    return None if analysis is None else int(analysis.temp_size_in_bytes)


def mlp_loss(act: Callable, params: list, x: jax.Array) -> jax.Array:
    """A Leaky ReLU MLP with a linear read-out and a squared-error loss."""
    for w, b in params[:-1]:
        x = act(x @ w + b)
    w, b = params[-1]
    return jnp.mean((x @ w + b) ** 2)


def mlp_params(key: jax.Array, layers: int, width: int, dtype=jnp.float32) -> list:
    keys = jax.random.split(key, layers + 1)
    return [(lj.he_normal(0.01)(k, (width, width), dtype), jnp.zeros(width, dtype)) for k in keys]


def _conv_batchnorm(x: jax.Array, conv: tuple) -> jax.Array:
    """A 3x3 convolution (NHWC), then batch norm in training mode: normalized with the
    statistics of this batch, then scaled and shifted (gamma, beta)."""
    w, gamma, beta = conv
    dims = ("NHWC", "HWIO", "NHWC")
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)
    mean, var = jnp.mean(y, axis=(0, 1, 2)), jnp.var(y, axis=(0, 1, 2))
    return (y - mean) * jax.lax.rsqrt(var + 1e-5) * gamma + beta


def _conv_bias(x: jax.Array, conv: tuple) -> jax.Array:
    """A 3x3 convolution (NHWC) and a bias (beta; gamma unused): no normalization."""
    w, _, beta = conv
    dims = ("NHWC", "HWIO", "NHWC")
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims) + beta


def cnn_loss(act: Callable, params: dict, x: jax.Array, batchnorm: bool = True) -> jax.Array:
    """A small ResNet: conv -> BatchNorm -> act, then a residual block (conv -> BatchNorm ->
    act -> conv -> BatchNorm, plus the skip, -> act), global average pooling, a linear
    read-out and a squared-error loss. ``batchnorm=False``: convolutions with a bias instead."""
    layer = _conv_batchnorm if batchnorm else _conv_bias
    stem, conv1, conv2 = params["convs"]
    h = act(layer(x, stem))
    h = act(h + layer(act(layer(h, conv1)), conv2))
    w, b = params["head"]
    return jnp.mean((jnp.mean(h, axis=(1, 2)) @ w + b) ** 2)


def cnn_params(key: jax.Array, in_channels: int, channels: int, dtype=jnp.float32) -> dict:
    keys = jax.random.split(key, 4)
    convs = []
    for k, c in zip(keys[:3], (in_channels, channels, channels), strict=True):
        w = lj.he_normal(0.01)(k, (3, 3, c, channels), dtype)
        convs.append((w, jnp.ones(channels, dtype), jnp.zeros(channels, dtype)))
    head = (lj.he_normal(0.01)(keys[3], (channels, 10), dtype), jnp.zeros(10, dtype))
    return {"convs": convs, "head": head}


def _layer_norm(x: jax.Array, scale: jax.Array, offset: jax.Array) -> jax.Array:
    mean, var = jnp.mean(x, axis=-1, keepdims=True), jnp.var(x, axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * scale + offset


def transformer_loss(act: Callable, params: dict, x: jax.Array, heads: int = 4) -> jax.Array:
    """A pre-LayerNorm transformer block on (batch, tokens, features): multi-head
    self-attention and an MLP (features -> hidden -> features, with act), each with a residual
    connection; a squared-error loss."""
    batch, tokens, features = x.shape
    split = (batch, tokens, heads, features // heads)
    h = _layer_norm(x, *params["norm1"])
    q, k, v = (jnp.reshape(h @ params[w], split) for w in ("query", "key", "value"))
    weights = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k) / (features // heads) ** 0.5)
    attended = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(x.shape)
    x = x + attended @ params["out"]
    (w1, b1), (w2, b2) = params["mlp"]
    x = x + act(_layer_norm(x, *params["norm2"]) @ w1 + b1) @ w2 + b2
    return jnp.mean(x**2)


def transformer_params(key: jax.Array, features: int, hidden: int, dtype=jnp.float32) -> dict:
    keys = jax.random.split(key, 6)
    init = jax.nn.initializers.lecun_normal()
    square = {
        name: init(k, (features, features), dtype)
        for name, k in zip(("query", "key", "value", "out"), keys[:4], strict=True)
    }
    norm = (jnp.ones(features, dtype), jnp.zeros(features, dtype))
    mlp = [
        (lj.he_normal(0.01)(keys[4], (features, hidden), dtype), jnp.zeros(hidden, dtype)),
        (init(keys[5], (hidden, features), dtype), jnp.zeros(features, dtype)),
    ]
    return {**square, "norm1": norm, "norm2": norm, "mlp": mlp}


def _mlp(layers: int, width: int, batch: int, rounds: int, repeats: int) -> dict[str, dict]:
    acts = _ACTIVATIONS
    params = mlp_params(jax.random.key(0), layers, width)
    x = jax.random.normal(jax.random.key(1), (batch, width))

    def make(act: Callable) -> Callable[[], object]:
        @jax.jit
        def step(params: list) -> list:
            grads = jax.grad(lambda p: mlp_loss(act, p, x))(params)
            return jax.tree.map(lambda p, g: p - 1e-3 * g, params, grads)

        return lambda: step(params)

    seconds = _interleaved({k: make(a) for k, a in acts.items()}, rounds, repeats)
    residuals = {
        k: residual_bytes(lambda p, a=a: mlp_loss(a, p, x), params) for k, a in acts.items()
    }
    return {k: {"step_s": seconds[k], "residual_bytes": residuals[k][0]} for k in acts}


def _eager(rounds: int, repeats: int) -> dict[str, float]:
    x = jnp.linspace(-1.0, 1.0, 64)
    fns = _ACTIVATIONS
    return _interleaved({k: functools.partial(f, x) for k, f in fns.items()}, rounds, repeats)


def _fresh_timing(candidates: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of one call of each candidate, each call starting from empty caches
    (so that tracing, lowering and compiling are timed, not looked up), interleaved."""

    def cold(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            jax.clear_caches()
            return fn()

        return run

    return _interleaved({k: cold(f) for k, f in candidates.items()}, rounds, 1)


def _program_text(lowered: Any) -> str:
    # The module is named after the jitted function; the program is the rest.
    return re.sub(r"module @\S+", "module", lowered.as_text())


def _transforms(layers: int, width: int, batch: int, rounds: int) -> dict[str, dict]:
    """leakify against the hand-written twin, and the tracker's cost in a training step."""
    params = mlp_params(jax.random.key(0), layers, width)
    x = jax.random.normal(jax.random.key(1), (batch, width))
    losses = {
        "hand-written": lambda p, x: mlp_loss(lj.leaky_relu, p, x),
        "leakify": lj.leakify(lambda p, x: mlp_loss(jax.nn.relu, p, x)),
    }

    def fresh_grad(loss: Callable) -> Any:
        # A new function object each time: nothing traced before can be reused.
        return jax.jit(jax.grad(lambda p, x: loss(p, x)))

    def lower(loss: Callable) -> None:
        fresh_grad(loss).lower(params, x)

    def bound(fn: Callable, *args: Any) -> Callable[[], object]:
        return lambda: fn(*args)

    lower_s = _fresh_timing({k: bound(lower, f) for k, f in losses.items()}, rounds)
    first_call_s = _fresh_timing(
        {k: bound(lambda f: fresh_grad(f)(params, x), f) for k, f in losses.items()}, rounds
    )
    grads = {k: jax.jit(jax.grad(f)) for k, f in losses.items()}
    step_s = _interleaved({k: bound(g, params, x) for k, g in grads.items()}, rounds, 3)
    same_program = len({_program_text(g.lower(params, x)) for g in grads.values()}) == 1

    relu_loss = lambda p, x: mlp_loss(jax.nn.relu, p, x)  # noqa: E731
    tracker = lj.track_dead_units(relu_loss)
    state = tracker.init(params, x)
    bare = lj.track_dead_units(relu_loss, scores=False)  # dead units only: no dormancy sums
    bare_state = bare.init(params, x)

    @jax.jit
    def plain_step(params: list, state: dict) -> tuple:
        loss, g = jax.value_and_grad(relu_loss)(params, x)
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, g), state, loss

    @jax.jit
    def tracked_step(params: list, state: dict) -> tuple:
        (loss, state), g = jax.value_and_grad(lambda p: tracker.update(state, p, x), has_aux=True)(
            params
        )
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, g), state, loss

    @jax.jit
    def bare_step(params: list, state: dict) -> tuple:
        (loss, state), g = jax.value_and_grad(lambda p: bare.update(state, p, x), has_aux=True)(
            params
        )
        return jax.tree.map(lambda p, g: p - 1e-3 * g, params, g), state, loss

    # ReDo as a training loop runs it, jitted: the tracker's masks (half the units of each
    # layer, traced, so nothing is specialized to them) and an Adam-shaped state (a count,
    # first and second moments: what optax.adam keeps), whose moments revive resets.
    dead = {
        name: jnp.arange(r.dead.shape[-1]) % 2 == 0 for name, r in tracker.result(state).items()
    }
    moments = jax.tree.map(jnp.zeros_like, params)
    opt_state = (jnp.zeros((), jnp.int32), moments, moments)
    revive = jax.jit(lj.revive(relu_loss))
    key = jax.random.key(2)
    train_s = _interleaved(
        {
            "plain": lambda: plain_step(params, state),
            "with tracker.update": lambda: tracked_step(params, state),
            "with tracker.update, no scores": lambda: bare_step(params, bare_state),
            "revive": lambda: revive(key, dead, params, x, opt_state=opt_state),
        },
        rounds,
        3,
    )
    return {
        "leakify": {
            "lower_s": lower_s,
            "first_call_s": first_call_s,
            "step_s": step_s,
            "same_program": same_program,
        },
        "tracker_step_s": train_s,
        "eager_call_s": _eager_transforms(layers, rounds),
    }


# The columns of the eager-call and training-step tables, in order.
EAGER_CALLS = (
    "leakify(jax.jit(f))",
    "jax.jit(twin)",
    "tracker.update",
    "jax.jit(tracker.update)",
    "leakify(f)",
    "jax.grad(f)",
    "f",
)
TRAINING_STEPS = ("with tracker.update", "with tracker.update, no scores", "plain", "revive")


# The eager calls' model: small, so that what is measured is the call, not the arithmetic.
EAGER_WIDTH, EAGER_BATCH = 64, 32


def _eager_transforms(layers: int, rounds: int) -> dict[str, float]:
    """Eager calls (no outer jit) of a small MLP loss: leakify of a jitted model against
    jax.jit of the hand-written twin, and the tracker's update of a jitted model against
    jax.jit of that update; leakify of a plain function, which traces it at every call as
    jax.grad does, against jax.grad's own eager call and the eager model."""
    params = mlp_params(jax.random.key(0), layers, EAGER_WIDTH)
    x = jax.random.normal(jax.random.key(1), (EAGER_BATCH, EAGER_WIDTH))
    relu_loss = lambda p, x: mlp_loss(jax.nn.relu, p, x)  # noqa: E731
    leaky_jit = lj.leakify(jax.jit(relu_loss))
    twin_jit = jax.jit(lambda p, x: mlp_loss(lj.leaky_relu, p, x))
    leaky_eager = lj.leakify(relu_loss)
    grad_eager = jax.grad(relu_loss)
    tracker = lj.track_dead_units(jax.jit(relu_loss))
    state = tracker.init(params, x)
    update_jit = jax.jit(tracker.update)
    # Two groups, each interleaved: a call of tens of microseconds timed right after one of
    # milliseconds (a re-trace) runs on cold caches, which would bias whichever came first.
    dispatched = {
        "leakify(jax.jit(f))": lambda: leaky_jit(params, x),
        "jax.jit(twin)": lambda: twin_jit(params, x),
        "tracker.update": lambda: tracker.update(state, params, x),
        "jax.jit(tracker.update)": lambda: update_jit(state, params, x),
    }
    retraced = {
        "leakify(f)": lambda: leaky_eager(params, x),
        "jax.grad(f)": lambda: grad_eager(params, x),
        "f": lambda: relu_loss(params, x),
    }
    return {**_interleaved(dispatched, rounds, 200), **_interleaved(retraced, rounds, 5)}


# The models of the memory measurement, by kind: fixed shapes (compile-only, so cheap).
MEMORY_MODELS: dict[str, str] = {
    "MLP": "MLP, 3 hidden layers of 256, batch 512",
    "CNN + BatchNorm": "ResNet block with BatchNorm (training mode), 32 channels, 16x16 images, "
    "batch 16",
    "CNN, no BatchNorm": "the same CNN with a bias instead of BatchNorm",
    "transformer block": "pre-LayerNorm, 4 heads, 64 tokens of 128 features, MLP 512, batch 8",
}


def memory_models() -> dict[str, tuple[Callable, tuple]]:
    """The models of the memory measurement: {kind: (loss(act, params, x), (params, x))}."""
    key, data = jax.random.key(0), jax.random.key(1)
    images = jax.random.normal(data, (16, 16, 16, 3))
    return {
        "MLP": (mlp_loss, (mlp_params(key, 3, 256), jax.random.normal(data, (512, 256)))),
        "CNN + BatchNorm": (cnn_loss, (cnn_params(key, 3, 32), images)),
        "CNN, no BatchNorm": (
            functools.partial(cnn_loss, batchnorm=False),
            (cnn_params(key, 3, 32), images),
        ),
        "transformer block": (
            transformer_loss,
            (transformer_params(key, 128, 512), jax.random.normal(data, (8, 64, 128))),
        ),
    }


def _memory_of(loss: Callable, params: Any, x: jax.Array) -> dict:
    """Compiled temporary bytes of jit(grad(loss)) and the arrays reverse mode saves, for each
    activation in ``loss(act, params, x)``, and for leakify of the relu model."""

    def with_act(act: Callable) -> Callable:
        return lambda params, inputs: loss(act, params, inputs)

    losses = {
        "leakyjax": with_act(lj.leaky_relu),
        "jax.nn": with_act(jax.nn.leaky_relu),
        "leakify": lj.leakify(with_act(jax.nn.relu), 0.0),
        "relu": with_act(jax.nn.relu),
    }
    saved = {k: _residuals(lambda p, f=f: f(p, x), params) for k, f in losses.items()}
    return {
        "temp_bytes": {k: compiled_temp_bytes(jax.grad(f), params, x) for k, f in losses.items()},
        "residuals": {k: len(leaves) for k, leaves in saved.items()},
        "residual_bytes": {k: sum(map(_nbytes, leaves)) for k, leaves in saved.items()},
    }


def memory() -> dict[str, dict]:
    """The backward pass's memory by model kind (the models of ``memory_models``): per kind,
    ``model`` (a description), and per candidate (``leakyjax``, ``jax.nn``, ``leakify``,
    ``relu``) ``temp_bytes`` (compiled temporary bytes of ``jit(grad(loss))``), ``residuals``
    and ``residual_bytes`` (the arrays reverse mode saves). Compiled once per process."""
    return copy.deepcopy(_memory_once())


@functools.cache
def _memory_once() -> dict[str, dict]:
    # Fixed models, compiled not run: the same figures on every call in a process.
    return {
        kind: {"model": MEMORY_MODELS[kind], **_memory_of(loss, params, x)}
        for kind, (loss, (params, x)) in memory_models().items()
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def run(
    size: int = 1 << 24,
    layers: int = 4,
    width: int = 1024,
    batch: int = 512,
    rounds: int = 15,
    quiet: bool = False,
) -> dict:
    """Runs all six measurements and returns their results (ratios included)."""
    result: dict = {"backend": jax.default_backend(), "devices": len(jax.devices()), "size": size}
    big = max(1, min(10, (1 << 26) // max(size, 1)))
    _log(quiet, f"[1/6] forward, {size:,} float32 elements ...")
    result["forward_fresh_gbs"] = _forward(size, rounds, big, donate=False)
    result["forward_donated_gbs"] = _forward(size, rounds, big, donate=True)
    _log(quiet, "[2/6] forward + backward ...")
    result["forward_backward_gbs"] = _forward_backward(size, rounds, big)
    _log(quiet, f"[3/6] MLP step, {layers} layers of {width}, batch {batch} ...")
    result["mlp"] = _mlp(layers, width, batch, rounds, 3)
    _log(quiet, "[4/6] eager call latency ...")
    result["eager_s"] = _eager(rounds, 200)
    _log(quiet, f"[5/6] leakify and track_dead_units, MLP {layers} x {width}, batch {batch} ...")
    result["transforms"] = _transforms(layers, width, batch, rounds)
    _log(quiet, "[6/6] backward-pass memory by model kind (compiled, not run) ...")
    result["memory"] = memory()
    fw, fwd, fb = (
        result["forward_fresh_gbs"],
        result["forward_donated_gbs"],
        result["forward_backward_gbs"],
    )
    mlp, eager = result["mlp"], result["eager_s"]
    leaky, tracked = result["transforms"]["leakify"], result["transforms"]["tracker_step_s"]
    calls = result["transforms"]["eager_call_s"]
    result["ratios"] = {
        "forward vs jax.nn (fresh)": fw["leakyjax"] / fw["jax.nn"],
        "forward vs copy (fresh)": fw["leakyjax"] / fw["copy"],
        "forward vs jax.nn (donated)": fwd["leakyjax"] / fwd["jax.nn"],
        "forward vs copy (donated)": fwd["leakyjax"] / fwd["copy"],
        "forward+backward vs jax.nn": fb["leakyjax"] / fb["jax.nn"],
        "forward+backward vs copy": fb["leakyjax"] / fb["copy"],
        "MLP step time vs jax.nn": mlp["leakyjax"]["step_s"] / mlp["jax.nn"]["step_s"],
        "MLP step time vs relu": mlp["leakyjax"]["step_s"] / mlp["relu"]["step_s"],
        "MLP residual bytes vs jax.nn": mlp["leakyjax"]["residual_bytes"]
        / mlp["jax.nn"]["residual_bytes"],
        "eager latency vs jax.nn": eager["leakyjax"] / eager["jax.nn"],
        "eager latency vs relu": eager["leakyjax"] / eager["relu"],
        "leakify step time vs hand-written": leaky["step_s"]["leakify"]
        / leaky["step_s"]["hand-written"],
        "leakify trace+lower time vs hand-written": leaky["lower_s"]["leakify"]
        / leaky["lower_s"]["hand-written"],
        "leakify first call (trace+compile) vs hand-written": leaky["first_call_s"]["leakify"]
        / leaky["first_call_s"]["hand-written"],
        "training step with tracker vs without": tracked["with tracker.update"] / tracked["plain"],
        "training step with tracker, scores vs no scores": tracked["with tracker.update"]
        / tracked["with tracker.update, no scores"],
        "eager call of leakify(jax.jit(f)) vs jax.jit(twin)": calls["leakify(jax.jit(f))"]
        / calls["jax.jit(twin)"],
        "eager tracker.update of jax.jit(f) vs jax.jit(tracker.update)": calls["tracker.update"]
        / calls["jax.jit(tracker.update)"],
        "revive (jitted, all sites) vs a training step": tracked["revive"] / tracked["plain"],
    }
    for kind, m in result["memory"].items():
        temp = m["temp_bytes"]
        for key, value in [
            (f"{kind}: backward temp bytes vs jax.nn", _ratio(temp["leakyjax"], temp["jax.nn"])),
            (
                f"{kind}: backward temp bytes, leakify(f, 0.0) vs f",
                _ratio(temp["leakify"], temp["relu"]),
            ),
        ]:
            if value is not None:
                result["ratios"][key] = value
    return result


def format_table(result: dict) -> str:
    lines = [
        f"leakyjax benchmark on {result['backend']} ({result['devices']} device(s)), "
        f"medians of interleaved rounds",
        "",
        "| measurement | leakyjax | jax.nn.leaky_relu | reference |",
        "|---|---|---|---|",
    ]
    for key, label in [
        ("forward_fresh_gbs", "forward GB/s, fresh output (ref: copy)"),
        ("forward_donated_gbs", "forward GB/s, donated buffer (ref: copy)"),
        ("forward_backward_gbs", "forward+backward GB/s (ref: copy)"),
    ]:
        r = result[key]
        lines.append(f"| {label} | {r['leakyjax']:.2f} | {r['jax.nn']:.2f} | {r['copy']:.2f} |")
    m = result["mlp"]
    lines.append(
        f"| MLP step ms (ref: relu) | {m['leakyjax']['step_s'] * 1e3:.2f} | "
        f"{m['jax.nn']['step_s'] * 1e3:.2f} | {m['relu']['step_s'] * 1e3:.2f} |"
    )
    lines.append(
        f"| MLP saved residual MB (ref: relu) | {m['leakyjax']['residual_bytes'] / 1e6:.2f} | "
        f"{m['jax.nn']['residual_bytes'] / 1e6:.2f} | {m['relu']['residual_bytes'] / 1e6:.2f} |"
    )
    e = result["eager_s"]
    lines.append(
        f"| eager call us (ref: relu) | {e['leakyjax'] * 1e6:.1f} | {e['jax.nn'] * 1e6:.1f} | "
        f"{e['relu'] * 1e6:.1f} |"
    )
    leaky, tracked = result["transforms"]["leakify"], result["transforms"]["tracker_step_s"]
    lines += [
        "",
        "| jit(grad(f)) of the MLP | leakify(relu model) | hand-written lj.leaky_relu |",
        "|---|---|---|",
    ]
    for key, label in [
        ("lower_s", "trace + lower ms"),
        ("first_call_s", "first call ms (trace, lower, compile, run)"),
        ("step_s", "step ms"),
    ]:
        lines.append(
            f"| {label} | {leaky[key]['leakify'] * 1e3:.2f} | "
            f"{leaky[key]['hand-written'] * 1e3:.2f} |"
        )
    lines.append(f"| same StableHLO | {'yes' if leaky['same_program'] else 'NO'} | |")
    eager = result["transforms"]["eager_call_s"]
    lines += [
        "",
        f"| eager call of an MLP loss (width {EAGER_WIDTH}, batch {EAGER_BATCH}), us | "
        "leakify(jax.jit(f)) | jax.jit(twin) | tracker.update (f jitted) | "
        "jax.jit(tracker.update) | leakify(f) | jax.grad(f) | f |",
        "|---|---|---|---|---|---|---|---|",
        "| us per call (lower is better) | "
        + " | ".join(f"{eager[k] * 1e6:.1f}" for k in EAGER_CALLS)
        + " |",
    ]
    lines += [
        "",
        "| MLP training step (relu), ms | with tracker.update | the same, no scores | plain | "
        "one revive call |",
        "|---|---|---|---|---|",
        "| ms per call (lower is better) | "
        + " | ".join(f"{tracked[k] * 1e3:.2f}" for k in TRAINING_STEPS)
        + " |",
    ]
    lines += [
        "",
        "| jit(grad(loss)): compiled temp MB (saved arrays) | leakyjax | jax.nn.leaky_relu | "
        "ratio | leakify(f, 0.0) | f with jax.nn.relu | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, m in result["memory"].items():
        temp, saved = m["temp_bytes"], m["residuals"]

        def cell(k: str, temp: dict = temp, saved: dict = saved) -> str:
            mb = "n/a" if temp[k] is None else f"{temp[k] / 1e6:.2f}"
            return f"{mb} ({saved[k]})"

        def ratio(a: str, b: str, temp: dict = temp) -> str:
            value = _ratio(temp[a], temp[b])
            return "n/a" if value is None else f"{value:.3f}"

        lines.append(
            f"| {kind} | {cell('leakyjax')} | {cell('jax.nn')} | {ratio('leakyjax', 'jax.nn')} | "
            f"{cell('leakify')} | {cell('relu')} | {ratio('leakify', 'relu')} |"
        )
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in result["ratios"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        # Not __doc__: python -OO strips it.
        prog="python -m leakyjax.benchmark",
        description="Benchmark leakyjax against jax.nn on this machine.",
    )
    parser.add_argument("--size", type=int, default=1 << 24, help="elements for 1-2 (float32)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per median")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    result = run(args.size, args.layers, args.width, args.batch, args.rounds, quiet=False)
    print(json.dumps(result, indent=1) if args.json else format_table(result))


if __name__ == "__main__":
    main()
