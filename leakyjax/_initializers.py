"""Weight initializers that know the Leaky ReLU slope (He et al., 2015)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import jax
from jax.typing import DTypeLike

from leakyjax import _validation as v


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
    slope = v.check_real_scalar("gain", "negative_slope", negative_slope)
    return math.sqrt(2.0 / (1.0 + slope * slope))


def _variance_scaling(
    fn: str,
    distribution: Literal["truncated_normal", "uniform"],
    negative_slope: float,
    in_axis: Any,
    out_axis: Any,
    dtype: Any,
) -> jax.nn.initializers.Initializer:
    slope = v.check_real_scalar(fn, "negative_slope", negative_slope)
    v.check_axis_type(fn, "in_axis", in_axis)
    v.check_axis_type(fn, "out_axis", out_axis)
    v.check_float_dtype(fn, "dtype", dtype)
    base = jax.nn.initializers.variance_scaling(
        2.0 / (1.0 + slope * slope),
        "fan_in",
        distribution,
        in_axis=in_axis,
        out_axis=out_axis,
        dtype=dtype,
    )

    # The signature of jax.nn.initializers.Initializer: dtype=None is the default float dtype,
    # and out_sharding is passed on to jax.
    def init(
        key: jax.Array,
        shape: Sequence[int],
        dtype: DTypeLike | None = dtype,
        out_sharding: Any = None,
    ) -> jax.Array:
        v.check_key(fn, key)
        shape = v.check_shape(fn, "shape", shape)
        dtype = v.check_float_dtype(fn, "dtype", float if dtype is None else dtype)
        axes = {}
        for name, axis in (("in_axis", in_axis), ("out_axis", out_axis)):
            axes[name] = v.check_axes(fn, name, axis, len(shape))
        if set(axes["in_axis"]) & set(axes["out_axis"]):
            raise ValueError(
                f"{fn}: `in_axis`={in_axis} and `out_axis`={out_axis} share an axis of "
                f"shape {shape}"
            )
        return base(key, shape, dtype, out_sharding=out_sharding)

    return init


def he_normal(
    negative_slope: float = 0.01,
    in_axis: int | tuple[int, ...] = -2,
    out_axis: int | tuple[int, ...] = -1,
    dtype: DTypeLike = float,
) -> jax.nn.initializers.Initializer:
    r"""He (Kaiming) normal initializer for a Leaky ReLU with slope :math:`\alpha`.

    Draws from a truncated normal with variance :math:`2 / ((1 + \alpha^2)\,
    \mathrm{fan\_in})` (the truncation is corrected for, as in
    :func:`jax.nn.initializers.he_normal`, which is the case :math:`\alpha = 0`).

    Args:
      negative_slope: the slope of the Leaky ReLU that follows the layer.
      in_axis: the input (fan-in) axis or axes of the weight shape.
      out_axis: the output axis or axes.
      dtype: the default dtype of the weights.

    Returns:
      An initializer ``init(key, shape, dtype=dtype)``, like those of
      :mod:`jax.nn.initializers`.

    Example:
      >>> import jax, leakyjax as lj
      >>> w = lj.he_normal(0.2)(jax.random.key(0), (1000, 500))
      >>> w.shape, round(float(w.var() * 1000 * (1 + 0.2**2) / 2), 1)
      ((1000, 500), 1.0)
    """
    return _variance_scaling(
        "he_normal", "truncated_normal", negative_slope, in_axis, out_axis, dtype
    )


def he_uniform(
    negative_slope: float = 0.01,
    in_axis: int | tuple[int, ...] = -2,
    out_axis: int | tuple[int, ...] = -1,
    dtype: DTypeLike = float,
) -> jax.nn.initializers.Initializer:
    r"""He (Kaiming) uniform initializer for a Leaky ReLU with slope :math:`\alpha`.

    Draws from :math:`U[-b, b]` with :math:`b = \sqrt{6 / ((1 + \alpha^2)\,
    \mathrm{fan\_in})}`, so the variance is :math:`2 / ((1 + \alpha^2)\, \mathrm{fan\_in})`.

    Args:
      negative_slope: the slope of the Leaky ReLU that follows the layer.
      in_axis: the input (fan-in) axis or axes of the weight shape.
      out_axis: the output axis or axes.
      dtype: the default dtype of the weights.

    Returns:
      An initializer ``init(key, shape, dtype=dtype)``.

    Example:
      >>> import jax, leakyjax as lj
      >>> w = lj.he_uniform(0.2)(jax.random.key(0), (1000, 500))
      >>> bound = (6 / ((1 + 0.2**2) * 1000)) ** 0.5
      >>> bool(abs(w).max() <= bound), round(float(w.var() * 1000 * (1 + 0.2**2) / 2), 1)
      (True, 1.0)
    """
    return _variance_scaling("he_uniform", "uniform", negative_slope, in_axis, out_axis, dtype)
