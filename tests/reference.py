"""An exact NumPy reference for Leaky ReLU and its derivatives, independent of JAX.

Everything is computed in the input's own dtype (``ml_dtypes`` provides bfloat16), with the
slope and ``grad_at_zero`` rounded to that dtype first. The platform's treatment of subnormal
numbers is an explicit argument, ``flush``: XLA on CPU treats a subnormal operand of an
arithmetic operation or a compare as zero and flushes a subnormal result to zero (of the same
sign), for float32, bfloat16 and float64; a select passes its operand through unchanged.
float16 is computed in float32 there, where its subnormals are ordinary numbers. A product
is flushed when its exact value is below the smallest normal number, before it is rounded
(bfloat16's 2**-126 - 2**-134 and float64's 2**-1022 - 2**-1075 would round up to the
smallest normal number; XLA gives 0): ``tiny_product``. ``FLUSHES``
records this, and ``tests/test_properties.py`` checks it against the platform.
"""

from __future__ import annotations

import fractions

import ml_dtypes
import numpy as np

# backend -> dtype name -> whether subnormals are flushed (inputs read as 0, results written
# as 0). Backends not listed are probed at test time.
FLUSHES = {"cpu": {"float16": False, "bfloat16": True, "float32": True, "float64": True}}

DTYPES = (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16), np.dtype(np.float32))
DTYPES_X64 = (*DTYPES, np.dtype(np.float64))


def tiny(dtype) -> float:
    """The smallest positive normal number of ``dtype``."""
    return float(ml_dtypes.finfo(dtype).smallest_normal)


def is_subnormal(a: np.ndarray) -> np.ndarray:
    magnitude = np.abs(a.astype(np.float64))
    return (magnitude > 0) & (magnitude < tiny(a.dtype))


def flush_to_zero(a: np.ndarray) -> np.ndarray:
    """Subnormals become a zero of their sign; everything else is unchanged."""
    zero = np.copysign(np.zeros_like(a, dtype=np.float64), a.astype(np.float64)).astype(a.dtype)
    return np.where(is_subnormal(a), zero, a)


def tiny_product(a, x, dtype) -> np.ndarray:
    """Where the exact product ``a * x`` of two ``dtype`` values is nonzero and below the
    smallest normal number in magnitude. A flushing platform flushes these to zero even
    when the product rounds up to that number: it decides before rounding. (Exact: the
    product of two values of a dtype narrower than float64 is exact in float64; float64
    products are compared as fractions.)"""
    a, x = np.broadcast_arrays(np.asarray(a, dtype), np.asarray(x, dtype))
    af, xf = a.astype(np.float64), x.astype(np.float64)
    finite = np.isfinite(af) & np.isfinite(xf) & (af != 0) & (xf != 0)
    if np.dtype(dtype) != np.float64:
        with np.errstate(all="ignore"):
            return finite & (np.abs(af * xf) < tiny(dtype))
    limit = fractions.Fraction(tiny(dtype))
    below = [
        bool(ok) and abs(fractions.Fraction(float(p)) * fractions.Fraction(float(q))) < limit
        for ok, p, q in zip(finite.ravel(), af.ravel(), xf.ravel(), strict=True)
    ]
    return np.asarray(below, dtype=bool).reshape(finite.shape)


def parameter(value, dtype) -> np.ndarray:
    """A slope or ``grad_at_zero`` as leakyjax uses it: rounded to ``dtype``, and 0 when that
    is below the smallest normal number (the library's rule, the same on every platform)."""
    with np.errstate(over="ignore"):
        a = np.asarray(value, dtype=np.float64).astype(dtype)
    return np.where(np.abs(a.astype(np.float64)) < tiny(dtype), np.zeros_like(a), a)


def leaky_relu(
    x: np.ndarray, negative_slope, grad_at_zero=None, *, flush: bool, flush_slope: bool = False
):
    """Forward value, d/dx and d/d(slope) of Leaky ReLU, element by element.

    ``flush_slope``: the platform flushes subnormals of the slope's own dtype, so a slope
    array that is subnormal there is read as 0 before it is cast to x's dtype.

    d/dx is 1 for x > 0, the slope for x < 0 and ``grad_at_zero`` (default: the slope)
    otherwise: at +-0 and NaN, and at a subnormal x if ``flush``. d/da is x for x < 0, 0 for
    x > 0, and x * 0 otherwise (a zero of x's sign, or NaN).

    Returns ``(y, y_flushed, dydx, dyda)``. Where x is not < 0 the forward passes x through,
    bits unchanged: ``y``. On a flushing platform the compiled code may instead write a
    subnormal x as the zero of its sign (the value its arithmetic and compares see anyway):
    ``y_flushed``, which differs from ``y`` only there. XLA on CPU chooses per compiled
    program and per element (jax 0.8-0.10: for a zero slope along the innermost loop, where
    LLVM turns select(x < 0, 0, x) into a max; jax >= 0.11.2: for bfloat16 array slopes too,
    and differently under vmap and in a loop), so either is right.
    """
    dtype = x.dtype
    if flush_slope:
        negative_slope = flush_to_zero(np.asarray(negative_slope))
    a = parameter(negative_slope, dtype)
    g = a if grad_at_zero is None else parameter(grad_at_zero, dtype)
    seen = flush_to_zero(x) if flush else x  # what arithmetic and compares see
    with np.errstate(all="ignore"):
        negative, positive = seen < 0, seen > 0
        product = (a * x).astype(dtype)  # exactly rounded in dtype
        if flush:  # a product below the smallest normal number before rounding is flushed
            zero = np.copysign(np.zeros_like(product, dtype=np.float64), product.astype(np.float64))
            product = np.where(tiny_product(a, seen, dtype), zero.astype(dtype), product)
            product = flush_to_zero(product)
        negative_part = np.where(a == 0, np.zeros_like(product), product)  # never 0 * inf
        y = np.where(negative, negative_part, x).astype(dtype)
        y_flushed = np.where(negative, negative_part, seen).astype(dtype)
        one = np.ones((), dtype)
        dydx = np.where(positive, one, np.where(negative, a, g)).astype(dtype)
        dyda = np.where(positive, np.zeros((), dtype), np.where(negative, x, seen * 0)).astype(
            dtype
        )
    return y, y_flushed, dydx, dyda


def _differ(actual, expected, alternative=None) -> np.ndarray:
    actual, expected = np.asarray(actual), np.asarray(expected)
    unsigned = f"u{actual.dtype.itemsize}"
    nan_a = np.isnan(actual.astype(np.float64))
    nan_e = np.isnan(expected.astype(np.float64))
    differ = np.where(
        nan_a | nan_e, ~(nan_a & nan_e), actual.view(unsigned) != expected.view(unsigned)
    )
    if alternative is not None:
        differ &= actual.view(unsigned) != np.asarray(alternative).view(unsigned)
    return differ


def same_bits(actual, expected, alternative=None) -> bool:
    """Bit-for-bit equality (or with ``alternative``, element by element), except that any
    NaN equals any NaN (payloads are not specified)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.dtype != expected.dtype or actual.shape != expected.shape:
        return False
    return not np.any(_differ(actual, expected, alternative))


def mismatches(actual, expected, *inputs, alternative=None) -> str:
    """The elements that differ, with the inputs at those positions, for a failure message."""
    actual = np.asarray(actual)
    rows = []
    for index in map(tuple, np.argwhere(_differ(actual, expected, alternative))[:5]):
        shown = [i[index] if np.shape(i) == actual.shape else i for i in map(np.asarray, inputs)]
        rows.append(f"at {index}: got {actual[index]!r}, expected "
                    f"{np.asarray(expected)[index]!r}, inputs {shown!r}")  # fmt: skip
    return "; ".join(rows)
