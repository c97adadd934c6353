"""Property-based tests against the NumPy reference (tests/reference.py), with hypothesis.

Every example runs with ``jax_debug_nans`` on unless its input holds a NaN, so a NaN made
from non-NaN input (0 * inf, inf - inf) fails the test. Case counts are those of the "full"
profile (CI's newest_jax leg); the default profile runs a tenth of each, and
``HYPOTHESIS_PROFILE=dev`` a few.
"""

from __future__ import annotations

import contextlib
import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import reference
import strategies as s
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import leakyjax as lj

# Drawn bit patterns include signalling NaNs, whose cast to float64 (to test for NaN, or to
# compare) sets numpy's "invalid" flag: expected here, not a finding.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")

BACKEND = jax.default_backend()


def _probe_flushes(dtype) -> bool:
    """Measured: does this backend read a subnormal as 0 and write a subnormal result as 0?"""
    tiny = reference.tiny(dtype)
    with _precision(dtype):
        sub = jnp.asarray(np.asarray([tiny / 4], np.float64).astype(dtype))
        halved = jax.jit(lambda t: t * jnp.asarray(0.5, dtype))(jnp.asarray([tiny], dtype))
        compares_as_zero = not bool(jax.jit(lambda t: t > 0)(sub)[0])
    return compares_as_zero and float(halved[0]) == 0.0


def flushes(dtype) -> bool:
    if BACKEND in reference.FLUSHES:
        return reference.FLUSHES[BACKEND][np.dtype(dtype).name]
    return _probe_flushes(dtype)


def _precision(dtype):
    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


def _checking_nans(*arrays):
    has_nan = any(np.isnan(np.asarray(a, np.float64)).any() for a in arrays)
    return jax.debug_nans(not has_nan)


@pytest.mark.parametrize("dtype", reference.DTYPES_X64, ids=lambda d: d.name)
def test_reference_states_what_the_platform_does(dtype):
    if BACKEND not in reference.FLUSHES:
        pytest.skip(f"no recorded flushing behaviour for {BACKEND}: it is probed instead")
    assert _probe_flushes(dtype) == reference.FLUSHES[BACKEND][dtype.name]


def test_reference_by_hand():
    x = np.array([-2.0, -0.0, 0.0, 3.0, -np.inf, np.nan], np.float32)
    y, _, dydx, dyda = reference.leaky_relu(x, 0.25, 1.0, flush=True)
    assert reference.same_bits(y, np.array([-0.5, -0.0, 0.0, 3.0, -np.inf, np.nan], np.float32))
    assert reference.same_bits(dydx, np.array([0.25, 1, 1, 1, 0.25, 1], np.float32))
    assert reference.same_bits(dyda, np.array([-2.0, -0.0, 0.0, 0.0, -np.inf, np.nan], np.float32))
    sub = np.array([-1e-45, 1e-45], np.float32)
    y, y_flushed, dydx, _ = reference.leaky_relu(sub, 0.5, flush=True)
    assert reference.same_bits(y, sub)
    assert reference.same_bits(y_flushed, np.array([-0.0, 0.0], np.float32))
    assert reference.same_bits(dydx, np.full(2, 0.5, np.float32))
    y, y_flushed, dydx, _ = reference.leaky_relu(sub, 0.5, flush=False)
    assert reference.same_bits(y_flushed, y)
    assert reference.same_bits(dydx, np.array([0.5, 1], np.float32))
    # a slope that is subnormal in the dtype counts as 0: no 0 * -inf
    y = reference.leaky_relu(np.array([-np.inf], np.float32), 1e-40, flush=False)[0]
    assert reference.same_bits(y, np.zeros(1, np.float32))


def test_zero_slope_may_write_subnormals_as_zero():
    """What the reference's y_flushed is for: on CPU (jax 0.8 to 0.12), a zero slope flushes
    a passed-through float32 subnormal x (1e-45); a slope of 0.5 passes it through unchanged."""
    if not flushes(np.float32):
        pytest.skip("this platform does not flush float32 subnormals")
    x = jnp.array([1e-45, -1e-45])
    assert reference.same_bits(lj.leaky_relu(x, 0.5), np.asarray(x))
    assert reference.same_bits(lj.leaky_relu(x, 0.0), np.array([0.0, -0.0], np.float32))


@pytest.mark.parametrize("dtype", [ml_dtypes.bfloat16, np.float32, np.float64], ids=str)
def test_products_are_flushed_before_rounding(dtype):
    """What the reference's flush models: the exact product (1 - 2**-p) * tiny (p the
    dtype's significand bits) is below the smallest normal number, so XLA on CPU flushes it,
    though it rounds (a tie, to even) up to that number. bfloat16 is computed in float32,
    where it is subnormal; float32 and float64 decide before rounding."""
    dtype = np.dtype(dtype)
    if not flushes(dtype):
        pytest.skip(f"this platform does not flush {dtype} subnormals")
    bits = ml_dtypes.finfo(dtype).nmant + 1
    x = np.array([-(1 - 2.0**-bits)], dtype)
    slope = np.asarray(-reference.tiny(dtype), dtype)
    assert float((slope * x)[0]) == reference.tiny(dtype)  # correctly rounded
    y = reference.leaky_relu(x, slope, flush=True)[0]
    assert reference.same_bits(y, np.zeros(1, dtype))
    with _precision(dtype):
        out = np.asarray(lj.leaky_relu(jnp.asarray(x), jnp.asarray(slope)))
    assert reference.same_bits(out, y)


def _derivatives(x, a, g):
    """Forward, d/dx (jvp), d/da (jvp, array slopes) and the vjp, all element by element."""

    def f(x, a):
        return lj.leaky_relu(x, a, grad_at_zero=g)

    out = {"forward": f(x, a)}
    out["jvp_x"] = jax.jvp(lambda x: f(x, a), (x,), (jnp.ones_like(x),))[1]
    if isinstance(a, float):
        y, pull = jax.vjp(lambda x: f(x, a), x)
        (out["vjp_x"],) = pull(jnp.ones_like(y))
        return out
    out["jvp_a"] = jax.jvp(lambda a: f(x, a), (a,), (jnp.ones_like(a),))[1]
    y, pull = jax.vjp(f, x, a)
    out["vjp_x"], out["vjp_a"] = pull(jnp.ones_like(y))
    return out


# Jitted once, so that examples with the same shapes and constants reuse compiled code. A
# Python-number slope is a static argument, as it is inside leaky_relu.
_derivatives_static = jax.jit(_derivatives, static_argnames=("a", "g"))
_derivatives_array = jax.jit(_derivatives, static_argnames=("g",))


def _jitted_derivatives(x, a, g):
    if isinstance(a, float):
        return _derivatives_static(x, a=a, g=g)
    return _derivatives_array(x, a, g=g)


@st.composite
def leaky_relu_cases(draw, shapes=None, slope_shapes=None, allow_nan=True):
    """(x, slope, grad_at_zero): any dtype, a Python-number or array slope (of x's dtype or
    float32; by default 0-d or x's shape, or drawn by ``slope_shapes(x.shape)``), and a
    grad_at_zero that is a subgradient."""
    dtype = draw(st.sampled_from(reference.DTYPES_X64))
    x = draw(s.arrays(dtype, (16,) if shapes is None else draw(shapes), allow_nan=allow_nan))
    if draw(st.booleans()):
        slope = draw(st.sampled_from(s.STATIC_SLOPES))
    else:
        if slope_shapes is None:
            slope_shape = draw(st.sampled_from([(), x.shape]))
        else:
            slope_shape = draw(slope_shapes(x.shape))
        slope_dtype = draw(st.sampled_from(sorted({dtype, np.dtype(np.float32)}, key=str)))
        slope = draw(s.array_slopes(tuple(slope_shape))).astype(slope_dtype)
    return x, slope, draw(s.grad_at_zero(np.asarray(slope, np.float64)))


def _check_against_reference(x, slope, g, results):
    y, y_flushed, dydx, dyda = reference.leaky_relu(
        x,
        slope,
        g,
        flush=flushes(x.dtype),
        flush_slope=not isinstance(slope, float) and flushes(slope.dtype),
    )
    expected = {"forward": y, "jvp_x": dydx, "vjp_x": dydx, "jvp_a": dyda}
    if not isinstance(slope, float) and np.shape(slope) == x.shape:
        # The slope's cotangent comes back cast to the slope's dtype: float32 for a float64 x
        # may round, overflow to inf, or be subnormal there (and flushed).
        with np.errstate(over="ignore"):
            expected["vjp_a"] = dyda.astype(slope.dtype)
        if flushes(slope.dtype):
            expected["vjp_a"] = reference.flush_to_zero(expected["vjp_a"])
    for what, want in expected.items():
        if what not in results:
            continue
        got = np.asarray(results[what])
        alternative = y_flushed if what == "forward" else None
        assert (got.dtype, got.shape) == (want.dtype, want.shape), (what, got.dtype, got.shape)
        assert reference.same_bits(got, want, alternative), (
            what, reference.mismatches(got, want, x, np.asarray(slope), g, alternative=alternative)
        )  # fmt: skip


def _run(fn, x, slope, *args):
    """``fn(x, slope, *args)`` in x's precision (x64 for float64), with jax_debug_nans on
    unless x holds a NaN."""
    with _precision(x.dtype), _checking_nans(x):
        a = slope if isinstance(slope, float) else jnp.asarray(slope)
        return jax.tree.map(np.asarray, fn(jnp.asarray(x), a, *args))


@s.examples(5250)
@given(leaky_relu_cases())
def test_values_match_reference(case):
    """Forward and derivatives bit-identical to the reference, in the input's dtype and shape."""
    s.GENERATED["cases"] += 1
    x, slope, g = case
    _check_against_reference(x, slope, g, _run(_jitted_derivatives, x, slope, g))


@s.examples(500)
@given(leaky_relu_cases(shapes=s.shapes, slope_shapes=s.broadcast_shape_of))
def test_any_shape_matches_reference(case):
    """The same, over every shape from 0-d to 4-d (size 0 too) and broadcasting slopes."""
    s.GENERATED["cases"] += 1
    x, slope, g = case
    _check_against_reference(x, slope, g, _run(_jitted_derivatives, x, slope, g))


@s.examples(250)
@given(leaky_relu_cases(shapes=st.sampled_from(s.SHAPES), slope_shapes=s.broadcast_shape_of))
def test_eager_equals_jit(case):
    """Called eagerly (each op dispatched on its own) and under jit: the same bits."""
    s.GENERATED["cases"] += 1
    x, slope, g = case
    eager = _run(_derivatives, x, slope, g)
    jitted = _run(_jitted_derivatives, x, slope, g)
    assert eager.keys() == jitted.keys()
    if np.shape(slope) != x.shape:
        # A broadcast slope's cotangent is a sum, which XLA may add up in another order
        # when fused; every element-wise result must match.
        eager.pop("vjp_a", None)
    for what in eager:
        free = x if what == "forward" else None
        assert same_up_to_flushed_subnormals(eager[what], jitted[what], free), (
            what, reference.mismatches(eager[what], jitted[what], x, np.asarray(slope), g)
        )  # fmt: skip


@functools.cache
def _vmapped(static: bool, slope_axis: int | None):
    def f(x, a, g):
        return jax.vmap(lambda x, a: _derivatives(x, a, g), in_axes=(0, slope_axis))(x, a)

    return jax.jit(f, static_argnames=("a", "g") if static else ("g",))


@s.examples(1000)
@given(leaky_relu_cases(shapes=st.just((3, 16))), st.data())
def test_vmap_equals_loop(case, data):
    """vmap over the rows of x (and of the slope, if it has rows) == a loop over the rows."""
    s.GENERATED["cases"] += 1
    x, slope, g = case
    if not isinstance(slope, float) and data.draw(st.booleans()):
        slope = np.broadcast_to(slope, (3, *slope.shape)).copy()
        _check_vmap_equals_loop(x, slope, g, slope_axis=0)
    else:
        _check_vmap_equals_loop(x, slope, g, slope_axis=None)


def _subnormal_rows(dtype) -> np.ndarray:
    """Rows of (3, 16) with subnormals of both signs among ordinary numbers."""
    info = ml_dtypes.finfo(dtype)
    values = [float(info.smallest_subnormal), reference.tiny(dtype) / 2, -1.0, 2.0]
    row = np.asarray(values + [-v for v in values], np.float64).astype(dtype)
    return np.tile(row, (3, 2))


@pytest.mark.parametrize("dtype", reference.DTYPES_X64, ids=lambda d: d.name)
@pytest.mark.parametrize("slope", [0.0, "array 0", 0.5, "array 0.5"])
def test_vmap_equals_loop_at_subnormals(dtype, slope):
    """The case that jax >= 0.11.2 compiles differently under vmap and in a loop (bfloat16
    subnormals, zero slope): the two agree up to the freedom the platform has."""
    if isinstance(slope, str):
        slope = np.asarray(float(slope.split()[1]), dtype)
    _check_vmap_equals_loop(_subnormal_rows(dtype), slope, None, slope_axis=None)


def _check_vmap_equals_loop(x, slope, g, slope_axis):
    static = isinstance(slope, float)
    row = (lambda i: slope) if slope_axis is None else (lambda i: slope[i])

    def go(x, a, g):
        vmapped = _vmapped(static, slope_axis)
        batched = vmapped(x, a=a, g=g) if static else vmapped(x, a, g=g)
        rows = [_jitted_derivatives(x[i], a if slope_axis is None else a[i], g) for i in range(3)]
        return batched, rows

    batched, rows = _run(go, x, slope, g)
    for what in batched:
        if what == "vjp_a" and np.shape(row(0)) != x.shape[1:]:
            continue  # a sum over the row: XLA may add it up in another order
        looped = np.stack([r[what] for r in rows])
        # Each row of x broadcasts against its own row of the result.
        free = x.reshape(3, *[1] * (looped.ndim - 2), 16) if what == "forward" else None
        assert same_up_to_flushed_subnormals(batched[what], looped, free), (
            what, reference.mismatches(batched[what], looped, x, np.asarray(slope), g)
        )  # fmt: skip


def same_up_to_flushed_subnormals(got, want, x=None) -> bool:
    """Bit-identical, except where the platform flushes subnormals of ``x``'s dtype and ``x``
    (broadcast to the result) is subnormal: there each side may be ``x`` itself or the zero of
    its sign, whichever the compiled code wrote (the freedom the library documents; XLA on CPU
    chooses per program, and jax >= 0.11.2 chooses differently under vmap and in a loop)."""
    got, want = np.asarray(got), np.asarray(want)
    if x is None or not flushes(x.dtype):
        return reference.same_bits(got, want)
    x = np.broadcast_to(x, got.shape)
    free = reference.is_subnormal(x)
    flushed = reference.flush_to_zero(x)
    return reference.same_bits(got[~free], want[~free]) and all(
        reference.same_bits(side[free], x[free], flushed[free]) for side in (got, want)
    )


POSITIVE_SLOPES = (0.01, 0.2, 1 / 3, 0.25, 0.5, 1.0, 1.5, 2.0, 4.0, 1024.0, 60000.0)


def _is_power_of_two(a: np.ndarray) -> np.ndarray:
    mantissa, _ = np.frexp(np.asarray(a, np.float64))
    return mantissa == 0.5


def _ulp(x: np.ndarray) -> np.ndarray:
    """The spacing of x's dtype at |x| (normal numbers), in float64."""
    info = ml_dtypes.finfo(x.dtype)
    magnitude = np.maximum(np.abs(x.astype(np.float64)), float(info.smallest_normal))
    return np.exp2(np.floor(np.log2(magnitude)) - info.nmant)


@functools.cache  # built once: hypothesis validates each new strategy object
def _positive_slopes(dtype, shape):
    values = st.one_of(st.sampled_from(POSITIVE_SLOPES), st.floats(reference.tiny(dtype), 4.0))
    return hnp.arrays(np.float64, shape, elements=values)


@jax.jit
def _round_trip(x, a):
    return lj.inverse_leaky_relu(lj.leaky_relu(x, a), a)


@functools.partial(jax.jit, static_argnames="a")
def _round_trip_static(x, a):
    return lj.inverse_leaky_relu(lj.leaky_relu(x, a), a)


@s.examples(1500)
@given(st.sampled_from(reference.DTYPES_X64), st.data())
def test_inverse_round_trips(dtype, data):
    """inverse_leaky_relu(leaky_relu(x, a), a) == x for a > 0: exactly for x >= 0, +-inf,
    NaN and when a is a power of two, and within 2 ulps of x otherwise; except where the
    forward loses x:

    * x < 0 with |a x| below the smallest normal number: a x underflows (to a subnormal, or to
      0 where the platform flushes), and its low bits are gone;
    * x < 0 with a x beyond the largest finite number: it overflows to -inf, which the
      inverse maps to -inf;
    * a subnormal x where the platform flushes subnormals: the inverse reads it as 0 and
      gives the zero of its sign (or x itself where XLA removes the arithmetic: a constant
      slope of 1 makes both functions the identity).
    """
    s.GENERATED["cases"] += 1
    x = data.draw(s.arrays(dtype, (16,)))
    if data.draw(st.booleans()):
        slope = data.draw(st.sampled_from(POSITIVE_SLOPES))

        def round_trip(x, a):
            return _round_trip_static(x, a=slope)

    else:
        shape = data.draw(st.sampled_from([(), (16,)]))
        slope = data.draw(_positive_slopes(dtype, shape)).astype(dtype)
        slope = np.maximum(slope, np.asarray(reference.tiny(dtype), dtype))  # rounding may go below
        round_trip = _round_trip
    with _precision(dtype), _checking_nans(x):
        back = np.asarray(round_trip(jnp.asarray(x), jnp.asarray(slope)))
    y, _, _, _ = reference.leaky_relu(x, slope, flush=flushes(dtype))
    a = reference.parameter(slope, dtype).astype(np.float64)
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    flushed = flushes(dtype) & reference.is_subnormal(x)
    with np.errstate(over="ignore", invalid="ignore"):
        # Below the smallest normal number before rounding: a * x rounding up to it is an
        # underflow too.
        underflow = (xf < 0) & reference.tiny_product(a.astype(dtype), x, dtype) & ~flushed
    overflow = np.isinf(yf) & np.isfinite(xf)
    kept = ~(flushed | underflow | overflow)
    assert reference.same_bits(back[flushed], reference.flush_to_zero(x)[flushed], x[flushed])
    assert np.all(back[overflow] == -np.inf)
    assert np.all(back[underflow].astype(np.float64) <= 0)
    exact = kept & (np.broadcast_to(_is_power_of_two(a), x.shape) | ~(xf < 0) | np.isinf(xf))
    assert reference.same_bits(back[exact], x[exact]), reference.mismatches(back, x, slope)
    close = kept & ~exact
    error = np.abs(back[close].astype(np.float64) - xf[close])
    # Two roundings (of a x, then of y / a) of at most half an ulp each, relative: at most
    # 2 ulps. Hypothesis finds 2: float16 x = -0.001, a = 60000.
    assert np.all(error <= 2 * _ulp(x[close])), (x[close], back[close], slope)


@functools.partial(jax.jit, static_argnames="axis")
def _prelu_and_broadcast(x, slopes, axis):
    """prelu and leaky_relu with the slopes broadcast by hand, with their vjps."""
    shape = [1] * x.ndim
    shape[axis] = slopes.shape[0]
    out = []
    for f in (
        lambda x, a: lj.prelu(x, a, axis=axis),
        lambda x, a: lj.leaky_relu(x, a.reshape(shape)),
    ):
        y, pull = jax.vjp(f, x, slopes)
        out.append((y, *pull(jnp.ones_like(y))))
    return out


@s.examples(600)
@given(st.sampled_from(reference.DTYPES_X64), st.data())
def test_prelu_equals_leaky_relu_with_broadcast_slope(dtype, data):
    """prelu per channel == leaky_relu with the slopes broadcast along that axis, bit for bit:
    values, the gradient in x and the gradient in the slopes."""
    s.GENERATED["cases"] += 1
    shape = data.draw(st.sampled_from([(5,), (2, 3), (2, 0, 3), (1, 2, 2, 3)]))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = data.draw(s.arrays(dtype, shape))
    slope_dtype = data.draw(st.sampled_from(sorted({dtype, np.dtype(np.float32)}, key=str)))
    channels = (shape[axis],)
    slopes = data.draw(s.array_slopes(channels)).astype(slope_dtype)
    with _precision(dtype), _checking_nans(x):
        ours, broadcast = _prelu_and_broadcast(jnp.asarray(x), jnp.asarray(slopes), axis)
    for got, want in zip(ours, broadcast, strict=True):
        assert reference.same_bits(np.asarray(got), np.asarray(want))
    bshape = [1] * len(shape)
    bshape[axis] = channels[0]
    y, y_flushed, _, _ = reference.leaky_relu(
        x, slopes.reshape(bshape), flush=flushes(dtype), flush_slope=flushes(slope_dtype)
    )
    assert reference.same_bits(np.asarray(ours[0]), y, y_flushed)


@functools.partial(jax.jit, static_argnames=("lower", "upper"))
def _rrelu_parts(key, x, lower, upper):
    slopes = -lj.rrelu(key, -jnp.ones_like(x), lower, upper)
    return (
        slopes,
        lj.rrelu(key, x, lower, upper),
        lj.leaky_relu(x, slopes),
        lj.rrelu(None, x, lower, upper, deterministic=True),
        lj.leaky_relu(x, lower / 2 + upper / 2),
    )


@s.examples(1000)
@given(
    st.sampled_from(reference.DTYPES_X64),
    # (lower, upper): a single slope, PyTorch's default, one from 0, one reaching above 1.
    st.sampled_from([(0.3, 0.3), (1 / 8, 1 / 3), (0.0, 0.5), (0.3, 2.3)]),
    st.integers(0, 2**32 - 1),
    st.data(),
)
def test_rrelu(dtype, bounds, seed, data):
    """Random slopes lie in [lower, upper] (rounded to x's dtype) and the output is leaky_relu
    at those slopes; deterministic is leaky_relu at the mean slope."""
    s.GENERATED["cases"] += 1
    lower, upper = bounds
    x = data.draw(s.arrays(dtype, (2, 1, 2, 4), allow_nan=False))
    with _precision(dtype), _checking_nans(x):
        key = jax.random.key(seed)
        parts = _rrelu_parts(key, jnp.asarray(x), lower=lower, upper=upper)
    slopes, y, y_at_slopes, deterministic, at_mean = map(np.asarray, parts)
    lo, hi = reference.parameter(lower, dtype), reference.parameter(upper, dtype)
    assert slopes.dtype == dtype and np.all((lo <= slopes) & (slopes <= hi)), (lo, hi, slopes)
    assert reference.same_bits(y, y_at_slopes)
    assert reference.same_bits(deterministic, at_mean)
