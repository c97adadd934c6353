"""Dead-unit diagnostics: which units would never pass a ReLU gradient."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from leakyjax import _validation as checks


def dead_units(preactivations: ArrayLike, axis: int | tuple[int, ...] = 0) -> jax.Array:
    r"""Which units are dead: their pre-activation is :math:`\le 0` for every example.

    .. math::
      \mathrm{dead}_j = \forall i:\ z_{ij} \le 0

    A ReLU unit that is dead on a batch passes no gradient for that batch; one dead on the
    whole data set never learns again (the dying-ReLU problem). NaN counts as alive, and a
    batch with no example (a reduced axis of size 0) has no dead unit: none was seen.

    Args:
      preactivations: the inputs to the activation, e.g. ``x @ w + b``; or a tuple or list
        of such arrays, one per call, as Flax's ``sow`` stores them (``nn.sow`` in Linen,
        ``nnx.sow``'s ``Intermediate``: pass its value): a unit is then dead when it is dead
        in every call. Do not stack them: ``jnp.asarray`` of the tuple adds an axis 0 of
        calls, which ``axis=0`` would then reduce instead of the examples.
      axis: the example axis or axes to reduce over (0 for (batch, units); (0, 1, 2) for
        NHWC feature maps, whose units are channels).

    Returns:
      A boolean array with one entry per unit (the remaining axes).

    Example:
      >>> import jax.numpy as jnp, leakyjax as lj
      >>> z = jnp.array([[-1.0, 2.0, 0.0], [-3.0, -1.0, 0.0]])
      >>> lj.dead_units(z)
      Array([ True, False,  True], dtype=bool)
      >>> lj.dead_units((z, jnp.array([[1.0, -1.0, -1.0]])))  # two calls, as sown
      Array([False, False,  True], dtype=bool)

    See also:
      :func:`leakyjax.track_dead_units`, which records this while a model runs, without
      ``sow``; :func:`leakyjax.dead_fraction`.
    """
    return _dead_units("dead_units", preactivations, axis)


def _dead_units(fn: str, preactivations: Any, axis: int | tuple[int, ...]) -> jax.Array:
    # A tuple or list is what Flax's sow stores: one array per call. A unit is dead when it
    # is dead in every call, each reduced over `axis` on its own (not stacked on a new axis 0,
    # which the default axis would then take for the examples).
    calls = preactivations if isinstance(preactivations, (tuple, list)) else (preactivations,)
    if not calls:
        raise ValueError(f"{fn}: `preactivations` is an empty {type(preactivations).__name__}")
    dead = None
    for z in calls:
        z = checks.check_array(fn, "preactivations", z, hint=_HINT)
        axes = checks.check_axes(fn, "axis", axis, np.ndim(z))
        z_dead = jnp.all(jnp.asarray(z) <= 0, axis=axes)
        if any(np.shape(z)[a] == 0 for a in axes):
            # No example seen is not "all dead" (track_dead_units agrees).
            z_dead = jnp.zeros_like(z_dead)
        if dead is not None and z_dead.shape != dead.shape:
            raise ValueError(
                f"{fn}: the arrays in `preactivations` have different units once `axis`="
                f"{axis} is reduced: {dead.shape} and {z_dead.shape}"
            )
        dead = z_dead if dead is None else dead & z_dead
    assert dead is not None  # the tuple is not empty: checked above
    return dead


_HINT = "; or a tuple or list of arrays, one per call, as Flax's sow stores them"


def dead_fraction(preactivations: ArrayLike, axis: int | tuple[int, ...] = 0) -> jax.Array:
    r"""The fraction of units that are dead (see :func:`leakyjax.dead_units`).

    .. math::
      \frac{1}{J} \sum_j \mathrm{dead}_j

    Args:
      preactivations: the inputs to the activation: an array, or a tuple or list of arrays
        (one per call, as Flax's ``sow`` stores them; see :func:`leakyjax.dead_units`).
      axis: the example axis or axes.

    Returns:
      A scalar array in [0, 1] of the default float dtype.

    Example:
      >>> import jax.numpy as jnp, leakyjax as lj
      >>> lj.dead_fraction(jnp.array([[-1.0, 2.0, 0.0, 1.0], [-3.0, -1.0, 0.0, 1.0]]))
      Array(0.5, dtype=float32)

    See also:
      :func:`leakyjax.dead_units`, :func:`leakyjax.track_dead_units`.
    """
    dead = _dead_units("dead_fraction", preactivations, axis)
    return jnp.mean(dead, dtype=jnp.result_type(float))
