"""Function transformations: ``leakify`` and ``relu_sites``, and the tracing they share."""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import inspect
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any, cast

import jax
import jax.extend.core as jex
import numpy as np

from leakyjax import _jax_internals as ji
from leakyjax import _sites
from leakyjax import _validation as v
from leakyjax._activation import static_slope
from leakyjax._interpreter import Rule, evaluate
from leakyjax._sites import Site

SiteSelection = Sequence[str] | Callable[[Site], bool] | None


# --- Checks of the transforms' own arguments ------------------------------------------


def check_fn(fn_name: str, fn: Any) -> None:
    if not callable(fn):
        raise TypeError(f"{fn_name}: `fn` must be callable, got {v.describe(fn)}")


def check_patterns(fn_name: str, patterns: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    """A pattern name or a sequence of them, each one of ``allowed``."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    if not isinstance(patterns, (tuple, list)) or not all(isinstance(p, str) for p in patterns):
        raise TypeError(
            f"{fn_name}: `patterns` must be a tuple of pattern names, got {v.describe(patterns)}"
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
                f"got {v.describe(sites)}"
            ) from None
        except ValueError:  # no signature to read (a builtin): trusted
            pass
        return cast(Callable[[Site], bool], sites)
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
        f"predicate on a leakyjax.Site, got {v.describe(sites)}"
    )


# --- Tracing a function and its arguments ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class Traced:
    """``fn`` traced at some arguments: its jaxpr, the values of the jaxpr's inputs, the
    structure of its output and its sites."""

    jaxpr: jex.ClosedJaxpr
    inputs: list[Any]
    out_tree: Any
    sites: list[Site]
    finish: Callable[[Any], Any]  # writes back NNX state; returns fn's output

    def run(self, rule: Rule, inputs: Sequence[Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """``fn``'s output with ``rule`` applied at its sites, and the observations."""
        outs, observed = evaluate(self.jaxpr, self.inputs if inputs is None else inputs, rule)
        outs = [_plain_scalar(out) for out in outs]
        return self.finish(jax.tree_util.tree_unflatten(self.out_tree, outs)), observed

    @property
    def one_jit(self) -> bool:
        """Whether ``fn`` is one call of a jitted function (``jax.jit(f)`` itself)."""
        jaxpr = self.jaxpr.jaxpr
        if len(jaxpr.eqns) != 1 or jaxpr.eqns[0].primitive.name != ji.JIT:
            return False
        (eqn,) = jaxpr.eqns
        return list(eqn.invars) == list(jaxpr.invars) and list(eqn.outvars) == list(jaxpr.outvars)


def eager_key(fn: Any, args: tuple, kwargs: dict) -> tuple[Any, list[Any]] | None:
    """For an eager call (no tracer among the arguments), a key as ``jax.jit`` keys its
    cache (the tree structure, each array's shape, dtype, weak type and sharding, the other
    leaves by equality) and the arrays; None for a traced call, Flax NNX modules or an
    unhashable static leaf."""
    leaves, treedef = jax.tree_util.tree_flatten((fn, args, kwargs))
    nnx = sys.modules.get("flax.nnx")
    arrays, signature = [], []
    for leaf in leaves:
        if type(leaf) is ji.ArrayImpl:  # the common case first: a concrete jax.Array
            arrays.append(leaf)
            signature.append((leaf.shape, leaf.dtype, leaf.weak_type, leaf.sharding))
            continue
        if isinstance(leaf, jax.core.Tracer) or (nnx is not None and isinstance(leaf, nnx.Module)):
            return None
        if isinstance(leaf, jax.Array):
            arrays.append(leaf)
            signature.append((leaf.shape, leaf.dtype, leaf.weak_type, leaf.sharding))
        elif isinstance(leaf, (np.ndarray, np.generic)):
            arrays.append(leaf)
            signature.append((np.shape(leaf), leaf.dtype))
        elif isinstance(leaf, jax.ShapeDtypeStruct):
            return None
        else:
            signature.append(("static", leaf))
    key = (treedef, tuple(signature))
    try:
        hash(key)
    except TypeError:
        return None
    return key, arrays


def _plain_scalar(value: Any) -> Any:
    # A Python number that fn returned comes out of the jaxpr as a literal of a JAX subclass
    # of int or float; give back the plain number.
    for kind in (bool, int, float, complex):
        if isinstance(value, kind) and type(value) is not kind:
            return kind(value)
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
    user_fn = type(fn).__call__ if NNXAdapter.is_module(fn) else fn
    fn, args, kwargs, finish = NNXAdapter.wrap(fn, args, kwargs)
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
        sites=_sites.find(closed, paths, patterns),
        finish=finish,
    )


def handled(fn_name: str, sites: list[Site], selection: SiteSelection) -> list[Site]:
    """The sites chosen by ``selection`` that can be rewritten or observed; a warning lists
    the chosen ones that cannot (never silent). A clamp is chosen only when ``selection``
    names it (its exact name, or a predicate that returns True for it)."""
    chosen = _select(fn_name, sites, selection)
    skipped = [s for s, named in chosen if not s.rewritable and not (s.clamp and named)]
    if skipped:
        listing = "; ".join(f"{s.name} ({s.reason})" for s in skipped)
        warnings.warn(
            f"{fn_name}: {len(skipped)} site(s) left as they are: {listing}", stacklevel=3
        )
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
            warnings.warn(
                f"{fn_name}: the `sites` predicate selects none of the {len(sites)} sites "
                f"{[s.name for s in sites]}; nothing is done",
                stacklevel=4,
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


class NNXAdapter:
    """Flax NNX modules (``fn`` itself, or anywhere in its arguments) as a pure function of
    their state, with the state that changed written back (BatchNorm statistics, RNG
    counts), as ``nnx.split``/``nnx.merge`` do for ``nnx.jit``. Flax is imported only if the
    user's program has imported it."""

    @staticmethod
    def is_module(x: Any) -> bool:
        nnx = sys.modules.get("flax.nnx")
        return nnx is not None and isinstance(x, nnx.Module)

    @staticmethod
    def wrap(fn: Any, args: tuple, kwargs: dict) -> tuple[Callable, tuple, dict, Callable]:
        """``(pure, args, kwargs, finish)``: ``pure`` takes the modules' state first (an
        argument of its own, so site names are its key paths), then ``args`` and ``kwargs``
        with each module replaced by a placeholder; ``finish`` writes the state back."""
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

        def finish(result: Any) -> Any:
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

        return pure, (state, fn_slot, *args_slots), kwargs_slots, finish


@dataclasses.dataclass(frozen=True)
class _ModuleSlot:
    """Where an NNX module was in ``fn``, its arguments or keyword arguments (static)."""

    index: int


def _leaves_differ(new: Any, old: Any) -> bool:
    if old is None:
        return True
    a, b = jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old)
    return len(a) != len(b) or any(x is not y for x, y in zip(a, b, strict=True))


# --- leakify ----------------------------------------------------------------------------


def leakify(
    fn: Callable,
    negative_slope: float = 0.01,
    *,
    grad_at_zero: float | None = None,
    patterns: Sequence[str] = ("relu",),
    sites: SiteSelection = None,
) -> Callable:
    r"""Transforms ``fn`` so that its ReLUs are exact Leaky ReLUs, without editing it.

    Every ReLU that ``fn`` applies (``jax.nn.relu``, and so the ReLUs of Flax, Haiku and
    Equinox models) becomes ``leakyjax.leaky_relu(x, negative_slope,
    grad_at_zero=grad_at_zero)``:

    .. math::
      \mathrm{relu}(x) = \max(x, 0) \;\longmapsto\; \begin{cases}
        x, & x > 0\\
        \alpha x, & x \le 0
      \end{cases}

    with its exact derivative rule (at :math:`x = 0`, ``grad_at_zero``; None means
    :math:`\alpha`). Under ``jax.jit``, values and gradients are bit for bit those of the
    same model written with :func:`leakyjax.leaky_relu` by hand, and the result compiles to
    the same program (an eager call runs the traced program equation by equation, as
    ``jax.core.eval_jaxpr`` does). Like ``jax.grad``, it is a function transformation: the
    result composes with ``jit``, ``grad``, ``vmap`` and the rest, and ``fn`` is traced on
    each call of the result (so jit it, as you would the model).

    What it does not rewrite, it says (a warning): ReLUs inside a ``custom_jvp`` or
    ``custom_vjp`` of your own (their rule encodes ReLU's derivative), inside primitives it
    does not re-bind through (``custom_linear_solve``, ``pallas_call``...), and
    integer ReLUs. It warns when it finds no ReLU at all. If ``fn`` differentiates through
    a ReLU itself (``jax.grad`` inside ``fn``), it raises: apply ``leakify`` innermost, to
    the function being differentiated.

    Args:
      fn: the function or model: a plain function, a Flax NNX module (its changed state,
        such as BatchNorm statistics and RNG counts, is written back), a Flax Linen
        ``model.apply``, an Equinox module, a Haiku ``transformed.apply``. Arrays in ``fn``,
        the arguments and keyword arguments are traced; other leaves are static.
      negative_slope: the slope :math:`\alpha`, a Python number (fixed when traced).
      grad_at_zero: the derivative at 0, a subgradient between :math:`\alpha` and 1; None
        means :math:`\alpha` (see :func:`leakyjax.leaky_relu`).
      patterns: what counts as a ReLU: ``"relu"`` (``jax.nn.relu``, matched by structure);
        opt in to ``"maximum"`` (``jnp.maximum(x, 0)``) and ``"where"`` (``jnp.where(x > 0,
        x, 0)``) only where you know they are activations: normalization layers clamp
        variances with ``maximum(0, var)``, which a Leaky ReLU would let go negative.
      sites: which sites to rewrite: None (all), a sequence of site names or glob patterns
        (see :func:`leakyjax.relu_sites`), or a predicate on a :class:`leakyjax.Site`.

    Returns:
      A function with ``fn``'s signature.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> def mlp(params, x):
      ...     for w in params[:-1]:
      ...         x = jax.nn.relu(x @ w)
      ...     return x @ params[-1]
      >>> params = [jnp.eye(2), jnp.ones((2, 1))]
      >>> x = jnp.array([[1.0, -2.0]])
      >>> mlp(params, x), lj.leakify(mlp, 0.1)(params, x)
      (Array([[1.]], dtype=float32), Array([[0.8]], dtype=float32))

    See also:
      :func:`leakyjax.relu_sites`, :func:`leakyjax.track_dead_units`.
    """
    check_fn("leakify", fn)
    slope = v.check_real_scalar("leakify", "negative_slope", negative_slope)
    if grad_at_zero is not None:
        grad_at_zero = v.check_real_scalar("leakify", "grad_at_zero", grad_at_zero)
        v.check_grad_at_zero("leakify", grad_at_zero, slope)
    return _Leakified(
        fn,
        slope,
        grad_at_zero,
        check_patterns("leakify", patterns, ("relu", "maximum", "where")),
        check_sites("leakify", sites),
    )


class _Leakified:
    """What :func:`leakyjax.leakify` returns: a function with ``fn``'s signature.

    It keeps the rewritten bodies of the jitted functions inside ``fn`` (keyed by JAX's own
    cached jaxpr of each, as ``jax.jit`` keys its cache), so that eager calls of
    ``leakify(jax.jit(f))`` compile once. It pickles as ``leakify(fn, ...)``, when ``fn``
    and ``sites`` pickle (cloudpickle handles lambdas and local functions).
    """

    _CACHE_SIZE = 256

    def __init__(self, fn, negative_slope, grad_at_zero, patterns, selection) -> None:
        self.fn = fn
        self.negative_slope = negative_slope
        self.grad_at_zero = grad_at_zero
        self.patterns = patterns
        self.selection = selection
        self.cache: dict[Any, Any] = {}
        self.compiled: dict[Any, Any] = {}  # eager calls of a jitted fn: see eager_key
        functools.update_wrapper(self, type(fn).__call__ if NNXAdapter.is_module(fn) else fn)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            functools.partial(
                leakify,
                grad_at_zero=self.grad_at_zero,
                patterns=self.patterns,
                sites=self.selection,
            ),
            (self.fn, self.negative_slope),
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        eager = eager_key(self.fn, args, kwargs)
        if eager is not None and eager[0] in self.compiled:
            program, out_tree = self.compiled[eager[0]]
            return jax.tree_util.tree_unflatten(out_tree, program(*eager[1]))
        _check_no_shape_structs("leakify", args, kwargs)
        traced = trace(self.fn, args, kwargs, self.patterns)
        if not traced.sites:
            warnings.warn(
                f"leakify: found no ReLU ({', '.join(self.patterns)}) in "
                f"{_describe_fn(self.fn)}; nothing was rewritten. leakyjax.relu_sites lists "
                "what it finds.",
                stacklevel=2,
            )
        rewritten = handled("leakify", traced.sites, self.selection)
        differentiated = [s.name for s in rewritten if s.differentiated]
        if differentiated:
            raise ValueError(
                f"leakify: `fn` ({_describe_fn(self.fn)}) differentiates through a ReLU itself "
                f"(a jax.grad or jax.jvp inside it: the program holds the derivative of "
                f"{differentiated}); rewriting the ReLU would leave its derivative that of a "
                "ReLU. Apply leakify innermost, to the function being differentiated: "
                "jax.grad(lj.leakify(f)), not lj.leakify(jax.grad(f)). (A comparison of your "
                "own of a ReLU's input with 0 looks the same; leave that site out with "
                "`sites=`.)"
            )
        # The slope must fit each site's dtype: checked once here, naming leakify.
        for dtype in {s.dtype for s in rewritten}:
            v.round_to_dtype("leakify", "negative_slope", self.negative_slope, dtype)
        where = ("leakify", "negative_slope")

        def apply(site: Site, eqn: jex.JaxprEqn, invals: list[Any]) -> tuple[list[Any], None]:
            # What lj.leaky_relu(x, slope) calls, so the program is the hand-written twin's.
            x = invals[site.operand]
            with ji.equation_context(eqn):
                return [static_slope(x, self.negative_slope, self.grad_at_zero, where)], None

        rule = Rule(sites={s.path: s for s in rewritten}, apply=apply, cache=self.cache)
        if len(self.cache) > self._CACHE_SIZE:
            self.cache.clear()
        if eager is not None and traced.one_jit:
            # fn is a jitted function: eager calls get a jitted program too, its trace kept as
            # jax.jit keeps it (f's Python ran once per key already, inside jax.jit).
            program = jax.jit(lambda *inputs: evaluate(traced.jaxpr, inputs, rule)[0])
            if len(self.compiled) > self._CACHE_SIZE:
                self.compiled.clear()
            self.compiled[eager[0]] = (program, traced.out_tree)
            return jax.tree_util.tree_unflatten(traced.out_tree, program(*traced.inputs))
        return traced.run(rule)[0]


def _check_no_shape_structs(fn_name: str, args: tuple, kwargs: dict) -> None:
    leaves = jax.tree_util.tree_leaves((args, kwargs))
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves):
        raise TypeError(
            f"{fn_name}: the transformed function computes, so it needs arrays, got a "
            "jax.ShapeDtypeStruct; for shapes alone use jax.eval_shape on it, or "
            "leakyjax.relu_sites to list the sites"
        )


def relu_sites(
    fn: Callable, *, patterns: Sequence[str] = ("relu", "leaky_relu")
) -> Callable[..., tuple[Site, ...]]:
    """Lists the ReLU sites of ``fn`` at some arguments, computing nothing.

    Like :func:`jax.eval_shape`, the result traces ``fn`` at the arguments it is called with
    and returns what :func:`leakyjax.leakify` and :func:`leakyjax.track_dead_units` would
    see: one :class:`leakyjax.Site` per place a ReLU is applied, with its name, kind,
    shape, dtype, source location and whether it can be rewritten (and why not).

    Args:
      fn: as for :func:`leakyjax.leakify`.
      patterns: the patterns to look for: ``"relu"``, ``"leaky_relu"`` (leakyjax's own
        functions), ``"maximum"``, ``"where"``.

    Returns:
      A function taking ``fn``'s arguments and returning a tuple of sites, in program order.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> def mlp(params, x):
      ...     x = jax.nn.relu(x @ params["hidden"]["w"] + params["hidden"]["b"])
      ...     return x @ params["out"]["w"]
      >>> params = {"hidden": {"w": jnp.ones((3, 4)), "b": jnp.ones(4)},
      ...           "out": {"w": jnp.ones((4, 1))}}
      >>> [(s.name, s.kind, s.shape) for s in lj.relu_sites(mlp)(params, jnp.ones((8, 3)))]
      [('hidden', 'relu', (8, 4))]
    """
    check_fn("relu_sites", fn)
    patterns = check_patterns("relu_sites", patterns, tuple(_sites.PATTERNS))

    def sites_of(*args: Any, **kwargs: Any) -> tuple[Site, ...]:
        return tuple(trace(fn, args, kwargs, patterns).sites)

    return sites_of


def _describe_fn(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__name__
