"""Argument checks for the public functions: one helper per kind of argument.

Every public function calls these once, at its boundary; the private functions behind it
trust their inputs. A wrong kind of thing is a ``TypeError``, a wrong value a ``ValueError``,
and each message names the function, the argument, what was given and what was expected.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_ARRAY_TYPES = (jax.Array, np.ndarray, np.generic, numbers.Number)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (type {type(value).__name__})"


def is_concrete(value: Any) -> bool:
    """True when ``value``'s numbers are known now (not a tracer under jit, vmap or grad)."""
    return not isinstance(value, jax.core.Tracer)


def check_array(fn: str, name: str, value: Any) -> None:
    """``value`` must be a JAX or NumPy array or a Python or NumPy number.

    Cheap for a ``jax.Array`` (one isinstance check), since it runs on every eager call.
    """
    if isinstance(value, jax.Array):
        return
    if not isinstance(value, _ARRAY_TYPES) or (
        isinstance(value, np.ndarray) and value.dtype == object
    ):
        raise TypeError(f"{fn}: `{name}` must be an array or a real number, got {_describe(value)}")


def check_real(fn: str, name: str, value: Any) -> None:
    """``value`` (already known to be array-like) must not be complex. Run when tracing."""
    if jnp.iscomplexobj(value):
        raise TypeError(
            f"{fn}: `{name}` must be real (float, integer or bool), got complex dtype "
            f"{jnp.result_type(value)}; apply it to the real and imaginary parts separately "
            "if that is what you mean"
        )


def float_input(x: jax.Array) -> jax.Array:
    """Promotes integer and boolean arrays to the default float dtype, as ``jax.nn`` does."""
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return x.astype(jnp.result_type(float))


def check_real_scalar(fn: str, name: str, value: Any) -> float:
    """A concrete real scalar (Python or NumPy number, or a 0-d array): returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, _ARRAY_TYPES) or np.ndim(value) != 0:
        raise TypeError(f"{fn}: `{name}` must be a real scalar, got {_describe(value)}")
    check_real(fn, name, value)
    if not is_concrete(value):
        raise TypeError(
            f"{fn}: `{name}` must be a concrete Python number, not a traced value; "
            "it selects the derivative rule when the function is traced"
        )
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{fn}: `{name}` must be finite, got {result}")
    return result


def check_finite(fn: str, name: str, value: Any) -> None:
    """Where ``value`` is concrete, every element must be finite."""
    if is_concrete(value) and not np.all(np.isfinite(np.asarray(value))):
        raise ValueError(f"{fn}: `{name}` must be finite, got {_describe(value)}")


def check_broadcast(fn: str, name: str, value: Any, x_name: str, x: Any) -> None:
    """``value``'s shape must broadcast against ``x``'s."""
    try:
        np.broadcast_shapes(np.shape(value), np.shape(x))
    except ValueError:
        raise ValueError(
            f"{fn}: `{name}` with shape {np.shape(value)} does not broadcast against "
            f"`{x_name}` with shape {np.shape(x)}"
        ) from None


def check_grad_at_zero(fn: str, grad_at_zero: float, negative_slope: Any) -> None:
    """``grad_at_zero`` must lie in the subdifferential at 0: between the slope and 1."""
    if not is_concrete(negative_slope):
        return
    slope = np.asarray(negative_slope, dtype=float)
    lo, hi = np.minimum(slope, 1.0), np.maximum(slope, 1.0)
    if not np.all((lo <= grad_at_zero) & (grad_at_zero <= hi)):
        raise ValueError(
            f"{fn}: `grad_at_zero`={grad_at_zero} is not a subgradient at 0: it must lie in "
            f"the closed interval between `negative_slope` ({_describe(negative_slope)}) and 1"
        )


def check_axis(fn: str, name: str, axis: Any, ndim: int) -> int:
    """An integer axis of an array with ``ndim`` dimensions; returns it non-negative."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{fn}: `{name}` must be an int, got {_describe(axis)}")
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{fn}: `{name}`={axis} is out of range for an array with {ndim} dimensions "
            f"(expected {-ndim} <= {name} < {ndim})"
        )
    return int(axis) % ndim


def check_axes(fn: str, name: str, axis: Any, ndim: int) -> tuple[int, ...]:
    """An int or a tuple of ints, each a valid axis; returns them non-negative."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(check_axis(fn, name, a, ndim) for a in axes)


def check_key(fn: str, key: Any) -> None:
    """A ``jax.random`` key: a typed key array or a legacy ``uint32[2]`` key."""
    if isinstance(key, (jax.Array, np.ndarray)):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return
        if key.dtype == np.uint32 and key.shape == (2,):
            return
    raise TypeError(
        f"{fn}: `key` must be a jax.random key (jax.random.key(seed), or a legacy "
        f"jax.random.PRNGKey(seed)), got {_describe(key)}"
    )
