"""Leaky ReLU as a bijection, for normalizing flows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from leakyjax import _validation as checks


def _check(
    fn: str, name: str, value: ArrayLike, negative_slope: ArrayLike
) -> tuple[ArrayLike, ArrayLike]:
    value = checks.check_array(fn, name, value)
    negative_slope = checks.check_array(fn, "negative_slope", negative_slope, allow_bool=False)
    checks.check_broadcast(fn, "negative_slope", negative_slope, name, value)
    if checks.is_concrete(negative_slope):
        dtype = checks.float_dtype(value)
        with np.errstate(over="ignore", invalid="ignore"):
            slope = np.asarray(negative_slope).astype(dtype)
        if not np.all(np.isfinite(slope) & (slope >= jnp.finfo(dtype).tiny)):
            raise ValueError(
                f"{fn}: `negative_slope` must be finite and > 0 in {dtype.name} (the input's "
                f"dtype; at least its smallest normal number, {jnp.finfo(dtype).tiny}) for "
                f"Leaky ReLU to be invertible, got {negative_slope!r}"
            )
    return value, negative_slope


def inverse_leaky_relu(y: ArrayLike, negative_slope: ArrayLike = 0.01) -> jax.Array:
    r"""The inverse of :func:`leakyjax.leaky_relu` for a slope :math:`\alpha > 0`.

    .. math::
      x = \begin{cases}
        y, & y > 0\\
        y / \alpha, & y \le 0
      \end{cases}

    The derivative is 1 for :math:`y > 0` and :math:`1/\alpha` for :math:`y \le 0`, the
    reciprocal of Leaky ReLU's with its default zero convention. The division is exactly
    rounded, so ``inverse_leaky_relu(leaky_relu(x, a), a)`` gives back ``x`` exactly for
    :math:`x \ge 0`, and for :math:`x < 0` when :math:`\alpha` is a power of two, and within 2
    ulps otherwise, unless :math:`\alpha x` underflows (below the smallest normal number) or
    overflows.

    Args:
      y: output of a Leaky ReLU.
      negative_slope: the slope :math:`\alpha > 0` (scalar or broadcastable array).

    Returns:
      An array of ``y``'s (floating) dtype.

    Example:
      >>> import jax.numpy as jnp, leakyjax as lj
      >>> lj.inverse_leaky_relu(jnp.array([-0.5, 0.0, 2.0]), 0.25)
      Array([-2.,  0.,  2.], dtype=float32)
    """
    y, negative_slope = _check("inverse_leaky_relu", "y", y, negative_slope)
    return _inverse(y, negative_slope)


@jax.jit
def _inverse(y, negative_slope):
    y = checks.float_input(y)
    slope = negative_slope.astype(y.dtype)
    # The divisor is an array of y's shape, not a broadcast scalar: XLA rewrites division by a
    # broadcast scalar into multiplication by its reciprocal rounded to the dtype, which is
    # off by an ulp in float32 a third of the time and, in float16 with a large slope (1/60000
    # is subnormal there), by far more. Element-wise, the division stays exactly rounded.
    divisor = jnp.where(y > 0, jnp.ones_like(y), slope)
    return jnp.where(y > 0, y, y / divisor)


def leaky_relu_log_abs_det_jacobian(x: ArrayLike, negative_slope: ArrayLike = 0.01) -> jax.Array:
    r"""Element-wise :math:`\log |f'(x)|` of Leaky ReLU, for a change of variables.

    .. math::
      \log |f'(x)| = \begin{cases}
        0, & x > 0\\
        \log \alpha, & x \le 0
      \end{cases}

    At :math:`x = 0` it uses the default zero convention (:math:`f'(0) = \alpha`). Sum it
    over the event axes for a flow's log-determinant.

    Args:
      x: input of the Leaky ReLU.
      negative_slope: the slope :math:`\alpha > 0`.

    Returns:
      An array of ``x``'s (floating) dtype and the broadcast shape.

    Example:
      >>> import jax.numpy as jnp, leakyjax as lj
      >>> lj.leaky_relu_log_abs_det_jacobian(jnp.array([-1.0, 0.0, 1.0]), 0.5)
      Array([-0.6931472, -0.6931472,  0.       ], dtype=float32)
    """
    x, negative_slope = _check("leaky_relu_log_abs_det_jacobian", "x", x, negative_slope)
    return _log_abs_det_jacobian(x, negative_slope)


@jax.jit
def _log_abs_det_jacobian(x, negative_slope):
    x = checks.float_input(x)
    log_slope = jnp.log(negative_slope.astype(x.dtype))
    return jnp.where(x > 0, jnp.zeros_like(x), log_slope)
