"""track_dead_units on plain JAX, against pre-activations collected by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import normal

import leakyjax as lj

pytestmark = pytest.mark.usefixtures("no_warnings")

PARAMS = {
    "hidden": {"w": normal(0, (4, 16)), "b": -2.5 * jnp.ones(16)},
    "deep": {"w": normal(1, (16, 8)), "b": jnp.zeros(8)},
    "out": {"w": jnp.ones((8, 1))},
}
BATCHES = [normal(10 + i, (5, 4)) for i in range(4)]


def preactivations(p, x):
    z1 = x @ p["hidden"]["w"] + p["hidden"]["b"]
    z2 = jax.nn.relu(z1) @ p["deep"]["w"] + p["deep"]["b"]
    return z1, z2


def model(p, x, act=jax.nn.relu):
    h = act(x @ p["hidden"]["w"] + p["hidden"]["b"])
    h = act(h @ p["deep"]["w"] + p["deep"]["b"])
    return jnp.sum(h @ p["out"]["w"])


def _by_hand(batches):
    z1 = jnp.concatenate([preactivations(PARAMS, x)[0] for x in batches])
    z2 = jnp.concatenate([preactivations(PARAMS, x)[1] for x in batches])
    return {"hidden": lj.dead_units(z1), "deep": lj.dead_units(z2)}


def _run(tracker, batches, state=None):
    state = tracker.init(PARAMS, batches[0]) if state is None else state
    update = jax.jit(tracker.update)
    for x in batches:
        _, state = update(state, PARAMS, x)
    return state


def test_dead_units_over_batches_equal_the_hand_collected_ones():
    tracker = lj.track_dead_units(model)
    result = tracker.result(_run(tracker, BATCHES))
    expected = _by_hand(BATCHES)
    assert sorted(result) == ["deep", "hidden"]
    for name, dead in expected.items():
        np.testing.assert_array_equal(result[name].dead, dead)
        assert result[name].fraction == jnp.mean(dead, dtype=jnp.float32)
        assert result[name].units == dead.shape[0]
        assert int(result[name].examples) == 20
    assert 0 < float(result["hidden"].fraction) < 1  # the data set has both kinds


def test_init_state_is_all_inactive():
    tracker = lj.track_dead_units(model)
    state = tracker.init(PARAMS, BATCHES[0])
    assert state["hidden"].active.dtype == jnp.bool_ and not state["hidden"].active.any()
    assert state["hidden"].active.shape == (16,) and int(state["hidden"].examples) == 0


def test_update_returns_the_model_output_and_is_grad_safe():
    tracker = lj.track_dead_units(model)
    state = tracker.init(PARAMS, BATCHES[0])
    (loss, new_state), grads = jax.jit(
        jax.value_and_grad(lambda p: tracker.update(state, p, BATCHES[0]), has_aux=True)
    )(PARAMS)
    plain_loss, plain_grads = jax.jit(jax.value_and_grad(model))(PARAMS, BATCHES[0])
    assert loss == plain_loss
    jax.tree.map(np.testing.assert_array_equal, grads, plain_grads)
    jax.tree.map(np.testing.assert_array_equal, new_state, _run(tracker, BATCHES[:1]))


def test_merge_of_two_halves_equals_one_pass():
    tracker = lj.track_dead_units(model)
    a, b = _run(tracker, BATCHES[:2]), _run(tracker, BATCHES[2:])
    merged, whole = tracker.merge(a, b), _run(tracker, BATCHES)
    for name in whole:
        np.testing.assert_array_equal(merged[name].active, whole[name].active)
        np.testing.assert_array_equal(merged[name].examples, whole[name].examples)
        # |activation| sums, added in another order.
        np.testing.assert_allclose(merged[name].magnitude, whole[name].magnitude, rtol=1e-6)


def test_nan_counts_as_alive():
    def f(x):
        return jax.nn.relu(x)

    tracker = lj.track_dead_units(f)
    x = jnp.array([[jnp.nan, -1.0, 0.0, 1.0]])
    _, state = tracker.update(tracker.init(x), x)
    np.testing.assert_array_equal(
        tracker.result(state)[_only(state)].dead, [False, True, True, False]
    )


def _only(state):
    (name,) = state
    return name


def test_unit_axis_for_nchw():
    kernel = normal(20, (3, 2, 3, 3))  # OIHW

    def conv(k, x):
        return jax.nn.relu(jax.lax.conv(x, k, (1, 1), "SAME"))  # NCHW

    x = normal(2, (2, 2, 5, 5)) - 1.0
    tracker = lj.track_dead_units(conv, unit_axis=1)
    _, state = jax.jit(tracker.update)(tracker.init(kernel, x), kernel, x)
    r = tracker.result(state)[_only(state)]
    z = jax.lax.conv(x, kernel, (1, 1), "SAME")
    np.testing.assert_array_equal(r.dead, lj.dead_units(z, axis=(0, 2, 3)))
    assert r.units == 3 and int(r.examples) == 2 * 5 * 5


def test_scan_ors_over_iterations():
    def rnn(w, xs):
        def step(h, x):
            h = jax.nn.relu(h @ w + x)
            return h, h

        return jax.lax.scan(step, jnp.zeros(3), xs)[1]

    w = jnp.eye(3) * 0.5
    xs = jnp.array([[1.0, -1.0, -1.0], [-3.0, 1.0, -1.0], [-3.0, -3.0, -1.0]])
    tracker = lj.track_dead_units(rnn)
    out, state = tracker.update(tracker.init(w, xs), w, xs)
    np.testing.assert_array_equal(out, rnn(w, xs))
    # Pre-activations by hand: h0 = 0; z_t = h_{t-1} w + x_t.
    h, zs = jnp.zeros(3), []
    for x in xs:
        zs.append(h @ w + x)
        h = jax.nn.relu(zs[-1])
    r = tracker.result(state)[_only(state)]
    np.testing.assert_array_equal(r.dead, lj.dead_units(jnp.stack(zs)))
    assert int(r.examples) == 3


def test_a_cond_branch_not_taken_counts_no_examples():
    def f(x):
        return jax.lax.cond(x.sum() > 0, jax.nn.relu, jnp.abs, x)

    tracker = lj.track_dead_units(f)
    x = -jnp.ones((2, 3))
    _, state = jax.jit(tracker.update)(tracker.init(x), x)
    r = tracker.result(state)[_only(state)]
    # No example seen is not "all dead" (as lj.dead_units says of an empty batch).
    assert int(r.examples) == 0 and not bool(r.dead.any()) and float(r.fraction) == 0.0


def test_axis_name_ors_across_a_vmapped_batch():
    tracker = lj.track_dead_units(model, axis_name="batch")
    x = jnp.concatenate(BATCHES)
    state = tracker.init(PARAMS, x[0])
    _, per_example = jax.jit(
        jax.vmap(tracker.update, in_axes=(None, None, 0), out_axes=(0, None), axis_name="batch")
    )(state, PARAMS, x)
    whole = _run(lj.track_dead_units(model), [x])
    jax.tree.map(np.testing.assert_array_equal, per_example, whole)


def test_finds_leakyjax_sites_and_leakified_models():
    twin = lj.track_dead_units(lambda p, x: model(p, x, act=lj.leaky_relu))
    leaky = lj.track_dead_units(lj.leakify(model))
    expected = lj.track_dead_units(model).result(_run(lj.track_dead_units(model), BATCHES))
    for tracker in (twin, leaky):
        result = tracker.result(_run(tracker, BATCHES))
        assert sorted(result) == sorted(expected)
        # leaky_relu changes the second layer's input, so only the first layer agrees.
        np.testing.assert_array_equal(result["hidden"].dead, expected["hidden"].dead)


def test_examples_saturate():
    tracker = lj.track_dead_units(model)
    state = tracker.init(PARAMS, BATCHES[0])
    big = {k: s._replace(examples=jnp.uint32(2**32 - 3)) for k, s in state.items()}
    merged = tracker.merge(big, big)
    assert all(int(s.examples) == 2**32 - 1 for s in merged.values())


def test_site_selection_and_state_checks():
    tracker = lj.track_dead_units(model, sites=["deep"])
    state = tracker.init(PARAMS, BATCHES[0])
    assert list(state) == ["deep"]
    with pytest.raises(ValueError, match="must be a state from this tracker's init"):
        lj.track_dead_units(model).update(state, PARAMS, BATCHES[0])
    with pytest.raises(ValueError, match="unit_axis`=2 is out of range"):
        lj.track_dead_units(model, unit_axis=2).init(PARAMS, BATCHES[0])


def test_no_site_warns():
    with pytest.warns(UserWarning, match="found no ReLU to track"):
        assert lj.track_dead_units(jnp.tanh).init(BATCHES[0]) == {}
