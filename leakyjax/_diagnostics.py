"""Dead-unit diagnostics: which units would never pass a ReLU gradient."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from leakyjax import _validation as v


def dead_units(preactivations: ArrayLike, axis: int | tuple[int, ...] = 0) -> jax.Array:
    r"""Which units are dead: their pre-activation is :math:`\le 0` for every example.

    .. math::
      \mathrm{dead}_j = \forall i:\ z_{ij} \le 0

    A ReLU unit that is dead on a batch passes no gradient for that batch; one dead on the
    whole data set never learns again (the dying-ReLU problem). NaN counts as alive.

    Args:
      preactivations: the inputs to the activation, e.g. ``x @ w + b``.
      axis: the example axis or axes to reduce over (0 for (batch, units); (0, 1, 2) for
        NHWC feature maps, whose units are channels).

    Returns:
      A boolean array with one entry per unit (the remaining axes).

    Example:
      >>> import jax.numpy as jnp, leakyjax as lj
      >>> z = jnp.array([[-1.0, 2.0, 0.0], [-3.0, -1.0, 0.0]])
      >>> lj.dead_units(z)
      Array([ True, False,  True], dtype=bool)
    """
    return _dead_units("dead_units", preactivations, axis)


def _dead_units(fn: str, preactivations: ArrayLike, axis: int | tuple[int, ...]) -> jax.Array:
    v.check_array(fn, "preactivations", preactivations)
    axes = v.check_axes(fn, "axis", axis, np.ndim(preactivations))
    return jnp.all(jnp.asarray(preactivations) <= 0, axis=axes)


def dead_fraction(preactivations: ArrayLike, axis: int | tuple[int, ...] = 0) -> jax.Array:
    r"""The fraction of units that are dead (see :func:`leakyjax.dead_units`).

    .. math::
      \frac{1}{J} \sum_j \mathrm{dead}_j

    Args:
      preactivations: the inputs to the activation.
      axis: the example axis or axes.

    Returns:
      A scalar array in [0, 1] of the default float dtype.

    Example:
      >>> import jax.numpy as jnp, leakyjax as lj
      >>> lj.dead_fraction(jnp.array([[-1.0, 2.0, 0.0, 1.0], [-3.0, -1.0, 0.0, 1.0]]))
      Array(0.5, dtype=float32)
    """
    dead = _dead_units("dead_fraction", preactivations, axis)
    return jnp.mean(dead, dtype=jnp.result_type(float))
