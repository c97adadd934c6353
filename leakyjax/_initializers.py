"""Weight initializers that know the Leaky ReLU slope (He et al., 2015)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from leakyjax import _validation as checks


def gain(negative_slope: float = 0.01) -> float:
    r"""The gain of Leaky ReLU: :math:`\sqrt{2 / (1 + \alpha^2)}`.

    He et al. (2015) derive that weights with variance :math:`\mathrm{gain}^2 /
    \mathrm{fan\_in}` keep the second moment of the activations steady through a deep
    Leaky ReLU network. It equals PyTorch's ``calculate_gain('leaky_relu', a)``.

    Args:
      negative_slope: the slope :math:`\alpha`, a Python number.

    Returns:
      The gain, a Python float.

    Example:
      >>> import leakyjax as lj
      >>> lj.gain(0.0), round(lj.gain(0.01), 6), lj.gain(1.0)
      (1.4142135623730951, 1.414143, 1.0)
    """
    slope = checks.check_real_scalar("gain", "negative_slope", negative_slope)
    return math.sqrt(2.0 / (1.0 + slope * slope))


def _variance_scaling(
    fn: str,
    distribution: Literal["truncated_normal", "uniform"],
    negative_slope: float,
    in_axis: Any,
    out_axis: Any,
    dtype: Any,
    mode: Any,
) -> jax.nn.initializers.Initializer:
    slope = checks.check_real_scalar(fn, "negative_slope", negative_slope)
    checks.check_axis_type(fn, "in_axis", in_axis)
    checks.check_axis_type(fn, "out_axis", out_axis)
    default_dtype = checks.check_float_dtype(fn, "dtype", dtype)
    checks.check_choice(fn, "mode", mode, ("fan_in", "fan_out"))
    base = jax.nn.initializers.variance_scaling(
        2.0 / (1.0 + slope * slope), mode, distribution, in_axis=in_axis, out_axis=out_axis
    )

    # The signature of jax.nn.initializers.Initializer, so that it is one.
    def init(
        key: jax.Array,
        shape: Sequence[int],
        dtype: DTypeLike | None = default_dtype,
        out_sharding: Any = None,
    ) -> jax.Array:
        key = checks.check_key(fn, key)
        shape = checks.check_shape(fn, "shape", shape)
        dtype = default_dtype if dtype is None else checks.check_float_dtype(fn, "dtype", dtype)
        axes = {}
        for name, axis in (("in_axis", in_axis), ("out_axis", out_axis)):
            axes[name] = checks.check_axes(fn, name, axis, len(shape))
        if set(axes["in_axis"]) & set(axes["out_axis"]):
            raise ValueError(
                f"{fn}: `in_axis`={in_axis} and `out_axis`={out_axis} share an axis of "
                f"shape {shape}"
            )
        if math.prod(shape) == 0:
            # An empty weight has a fan of 0 and nothing to draw: it is returned as it is, as
            # PyTorch does. (A non-empty one has every size >= 1, so a fan >= 1.)
            return jnp.zeros(shape, dtype, out_sharding=out_sharding)
        return base(key, shape, dtype, out_sharding)

    return init


def he_normal(
    negative_slope: float = 0.01,
    in_axis: int | tuple[int, ...] = -2,
    out_axis: int | tuple[int, ...] = -1,
    dtype: DTypeLike = float,
    *,
    mode: str = "fan_in",
) -> jax.nn.initializers.Initializer:
    r"""He (Kaiming) normal initializer for a Leaky ReLU with slope :math:`\alpha`.

    Draws from a truncated normal with variance :math:`2 / ((1 + \alpha^2)\,
    \mathrm{fan})` (the truncation is corrected for, as in
    :func:`jax.nn.initializers.he_normal`, which is the case :math:`\alpha = 0`), where
    :math:`\mathrm{fan}` is ``fan_in`` by default: the product of the ``in_axis`` sizes and
    of the other axes (a conv kernel's receptive field), as in
    :func:`jax.nn.initializers.variance_scaling`.

    Args:
      negative_slope: the slope of the Leaky ReLU that follows the layer.
      in_axis: the input axis or axes of the weight: -2 for a Flax or Haiku kernel
        (in, out) or an HWIO conv kernel; -1 for an Equinox ``Linear`` weight (out, in);
        1 for an OIHW conv kernel (Equinox, PyTorch). The README has a table.
      out_axis: the output axis or axes: -1, -2 and 0 in those cases.
      dtype: the default dtype of the weights.
      mode: ``"fan_in"`` keeps the scale of the activations steady in the forward pass;
        ``"fan_out"`` (PyTorch's option) that of the gradients in the backward pass, with
        the ``out_axis`` sizes in place of the ``in_axis`` ones.

    Returns:
      A :class:`jax.nn.initializers.Initializer`, ``init(key, shape, dtype=dtype,
      out_sharding=None)``: ``dtype=None`` means ``dtype`` above, and ``out_sharding`` goes
      to :mod:`jax.random`. A ``shape`` with a size of 0 gives an empty array of that shape
      and dtype (there is nothing to draw, and the fan is 0), as PyTorch does. Haiku calls
      initializers as ``init(shape, dtype)``: pass ``w_init=lambda shape, dtype:
      lj.he_normal(a)(hk.next_rng_key(), shape, dtype)``.

    Example:
      >>> import jax, leakyjax as lj
      >>> w = lj.he_normal(0.2)(jax.random.key(0), (1000, 500))
      >>> w.shape, round(float(w.var() * 1000 * (1 + 0.2**2) / 2), 1)
      ((1000, 500), 1.0)
      >>> w = lj.he_normal(0.2, mode="fan_out")(jax.random.key(0), (500, 1000))
      >>> round(float(w.var() * 1000 * (1 + 0.2**2) / 2), 1)
      1.0
      >>> lj.he_normal()(jax.random.key(0), (0, 64)).shape
      (0, 64)
    """
    return _variance_scaling(
        "he_normal", "truncated_normal", negative_slope, in_axis, out_axis, dtype, mode
    )


def he_uniform(
    negative_slope: float = 0.01,
    in_axis: int | tuple[int, ...] = -2,
    out_axis: int | tuple[int, ...] = -1,
    dtype: DTypeLike = float,
    *,
    mode: str = "fan_in",
) -> jax.nn.initializers.Initializer:
    r"""He (Kaiming) uniform initializer for a Leaky ReLU with slope :math:`\alpha`.

    Draws from :math:`U[-b, b]` with :math:`b = \sqrt{6 / ((1 + \alpha^2)\,
    \mathrm{fan})}`, so the variance is :math:`2 / ((1 + \alpha^2)\, \mathrm{fan})`;
    :math:`\mathrm{fan}` is ``fan_in`` by default (see :func:`leakyjax.he_normal`).

    Args:
      negative_slope: the slope of the Leaky ReLU that follows the layer.
      in_axis: the input axis or axes of the weight (see :func:`leakyjax.he_normal`).
      out_axis: the output axis or axes.
      dtype: the default dtype of the weights.
      mode: ``"fan_in"`` or ``"fan_out"`` (see :func:`leakyjax.he_normal`).

    Returns:
      A :class:`jax.nn.initializers.Initializer`, ``init(key, shape, dtype=dtype,
      out_sharding=None)``, as for :func:`leakyjax.he_normal` (an empty ``shape`` gives an
      empty array).

    Example:
      >>> import jax, leakyjax as lj
      >>> w = lj.he_uniform(0.2)(jax.random.key(0), (1000, 500))
      >>> bound = (6 / ((1 + 0.2**2) * 1000)) ** 0.5
      >>> bool(abs(w).max() <= bound), round(float(w.var() * 1000 * (1 + 0.2**2) / 2), 1)
      (True, 1.0)
    """
    return _variance_scaling(
        "he_uniform", "uniform", negative_slope, in_axis, out_axis, dtype, mode
    )
