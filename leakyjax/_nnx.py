"""Flax NNX modules (``fn`` itself, or anywhere in its arguments) as a pure function of their
state, with the state that changed written back (BatchNorm statistics, RNG counts), as
``nnx.split``/``nnx.merge`` do for ``nnx.jit``. Flax is imported only if the user's program has
imported it."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

import jax


def is_module(x: Any) -> bool:
    """Whether ``x`` is a Flax NNX module (Flax is imported only if the user's program has)."""
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(x, nnx.Module)


def as_pure(fn: Any, args: tuple, kwargs: dict) -> tuple[Callable, tuple, dict, Callable]:
    """``(pure, args, kwargs, write_back)``: ``pure`` takes the modules' state first (an
    argument of its own, so site names are its key paths), then ``args`` and ``kwargs``
    with each module replaced by a placeholder; ``write_back`` writes the state back."""
    nnx = sys.modules.get("flax.nnx")
    unchanged = (fn, args, kwargs, lambda out: out)
    if nnx is None:
        return unchanged
    leaves, treedef = jax.tree_util.tree_flatten(
        (fn, args, kwargs), is_leaf=lambda x: isinstance(x, nnx.Module)
    )
    modules = [leaf for leaf in leaves if isinstance(leaf, nnx.Module)]
    if not modules:
        return unchanged
    # One module is split alone, so its site names are its own key paths (`l1`).
    target = modules[0] if len(modules) == 1 else tuple(modules)
    graphdef, state = nnx.split(target)
    slots = iter(range(len(modules)))
    placed = [_ModuleSlot(next(slots)) if isinstance(x, nnx.Module) else x for x in leaves]
    fn_slot, args_slots, kwargs_slots = jax.tree_util.tree_unflatten(treedef, placed)

    def pure(state: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        merged = nnx.merge(graphdef, state)
        present = (merged,) if len(modules) == 1 else merged
        f, a, k = jax.tree_util.tree_map(
            lambda x: present[x.index] if isinstance(x, _ModuleSlot) else x,
            (fn, args, kwargs),
            is_leaf=lambda x: isinstance(x, _ModuleSlot),
        )
        return f(*a, **k), nnx.state(merged)

    def write_back(result: Any) -> Any:
        out, new_state = result
        # Only what changed: a variable written back inside a jax.jit that closes over
        # the module must be one the module itself would have written (NNX refuses
        # writes from another trace level, changed or not).
        old = dict(nnx.to_flat_state(state))
        changed = [
            (path, var)
            for path, var in nnx.to_flat_state(new_state)
            if _leaves_differ(var, old.get(path))
        ]
        if changed:
            nnx.update(target, nnx.from_flat_state(changed))
        return out

    return pure, (state, fn_slot, *args_slots), kwargs_slots, write_back


@dataclasses.dataclass(frozen=True)
class _ModuleSlot:
    """Where an NNX module was in ``fn``, its arguments or keyword arguments (static)."""

    index: int


def _leaves_differ(new: Any, old: Any) -> bool:
    if old is None:
        return True
    a, b = jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old)
    return len(a) != len(b) or any(x is not y for x, y in zip(a, b, strict=True))
