"""Every public function called the documented way, for mypy and pyright (and run by
tests/test_typing.py, so each call here is known to work).

`correct_use` must type-check with no error: annotations may not reject documented use.
`rejected_calls` holds calls that fail at run time; each carries a `type: ignore` that both
checkers must need (mypy's warn_unused_ignores and pyright's reportUnnecessaryTypeIgnoreComment
turn an unneeded one into an error), so annotations may not accept them either.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import leakyjax as lj


def _uses_initializer(init: jax.nn.initializers.Initializer) -> jax.Array:
    # What flax, equinox or haiku do with a kernel initializer.
    return init(jax.random.key(1), (4, 3), jnp.float32)


def correct_use() -> list[jax.Array | float]:
    key = jax.random.key(0)
    x = jnp.array([-2.0, 0.0, 3.0])
    x_nhwc = jnp.ones((2, 4, 4, 3))
    slopes = jnp.full((3,), 0.25)
    out: list[jax.Array | float] = [
        lj.leaky_relu(x),
        lj.leaky_relu(x, 0.2, grad_at_zero=1.0),
        lj.leaky_relu(x, jnp.float32(0.2)),
        lj.leaky_relu(np.array([1.0, -1.0]), np.float32(0.1)),
        lj.leaky_relu(2.0),
        jax.grad(lj.leaky_relu)(0.0),
        jax.jit(lj.leaky_relu)(x),
        jax.vmap(lj.leaky_relu, in_axes=(None, 0))(x, slopes),
        lj.prelu(x_nhwc, slopes),
        lj.prelu(jnp.moveaxis(x_nhwc, -1, 1), slopes, axis=1),
        lj.rrelu(key, x),
        lj.rrelu(key, x, 0.1, 0.3),
        lj.rrelu(jax.random.PRNGKey(0), x),
        lj.rrelu(None, x, deterministic=True),
        lj.inverse_leaky_relu(x, 0.2),
        lj.leaky_relu_log_abs_det_jacobian(x, 0.2),
        lj.dead_units(x_nhwc),
        lj.dead_units(x_nhwc, axis=(0, 1, 2)),
        lj.dead_fraction(x_nhwc, axis=(0, 1, 2)),
        lj.gain(0.2),
    ]
    for make in (lj.he_normal, lj.he_uniform):
        init = make(0.2)
        out += [
            init(key, (4, 3)),
            init(key, (4, 3), jnp.bfloat16),
            init(key, (4, 3), None),
            init(key, (4, 3), out_sharding=None),
            make(0.2, in_axis=(0, 1), out_axis=-1, dtype=jnp.float32)(key, (2, 2, 3)),
            _uses_initializer(init),
        ]
    params = {"dense": {"w": jnp.ones((3, 4))}}

    def model(p: dict, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x @ p["dense"]["w"])

    out.append(lj.leakify(model)(params, x))
    out.append(lj.leakify(model, 0.2, grad_at_zero=1.0, patterns=("relu", "where"))(params, x))
    out.append(lj.leakify(model, sites=["dense"])(params, x))
    out.append(lj.leakify(model, sites=lambda site: site.kind == "relu")(params, x))
    sites: tuple[lj.Site, ...] = lj.relu_sites(model)(params, x)
    names: list[str] = [site.name for site in sites]
    tracker: lj.DeadUnitTracker = lj.track_dead_units(model, unit_axis=-1)
    state = tracker.init(params, x)
    loss, state = jax.jit(tracker.update)(state, params, x)
    state = tracker.merge(state, state)
    result: lj.DeadUnits = tracker.result(state)[names[0]]
    out += [loss, result.dead, result.fraction]
    value: float = lj.gain()
    array: jax.Array = lj.leaky_relu(x)
    activation: Callable[[jax.Array], jax.Array] = lj.leaky_relu
    return [*out, value, array, activation(x)]


def rejected_calls() -> list[Callable[[], object]]:
    x = jnp.array([-2.0, 0.0, 3.0])
    return [
        lambda: lj.leaky_relu("1.0"),  # type: ignore[arg-type]
        lambda: lj.leaky_relu([1.0, -1.0]),  # type: ignore[arg-type]
        lambda: lj.leaky_relu(x, grad_at_zero="1"),  # type: ignore[arg-type]
        lambda: lj.prelu(x, x, axis=1.5),  # type: ignore[arg-type]
        lambda: lj.dead_units([[1.0]]),  # type: ignore[arg-type]
        lambda: lj.gain("0.2"),  # type: ignore[arg-type]
        lambda: lj.he_normal(0.2, in_axis=1.0),  # type: ignore[arg-type]
        lambda: lj.inverse_leaky_relu(x, negative_slope="0.2"),  # type: ignore[arg-type]
        lambda: lj.leakify(jnp.sin, "0.2"),  # type: ignore[arg-type]
        lambda: lj.rrelu(None, x),  # type: ignore[call-overload]
        lambda: lj.track_dead_units(jnp.sin, unit_axis=1.0),  # type: ignore[arg-type]
    ]
