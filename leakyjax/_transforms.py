"""Function transformations: ``leakify`` and ``relu_sites``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jex

from leakyjax import _jax_internals as internals
from leakyjax import _nnx, _sites
from leakyjax import _validation as checks
from leakyjax._activation import static_slope
from leakyjax._interpreter import Rule, evaluate
from leakyjax._sites import Site, SiteSelection
from leakyjax._tracing import eager_key, jitted_front, select_sites, trace


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
    checks.check_fn("leakify", fn)
    slope = checks.check_real_scalar("leakify", "negative_slope", negative_slope)
    if grad_at_zero is not None:
        grad_at_zero = checks.check_real_scalar("leakify", "grad_at_zero", grad_at_zero)
        checks.check_grad_at_zero("leakify", grad_at_zero, slope)
    return _Leakified(
        fn,
        slope,
        grad_at_zero,
        checks.check_patterns("leakify", patterns, ("relu", "maximum", "where")),
        checks.check_sites("leakify", sites),
    )


@jax.tree_util.register_pytree_with_keys_class
class _Leakified:
    """What :func:`leakyjax.leakify` returns: a function with ``fn``'s signature.

    It is a pytree whose child is ``fn`` (the slope, ``grad_at_zero``, patterns and sites
    are static), as ``jax.tree_util.Partial`` is: the leakified Equinox module has the
    module's arrays as its leaves, so ``eqx.filter_grad`` differentiates them and
    ``eqx.apply_updates`` updates them (were it a leaf, they would be constants, and
    training would silently change nothing). It keeps the rewritten bodies of the jitted
    functions inside ``fn`` (keyed by JAX's own cached jaxpr of each, as ``jax.jit`` keys
    its cache), so that they compile once. An eager call of ``leakify(jax.jit(f))`` is a
    call of a ``jax.jit`` of the rewrite with ``f``'s static and donated arguments, keyed
    and dispatched by JAX as ``jax.jit(f)``'s calls are. It pickles as
    ``leakify(fn, ...)``, when ``fn`` and ``sites`` pickle (cloudpickle handles lambdas and
    local functions).
    """

    _CACHE_SIZE = 256
    cache: dict[Any, Any]  # rewritten jit bodies: see _interpreter.Rule
    compiled: dict[Any, Any]  # eager calls when fn's body is one jitted call: see eager_key
    front: Callable[..., Any] | None  # eager calls when fn is made by jax.jit: see _wrap

    def __init__(self, fn, negative_slope, grad_at_zero, patterns, selection) -> None:
        self.fn = fn
        self.negative_slope = negative_slope
        self.grad_at_zero = grad_at_zero
        self.patterns = patterns
        self.selection = selection
        _wrap(self, fn)

    def tree_flatten_with_keys(self) -> tuple[tuple[tuple[Any, Any]], tuple[Any, ...]]:
        static = (self.negative_slope, self.grad_at_zero, self.patterns, self.selection)
        return ((_sites.TransparentKey(), self.fn),), static

    @classmethod
    def tree_unflatten(cls, static: tuple[Any, ...], children: tuple[Any, ...]) -> _Leakified:
        # JAX rebuilds pytrees with placeholders as leaves too (None, object()): no checks.
        leakified = object.__new__(cls)
        leakified.fn = children[0]
        leakified.negative_slope, leakified.grad_at_zero, leakified.patterns = static[:3]
        leakified.selection = static[3]
        leakified.cache, leakified.compiled, leakified.front = {}, {}, None
        if callable(leakified.fn):
            _wrap(leakified, leakified.fn)
        return leakified

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
        if self.front is not None and internals.eager():
            try:
                return self.front(*args, **kwargs)
            except TypeError:
                checks.check_no_shape_structs("leakify", args, kwargs)
                raise
        eager = eager_key(self.fn, args, kwargs)
        entry = self.compiled.get(eager[0]) if eager is not None else None
        if eager is not None and entry is not None:
            program, out_tree = entry
            return jax.tree_util.tree_unflatten(out_tree, program(*eager[1]))
        return self.rewritten(args, kwargs, eager)

    def rewritten(self, args: tuple, kwargs: dict, eager: Any = None) -> Any:
        """``fn`` traced at the arguments, rewritten and run (a traced call's, or an eager
        call's that missed the caches)."""
        checks.check_no_shape_structs("leakify", args, kwargs)
        traced = trace(self.fn, args, kwargs, self.patterns)
        if not traced.sites:
            checks.warn(
                f"leakify: found no ReLU ({', '.join(self.patterns)}) in "
                f"{checks.describe_fn(self.fn)}; nothing was rewritten. leakyjax.relu_sites lists "
                "what it finds."
            )
        rewritten = select_sites("leakify", traced.sites, self.selection)
        differentiated = [s.name for s in rewritten if s.differentiated]
        if differentiated:
            raise ValueError(
                f"leakify: `fn` ({checks.describe_fn(self.fn)}) differentiates through a ReLU "
                f"itself (a jax.grad or jax.jvp inside it: the program holds the derivative of "
                f"{differentiated}); rewriting the ReLU would leave its derivative that of a "
                "ReLU. Apply leakify innermost, to the function being differentiated: "
                "jax.grad(lj.leakify(f)), not lj.leakify(jax.grad(f)). (A comparison of your "
                "own of a ReLU's input with 0 looks the same; leave that site out with "
                "`sites=`.)"
            )
        # The slope must fit each site's dtype: checked once here, naming leakify.
        for dtype in {s.dtype for s in rewritten}:
            checks.round_to_dtype("leakify", "negative_slope", self.negative_slope, dtype)
        where = ("leakify", "negative_slope")

        def apply(site: Site, eqn: jex.JaxprEqn, invals: list[Any]) -> tuple[list[Any], None]:
            # What lj.leaky_relu(x, slope) calls, so the program is the hand-written twin's.
            x = invals[site.operand]
            with internals.equation_context(eqn):
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


def _wrap(leakified: _Leakified, fn: Callable) -> None:
    # fn's name, docstring and __wrapped__, not its __dict__: that of a leakified fn would
    # overwrite this one's own fields (leakify(leakify(f, sites=...)) must stay two layers).
    wrapped = type(fn).__call__ if _nnx.is_module(fn) else fn
    functools.update_wrapper(leakified, wrapped, updated=())
    leakified.cache, leakified.compiled = {}, {}
    # fn made by jax.jit: eager calls go through a jax.jit of the rewrite, with fn's static
    # and donated arguments, so that JAX's C++ dispatch keys and runs them as it does fn's.
    leakified.front = jitted_front(fn, lambda *a, **k: leakified.rewritten(a, k))


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
    checks.check_fn("relu_sites", fn)
    patterns = checks.check_patterns("relu_sites", patterns, tuple(_sites.PATTERNS))

    def sites_of(*args: Any, **kwargs: Any) -> tuple[Site, ...]:
        return tuple(trace(fn, args, kwargs, patterns).sites)

    return sites_of
