"""Leaky ReLU and its derivative rule."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from jax.typing import ArrayLike

from leakyjax import _validation as checks


def leaky_relu(
    x: ArrayLike, negative_slope: ArrayLike = 0.01, *, grad_at_zero: float | None = None
) -> jax.Array:
    r"""Leaky rectified linear unit, with an exact, selectable subgradient at zero.

    Computes the element-wise function

    .. math::
      \mathrm{leaky\_relu}(x) = \begin{cases}
        x, & x > 0\\
        \alpha x, & x \le 0
      \end{cases}

    where :math:`\alpha` = ``negative_slope``. Its derivative in :math:`x` is exactly 1 for
    :math:`x > 0`, exactly :math:`\alpha` (rounded to ``x``'s dtype) for :math:`x < 0`, and
    at :math:`x = 0` (``+0.0`` and ``-0.0``) exactly ``grad_at_zero``, which must be a
    subgradient: a value between :math:`\alpha` and 1. The default, :math:`\alpha`, follows
    the formula above (the :math:`x \le 0` branch), as PyTorch and TensorFlow do;
    ``grad_at_zero=1.0`` gives the derivative of :func:`jax.nn.leaky_relu` at every
    :math:`x` except NaN (where that takes :math:`\alpha`). Its derivative in
    :math:`\alpha` is :math:`x` for :math:`x \le 0` and 0 otherwise, so the slope can be
    learned (see :func:`leakyjax.prelu`). Derivatives of every order are exact, at
    :math:`\alpha = 0` too: the mixed second derivative is 1 for :math:`x < 0`.

    Special values: NaN gives NaN (its derivative is ``grad_at_zero``, as NaN compares
    neither above nor below 0); :math:`\pm\infty` gives :math:`\pm\infty` for
    :math:`\alpha > 0`, and :math:`-\infty` gives exactly 0 for :math:`\alpha = 0`; a zero
    keeps its sign. XLA on CPU treats float32, bfloat16 and float64 subnormals as zero in
    compares and arithmetic and flushes subnormal results, so there a subnormal ``x`` behaves
    as 0: its derivative is ``grad_at_zero``, and its value comes back unchanged or as the
    zero of its sign (the same number there), as the compiled code happens to write it.

    The slope and ``grad_at_zero`` are rounded to ``x``'s dtype; a slope that overflows it is
    a ``ValueError``, and one below its smallest normal number counts as 0, on every platform.

    Args:
      x: input array. Integer and boolean inputs are promoted to the default float dtype;
        complex inputs are rejected.
      negative_slope: the slope :math:`\alpha` for :math:`x \le 0`: a Python number, or an
        array that broadcasts against ``x`` (e.g. one slope per channel). It is cast to
        ``x``'s dtype, so activations keep their precision.
      grad_at_zero: the derivative at :math:`x = 0`. ``None`` means ``negative_slope``.
        A Python number, fixed when the function is traced.

    Returns:
      An array of ``x``'s (floating) dtype, of the shape ``x`` and ``negative_slope``
      broadcast to (``x``'s shape for a scalar or per-channel slope).

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> lj.leaky_relu(jnp.array([-2.0, 0.0, 3.0]), 0.1)
      Array([-0.2,  0. ,  3. ], dtype=float32)
      >>> jax.vmap(jax.grad(lj.leaky_relu))(jnp.array([-2.0, 0.0, 3.0]))
      Array([0.01, 0.01, 1.  ], dtype=float32)
      >>> jax.grad(lj.leaky_relu)(0.0, grad_at_zero=1.0)  # jax.nn.leaky_relu's convention
      Array(1., dtype=float32, weak_type=True)

    See also:
      :func:`leakyjax.prelu`, :func:`leakyjax.rrelu`, :func:`jax.nn.leaky_relu`.
    """
    x = checks.check_input("leaky_relu", "x", x)
    if grad_at_zero is not None:  # a float from here on (static, so it must be hashable)
        grad_at_zero = checks.check_real_scalar("leaky_relu", "grad_at_zero", grad_at_zero)
    if type(negative_slope) is float or type(negative_slope) is int:
        # A Python number is static: the derivative rule is chosen knowing its value.
        return static_slope(x, negative_slope, grad_at_zero, ("leaky_relu", "negative_slope"))
    negative_slope = checks.check_array(
        "leaky_relu", "negative_slope", negative_slope, allow_bool=False
    )
    checks.check_finite("leaky_relu", "negative_slope", negative_slope, checks.float_dtype(x))
    checks.check_grad_at_zero("leaky_relu", grad_at_zero, negative_slope)
    return _array_slope(x, negative_slope, grad_at_zero)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def static_slope(
    x: jax.Array, negative_slope: float, grad_at_zero: float | None, where: tuple[str, str]
) -> jax.Array:
    """Leaky ReLU with a Python-number slope, checked when traced; ``where`` names it."""
    fn, name = where
    checks.check_dtype(fn, "x", x)
    slope = checks.check_real_scalar(fn, name, negative_slope)
    checks.check_grad_at_zero(fn, grad_at_zero, slope)
    x = checks.float_input(x)
    slope = checks.round_to_dtype(fn, name, slope, x.dtype)
    if grad_at_zero is not None:
        grad_at_zero = checks.round_to_dtype(fn, "grad_at_zero", grad_at_zero, x.dtype)
    return leaky_relu_core(x, slope, grad_at_zero)


@functools.partial(jax.jit, static_argnums=(2,))
def _array_slope(x, negative_slope, grad_at_zero):
    checks.check_dtype("leaky_relu", "x", x)
    checks.check_broadcast("leaky_relu", "negative_slope", negative_slope, "x", x)
    x = checks.float_input(x)
    slope = negative_slope.astype(x.dtype)
    if grad_at_zero is not None:
        grad_at_zero = checks.round_to_dtype("leaky_relu", "grad_at_zero", grad_at_zero, x.dtype)
    return leaky_relu_core(x, slope, grad_at_zero)


def leaky_relu_core(
    x: jax.Array, negative_slope: float | jax.Array, grad_at_zero: float | None
) -> jax.Array:
    """Leaky ReLU on checked arguments: float ``x``; a Python float or an ``x``-dtype slope.

    A Python-float slope (and ``grad_at_zero``) must already be rounded to ``x``'s dtype.
    """
    if isinstance(negative_slope, float):
        # The backward pass can read the sign of x off the output y (y > 0 exactly when
        # x > 0 for a slope >= 0), so it keeps y, which the next layer keeps anyway,
        # instead of a mask of its own. Where that is not exact, it keeps the mask of x.
        from_output = negative_slope >= 0 and grad_at_zero in (None, negative_slope)
        return _leaky_relu_static(x, negative_slope, grad_at_zero, from_output)
    return _leaky_relu_array(x, negative_slope, grad_at_zero)


def _forward(x, negative_slope):
    # Zeros (and nan) take the identity branch: a * 0 == 0 and a zero keeps its sign.
    return jnp.where(x < 0, _negative_part(x, _effective_slope(negative_slope, x.dtype)), x)


def _effective_slope(negative_slope, dtype):
    # A slope below the smallest normal number of x's dtype counts as 0, on every platform
    # (a Python-float slope was flushed when it was rounded to the dtype).
    if isinstance(negative_slope, float):
        return negative_slope
    return _flush_tiny(negative_slope, jnp.finfo(dtype).tiny)


# The flush is a rounding of the slope's value, not a function of it: its derivative is 1
# (so d/da of the x-derivative stays 1 where x < 0, at a == 0 too), like that of a cast.
@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _flush_tiny(negative_slope, tiny):
    return jnp.where(jnp.abs(negative_slope) < tiny, jnp.zeros_like(negative_slope), negative_slope)


_flush_tiny.defjvp(lambda tiny, primals, tangents: (_flush_tiny(primals[0], tiny), tangents[0]))


def _negative_part(x, negative_slope):
    # a * x, except that a == 0 gives exactly +0 (not 0 * -inf = nan).
    if isinstance(negative_slope, float):
        return jnp.zeros_like(x) if negative_slope == 0 else negative_slope * x
    return jnp.where(negative_slope == 0, jnp.zeros_like(x), negative_slope * x)


def _marked(fn):
    # The stable marker by which the transforms find leakyjax's activation in a jaxpr (the
    # name of its custom_jvp equation; see _jax_internals.MARKER).
    fn.__name__ = "leakyjax_leaky_relu"
    return fn


# A Python-float slope is static: a constant of the computation, with no tangent.
@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3))
@_marked
def _leaky_relu_static(x, negative_slope, grad_at_zero, from_output):
    return _forward(x, negative_slope)


@_leaky_relu_static.defjvp
def _leaky_relu_static_jvp(negative_slope, grad_at_zero, from_output, primals, tangents):
    (x,), (x_dot,) = primals, tangents
    # y by the function itself, so that a derivative of y taken beside this one (say, of
    # value_and_grad) follows this rule too, not the derivative of the select in _forward.
    y = _leaky_relu_static(x, negative_slope, grad_at_zero, from_output)
    return y, _x_term(x, y, x_dot, negative_slope, grad_at_zero, from_output)


# An array slope (of x's dtype, broadcasting against x) is differentiable.
@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
@_marked
def _leaky_relu_array(x, negative_slope, grad_at_zero):
    return _forward(x, negative_slope)


@functools.partial(_leaky_relu_array.defjvp, symbolic_zeros=True)
def _leaky_relu_array_jvp(grad_at_zero, primals, tangents):
    x, negative_slope = primals
    x_dot, slope_dot = tangents
    y = _leaky_relu_array(x, negative_slope, grad_at_zero)  # as in the static rule
    terms = []
    if type(x_dot) is not SymbolicZero:
        terms.append(_x_term(x, y, x_dot, negative_slope, grad_at_zero, False))
    if type(slope_dot) is not SymbolicZero:
        # d/da = x for x < 0 and 0 for x > 0. At a zero (or a subnormal the platform treats
        # as zero) it is x * 0: a zero of x's sign whatever the platform flushes, and nan
        # stays nan.
        zero = jnp.zeros_like(x)
        terms.append(jnp.where(x > 0, zero, jnp.where(x < 0, x, x * zero)) * slope_dot)
    if not terms:
        return y, jnp.zeros_like(y)
    # Each term alone is exact; only a jvp in both x and the slope adds them.
    return y, terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _x_term(x, y, x_dot, negative_slope, grad_at_zero, from_output):
    # Zero convention: d/dx at x == 0 (either sign) is `grad_at_zero`; None means the
    # slope, the x <= 0 branch of the formula (PyTorch's and TensorFlow's choice).
    # Zero is "neither > 0 nor < 0", so nan takes `grad_at_zero` too, and a subnormal x
    # that the platform flushes in one compare but not the other still gets a valid
    # subgradient (never the slope for a positive x).
    def derivative(positive, negative, slope):
        slope = _effective_slope(slope, x.dtype)
        if negative is None:
            return jnp.where(positive, 1.0, slope)
        return jnp.where(positive, 1.0, jnp.where(negative, slope, grad_at_zero))

    if from_output:
        # The sign of x is read off y inside a checkpoint: reverse mode keeps y (which the
        # next layer keeps anyway) and redoes the compare, instead of keeping a mask.
        return _checkpoint(functools.partial(_from_output, negative_slope, derivative))(x_dot, y)
    # The masks are computed outside the checkpoint, so they are what reverse mode keeps
    # (one byte each), not a float array of derivatives. 1 where positive; the slope where
    # negative (or, with the default convention, wherever not positive); grad_at_zero
    # elsewhere: one select, two with a grad_at_zero of its own.
    negative = None if grad_at_zero is None else x < 0
    return _checkpoint(lambda t, pos, neg: t * derivative(pos, neg, negative_slope))(
        x_dot, x > 0, negative
    )


def _from_output(negative_slope, derivative, t, y):
    # A matmul reads an activation of rank >= 3 (batch, tokens, features) as the matrix of its
    # rows, and that matrix is the y it keeps for its own backward pass. Reading y as the same
    # matrix here lets XLA use that buffer; read in y's own shape, XLA on CPU recomputed y
    # from the pre-activation instead, and so kept the pre-activation too (a transformer
    # block: 1.13x the temporary bytes). The reshape moves no data; the values are the same.
    if y.ndim < 3:
        return t * derivative(y > 0, None, negative_slope)
    rows = (math.prod(y.shape[:-1]), y.shape[-1])
    tangent = t.reshape(rows) * derivative(y.reshape(rows) > 0, None, negative_slope)
    return tangent.reshape(y.shape)


# prevent_cse=False leaves XLA free to fuse the recomputation. Measured on CPU, True compiled
# to the same fusions (no optimization barrier) for the gradients of all three rules.
_checkpoint = functools.partial(jax.checkpoint, prevent_cse=False)
