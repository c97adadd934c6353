"""Hypothesis strategies for leakyjax's property tests, and the case counts CI runs."""

from __future__ import annotations

import functools
import os

import ml_dtypes
import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

GENERATED = {"cases": 0}  # examples run, reported at the end of the session (conftest.py)


# The "default" profile (the README's test command) runs a tenth of each test's cases (the
# same ones every run); "full" (CI's newest_jax leg) and "explore" run them all.
FRACTION = {"default": 10}


def examples(n: int) -> settings:
    """``n`` examples under the "full" and "explore" profiles, ``n // 10`` under "default"
    and at most the profile's own under "dev"."""
    profile = os.environ.get("HYPOTHESIS_PROFILE", "default")
    if settings().max_examples < 100:  # dev
        return settings(max_examples=settings().max_examples)
    return settings(max_examples=n // FRACTION.get(profile, 1))


def special_values(dtype) -> list[float]:
    """+-0, +-inf, nan, subnormals, the normal extremes and values straddling zero."""
    info = ml_dtypes.finfo(dtype)
    tiny, eps = float(info.smallest_normal), float(info.eps)
    values = [0.0, np.inf, np.nan, float(info.smallest_subnormal), tiny / 2, tiny, tiny * 2,
              float(info.max), 1.0, 1.0 + eps, 1.0 - eps / 2, 0.5, 2.0, 1e-3, 100.0]  # fmt: skip
    return values + [-v for v in values]


def _bits_of(values, dtype) -> list[int]:
    unsigned = np.dtype(f"u{np.dtype(dtype).itemsize}")
    return [int(b) for b in np.asarray(values, np.float64).astype(dtype).view(unsigned)]


# The strategies below are built once per argument (functools.cache): hypothesis validates a
# new strategy object at its first draw, which cost more than the draw itself.


@functools.cache
def elements(dtype, *, allow_nan: bool = True) -> st.SearchStrategy[int]:
    """Bit patterns of ``dtype``: special values, moderate numbers and any pattern at all."""
    unsigned = np.dtype(f"u{np.dtype(dtype).itemsize}")
    moderate = st.floats(-8.0, 8.0, width=32).map(lambda f: _bits_of([f], dtype)[0])
    strategy = st.one_of(
        st.sampled_from(_bits_of(special_values(dtype), dtype)),
        moderate,
        st.integers(0, int(np.iinfo(unsigned).max)),
    )
    if not allow_nan:
        strategy = strategy.filter(
            lambda b: not np.isnan(np.asarray(b, unsigned).view(dtype).astype(np.float64))
        )
    return strategy


def arrays(dtype, shape, *, allow_nan: bool = True) -> st.SearchStrategy[np.ndarray]:
    """An array of ``dtype`` (bfloat16 too) and ``shape``, drawn bit pattern by bit pattern."""
    return _arrays(np.dtype(dtype), tuple(shape), allow_nan)


@functools.cache
def _arrays(dtype: np.dtype, shape: tuple[int, ...], allow_nan: bool) -> st.SearchStrategy:
    unsigned = np.dtype(f"u{dtype.itemsize}")
    bits = hnp.arrays(unsigned, shape, elements=elements(dtype, allow_nan=allow_nan))
    return bits.map(lambda b: b.view(dtype))


# Any shape from 0-d to 4-d, size 0 included (each new shape compiles once, so the tests
# that draw from it run fewer examples) ...
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3)
# ... and a few fixed ones, 0-d to 4-d, for the tests that are about values.
SHAPES = ((), (16,), (2, 0, 3), (2, 1, 2, 4))

# Python-number slopes are compile-time constants (each new value compiles once), so they
# come from a fixed set: zero, in (0, 1), 1, above 1, negative, and ones that are subnormal
# (so count as 0) or overflow-prone in the narrower dtypes.
STATIC_SLOPES = (0.0, 0.01, 0.2, 1 / 3, 1.0, 1.5, 3.0, -0.5, -3.0, 1e-40, 60000.0)

# Array slopes are traced: any value works without compiling again.
array_slope_values = st.one_of(
    st.sampled_from((*STATIC_SLOPES, 5e-324, 1e-30, 0.5, 2.0)),
    st.floats(0.0, 1.0),
    st.floats(1.0, 4.0),
    st.floats(-4.0, 0.0),
)


@functools.cache
def array_slopes(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of ``shape`` of array_slope_values (cast to the slope's dtype after)."""
    return hnp.arrays(np.float64, shape, elements=array_slope_values)


# grad_at_zero is static too: drawn from these, where they are subgradients.
GRADS_AT_ZERO = (-3.0, -0.5, 0.0, 0.01, 0.5, 1.0, 2.0)


@st.composite
def broadcast_shape_of(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts against ``shape`` without enlarging it: each axis kept or made
    1, and some leading axes dropped."""
    kept = [d if draw(st.booleans()) else 1 for d in shape]
    return tuple(kept[draw(st.integers(0, len(shape))) :])


def grad_at_zero(slope_values: np.ndarray) -> st.SearchStrategy[float | None]:
    """``None``, or a point of the subdifferential at 0 of every slope: between each and 1."""
    lo = float(np.max(np.minimum(slope_values, 1.0), initial=-np.inf))
    hi = float(np.min(np.maximum(slope_values, 1.0), initial=np.inf))
    return _none_or_one_of(tuple(g for g in GRADS_AT_ZERO if lo <= g <= hi))


@functools.cache
def _none_or_one_of(candidates: tuple[float, ...]) -> st.SearchStrategy[float | None]:
    return st.one_of(st.none(), st.sampled_from(candidates)) if candidates else st.none()
