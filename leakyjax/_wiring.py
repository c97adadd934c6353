"""Which parameter slices produce and consume each unit of a ReLU site, found by data flow.

A unit's index is followed through the traced program as a label array: an int array of a
value's shape whose entries are the unit each element belongs to (-1 for none). Labels are
pulled back from a site's pre-activation to the kernel, bias and scale that produce it, and
pushed forward from its activation to the kernels that consume it, one rule per primitive
(``_FORWARD``). Between the product and the pre-activation, labels go forward through the
per-unit arithmetic of a normalization (``_PER_UNIT``: a statistic reduced over a unit's own
examples and positions stays that unit's; a reduction over units does not). A site in a scan
over stacked layers is followed on the program with that scan unrolled, one iteration at a
time. A primitive without a rule makes the site not revivable, with a reason that names it:
never a guess. Layouts come from the program (``dot_general``'s and
``conv_general_dilated``'s dimension numbers), never from parameter names.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from leakyjax import _jax_internals as internals
from leakyjax import _nnx, _sites
from leakyjax import _validation as checks
from leakyjax._interpreter import HANDLERS
from leakyjax._sites import Site, SiteSelection
from leakyjax._tracing import Traced, trace


class UnitSlice(NamedTuple):
    """The slice of one parameter leaf that belongs to the units of a site.

    Attributes:
      path: the leaf's key path inside the argument(s) named by ``argnums``, joined with
        ``/`` (with a tuple ``argnums``, prefixed by the argument's position).
      axis: the leaf's axis (non-negative) that runs over units.
      units: an int array as long as that axis: the unit each index belongs to, -1 for
        none (a flatten of an NHWC map into a dense layer gives ``p * C + j``).
      role: ``"weight"``, ``"bias"``, ``"scale"``, or a normalization's running
        ``"mean"`` or ``"var"`` (a leaf reached through a square root is a variance).
      iteration_axis: for a site in a scan over stacked layers, the leaf's axis over
        layers (None for a leaf of one layer, such as the head after the stack).
      iterations: for such a site, the iteration whose units each index along
        ``iteration_axis`` holds (-1: none; the next layer's kernel consumes the previous
        iteration's units), or, with no ``iteration_axis``, the one iteration the slice
        belongs to. None elsewhere.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> def net(params, x):
      ...     h = jax.nn.relu(x @ params["w1"])  # 3 units
      ...     return h.reshape(1, -1) @ params["w2"]  # two examples flattened: 6 rows
      >>> params = {"w1": jnp.ones((2, 3)), "w2": jnp.ones((6, 1))}
      >>> (out,) = lj.unit_wiring(net)(params, jnp.ones((2, 2)))["w1"].outgoing
      >>> out.path, out.axis, out.units.tolist(), out.role
      ('w2', 0, [0, 1, 2, 0, 1, 2], 'weight')
    """

    path: str
    axis: int
    units: np.ndarray
    role: str
    iteration_axis: int | None = None
    iterations: np.ndarray | None = None


class Wiring(NamedTuple):
    """How a site's units are wired to the parameters (see :func:`leakyjax.unit_wiring`).

    Attributes:
      site: the :class:`leakyjax.Site`.
      incoming: the slices whose entry for unit j affects only unit j's pre-activation (the
        producing kernel's output-feature slice, the bias and scale added to it, and a
        BatchNorm's scale, bias and running mean and variance between that product and the
        ReLU).
      outgoing: the slices that multiply only unit j's activation (each consuming kernel's
        input-feature slice, through reshapes, transposes, pooling, dropout and
        concatenation).
      revivable: whether re-drawing ``incoming`` and zeroing ``outgoing`` revives a unit.
      reason: why not, when it is not.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> def last_layer(params, x):
      ...     return jax.nn.relu(x @ params["w"])
      >>> wiring = lj.unit_wiring(last_layer)({"w": jnp.ones((2, 3))}, jnp.ones((4, 2)))
      >>> wiring["w"].revivable, wiring["w"].reason
      (False, "its activation reaches the function's output directly")
    """

    site: Site
    incoming: tuple[UnitSlice, ...]
    outgoing: tuple[UnitSlice, ...]
    revivable: bool
    reason: str | None


class _NotRevivable(Exception):
    pass


def unit_wiring(
    fn: Callable,
    *,
    argnums: int | Sequence[int] = 0,
    patterns: Sequence[str] = ("relu", "leaky_relu"),
    sites: SiteSelection = None,
) -> Callable[..., dict[str, Wiring]]:
    """Finds which parameter slices produce and consume each unit of each ReLU site.

    Like :func:`leakyjax.relu_sites`, the result traces ``fn`` at its arguments and
    computes nothing; it follows each unit's index through the program (so it works on any
    framework's model, whatever its layer names): the kernel of the ``dot_general`` or
    ``conv_general_dilated`` that produces the pre-activation (its output-feature slice:
    axis -1 of a Flax ``(in, out)`` kernel, 0 of an Equinox ``(out, in)`` one, 3 of HWIO, 0
    of OIHW), the bias and scale added to it, and the consuming kernels' input-feature
    slices, through reshapes (an NHWC map flattened into a dense layer: rows ``p * C +
    j``), transposes, pooling, dropout and concatenation.

    Normalization between the product and the ReLU is followed per unit: a statistic
    reduced over the examples and positions of values of one unit, combined elementwise
    with that unit's values (BatchNorm in training mode), depends on that unit alone, so
    the site stays revivable; the scale, bias and running mean and variance met on the way
    are in ``incoming`` (roles ``"scale"``, ``"bias"``, ``"mean"``, ``"var"``), wherever
    they live (Linen's ``batch_stats``, NNX module state). In training mode the running
    statistics are only updated, so they are listed when they are in ``argnums`` and not
    needed otherwise; in eval mode they normalize the unit and are needed.

    A site is not revivable, with the reason, when its activation reaches the function's
    output, a residual add, or a reduction over units (a normalization or softmax across
    the site, such as LayerNorm after the ReLU); when its pre-activation is reduced across
    units (LayerNorm before the ReLU) or also depends on something other than its own
    parameter slices (a residual input, another layer's output, a weight shared with
    another site); when a needed parameter is not in ``argnums``; inside control flow
    (``scan`` over data, ``cond``, ``while_loop``, a reversed scan); or when a primitive on
    the way has no rule here (named).

    A site inside a ``scan`` over stacked layers (``nn.scan``, ``nnx.scan``,
    ``hk.layer_stack``; ``Site.iterations`` is set) is followed per iteration, on the
    program with that scan unrolled: its slices carry the stacking axis
    (``UnitSlice.iteration_axis``) and the iteration each index along it holds
    (``UnitSlice.iterations``: layer l's kernel produces iteration l's units, layer l + 1's
    consumes them, the head after the stack consumes the last iteration's).

    Args:
      fn: the model, as for :func:`leakyjax.leakify`. With Flax NNX modules (``fn``
        itself, or among the arguments), the parameters are the modules' state, and the
        slices' paths are its key paths (``bn/scale/value``).
      argnums: which positional arguments hold the parameters (an int or a tuple); with
        NNX modules, not used.
      patterns: as for :func:`leakyjax.relu_sites`.
      sites: which sites (None: all), as for :func:`leakyjax.leakify`.

    Returns:
      A function taking ``fn``'s arguments and returning ``{site name: Wiring}``.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> def mlp(params, x):
      ...     h = jax.nn.relu(x @ params["hidden"]["w"] + params["hidden"]["b"])
      ...     return h @ params["out"]["w"]
      >>> params = {"hidden": {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)},
      ...           "out": {"w": jnp.ones((4, 1))}}
      >>> w = lj.unit_wiring(mlp)(params, jnp.ones((2, 3)))["hidden"]
      >>> [(s.path, s.axis, s.role) for s in w.incoming + w.outgoing], w.revivable
      ([('hidden/w', 1, 'weight'), ('hidden/b', 0, 'bias'), ('out/w', 0, 'weight')], True)

      A batch normalization in eval mode, written out: its running statistics are found by
      how they are used.

      >>> def normalized(v, x):
      ...     h = x @ v["params"]["w"]
      ...     h = (h - v["stats"]["mean"]) * jax.lax.rsqrt(v["stats"]["var"] + 1e-5)
      ...     h = jax.nn.relu(h * v["params"]["scale"] + v["params"]["bias"])
      ...     return h @ v["params"]["out"]
      >>> v = {"params": {"w": jnp.ones((3, 4)), "scale": jnp.ones(4), "bias": jnp.zeros(4),
      ...                 "out": jnp.ones((4, 1))},
      ...      "stats": {"mean": jnp.zeros(4), "var": jnp.ones(4)}}
      >>> w = lj.unit_wiring(normalized)(v, jnp.ones((2, 3)))["params"]
      >>> [(s.path, s.role) for s in w.incoming]  # doctest: +NORMALIZE_WHITESPACE
      [('params/w', 'weight'), ('stats/mean', 'mean'), ('stats/var', 'var'),
       ('params/scale', 'scale'), ('params/bias', 'bias')]
    """
    checks.check_fn("unit_wiring", fn)
    argnums = _check_argnums("unit_wiring", argnums)
    patterns = checks.check_patterns("unit_wiring", patterns, tuple(_sites.PATTERNS))
    selection = checks.check_sites("unit_wiring", sites)

    def wiring(*args: Any, **kwargs: Any) -> dict[str, Wiring]:
        return find_wiring("unit_wiring", fn, argnums, patterns, selection, args, kwargs)

    return wiring


def _check_argnums(fn_name: str, argnums: Any) -> tuple[int, ...] | int:
    if isinstance(argnums, int) and not isinstance(argnums, bool) and argnums >= 0:
        return argnums
    if (
        isinstance(argnums, (tuple, list))
        and argnums
        and all(isinstance(a, int) and not isinstance(a, bool) and a >= 0 for a in argnums)
    ):
        return tuple(argnums)
    raise TypeError(
        f"{fn_name}: `argnums` must be a non-negative int or a tuple of them, got "
        f"{checks.describe(argnums)}"
    )


def find_wiring(
    fn_name: str,
    fn: Callable,
    argnums: tuple[int, ...] | int,
    patterns: Sequence[str],
    selection: SiteSelection,
    args: tuple,
    kwargs: dict,
) -> dict[str, Wiring]:
    modules = _nnx_modules(fn, args, kwargs) is not None
    positions = () if modules else argnums if isinstance(argnums, tuple) else (argnums,)
    if modules:
        argnums = 0  # the modules' state, the first argument of the pure function traced
    for a in positions:
        if a >= len(args):
            raise ValueError(
                f"{fn_name}: `argnums` names argument {a}, but the function was called with "
                f"{len(args)} positional argument(s)"
            )
    traced = trace(fn, args, kwargs, patterns)
    flat = _inlined(traced)
    leaf_paths = [_naming_path(p) for p in traced.input_paths]
    found = _sites.find(flat, leaf_paths, patterns, frozenset(HANDLERS))
    chosen = _chosen(fn_name, found, selection)
    params = _parameter_paths(traced.input_paths, argnums)
    data = {i for i, p in enumerate(leaf_paths) if p is None and i not in params}
    analysis = _Analysis(flat.jaxpr, params, data)
    wirings = {site.name: analysis.wire(site) for site in chosen}
    stacked = [s for s in chosen if s.iterations is not None]
    if stacked:
        wirings.update(_stacked_wirings(flat, stacked, params, data))
    return wirings


def _chosen(fn_name: str, found: list[Site], selection: SiteSelection) -> list[Site]:
    from leakyjax._tracing import _select  # the same selection as the other transforms

    return [s for s, _ in _select(fn_name, found, selection)]


def _naming_path(path: tuple) -> tuple[Any, tuple] | None:
    where = path[0].idx
    if where == 0:
        return ("fn", path[1:])
    if len(path) < 3:
        return None
    return ((where, path[1]), path[2:])


def _parameter_paths(input_paths: list[tuple], argnums: tuple[int, ...] | int) -> dict[int, str]:
    """Input index to its leaf's path string, for the inputs inside ``argnums``."""
    out = {}
    positions = argnums if isinstance(argnums, tuple) else (argnums,)
    for i, path in enumerate(input_paths):
        if path[0].idx != 1 or len(path) < 2 or path[1].idx not in positions:
            continue
        keys = _sites.path_keys(path[2:])
        if isinstance(argnums, tuple):
            keys = [str(path[1].idx), *keys]
        out[i] = "/".join(keys)
    return out


def _inlined(traced: Traced) -> jex.ClosedJaxpr:
    """The traced program with every jit and closed_call body inlined, so that a unit is
    followed across function boundaries. Site names are unchanged (they come from the
    data flow)."""

    def run(*inputs: Any) -> list[Any]:
        return _inline_eval(traced.jaxpr.jaxpr, traced.jaxpr.consts, inputs)

    return internals.retrace(run, internals.invar_avals(traced.jaxpr), "unit_wiring")


def _inline_eval(jaxpr: jex.Jaxpr, consts: Sequence[Any], args: Sequence[Any]) -> list[Any]:
    env: dict[Any, Any] = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))

    def read(atom: Any) -> Any:
        return atom.val if isinstance(atom, jex.Literal) else env[atom]

    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        outs = _inline_call(eqn, invals)
        if outs is None:
            outs = internals.bind(eqn, invals)
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def _inline_call(eqn: jex.JaxprEqn, invals: list[Any]) -> list[Any] | None:
    """A jit or closed_call's body evaluated inline on ``invals`` (its own calls inlined
    too), or None for any other equation."""
    body = internals.call_body(eqn)
    if body is None:
        return None
    called = eqn.params["jaxpr" if "jaxpr" in eqn.params else "call_jaxpr"]
    consts = called.consts if isinstance(called, jex.ClosedJaxpr) else []
    with internals.equation_context(eqn):
        return _inline_eval(body, consts, invals)


# --- The analysis ---------------------------------------------------------------------------

_MOVES = frozenset(
    {"convert_element_type", "copy", "copy_p", "pvary", "reduce_precision", "stop_gradient"}
)
_UNARY = _MOVES | frozenset(
    {
        "neg",
        "abs",
        "exp",
        "log",
        "log1p",
        "tanh",
        "logistic",
        "sqrt",
        "rsqrt",
        "integer_pow",
        "square",
        "sign",
        "sin",
        "cos",
        "erf",
    }
)
_SCALING = frozenset({"mul", "div"})  # by a value without units: dropout, a scale
_BINARY = frozenset({"add", "sub", "mul", "div", "max", "min", "pow"})
_LAYOUT = _MOVES | frozenset({"broadcast_in_dim", "reshape", "transpose", "squeeze", "expand_dims"})
_PER_UNIT_REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min"})
# What a pre-activation is followed back through, to its product.
_ELEMENTWISE_BACK = _UNARY | _BINARY | _LAYOUT | _PER_UNIT_REDUCTIONS | {"slice"}
_STACKED = (
    "inside a scan over {} stacked layers (nn.scan, nnx.scan, hk.layer_stack) that "
    "unit_wiring could not unroll (a reversed scan, or a site inside further control flow)"
)
_OTHER_INPUT = (
    "its pre-activation also depends on something other than its own parameter slices (a "
    "residual input, another layer's output or a shared weight)"
)
_MIXING = frozenset({"add", "sub", "max", "min"})
_REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax"})


class _Analysis:
    def __init__(self, jaxpr: jex.Jaxpr, params: dict[int, str], data: set[int]) -> None:
        self.jaxpr = jaxpr
        self.params = params
        self.data = data  # the inputs that are data (bare array arguments)
        self.stream_cache: dict[Any, bool] = {}
        self.invar_index = {v: i for i, v in enumerate(jaxpr.invars)}
        self.producers = {v: e for e in jaxpr.eqns for v in e.outvars}
        self.uses: dict[Any, list[tuple[jex.JaxprEqn, int]]] = {}
        for eqn in jaxpr.eqns:
            for k, atom in enumerate(eqn.invars):
                if not isinstance(atom, jex.Literal):
                    self.uses.setdefault(atom, []).append((eqn, k))

    def wire(self, site: Site) -> Wiring:
        try:
            if site.iterations is not None:
                raise _NotRevivable(_STACKED.format(site.iterations))
            if len(site.path) != 1:
                raise _NotRevivable(
                    "inside control flow (scan, cond or while_loop), which unit_wiring does "
                    "not follow units through yet"
                )
            if not site.rewritable and not site.clamp:
                raise _NotRevivable(site.reason or "not a float ReLU")
            incoming, outgoing = self.wire_equation(self.jaxpr.eqns[site.path[0]], site.operand)
            return Wiring(site, tuple(incoming), tuple(outgoing), True, None)
        except _NotRevivable as why:
            return Wiring(site, (), (), False, str(why))

    def wire_equation(
        self, eqn: jex.JaxprEqn, operand: int
    ) -> tuple[list[UnitSlice], list[UnitSlice]]:
        """The incoming and outgoing slices of the site at ``eqn``."""
        x = eqn.invars[operand]
        incoming, labels = self._incoming(x, eqn)
        self.reached = self._reachable(eqn.outvars[0])
        return incoming, self._outgoing(eqn.outvars[0], labels)

    # -- what depends on what -------------------------------------------------------------

    def _reachable(self, var: Any) -> set[Any]:
        """The values computed from ``var``."""
        reached, pending = {var}, [var]
        while pending:
            for eqn, _ in self.uses.get(pending.pop(), []):
                for out in eqn.outvars:
                    if out not in reached:
                        reached.add(out)
                        pending.append(out)
        return reached

    def _labelled(self, atom: Any) -> bool:
        """Whether ``atom`` is computed from the site's activation."""
        return atom in self.reached

    def _constant(self, atom: Any) -> bool:
        """Whether ``atom`` depends on parameters and constants only (no data, not the
        site's activation)."""
        pending, seen = [atom], set()
        while pending:
            a = pending.pop()
            if isinstance(a, jex.Literal) or id(a) in seen:
                continue
            seen.add(id(a))
            if a in self.invar_index:
                if self.invar_index[a] not in self.params:
                    return False
                continue
            if a in self.reached:
                return False
            eqn = self.producers.get(a)
            if eqn is not None:
                pending += list(eqn.invars)
        return True

    # -- parameters ---------------------------------------------------------------------

    def _leaf(self, atom: Any) -> tuple[int, list[jex.JaxprEqn]] | None:
        """The input a parameter value comes from through moves and layout changes (and
        those equations, outermost first), or None for a computed value."""
        chain: list[jex.JaxprEqn] = []
        while not isinstance(atom, jex.Literal):
            if atom in self.invar_index:
                return self.invar_index[atom], chain
            eqn = self.producers.get(atom)
            if eqn is None or eqn.primitive.name not in _MOVES | {
                "broadcast_in_dim",
                "reshape",
                "transpose",
                "squeeze",
                "expand_dims",
                "slice",
            }:
                return None
            chain.append(eqn)
            atom = eqn.invars[0]
        return None

    def _is_parameter(self, atom: Any) -> bool:
        """Whether ``atom`` is a leaf of ``argnums`` (through moves and layout changes)."""
        found = self._leaf(atom)
        return found is not None and found[0] in self.params

    def _slice(self, atom: Any, labels: np.ndarray, role: str) -> UnitSlice:
        """The slice of the parameter leaf ``atom`` comes from, given ``atom``'s labels."""
        found = self._leaf(atom)
        if found is None:
            raise _NotRevivable(f"its {role} is computed, not a parameter leaf")
        index, chain = found
        for eqn in chain:
            labels = _pull_back(eqn, labels)
        # A layer of a stack is a slice of the stacked leaf: its uses are that slice's.
        sliced = [e for e in chain if e.primitive.name == "slice"]
        used = sliced[-1].outvars[0] if sliced else self.jaxpr.invars[index]
        if len(self.uses.get(used, [])) > 1 and role == "weight":
            raise _NotRevivable("a weight it uses is also used elsewhere (shared weights)")
        path = self.params.get(index)
        if path is None:
            raise _NotRevivable("a parameter it needs is not in `argnums`")
        return _unit_slice(path, labels, role, bool(sliced))

    # -- incoming: from the pre-activation back to the producing product ----------------

    def _incoming(self, x: Any, site_eqn: jex.JaxprEqn) -> tuple[list[UnitSlice], np.ndarray]:
        if x in self.invar_index:
            raise _NotRevivable("its pre-activation is an input of the function")
        product = self._producing_product(x)
        slices, labels = self._product(product)
        more, x_labels = self._per_unit(product.outvars[0], labels, x, site_eqn)
        return slices + more, x_labels

    def _stream(self, atom: Any) -> bool:
        """Whether ``atom`` is computed from data (a product, a data input, another site),
        not from parameters alone."""
        if isinstance(atom, jex.Literal):
            return False
        if atom not in self.stream_cache:
            if atom in self.invar_index:
                self.stream_cache[atom] = self.invar_index[atom] in self.data
            elif atom not in self.producers:  # a constant captured by the function
                self.stream_cache[atom] = False
            else:
                eqn = self.producers[atom]
                self.stream_cache[atom] = eqn.primitive.name not in _ELEMENTWISE_BACK or any(
                    self._stream(a) for a in eqn.invars
                )
        return self.stream_cache[atom]

    def _producing_product(self, x: Any) -> jex.JaxprEqn:
        """The one ``dot_general`` or ``conv_general_dilated`` that the pre-activation is
        computed from, through per-element arithmetic, reductions and layout changes."""
        products, pending, seen = [], [x], set()
        while pending:
            atom = pending.pop()
            if id(atom) in seen:
                continue
            seen.add(id(atom))
            if atom in self.invar_index or atom not in self.producers:
                raise _NotRevivable(_OTHER_INPUT)
            eqn = self.producers[atom]
            name = eqn.primitive.name
            if name in ("dot_general", "conv_general_dilated"):
                if eqn not in products:
                    products.append(eqn)
                continue
            if name not in _ELEMENTWISE_BACK:
                if internals.is_relu_custom_jvp(eqn) or internals.is_leakyjax(eqn):
                    raise _NotRevivable(_OTHER_INPUT)
                raise _NotRevivable(
                    f"its pre-activation is computed by `{name}`, which unit_wiring does not "
                    "follow back to a layer"
                )
            pending += [a for a in eqn.invars if self._stream(a)]
        if len(products) != 1:
            raise _NotRevivable(_OTHER_INPUT)
        return products[0]

    def _per_unit(
        self, start: Any, labels: np.ndarray, x: Any, site_eqn: jex.JaxprEqn
    ) -> tuple[list[UnitSlice], np.ndarray]:
        """Follows the product's output forward to the pre-activation ``x``: the biases,
        scales and normalization statistics (BatchNorm's, computed per unit over the
        examples and positions, or its running ones) met on the way, and ``x``'s labels.
        Everything computed from the product must be per unit: a reduction over units or
        a mix of two units' values is refused, and so is a value computed from it that
        leaves the function other than as a running statistic."""
        facts = {start: _Fact(labels, 1, False, False)}
        slices: list[UnitSlice] = []
        first = next(i for i, e in enumerate(self.jaxpr.eqns) if start in e.outvars)
        for eqn in self.jaxpr.eqns[first + 1 :]:
            known = [None if isinstance(a, jex.Literal) else facts.get(a) for a in eqn.invars]
            if all(f is None for f in known) or eqn is site_eqn:
                continue
            rule = _PER_UNIT.get(eqn.primitive.name)
            if rule is None:
                raise _NotRevivable(
                    f"its pre-activation also goes to `{eqn.primitive.name}`, which "
                    "unit_wiring does not follow units through"
                )
            found, fact = rule(self, eqn, known)
            slices += found
            facts[eqn.outvars[0]] = fact
        for out in self.jaxpr.outvars:
            output = None if isinstance(out, jex.Literal) else facts.get(out)
            if output is None:
                continue
            if not output.reduced:
                raise _NotRevivable("its pre-activation is also an output of the function")
            if not output.running:
                raise _NotRevivable(
                    "a statistic of its pre-activation is an output of the function (not a "
                    "running statistic)"
                )
        return _distinct(slices), facts[x].labels

    def _parameter_slices(
        self,
        atom: Any,
        labels: np.ndarray,
        role: str,
        optional: bool = False,
        sliced: bool = False,
    ) -> list[UnitSlice]:
        """The slices of the parameter leaves that ``atom`` (computed from parameters
        alone, per element) is made of, given ``atom``'s labels. Past a square root or a
        reciprocal square root, a leaf is a variance. With ``optional``, leaves outside
        ``argnums`` are skipped (a running statistic the function only updates)."""
        if isinstance(atom, jex.Literal):
            return []
        if atom in self.invar_index:
            index = self.invar_index[atom]
            if index not in self.params:
                if optional:
                    return []
                raise _NotRevivable("a parameter it needs is not in `argnums`")
            if len(self.uses.get(atom, [])) > 1 and not sliced:
                raise _NotRevivable(
                    f"its {role} is also used elsewhere (shared with another layer)"
                )
            return [_unit_slice(self.params[index], labels, role, sliced)]
        eqn = self.producers.get(atom)
        if eqn is None:
            raise _NotRevivable(f"its {role} is a constant captured by the function")
        name = eqn.primitive.name
        if name in _LAYOUT or name == "slice":
            return self._parameter_slices(
                eqn.invars[0], _pull_back(eqn, labels), role, optional, sliced or name == "slice"
            )
        if name in _UNARY or name in _BINARY:
            if name in ("rsqrt", "sqrt") or (name == "integer_pow" and eqn.params["y"] < 0):
                role = "var"
            out = []
            for operand in eqn.invars:
                if isinstance(operand, jex.Literal):
                    continue
                if not _shape(operand) and (optional or not self._from_parameters(operand)):
                    continue  # a scalar constant (a momentum, an epsilon), or a counter
                back = _broadcast_back(labels, operand)
                out += self._parameter_slices(operand, back, role, optional, sliced)
            return out
        raise _NotRevivable(
            f"its {role} is computed by `{name}`, which unit_wiring does not follow back to "
            "parameter leaves"
        )

    def _from_parameters(self, atom: Any) -> bool:
        """Whether ``atom`` is computed from an input of the function."""
        pending, seen = [atom], set()
        while pending:
            a = pending.pop()
            if isinstance(a, jex.Literal) or id(a) in seen:
                continue
            seen.add(id(a))
            if a in self.invar_index:
                return True
            eqn = self.producers.get(a)
            if eqn is not None:
                pending += list(eqn.invars)
        return False

    def _product(self, eqn: jex.JaxprEqn) -> tuple[list[UnitSlice], np.ndarray]:
        """The producing product's kernel slice, and the labels of its output."""
        out_shape = _shape(eqn.outvars[0])
        if eqn.primitive.name == "conv_general_dilated":
            if eqn.params["feature_group_count"] != 1 or eqn.params["batch_group_count"] != 1:
                raise _NotRevivable("it is produced by a grouped convolution")
            _, rhs_spec, out_spec = eqn.params["dimension_numbers"]
            kernel = eqn.invars[1]
            if self._is_parameter(eqn.invars[0]) or not self._is_parameter(kernel):
                raise _NotRevivable("its convolution's kernel is not a parameter leaf in `argnums`")
            labels = _along(out_shape, out_spec[1])
            kernel_labels = _along(_shape(kernel), rhs_spec[0])
            return [self._slice(kernel, kernel_labels, "weight")], labels
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        lhs, rhs = eqn.invars
        kernel_side = [k for k, a in enumerate((lhs, rhs)) if self._is_parameter(a)]
        if len(kernel_side) != 1:
            raise _NotRevivable("its product is not of data with one parameter leaf in `argnums`")
        k = kernel_side[0]
        kernel = (lhs, rhs)[k]
        contracting, batch = (lc, lb) if k == 0 else (rc, rb)
        free = [d for d in range(len(_shape(kernel))) if d not in contracting and d not in batch]
        if len(free) != 1:
            raise _NotRevivable("its product's kernel has more than one output-feature axis")
        lhs_free = [d for d in range(len(_shape(lhs))) if d not in lc and d not in lb]
        rhs_free = [d for d in range(len(_shape(rhs))) if d not in rc and d not in rb]
        out_axis = len(lb) + (
            lhs_free.index(free[0]) if k == 0 else len(lhs_free) + rhs_free.index(free[0])
        )
        labels = _along(out_shape, out_axis)
        return [self._slice(kernel, _along(_shape(kernel), free[0]), "weight")], labels

    # -- outgoing: from the activation forward to the consuming products ----------------

    def _outgoing(self, y: Any, labels: np.ndarray) -> list[UnitSlice]:
        out: list[UnitSlice] = []
        pending = [(y, labels)]
        seen: set[int] = set()
        while pending:
            var, var_labels = pending.pop()
            if id(var) in seen:
                continue
            seen.add(id(var))
            if var in self.jaxpr.outvars:
                raise _NotRevivable("its activation reaches the function's output directly")
            for eqn, k in self.uses.get(var, []):
                name = eqn.primitive.name
                if name in ("dot_general", "conv_general_dilated"):
                    out.append(self._consumer(eqn, k, var_labels))
                    continue
                new = _FORWARD.get(name)
                if new is None:
                    raise _NotRevivable(
                        f"its activation goes through `{name}`, which unit_wiring does not "
                        "follow units through"
                    )
                result = new(self, eqn, k, var_labels)
                pending += list(zip(eqn.outvars, result, strict=True))
        if not out:
            raise _NotRevivable("its activation reaches no layer that consumes it")
        return out

    def _consumer(self, eqn: jex.JaxprEqn, k: int, labels: np.ndarray) -> UnitSlice:
        kernel = eqn.invars[1 - k]
        if self._leaf(kernel) is None:
            raise _NotRevivable(
                f"its activation is multiplied by a computed value in `{eqn.primitive.name}` "
                "(attention, say), not by a parameter"
            )
        if eqn.primitive.name == "conv_general_dilated":
            if k != 0 or eqn.params["feature_group_count"] != 1:
                raise _NotRevivable("it is consumed by a grouped convolution")
            lhs_spec, rhs_spec, _ = eqn.params["dimension_numbers"]
            units = _units_along(labels, lhs_spec[1])
            return self._slice(kernel, _along(_shape(kernel), rhs_spec[1], units), "weight")
        (lc, rc), _ = eqn.params["dimension_numbers"]
        mine, theirs = (lc, rc) if k == 0 else (rc, lc)
        if len(mine) != 1:
            raise _NotRevivable("it is consumed by a product over several axes")
        units = _units_along(labels, mine[0])
        return self._slice(kernel, _along(_shape(kernel), theirs[0], units), "weight")


def _unit_slice(path: str, labels: np.ndarray, role: str, sliced: bool) -> UnitSlice:
    """The slice of a leaf with ``labels``; for a layer sliced out of a stacked leaf, the
    one index along the stacking axis that holds it (``iterations`` holds that index until
    ``_by_iteration`` puts the iteration there)."""
    if sliced and (labels < 0).any():
        for stack_axis in range(labels.ndim):
            held = [
                i
                for i in range(labels.shape[stack_axis])
                if (np.take(labels, i, stack_axis) >= 0).any()
            ]
            if len(held) != 1:
                continue
            rest = np.delete(labels, held[0], axis=stack_axis)
            layer = np.take(labels, held[0], stack_axis)
            if (rest < 0).all() and layer.ndim and (layer >= 0).all():
                axis, units = _axis_units(layer, role)
                axis += axis >= stack_axis
                return UnitSlice(path, axis, units, role, stack_axis, np.array(held))
    axis, units = _axis_units(labels, role)
    return UnitSlice(path, axis, units, role)


def _unrolled(
    flat: jex.ClosedJaxpr, scans: set[int]
) -> tuple[jex.ClosedJaxpr, list[tuple[int, int, int] | None]]:
    """``flat`` with the scans at ``scans`` (equation indices) unrolled, one layer after
    the other, and for each top-level ReLU equation of the result in order, the
    ``(scan, body equation, iteration)`` it comes from (None outside the unrolled scans)."""
    marks: list[tuple[int, int, int] | None] = []

    def is_site(eqn: jex.JaxprEqn) -> bool:
        return internals.is_relu_custom_jvp(eqn) or internals.is_leakyjax(eqn)

    def run_body(body: jex.Jaxpr, consts: Sequence[Any], args: Sequence[Any], where) -> list:
        env = dict(zip(body.constvars, consts, strict=True))
        env.update(zip(body.invars, args, strict=True))

        def read(atom: Any) -> Any:
            return atom.val if isinstance(atom, jex.Literal) else env[atom]

        for j, eqn in enumerate(body.eqns):
            invals = [read(v) for v in eqn.invars]
            if where is None and j in scans:
                outs = unroll(eqn, invals, j)
            elif is_site(eqn):
                outs = internals.bind(eqn, invals)
                marks.append(None if where is None else (where[0], j, where[1]))
            elif (inlined := _inline_call(eqn, invals)) is not None:  # a jit in the body
                outs = inlined
            else:
                outs = internals.bind(eqn, invals)
            env.update(zip(eqn.outvars, outs, strict=True))
        return [read(v) for v in body.outvars]

    def unroll(eqn: jex.JaxprEqn, invals: list, index: int) -> list:
        if eqn.params.get("reverse"):
            raise _NotRevivable("a reversed scan")
        num_consts, num_carry = internals.scan_layout(eqn)
        body = eqn.params["jaxpr"]
        consts = invals[:num_consts]
        carry = invals[num_consts : num_consts + num_carry]
        xs = invals[num_consts + num_carry :]
        ys = []
        for step in range(int(eqn.params["length"])):
            layer = [jax.lax.index_in_dim(x, step, 0, keepdims=False) for x in xs]
            outs = run_body(body.jaxpr, body.consts, [*consts, *carry, *layer], (index, step))
            carry, y = outs[:num_carry], outs[num_carry:]
            ys.append(y)
        return [*carry, *(jnp.stack([y[k] for y in ys]) for k in range(len(ys[0])))]

    def run(*inputs: Any) -> list[Any]:
        return run_body(flat.jaxpr, flat.consts, inputs, None)

    closed = internals.retrace(run, internals.invar_avals(flat), "unit_wiring")
    return closed, marks


def _stacked_wirings(
    flat: jex.ClosedJaxpr, sites: list[Site], params: dict[int, str], data: set[int]
) -> dict[str, Wiring]:
    """The wirings of sites in scans over stacked layers, found on the program with those
    scans unrolled: each iteration's slices, put together per leaf with the iteration
    each index along the stacking axis holds. A site this cannot do keeps its refusal."""
    out: dict[str, Wiring] = {}
    scans = {s.stacked_by[0] for s in sites if s.stacked_by is not None}
    try:
        unrolled, marks = _unrolled(flat, scans)
    except _NotRevivable:
        return out
    equations = [
        e
        for e in unrolled.jaxpr.eqns
        if internals.is_relu_custom_jvp(e) or internals.is_leakyjax(e)
    ]
    if len(equations) != len(marks):
        return out
    at = {mark: eqn for mark, eqn in zip(marks, equations, strict=True) if mark is not None}
    analysis = _Analysis(unrolled.jaxpr, params, data)
    shapes = {path: _shape(unrolled.jaxpr.invars[i]) for i, path in params.items()}
    for site in sites:
        if len(site.path) != 4 or site.stacked_by != site.path[:1]:
            continue
        if not site.rewritable and not site.clamp:
            continue
        assert site.iterations is not None  # a site stacked by a scan
        try:
            per_layer = []
            for step in range(site.iterations):
                eqn = at.get((site.path[0], site.path[-1], step))
                if eqn is None:
                    raise _NotRevivable(_STACKED.format(site.iterations))
                try:
                    per_layer.append(analysis.wire_equation(eqn, site.operand))
                except _NotRevivable as why:
                    raise _NotRevivable(f"in iteration {step}: {why}") from None
            incoming = _by_iteration([layer[0] for layer in per_layer], shapes)
            outgoing = _by_iteration([layer[1] for layer in per_layer], shapes)
            out[site.name] = Wiring(site, incoming, outgoing, True, None)
        except _NotRevivable as why:
            out[site.name] = Wiring(site, (), (), False, str(why))
    return out


def _by_iteration(
    per_layer: list[list[UnitSlice]], shapes: dict[str, tuple[int, ...]]
) -> tuple[UnitSlice, ...]:
    """One slice per leaf and role from each iteration's slices, with the iteration each
    index along the stacking axis holds."""
    merged: dict[tuple, UnitSlice] = {}
    for step, slices in enumerate(per_layer):
        for s in slices:
            key = (s.path, s.role, s.axis, s.iteration_axis)
            if s.iteration_axis is None:
                if key in merged:
                    raise _NotRevivable(
                        f"a parameter it needs ({s.path}) is used by several layers of the stack"
                    )
                merged[key] = s._replace(iterations=np.array([step]))
                continue
            previous = merged.get(key)
            assert s.iterations is not None  # set for every slice of a stacked layer
            if previous is None:
                iterations = np.full(shapes[s.path][s.iteration_axis], -1, np.int64)
            elif not np.array_equal(previous.units, s.units):
                raise _NotRevivable(f"its units lie differently in each layer of {s.path}")
            else:
                assert previous.iterations is not None  # merged below, with its iterations
                iterations = previous.iterations.copy()
            if iterations[s.iterations[0]] != -1:
                raise _NotRevivable(f"a layer of {s.path} is used by several iterations")
            iterations[s.iterations[0]] = step
            merged[key] = s._replace(iterations=iterations)
    return tuple(merged.values())


# --- Label arrays -----------------------------------------------------------------------------


def _shape(atom: Any) -> tuple[int, ...]:
    aval: Any = atom.aval  # an array's abstract value
    return tuple(aval.shape)


def _along(shape: Sequence[int], axis: int, units: np.ndarray | None = None) -> np.ndarray:
    """Labels of ``shape`` that are ``units`` (default: 0, 1, ...) along ``axis``."""
    if units is None:
        units = np.arange(shape[axis])
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return np.broadcast_to(np.asarray(units, np.int64).reshape(view), tuple(shape))


def _units_along(labels: np.ndarray, axis: int) -> np.ndarray:
    """The labels along ``axis``, which must not vary along the other axes."""
    moved = np.moveaxis(labels, axis, -1).reshape(-1, labels.shape[axis])
    if not (moved == moved[:1]).all():
        raise _NotRevivable("its units vary along the examples of a consuming product")
    return moved[0]


def _axis_units(labels: np.ndarray, role: str) -> tuple[int, np.ndarray]:
    """The one axis of a parameter leaf along which ``labels`` vary, and the labels."""
    if labels.ndim == 0:
        raise _NotRevivable(f"its {role} is one scalar shared by every unit")
    for axis in sorted(range(labels.ndim), key=lambda a: -labels.shape[a]):
        try:
            units = _units_along(labels, axis)
        except _NotRevivable:
            continue
        if (_along(labels.shape, axis, units) == labels).all():
            return axis, units
    raise _NotRevivable(f"its {role}'s entries mix units")


def _pull_back(eqn: jex.JaxprEqn, labels: np.ndarray) -> np.ndarray:
    """The labels of ``eqn``'s operand, from those of its output (a layout change)."""
    name = eqn.primitive.name
    shape = _shape(eqn.invars[0])
    if name == "transpose":
        return np.transpose(labels, np.argsort(eqn.params["permutation"]))
    if name == "slice":  # one layer of a stack: the other entries hold no unit of it
        full = np.full(shape, -1, np.int64)
        strides = eqn.params["strides"] or (1,) * len(shape)
        where = tuple(
            slice(start, stop, step)
            for start, stop, step in zip(
                eqn.params["start_indices"], eqn.params["limit_indices"], strides, strict=True
            )
        )
        full[where] = labels
        return full
    if name == "broadcast_in_dim":
        dims = eqn.params["broadcast_dimensions"]
        index = tuple(slice(None) if d in dims else 0 for d in range(labels.ndim))
        kept = labels[index]
        pulled = kept.reshape([labels.shape[d] for d in dims])
        pulled = pulled[tuple(slice(0, 1) if s == 1 else slice(None) for s in shape)]
        back = np.broadcast_to(
            np.expand_dims(pulled, [d for d in range(labels.ndim) if d not in dims]), labels.shape
        )
        if not (back.reshape(-1) == labels.reshape(-1)).all():
            raise _NotRevivable("a parameter it needs is shared by several units (broadcast)")
        return pulled.reshape(shape)
    if labels.size != int(np.prod(shape)):
        raise _NotRevivable(f"`{name}` changes the size of a parameter")
    return labels.reshape(shape)


def _broadcast_back(labels: np.ndarray, operand: Any) -> np.ndarray:
    """The labels of an operand of an elementwise equation (same shape as ``labels``, or
    a scalar)."""
    shape = tuple(_shape(operand))
    if shape == labels.shape:
        return labels
    if not shape:
        raise _NotRevivable("a parameter it needs is one scalar shared by every unit")
    if len(shape) != labels.ndim or any(
        s not in (1, n) for s, n in zip(shape, labels.shape, strict=True)
    ):
        raise _NotRevivable("an operand of its pre-activation is broadcast implicitly")
    # Size-1 axes broadcast against the stream: the entry is shared along them.
    first = labels[tuple(slice(0, 1) if s == 1 else slice(None) for s in shape)]
    if not (np.broadcast_to(first, labels.shape) == labels).all():
        raise _NotRevivable("a parameter it needs is shared by several units (broadcast)")
    return first


# --- Forward rules: the labels of an equation's outputs from those of input k ------------


def _unary(analysis, eqn, k, labels):
    return [labels]


def _scaling(analysis, eqn, k, labels):
    others = [a for j, a in enumerate(eqn.invars) if j != k]
    if any(not isinstance(a, jex.Literal) and analysis._labelled(a) for a in others):
        raise _NotRevivable("its activation is multiplied by another unit's")
    if eqn.primitive.name == "div" and k == 1:
        raise _NotRevivable("its activation is a denominator")
    return [np.broadcast_to(labels, _shape(eqn.outvars[0]))]


def _mixing(analysis, eqn, k, labels):
    for j, other in enumerate(eqn.invars):
        if j == k:
            continue
        if isinstance(other, jex.Literal) or analysis._constant(other):
            continue
        raise _NotRevivable(
            f"its activation reaches a residual `{eqn.primitive.name}` with another stream"
        )
    return [np.broadcast_to(labels, _shape(eqn.outvars[0]))]


def _select(analysis, eqn, k, labels):
    if k == 0:
        raise _NotRevivable("its activation is a select's predicate")
    for j, other in enumerate(eqn.invars[1:], start=1):
        if j != k and not (isinstance(other, jex.Literal) or analysis._constant(other)):
            raise _NotRevivable("its activation is selected against another stream")
    return [labels]


def _reshape(analysis, eqn, k, labels):
    return [labels.reshape(_shape(eqn.outvars[0]))]


def _transpose(analysis, eqn, k, labels):
    return [np.transpose(labels, eqn.params["permutation"])]


def _broadcast(analysis, eqn, k, labels):
    shape = _shape(eqn.outvars[0])
    dims = eqn.params["broadcast_dimensions"]
    expanded = np.expand_dims(labels, [d for d in range(len(shape)) if d not in dims])
    return [np.broadcast_to(expanded, shape)]


def _reduce(analysis, eqn, k, labels):
    axes = tuple(eqn.params["axes"])
    first = labels[tuple(slice(0, 1) if a in axes else slice(None) for a in range(labels.ndim))]
    if not (np.broadcast_to(first, labels.shape) == labels).all():
        raise _NotRevivable(
            "its activation is reduced over units (a sum, or a normalization or softmax across "
            "the site, such as LayerNorm)"
        )
    return [np.squeeze(first, axis=axes)]


def _reduce_window(analysis, eqn, k, labels):
    window, strides = eqn.params["window_dimensions"], eqn.params["window_strides"]
    shape = _shape(eqn.outvars[0])
    for axis in range(labels.ndim):
        varies = not (np.take(labels, [0], axis=axis) == labels).all()
        if varies:
            if window[axis] != 1 or strides[axis] != 1 or labels.shape[axis] != shape[axis]:
                raise _NotRevivable("it is pooled across units")
            return [_along(shape, axis, _units_along(labels, axis))]
    return [np.full(shape, labels.reshape(-1)[0])]


def _concatenate(analysis, eqn, k, labels):
    axis = eqn.params["dimension"]
    parts = [labels if j == k else np.full(_shape(a), -1) for j, a in enumerate(eqn.invars)]
    return [np.concatenate(parts, axis=axis)]


def _squeeze_like(analysis, eqn, k, labels):
    return [labels.reshape(_shape(eqn.outvars[0]))]


_FORWARD: dict[str, Callable[..., list[np.ndarray]]] = {
    **{name: _unary for name in _UNARY},
    **{name: _scaling for name in _SCALING},
    **{name: _mixing for name in _MIXING},
    "select_n": _select,
    "reshape": _reshape,
    "squeeze": _squeeze_like,
    "expand_dims": _squeeze_like,
    "transpose": _transpose,
    "broadcast_in_dim": _broadcast,
    **{name: _reduce for name in _REDUCTIONS},
    "reduce_window_sum": _reduce_window,
    "reduce_window_max": _reduce_window,
    "reduce_window_min": _reduce_window,
    "concatenate": _concatenate,
}


# --- Per-unit rules: from a product's output to the pre-activation --------------------------


class _Fact(NamedTuple):
    """What is known of a value computed from a layer's product: each element's unit, its
    degree as a polynomial in the product (None past a square root or a division by it:
    1 for a mean, 2 for a variance), whether it is a statistic (reduced over examples or
    positions) and whether a running statistic (a parameter leaf) was folded into it."""

    labels: np.ndarray
    degree: int | None
    reduced: bool
    running: bool


def _per_unit_unary(analysis, eqn, facts):
    (fact,) = facts
    name, degree = eqn.primitive.name, fact.degree
    if degree is not None:
        if name == "square":
            degree *= 2
        elif name == "integer_pow":
            degree = degree * eqn.params["y"] if eqn.params["y"] > 0 else None
        elif name not in _MOVES and name != "neg":
            degree = None
    return [], fact._replace(degree=degree)


def _per_unit_layout(analysis, eqn, facts):
    (fact,) = facts
    (labels,) = _FORWARD[eqn.primitive.name](analysis, eqn, 0, fact.labels)
    return [], fact._replace(labels=labels)


def _per_unit_reduce(analysis, eqn, facts):
    (fact,) = facts
    axes = tuple(eqn.params["axes"])
    labels = fact.labels
    first = labels[tuple(slice(0, 1) if a in axes else slice(None) for a in range(labels.ndim))]
    if not (np.broadcast_to(first, labels.shape) == labels).all():
        raise _NotRevivable(
            "its pre-activation is normalized or reduced across units (a LayerNorm, say): "
            "each unit depends on the others"
        )
    return [], fact._replace(labels=np.squeeze(first, axis=axes), reduced=True)


def _per_unit_binary(analysis, eqn, facts):
    name = eqn.primitive.name
    shape = _shape(eqn.outvars[0])
    labelled = [f for f in facts if f is not None]
    labels = np.broadcast_to(labelled[0].labels, shape)
    if any(not (np.broadcast_to(f.labels, shape) == labels).all() for f in labelled[1:]):
        raise _NotRevivable(f"its pre-activation mixes different units' values (`{name}`)")
    degrees = [f.degree for f in labelled]
    if None in degrees or (name in ("pow", "div") and facts[1] is not None):
        degree = None
    else:
        degree = sum(degrees) if name == "mul" else max(degrees)
    statistic = all(f.reduced for f in labelled)
    # A statistic (a mean: degree 1; a variance: 2) added to a parameter leaf: a running
    # statistic, updated from this batch's (Linen's batch_stats, NNX's BatchStat).
    update = statistic and name in ("add", "sub") and degree is not None
    slices: list[UnitSlice] = []
    folded = False
    for k, (operand, fact) in enumerate(zip(eqn.invars, facts, strict=True)):
        if fact is not None or isinstance(operand, jex.Literal):
            continue
        if not _shape(operand) and (statistic or not analysis._from_parameters(operand)):
            continue  # a scalar constant (a momentum, an epsilon), or a statistic's counter
        folded = True
        if analysis._stream(operand):
            raise _NotRevivable(
                f"its pre-activation is also combined with another stream (`{name}`: a "
                "residual connection)"
            )
        if update:
            role = "mean" if degree == 1 else "var"
        elif name == "add" or (name == "sub" and k == 0):
            role = "bias"
        elif name == "sub":
            role = "mean"
        elif name == "mul" or (name == "div" and k == 1):
            role = "scale"
        else:
            raise _NotRevivable(
                f"its pre-activation goes through a `{name}` with a parameter, which "
                "unit_wiring does not follow units through"
            )
        back = _broadcast_back(labels, operand)
        slices += analysis._parameter_slices(operand, back, role, optional=update)
    running = any(f.running for f in labelled) or (update and folded)
    return slices, _Fact(labels, degree, statistic, running)


_PER_UNIT: dict[str, Callable[..., tuple[list[UnitSlice], _Fact]]] = {
    **{name: _per_unit_unary for name in _UNARY},
    **{name: _per_unit_layout for name in _LAYOUT - _MOVES},
    **{name: _per_unit_binary for name in _BINARY},
    **{name: _per_unit_reduce for name in _PER_UNIT_REDUCTIONS},
}


def _distinct(slices: list[UnitSlice]) -> list[UnitSlice]:
    """Each leaf once (the first slice found for it)."""
    seen: dict[str, UnitSlice] = {}
    for s in slices:
        seen.setdefault(s.path, s)
    return list(seen.values())


# --- revive -------------------------------------------------------------------------------


def revive(
    fn: Callable,
    *,
    argnums: int | Sequence[int] = 0,
    init: Callable[..., jax.Array] | None = None,
    sites: SiteSelection = None,
) -> Callable[..., tuple[Any, Any]]:
    r"""Re-initializes dead or dormant units of any model, found by :func:`unit_wiring`.

    ReDo (Sokar et al., ICML 2023): for each unit in a mask, its incoming weights are
    re-drawn from ``init``, its bias set to 0 and its scale to 1 (a BatchNorm's too), its
    running mean set to 0 and variance to 1, and its outgoing weights set to 0; in
    ``opt_state``, every subtree with the structure of the parameters (Optax's ``mu``,
    ``nu``, momentum ``trace``...), or holding some of their leaves at the same paths under
    one prefix (Optax over ``variables["params"]`` when ``args[argnums]`` is Linen's whole
    ``{"params", "batch_stats"}``, or over ``nnx.state(model, nnx.Param)``), gets the same
    slices set to 0, and the rest (step counts) is left as it is. On every input where a
    revived unit's activation was exactly 0 (a dead ReLU unit), the function's output right
    after revival is unchanged; a dormant unit's small contribution is removed, as in ReDo.
    The revived units can learn again.

    The result is ``revived(key, dead, *args, opt_state=None, **kwargs)``, returning
    ``(new_params, new_opt_state)``: ``new_params`` has the structure of
    ``args[argnums]`` (a tuple for a tuple ``argnums``); a Flax NNX module (``fn`` itself,
    or among the arguments) is updated in place and returned as ``new_params`` (a tuple of
    them if there are several), so call it outside ``jax.jit``. ``dead`` maps site names to
    a bool mask per unit (per iteration and unit, ``(iterations, units)``, for a site in a scan
    over stacked layers, as the tracker gives them):
    ``{name: r.dead for name, r in tracker.result(state).items()}``, or
    ``{name: r.score <= tau ...}`` for ReDo's tau-dormant units. It is jit-able with the
    masks traced (the wiring is found when it is traced). An all-False mask changes nothing.

    Args:
      fn: the model, as for :func:`unit_wiring`.
      argnums: which positional arguments hold the parameters (with NNX modules, not
        used: their state is revived).
      init: a ``jax.nn.initializers.Initializer`` for the incoming weights, called with the
        whole leaf's shape and dtype (revive takes the revived entries). Default: He
        uniform for a ReLU, :math:`U(-b, b)` with :math:`b = \sqrt{6 / \mathrm{fan\_in}}`,
        the fan measured from the wiring (the kernel's size over its units).
      sites: which sites may be revived (None: all), as for :func:`leakyjax.leakify`.

    Returns:
      The revive function described above.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> def mlp(params, x):
      ...     return jax.nn.relu(x @ params["w1"]) @ params["w2"]
      >>> params = {"w1": jnp.array([[1.0, -1.0]]), "w2": jnp.array([[1.0], [1.0]])}
      >>> x = jnp.ones((4, 1))
      >>> new, _ = lj.revive(mlp)(jax.random.key(0), {"w1": jnp.array([False, True])},
      ...                         params, x)
      >>> new["w2"].tolist(), bool((mlp(new, x) == mlp(params, x)).all())
      ([[1.0], [0.0]], True)
    """
    checks.check_fn("revive", fn)
    argnums = _check_argnums("revive", argnums)
    selection = checks.check_sites("revive", sites)
    if init is not None and not callable(init):
        raise TypeError(
            f"revive: `init` must be None or an initializer, got {checks.describe(init)}"
        )

    def revived(
        key: Any, dead: dict[str, Any], *args: Any, opt_state: Any = None, **kwargs: Any
    ) -> tuple[Any, Any]:
        key = checks.check_key("revive", key)
        wirings = find_wiring(
            "revive", fn, argnums, ("relu", "leaky_relu"), selection, args, kwargs
        )
        masks = _check_masks(dead, wirings)
        modules = _nnx_modules(fn, args, kwargs)
        if modules is not None:  # the parameters are the modules' state
            nnx = sys.modules["flax.nnx"]
            where: Any = 0
            params = nnx.split(modules)[1]
        else:
            where = argnums
            params = (
                tuple(args[a] for a in argnums) if isinstance(argnums, tuple) else args[argnums]
            )
        paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        keys = [_path_string(p, where) for p, _ in paths_leaves]
        leaves = dict(zip(keys, (leaf for _, leaf in paths_leaves), strict=True))
        touched = {k: jnp.zeros(np.shape(v), bool) for k, v in leaves.items()}
        new = dict(leaves)
        for n, (name, mask) in enumerate(masks.items()):
            wiring = wirings[name]
            for m, unit_slice in enumerate(wiring.incoming + wiring.outgoing):
                leaf = new[unit_slice.path]
                entries = _slice_mask(mask, unit_slice, np.shape(leaf))
                touched[unit_slice.path] = touched[unit_slice.path] | entries
                value = (
                    _fresh(unit_slice, wiring, leaf, jax.random.fold_in(key, n * 1000 + m), init)
                    if m < len(wiring.incoming)
                    else jnp.zeros_like(leaf)
                )
                new[unit_slice.path] = jnp.where(entries, value, leaf)
        new_params = jax.tree_util.tree_unflatten(treedef, [new[k] for k in keys])
        if modules is not None:
            nnx.update(modules, new_params)
            new_params = modules
        if opt_state is None:
            return new_params, None
        mask_tree = jax.tree_util.tree_unflatten(treedef, [touched[k] for k in keys])
        return new_params, _reset_moments(opt_state, treedef, mask_tree, touched)

    return revived


def _path_string(path: tuple, argnums: tuple[int, ...] | int) -> str:
    """A parameter leaf's path as unit_wiring writes it: with a tuple ``argnums``, the
    argument's position first."""
    keys = _sites.path_keys(path)
    if isinstance(argnums, tuple):
        keys[0] = str(argnums[path[0].idx])
    return "/".join(keys)


def _check_masks(dead: Any, wirings: dict[str, Wiring]) -> dict[str, Any]:
    if not isinstance(dead, dict):
        raise TypeError(
            f"revive: `dead` must be a dict from site names to bool masks, got "
            f"{checks.describe(dead)}"
        )
    masks = {}
    for name, given in dead.items():
        mask: Any = getattr(given, "dead", given)  # a DeadUnits result is taken as its mask
        if name not in wirings:
            raise ValueError(
                f"revive: `dead` names {name!r}, which is not a site; the sites are {list(wirings)}"
            )
        wiring = wirings[name]
        if not wiring.revivable:
            raise ValueError(f"revive: site {name!r} cannot be revived: {wiring.reason}")
        units = wiring.incoming[0].units
        size = int(units.max()) + 1
        if jnp.result_type(mask) != jnp.bool_:
            raise TypeError(
                f"revive: `dead[{name!r}]` must be a bool mask, got dtype "
                f"{np.dtype(jnp.result_type(mask)).name}"
            )
        layers = wiring.site.iterations
        if layers is not None and np.shape(mask) != (layers, size):
            raise ValueError(
                f"revive: `dead[{name!r}]` must have shape ({layers}, {size}), one row per "
                f"layer of the stack and one entry per unit, got {np.shape(mask)}"
            )
        if layers is None and np.shape(mask) != (size,):
            raise ValueError(
                f"revive: `dead[{name!r}]` must have shape ({size},), one entry per unit, "
                f"got {np.shape(mask)}"
            )
        masks[name] = jnp.asarray(mask)
    return masks


def _slice_mask(mask: jax.Array, unit_slice: UnitSlice, shape: tuple[int, ...]) -> jax.Array:
    """Where the leaf holds entries of masked units."""
    units, layers = unit_slice.units, unit_slice.iterations
    view = [1] * len(shape)
    view[unit_slice.axis] = shape[unit_slice.axis]
    if layers is not None and unit_slice.iteration_axis is None:
        mask = mask[int(layers[0])]  # a leaf of one layer: that iteration's row
    if layers is None or unit_slice.iteration_axis is None:
        along = jnp.where(units >= 0, mask[np.maximum(units, 0)], False)
        return jnp.broadcast_to(along.reshape(view), shape)
    # A stacked leaf: index i along the stacking axis holds iteration layers[i]'s units.
    valid = (layers[:, None] >= 0) & (units[None, :] >= 0)
    grid = jnp.where(valid, mask[np.maximum(layers, 0)[:, None], np.maximum(units, 0)[None]], False)
    if unit_slice.iteration_axis > unit_slice.axis:
        grid = grid.T
    view[unit_slice.iteration_axis] = shape[unit_slice.iteration_axis]
    return jnp.broadcast_to(grid.reshape(view), shape)


def _fresh(unit_slice, wiring, leaf, key, init):
    if unit_slice.role == "bias":
        return jnp.zeros_like(leaf)
    if unit_slice.role in ("scale", "var"):
        return jnp.ones_like(leaf)
    if unit_slice.role == "mean":
        return jnp.zeros_like(leaf)
    if init is not None:
        return jnp.asarray(init(key, np.shape(leaf), leaf.dtype), leaf.dtype)
    fan_in = int(np.prod(np.shape(leaf))) // np.shape(leaf)[unit_slice.axis]
    if unit_slice.iteration_axis is not None:  # one layer of the stack
        fan_in //= np.shape(leaf)[unit_slice.iteration_axis]
    bound = np.sqrt(6.0 / max(fan_in, 1))
    return jax.random.uniform(key, np.shape(leaf), leaf.dtype, -bound, bound)


def _reset_moments(
    opt_state: Any,
    treedef: Any,
    mask_tree: Any,
    touched: dict[str, jax.Array],
) -> Any:
    """Every subtree of ``opt_state`` with the parameters' structure gets the masked entries
    set to 0; so does one that holds some of the parameters' leaves, at the same paths and
    shapes under one prefix (Optax over ``variables["params"]`` when ``argnums`` names the
    whole Linen variables, or over ``nnx.state(model, nnx.Param)``)."""
    prefixes = {""}
    for k in touched:
        parts = k.split("/")
        prefixes.update("/".join(parts[:n]) + "/" for n in range(1, len(parts)))

    def placed(x: Any) -> list[str] | None:
        """The parameter paths of ``x``'s leaves, if they are that under one prefix."""
        flat = jax.tree_util.tree_flatten_with_path(x)[0]
        if not flat or not flat[0][0]:  # empty, or a leaf
            return None
        relative = ["/".join(_sites.path_keys(p)) for p, _ in flat]
        fits = [
            prefix
            for prefix in prefixes
            if all(
                prefix + r in touched and np.shape(v) == touched[prefix + r].shape
                for r, (_, v) in zip(relative, flat, strict=True)
            )
        ]
        return [fits[0] + r for r in relative] if len(fits) == 1 else None

    def is_moment(x: Any) -> bool:
        return jax.tree_util.tree_structure(x) == treedef or placed(x) is not None

    def reset(x: Any) -> Any:
        if jax.tree_util.tree_structure(x) == treedef:
            return jax.tree_util.tree_map(
                lambda v, m: jnp.where(m, jnp.zeros_like(v), v), x, mask_tree
            )
        paths = placed(x)
        if paths is None:
            return x
        leaves, structure = jax.tree_util.tree_flatten(x)
        return jax.tree_util.tree_unflatten(
            structure,
            [
                jnp.where(touched[k], jnp.zeros_like(v), v)
                for k, v in zip(paths, leaves, strict=True)
            ],
        )

    return jax.tree_util.tree_map(reset, opt_state, is_leaf=is_moment)


def _nnx_modules(fn: Any, args: tuple, kwargs: dict) -> Any:
    """The Flax NNX module in ``fn`` and its arguments (a tuple of them if several, as
    ``_nnx.as_pure`` splits them), or None."""
    leaves = jax.tree_util.tree_leaves((fn, args, kwargs), is_leaf=_nnx.is_module)
    modules = [leaf for leaf in leaves if _nnx.is_module(leaf)]
    if not modules:
        return None
    return modules[0] if len(modules) == 1 else tuple(modules)
