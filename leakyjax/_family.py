"""The family built on Leaky ReLU: parametric (PReLU) and randomized (RReLU)."""

from __future__ import annotations

import functools
from typing import Literal, overload

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from leakyjax import _validation as checks
from leakyjax._activation import leaky_relu_core, static_slope


def prelu(x: ArrayLike, slope: ArrayLike, *, axis: int | None = None) -> jax.Array:
    r"""Parametric ReLU (He et al., 2015): Leaky ReLU with a learnable slope per channel.

    .. math::
      \mathrm{prelu}(x)_{\ldots c \ldots} = \begin{cases}
        x, & x > 0\\
        \alpha_c x, & x \le 0
      \end{cases}

    where :math:`c` indexes ``axis`` of ``x``. The derivatives are those of
    :func:`leakyjax.leaky_relu` with its default zero convention (the derivative in
    :math:`x` at 0 is :math:`\alpha_c`); the gradient with respect to ``slope`` is
    :math:`\sum x` over the elements of its channel with :math:`x \le 0`, with ``slope``'s
    shape and dtype. Slopes may be any finite value (He et al. do not constrain them).

    Args:
      x: input array, at least 1-D unless ``slope`` is a scalar.
      slope: a scalar, or a 1-D array with one slope per channel: ``x.shape[axis]`` long.
      axis: the channel axis of ``x``: ``None`` (the default) means the last axis, as for
        NHWC or (batch, features); 1 for NCHW. Whenever given, it must be an axis of ``x``,
        with a scalar ``slope`` too.

    Returns:
      An array of ``x``'s (floating) dtype and shape.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> x = jnp.array([[-1.0, -2.0], [3.0, -4.0]])
      >>> lj.prelu(x, jnp.array([0.1, 0.5]))
      Array([[-0.1, -1. ],
             [ 3. , -2. ]], dtype=float32)
      >>> jax.grad(lambda a: lj.prelu(x, a).sum())(jnp.array([0.1, 0.5]))
      Array([-1., -6.], dtype=float32)
    """
    x = checks.check_input("prelu", "x", x)
    slope = checks.check_array("prelu", "slope", slope, allow_bool=False)
    if axis is not None:
        axis = checks.check_axis("prelu", "axis", axis, np.ndim(x))
    if type(slope) is float or type(slope) is int:
        return static_slope(x, slope, None, ("prelu", "slope"))
    checks.check_finite("prelu", "slope", slope, checks.float_dtype(x))
    ndim = np.ndim(slope)
    if ndim == 0:
        return _prelu(x, slope, None)
    if ndim != 1:
        raise ValueError(
            f"prelu: `slope` must be a scalar or 1-D (one slope per channel), "
            f"got shape {np.shape(slope)}"
        )
    shape = np.shape(x)
    if not shape:
        raise ValueError("prelu: `x` must be at least 1-D for a per-channel `slope`, got a scalar")
    axis = len(shape) - 1 if axis is None else axis
    if np.shape(slope)[0] != shape[axis]:
        raise ValueError(
            f"prelu: `slope` has {np.shape(slope)[0]} slopes but `x` has {shape[axis]} "
            f"channels along axis {axis} (x.shape={shape}); expected {shape[axis]} slopes"
        )
    return _prelu(x, slope, axis)


@functools.partial(jax.jit, static_argnums=(2,))
def _prelu(x, slope, axis):
    checks.check_dtype("prelu", "x", x)
    x = checks.float_input(x)
    slope = slope.astype(x.dtype)
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = slope.shape[0]
        slope = slope.reshape(shape)
    return leaky_relu_core(x, slope, None)


# A key is needed in training; evaluation (deterministic=True) may pass None.
@overload
def rrelu(
    key: ArrayLike,
    x: ArrayLike,
    lower: float = ...,
    upper: float = ...,
    *,
    deterministic: bool = ...,
) -> jax.Array: ...


@overload
def rrelu(
    key: None,
    x: ArrayLike,
    lower: float = ...,
    upper: float = ...,
    *,
    deterministic: Literal[True],
) -> jax.Array: ...


def rrelu(
    key: ArrayLike | None,
    x: ArrayLike,
    lower: float = 1 / 8,
    upper: float = 1 / 3,
    *,
    deterministic: bool = False,
) -> jax.Array:
    r"""Randomized Leaky ReLU (Xu et al., 2015; PyTorch's ``nn.RReLU``).

    .. math::
      \mathrm{rrelu}(x) = \begin{cases}
        x, & x > 0\\
        \alpha x, & x \le 0
      \end{cases}
      \qquad \alpha \sim U[\mathrm{lower}, \mathrm{upper}]

    In training (``deterministic=False``) every element draws its own slope from ``key``;
    the same key gives the same slopes, and the derivative uses the slopes the forward
    used (at :math:`x = 0` the derivative is the element's slope). For evaluation
    (``deterministic=True``) it is :func:`leakyjax.leaky_relu` with the mean slope
    :math:`(\mathrm{lower} + \mathrm{upper}) / 2`, and ``key`` may be ``None``.

    Args:
      key: a ``jax.random`` key (``jax.random.key(seed)`` or a legacy ``PRNGKey``).
      x: input array.
      lower: smallest slope, a Python number with ``0 <= lower <= upper``.
      upper: largest slope.
      deterministic: use the mean slope instead of random ones.

    Returns:
      An array of ``x``'s (floating) dtype and shape.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> x = jnp.array([-1.0, -1.0, 2.0])
      >>> y = lj.rrelu(jax.random.key(0), x)
      >>> bool(jnp.all((-1/3 <= y[:2]) & (y[:2] <= -1/8))), float(y[2])
      (True, 2.0)
      >>> lj.rrelu(None, x, 0.1, 0.3, deterministic=True)
      Array([-0.2, -0.2,  2. ], dtype=float32)
    """
    x = checks.check_input("rrelu", "x", x)
    lower = checks.check_real_scalar("rrelu", "lower", lower)
    upper = checks.check_real_scalar("rrelu", "upper", upper)
    if not 0 <= lower <= upper:
        raise ValueError(
            f"rrelu: expected 0 <= `lower` <= `upper`, got lower={lower}, upper={upper}"
        )
    if not isinstance(deterministic, (bool, np.bool_)):
        raise TypeError(
            f"rrelu: `deterministic` must be a bool, got {deterministic!r} "
            f"(type {type(deterministic).__name__})"
        )
    if deterministic:
        # lower / 2 + upper / 2 cannot overflow.
        return static_slope(x, lower / 2 + upper / 2, None, ("rrelu", "(lower + upper) / 2"))
    key = checks.check_key("rrelu", key)
    return _rrelu(key, x, lower, upper)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _rrelu(key, x, lower, upper):
    checks.check_dtype("rrelu", "x", x)
    x = checks.float_input(x)
    lower = checks.round_to_dtype("rrelu", "lower", lower, x.dtype)
    upper = checks.round_to_dtype("rrelu", "upper", upper, x.dtype)
    if key.dtype == jnp.uint32:
        key = jax.random.wrap_key_data(key)
    slopes = jax.random.uniform(key, x.shape, x.dtype, lower, upper)
    return leaky_relu_core(x, slopes, None)
