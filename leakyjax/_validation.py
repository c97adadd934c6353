"""Argument checks for the public functions: one helper per kind of argument.

Every public function calls these once, at its boundary; the private functions behind it
trust their inputs. A wrong kind of thing is a ``TypeError``, a wrong value a ``ValueError``,
and each message names the function, the argument, what was given and what was expected.
Checks that need a value (finiteness, ranges) run when the value is concrete; under ``jit``
a traced value skips them (docs/errors.md says what a bad traced value gives).
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, SupportsFloat, cast

import jax
import jax.core
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from leakyjax._sites import Site, SiteSelection

# Real dtypes accepted at once (checked first, so that an eager call stays cheap).
_REAL_DTYPES = frozenset(
    np.dtype(t)
    for t in (bool, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
              np.uint64, np.float16, jnp.bfloat16, np.float32, np.float64)
)  # fmt: skip


def describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (type {type(value).__name__})"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_concrete(value: Any) -> bool:
    """True when ``value``'s numbers are known now (not a tracer under jit, vmap or grad)."""
    return not isinstance(value, jax.core.Tracer)


def unwrap(value: Any) -> Any:
    """An object that JAX accepts as an array through ``__jax_array__`` (a Flax ``nnx.Param``
    or ``nnx.Variable``, say) as that array; anything else as it is."""
    if not isinstance(value, jax.Array) and hasattr(type(value), "__jax_array__"):
        return value.__jax_array__()
    return value


def check_input(fn_name: str, name: str, x: Any) -> Any:
    """The activation's input: as ``check_array``, except that a ``jax.Array`` returns at
    once (an eager call must stay cheap) and has its dtype checked by ``check_dtype`` when the
    function is traced."""
    if isinstance(x, jax.Array):
        return x
    return check_array(fn_name, name, x)


def check_array(
    fn_name: str, name: str, value: Any, *, allow_bool: bool = True, hint: str = ""
) -> Any:
    """``value`` must be a real array or number: JAX or NumPy; boolean, integer or float; or
    an object with ``__jax_array__``. Returns it, such an object as its array."""
    value = unwrap(value)
    if isinstance(value, (jax.Array, np.ndarray, np.generic)):
        check_dtype(fn_name, name, value, allow_bool=allow_bool)
    elif isinstance(value, numbers.Number):
        check_dtype(fn_name, name, np.asarray(value), allow_bool=allow_bool)
    else:
        if not hint and isinstance(value, (list, tuple)):
            hint = "; convert it with jnp.asarray first"
        raise TypeError(
            f"{fn_name}: `{name}` must be an array or a real number, got {describe(value)}{hint}"
        )
    return value


def check_dtype(fn_name: str, name: str, value: Any, *, allow_bool: bool = True) -> None:
    """An array's dtype must be real: boolean (unless ``allow_bool`` is False), integer or
    float. Cheap enough to run when tracing."""
    dtype = value.dtype
    if dtype in _REAL_DTYPES and (allow_bool or dtype != np.bool_):
        return
    if jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{fn_name}: `{name}` must be real (float, integer or bool), got complex dtype "
            f"{dtype}; apply it to the real and imaginary parts separately if that is what "
            "you mean"
        )
    if jnp.issubdtype(dtype, jnp.bool_):
        if allow_bool:
            return
        raise TypeError(f"{fn_name}: `{name}` must be a real number or a float array, not a bool")
    if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(
            f"{fn_name}: `{name}` must be an array of real numbers (float, integer or bool), got "
            f"{describe(value)} of dtype {dtype}"
        )


def float_dtype(x: Any) -> np.dtype:
    """The dtype ``x`` is computed in: its own if floating, else the default float dtype."""
    dtype = jnp.result_type(x)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


def float_input(x: jax.Array) -> jax.Array:
    """Promotes integer and boolean arrays to the default float dtype, as ``jax.nn`` does."""
    if jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return x.astype(jnp.result_type(float))


def check_real_scalar(fn_name: str, name: str, value: Any) -> float:
    """A concrete, finite real scalar (Python or NumPy number, or a 0-d array), as a float."""
    value = unwrap(value)
    if isinstance(value, (bool, np.bool_)) or not (
        isinstance(value, (jax.Array, np.ndarray, np.generic, numbers.Number))
        and getattr(value, "ndim", 0) == 0  # a Python number has no ndim
    ):
        raise TypeError(f"{fn_name}: `{name}` must be a real scalar, got {describe(value)}")
    check_array(fn_name, name, value, allow_bool=False)
    if not is_concrete(value):
        raise TypeError(
            f"{fn_name}: `{name}` must be a concrete Python number, not a traced value; "
            "it selects the derivative rule when the function is traced"
        )
    result = float(cast(SupportsFloat, value))  # check_array: a real dtype
    if not math.isfinite(result):
        raise ValueError(f"{fn_name}: `{name}` must be finite, got {result}")
    return result


def round_to_dtype(fn_name: str, name: str, value: float, dtype: Any) -> float:
    """``value`` rounded to ``dtype``; below the smallest normal number it counts as 0.

    Flushing here makes a tiny slope behave the same on every platform (XLA on CPU flushes
    subnormal operands, so 0 * inf would otherwise appear as nan there and not elsewhere).
    """
    with np.errstate(over="ignore"):
        rounded = float(np.asarray(value, dtype))
    if not math.isfinite(rounded):
        raise ValueError(
            f"{fn_name}: `{name}`={value} overflows {np.dtype(dtype).name}, the dtype of the "
            f"input; expected |{name}| <= {float(jnp.finfo(dtype).max)}"
        )
    return 0.0 if abs(rounded) < float(jnp.finfo(dtype).tiny) else rounded


def check_finite(fn_name: str, name: str, value: Any, dtype: Any) -> None:
    """Where ``value`` is concrete, every element must be finite once cast to ``dtype``."""
    if not is_concrete(value):
        return
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.all(np.isfinite(np.asarray(value).astype(dtype)))
    if not finite:
        raise ValueError(
            f"{fn_name}: `{name}` must be finite in {np.dtype(dtype).name} (the input's dtype), "
            f"got {describe(value)}"
        )


def check_broadcast(fn_name: str, name: str, value: Any, x_name: str, x: Any) -> None:
    """``value``'s shape must broadcast against ``x``'s."""
    try:
        np.broadcast_shapes(np.shape(value), np.shape(x))
    except ValueError:
        raise ValueError(
            f"{fn_name}: `{name}` with shape {np.shape(value)} does not broadcast against "
            f"`{x_name}` with shape {np.shape(x)}"
        ) from None


def check_grad_at_zero(fn_name: str, grad_at_zero: float | None, negative_slope: Any) -> None:
    """``grad_at_zero`` (``None``, or a float from ``check_real_scalar``) must lie in the
    subdifferential at 0: between the slope and 1. Checked when the slope is concrete."""
    if grad_at_zero is None or not is_concrete(negative_slope):
        return
    slope = np.asarray(negative_slope, dtype=float)
    lo, hi = np.minimum(slope, 1.0), np.maximum(slope, 1.0)
    if not np.all((lo <= grad_at_zero) & (grad_at_zero <= hi)):
        raise ValueError(
            f"{fn_name}: `grad_at_zero`={grad_at_zero} is not a subgradient at 0: it must lie in "
            f"the closed interval between `negative_slope` ({describe(negative_slope)}) and 1"
        )


def check_axis_type(fn_name: str, name: str, axis: Any) -> None:
    """An int, or a non-empty tuple of ints (the range is checked against a shape later)."""
    if not all(map(_is_int, axis if isinstance(axis, tuple) and axis else (axis,))):
        raise TypeError(
            f"{fn_name}: `{name}` must be an int or a tuple of ints, got {describe(axis)}"
        )


def check_choice(fn_name: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    """One of the strings ``choices``."""
    expected = " or ".join(map(repr, choices))
    if not isinstance(value, str):
        raise TypeError(f"{fn_name}: `{name}` must be {expected}, got {describe(value)}")
    if value not in choices:
        raise ValueError(f"{fn_name}: `{name}` must be {expected}, got {value!r}")


def check_int(fn_name: str, name: str, value: Any) -> None:
    """A Python or NumPy integer (not a bool)."""
    if not _is_int(value):
        raise TypeError(f"{fn_name}: `{name}` must be an int, got {describe(value)}")


def check_bool(fn_name: str, name: str, value: Any) -> None:
    """A Python or NumPy bool (not a number, not an array)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{fn_name}: `{name}` must be a bool, got {describe(value)}")


def check_axis(fn_name: str, name: str, axis: Any, ndim: int) -> int:
    """An integer axis of an array with ``ndim`` dimensions; returns it non-negative."""
    check_int(fn_name, name, axis)
    return _in_range(fn_name, name, axis, ndim)


def _in_range(fn_name: str, name: str, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{fn_name}: `{name}`={axis} is out of range for an array with {ndim} dimensions "
            f"(expected {-ndim} <= {name} < {ndim})"
        )
    return int(axis) % ndim


def check_axes(fn_name: str, name: str, axis: Any, ndim: int) -> tuple[int, ...]:
    """An int or a tuple of distinct ints, each a valid axis; returns them non-negative."""
    check_axis_type(fn_name, name, axis)
    axes = tuple(
        _in_range(fn_name, name, a, ndim) for a in (axis if isinstance(axis, tuple) else (axis,))
    )
    if len(set(axes)) != len(axes):
        raise ValueError(f"{fn_name}: `{name}`={axis} names the same axis twice")
    return axes


def check_key(fn_name: str, key: Any) -> Any:
    """A ``jax.random`` key: a typed key array or a legacy ``uint32[2]`` key; returns it."""
    key = unwrap(key)
    if isinstance(key, (jax.Array, np.ndarray)):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ():
            return key
        if key.dtype == np.uint32 and key.shape == (2,):
            return key
    raise TypeError(
        f"{fn_name}: `key` must be a single jax.random key (jax.random.key(seed), or a legacy "
        f"jax.random.PRNGKey(seed)), got {describe(key)}"
    )


def check_float_dtype(fn_name: str, name: str, dtype: Any) -> np.dtype:
    """A floating dtype (``float``, ``jnp.float32``, ``"bfloat16"``...); returns it."""
    try:
        result = None if dtype is None else jax.dtypes.canonicalize_dtype(np.dtype(dtype))
    except (TypeError, ValueError):
        result = None
    if result is None or not jnp.issubdtype(result, jnp.floating):
        raise TypeError(f"{fn_name}: `{name}` must be a floating dtype, got {describe(dtype)}")
    return result


def check_shape(fn_name: str, name: str, shape: Any) -> tuple[int, ...]:
    """A tuple (or list) of non-negative ints; returns it as a tuple."""
    if _is_int(shape):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(map(_is_int, shape)):
        raise TypeError(f"{fn_name}: `{name}` must be a tuple of ints, got {describe(shape)}")
    if any(d < 0 for d in shape):
        raise ValueError(f"{fn_name}: `{name}` must not have negative sizes, got {tuple(shape)}")
    return tuple(int(d) for d in shape)


# --- The transforms' own arguments --------------------------------------------------------


def check_fn(fn_name: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{fn_name}: `fn` must be callable, got {describe(fn)}")


def check_patterns(fn_name: str, patterns: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    """A pattern name or a sequence of them, each one of ``allowed``."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    if not isinstance(patterns, (tuple, list)) or not all(isinstance(p, str) for p in patterns):
        raise TypeError(
            f"{fn_name}: `patterns` must be a tuple of pattern names, got {describe(patterns)}"
        )
    unknown = [p for p in patterns if p not in allowed]
    if unknown or not patterns:
        raise ValueError(
            f"{fn_name}: `patterns` must name at least one of {tuple(allowed)}, got "
            f"{tuple(patterns)}"
        )
    return tuple(patterns)


def check_sites(fn_name: str, sites: Any) -> SiteSelection:
    if sites is None:
        return None
    if callable(sites):
        try:
            inspect.signature(sites).bind(None)
        except TypeError:
            raise TypeError(
                f"{fn_name}: a `sites` predicate must take one argument, a leakyjax.Site; "
                f"got {describe(sites)}"
            ) from None
        except ValueError:  # no signature to read (a builtin): trusted
            pass
        return cast("Callable[[Site], bool]", sites)
    if isinstance(sites, str):
        return (sites,)
    if isinstance(sites, (tuple, list)) and all(isinstance(s, str) for s in sites):
        if not sites:
            raise ValueError(
                f"{fn_name}: `sites` is empty, which selects nothing; pass None for every "
                "site, or the names to select (leakyjax.relu_sites lists them)"
            )
        return tuple(sites)
    raise TypeError(
        f"{fn_name}: `sites` must be None, a sequence of site names or glob patterns, or a "
        f"predicate on a leakyjax.Site, got {describe(sites)}"
    )


def check_no_shape_structs(fn_name: str, args: tuple, kwargs: dict) -> None:
    leaves = jax.tree_util.tree_leaves((args, kwargs))
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves):
        raise TypeError(
            f"{fn_name}: the transformed function computes, so it needs arrays, got a "
            "jax.ShapeDtypeStruct; for shapes alone use jax.eval_shape on it, or "
            "leakyjax.relu_sites to list the sites"
        )


# Frames a warning is not attributed to: leakyjax's and JAX's own (a site found while
# jax.jit traces is still found by the user's call).
_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep for path in (__file__, jax.__file__)
)


def warn(message: str) -> None:
    """Warns with ``message`` at the user's line: the first caller outside leakyjax and
    JAX, however deep the call (a transform's first eager call of a jitted function runs
    inside ``jax.jit``'s tracing)."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def describe_fn(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__
