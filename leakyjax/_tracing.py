"""Tracing a function and its arguments into a jaxpr with its sites, and choosing sites: the
floor that ``leakify``, ``relu_sites`` and the tracker share."""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jex
import numpy as np

from leakyjax import _jax_internals as internals
from leakyjax import _nnx, _sites
from leakyjax import _validation as checks
from leakyjax._interpreter import HANDLERS, Rule, evaluate
from leakyjax._sites import Site, SiteSelection


@dataclasses.dataclass(frozen=True)
class Traced:
    """``fn`` traced at some arguments: its jaxpr, the values of the jaxpr's inputs, the
    structure of its output and its sites."""

    jaxpr: jex.ClosedJaxpr
    inputs: list[Any]
    out_tree: Any
    sites: list[Site]
    write_back: Callable[[Any], Any]  # writes back NNX state; returns fn's output
    # Each input's key path into (fn, args, kwargs).
    input_paths: list[tuple] = dataclasses.field(default_factory=list)

    def run(self, rule: Rule, inputs: Sequence[Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """``fn``'s output with ``rule`` applied at its sites, and the observations."""
        outs, observed = evaluate(self.jaxpr, self.inputs if inputs is None else inputs, rule)
        outs = [_plain_scalar(out) for out in outs]
        return self.write_back(jax.tree_util.tree_unflatten(self.out_tree, outs)), observed

    @property
    def one_jit(self) -> bool:
        """Whether ``fn`` is one call of a jitted function (``jax.jit(f)`` itself)."""
        jaxpr = self.jaxpr.jaxpr
        if len(jaxpr.eqns) != 1 or jaxpr.eqns[0].primitive.name != internals.JIT:
            return False
        (eqn,) = jaxpr.eqns
        return list(eqn.invars) == list(jaxpr.invars) and list(eqn.outvars) == list(jaxpr.outvars)


def jitted_front(
    fn: Any, call: Callable[..., Any], *, leading: int = 0, donate: bool = True
) -> Callable[..., Any] | None:
    """For ``fn`` made by ``jax.jit``: ``jax.jit(call)``, where ``call`` takes ``leading``
    arguments of its own and then ``fn``'s, with ``fn``'s static arguments (and, if
    ``donate``, its donated ones; with no argument of its own, ``fn``'s ``out_shardings``,
    and its name and signature, for JAX's messages). JAX's C++ dispatch keys and runs its
    eager calls as it does ``fn``'s, so they cost what a call of ``jax.jit`` costs, and
    ``call`` is traced once per key, as ``fn`` is. None for any other ``fn``."""
    options = internals.jit_call_options(fn)
    if options is None:
        return None

    def shift(argnums: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(i + leading if i >= 0 else i for i in argnums)

    same_outputs = {"out_shardings": options["out_shardings"]} if "out_shardings" in options else {}
    return jax.jit(
        functools.wraps(fn, updated=())(call) if leading == 0 else call,
        static_argnums=shift(options["static_argnums"]),
        static_argnames=options["static_argnames"],
        donate_argnums=shift(options["donate_argnums"]) if donate else (),
        donate_argnames=options["donate_argnames"] if donate else (),
        **(same_outputs if leading == 0 else {}),
    )


def eager_key(fn: Any, args: tuple, kwargs: dict) -> tuple[Any, list[Any]] | None:
    """For an eager call (no tracer among the arguments), a key as ``jax.jit`` keys its
    cache (the tree structure, each array's shape, dtype, weak type and sharding, the other
    leaves by equality) and the arrays; None for a traced call, Flax NNX modules or an
    unhashable static leaf."""
    leaves, treedef = jax.tree_util.tree_flatten((fn, args, kwargs))
    nnx = sys.modules.get("flax.nnx")
    arrays: list[Any] = []
    signature: list[Any] = []
    for leaf in leaves:
        if type(leaf) is internals.ArrayImpl:  # the common case first: a concrete jax.Array
            arrays.append(leaf)
            signature.append((leaf.shape, leaf.dtype, leaf.weak_type, leaf.sharding))
            continue
        if isinstance(leaf, internals.Tracer) or (nnx is not None and isinstance(leaf, nnx.Module)):
            return None
        if isinstance(leaf, jax.Array):  # a typed PRNG key array, say
            arrays.append(leaf)
            signature.append(
                (leaf.shape, leaf.dtype, getattr(leaf, "weak_type", False), leaf.sharding)
            )
        elif isinstance(leaf, (np.ndarray, np.generic)):
            arrays.append(leaf)
            signature.append((np.shape(leaf), leaf.dtype))
        elif isinstance(leaf, jax.ShapeDtypeStruct):
            return None
        else:
            signature.append(("static", leaf))
    try:
        return _Key((treedef, tuple(signature))), arrays
    except TypeError:  # an unhashable static leaf
        return None


class _Key:
    """A cache key whose hash is computed once (a dict lookup hashes its key each time, and
    hashing every array's sharding is most of an eager call's overhead)."""

    __slots__ = ("hash", "value")

    def __init__(self, value: tuple) -> None:
        self.value = value
        self.hash = hash(value)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and self.hash == other.hash and self.value == other.value


def _plain_scalar(value: Any) -> Any:
    # A Python number that fn returned comes out of the jaxpr as a literal of a JAX subclass
    # of int or float; give back the plain number.
    if isinstance(value, bool) and type(value) is not bool:
        return bool(value)
    if isinstance(value, int) and type(value) is not int:
        return int(value)
    if isinstance(value, float) and type(value) is not float:
        return float(value)
    return value


def _is_array(leaf: Any) -> bool:
    # A ShapeDtypeStruct stands for an array when only tracing (relu_sites, a tracker's init).
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct))


def _group_and_path(path: tuple) -> tuple[Any, tuple] | None:
    """``path`` into ``(fn, args, kwargs)`` as (which argument, the path inside it); None
    for a bare array argument (data: it names nothing)."""
    where = path[0].idx
    if where == 0:
        return ("fn", path[1:])
    if len(path) < 3:
        return None
    return ((where, path[1]), path[2:])


def trace(fn: Callable, args: tuple, kwargs: dict, patterns: Sequence[str]) -> Traced:
    """Traces ``fn(*args, **kwargs)``: arrays in ``fn``, ``args`` and ``kwargs`` are the
    jaxpr's inputs, any other leaf is static (Flax NNX modules: their state)."""
    user_fn = type(fn).__call__ if _nnx.is_module(fn) else fn
    fn, args, kwargs, write_back = _nnx.as_pure(fn, args, kwargs)
    leaves, treedef = jax.tree_util.tree_flatten_with_path((fn, args, kwargs))
    dynamic = [i for i, (_, leaf) in enumerate(leaves) if _is_array(leaf)]
    values = [leaf for _, leaf in leaves]

    def flat_fn(*inputs: Any) -> Any:
        full = list(values)
        for i, x in zip(dynamic, inputs, strict=True):
            full[i] = x
        f, a, k = jax.tree_util.tree_unflatten(treedef, full)
        return f(*a, **k)

    # JAX's errors about the traced function (an output that is not an array) name the
    # user's function, not this one.
    if callable(user_fn) and hasattr(user_fn, "__code__"):
        functools.update_wrapper(flat_fn, user_fn)
    inputs = [values[i] for i in dynamic]
    closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(*inputs)
    paths = [_group_and_path(leaves[i][0]) for i in dynamic]
    return Traced(
        jaxpr=closed,
        inputs=inputs,
        out_tree=jax.tree_util.tree_structure(out_shape),
        sites=_sites.find(closed, paths, patterns, frozenset(HANDLERS)),
        write_back=write_back,
        input_paths=[leaves[i][0] for i in dynamic],
    )


def select_sites(fn_name: str, sites: list[Site], selection: SiteSelection) -> list[Site]:
    """The sites chosen by ``selection`` that can be rewritten or observed; a warning lists
    the chosen ones that cannot (never silent). A clamp is chosen only when ``selection``
    names it (its exact name, or a predicate that returns True for it)."""
    chosen = _select(fn_name, sites, selection)
    skipped = [s for s, named in chosen if not s.rewritable and not (s.clamp and named)]
    if skipped:
        listing = "; ".join(f"{s.name} ({s.reason})" for s in skipped)
        checks.warn(f"{fn_name}: {len(skipped)} site(s) left as they are: {listing}")
    return [s for s, named in chosen if s.rewritable or (s.clamp and named)]


def _select(fn_name: str, sites: list[Site], selection: SiteSelection) -> list[tuple[Site, bool]]:
    """The sites chosen by ``selection`` (None: all), each with whether it was named (an
    exact name, or a predicate). A name or glob matching no site is a ``ValueError``; a
    predicate that selects none, a warning."""
    if selection is None:
        return [(s, False) for s in sites]
    if callable(selection):
        chosen = [(s, True) for s in sites if selection(s)]
        if sites and not chosen:
            checks.warn(
                f"{fn_name}: the `sites` predicate selects none of the {len(sites)} sites "
                f"{[s.name for s in sites]}; nothing is done"
            )
        return chosen
    by_name = {s.name: s for s in sites}
    named: set[str] = set()
    globbed: set[str] = set()
    for pattern in selection:
        if pattern in by_name:
            named.add(pattern)
            continue
        matched = fnmatch.filter(by_name, pattern)
        if not matched:
            raise ValueError(
                f"{fn_name}: `sites` entry {pattern!r} matches no site; the sites are "
                f"{list(by_name)}"
            )
        globbed.update(matched)
    return [(s, s.name in named) for s in sites if s.name in named or s.name in globbed]
