"""Finding and naming the ReLU sites of a jaxpr: a pass that returns plain ``Site`` records."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from leakyjax import _jax_internals as internals

# The patterns a site can match, and what each is.
PATTERNS = {
    "relu": "jax.nn.relu itself (what Flax, Haiku, Equinox and Keras call)",
    "maximum": "jnp.maximum(x, 0) outside a ReLU",
    "where": "jnp.where(x > 0, x, 0)",
    "leaky_relu": "leakyjax's own leaky_relu, prelu and rrelu",
}

# Which sites a transform works on: None (all), names or globs, or a predicate on a Site.
SiteSelection = Sequence[str] | Callable[["Site"], bool] | None


@dataclasses.dataclass(frozen=True)
class Site:
    """A place in a traced function where a ReLU (or Leaky ReLU) is applied.

    Attributes:
      name: unique, stable name: the key path of the parameters that feed the
        pre-activation (``params/Dense_0``, ``layers/0``), else the name stack or the source
        location; `` [in scan]`` and the like inside control flow; repeats get ``#2``, ``#3``.
      kind: the pattern matched: ``"relu"``, ``"maximum"``, ``"where"`` or ``"leaky_relu"``.
      shape: the pre-activation's shape at trace time (inside a ``scan``, per iteration).
      dtype: the pre-activation's dtype.
      source: ``file:line`` of the code that applied it (leakyjax's and JAX's frames
        skipped), or None.
      rewritable: whether :func:`leakyjax.leakify` rewrites it when asked for all sites.
      reason: why not, when it is not: an integer, complex or boolean ReLU; a ReLU inside
        a derivative rule of your own or a primitive the transforms do not re-bind
        through; a clamp (see ``clamp``). None otherwise.
      iterations: for a site in a ``lax.scan`` over stacked layers (its pre-activation
        depends on parameters the scan slices per iteration: ``nn.scan``, ``nnx.scan``,
        ``hk.layer_stack``), the number of layers: the tracker then keeps one row of units
        per layer. None elsewhere (a scan over data, such as an RNN over time, ORs its
        iterations).
      clamp: its output is used only on the way to a square root, reciprocal square root,
        logarithm or a division's denominator (a variance, a norm): the transforms leave it
        alone unless ``sites=`` names it.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> (site,) = lj.relu_sites(lambda x: jax.nn.relu(x.astype(jnp.int32)))(jnp.ones(3))
      >>> site.kind, site.shape, site.rewritable, site.reason
      ('relu', (3,), False, 'integer ReLU (int32): left as it is')
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    dtype: np.dtype
    source: str | None
    rewritable: bool
    reason: str | None = None
    iterations: int | None = None
    clamp: bool = False
    # Where the site is: equation indices and sub-jaxpr keys from the top-level jaxpr; which
    # of its equation's inputs is the pre-activation; the path of the scan that stacks its
    # layers; and whether the program also holds its derivative (taken inside the function).
    path: tuple[Any, ...] = dataclasses.field(default=(), repr=False, compare=False)
    operand: int = dataclasses.field(default=0, repr=False, compare=False)
    stacked_by: tuple[Any, ...] | None = dataclasses.field(default=None, repr=False, compare=False)
    differentiated: bool = dataclasses.field(default=False, repr=False, compare=False)
    # Why the tracker cannot observe it (in a while_loop's condition, inside a shard_map).
    unobservable: str | None = dataclasses.field(default=None, repr=False, compare=False)


def find(
    closed: jex.ClosedJaxpr,
    leaf_paths: Sequence[tuple | None],
    patterns: Sequence[str],
    rebound: frozenset[str],
) -> list[Site]:
    """The sites of ``closed`` matching ``patterns``, named from ``leaf_paths``: per input,
    ``(argument, key path)`` (None for an input that names nothing, like a data array).
    Sites under a primitive not in ``rebound`` (those the interpreter has a handler for)
    cannot be rewritten."""
    sizes: dict[Any, int] = {}
    for p in leaf_paths:
        if p is not None:
            sizes[p[0]] = sizes.get(p[0], 0) + 1
    # The parameters are the argument with the most leaves (Flax's variables, Haiku's
    # params, an Equinox model), the first on a tie: a scan that slices them per iteration
    # stacks layers.
    params = _parameter_group(sizes, sizes) if sizes else None
    finder = _Finder(
        tuple(patterns),
        {i for i, p in enumerate(leaf_paths) if p is not None and p[0] == params},
        rebound,
    )
    origins = [{i: _NOT_JOINED} if p is not None else {} for i, p in enumerate(leaf_paths)]
    finder.walk(
        closed.jaxpr, origins, _Scope(), [i in finder.parameters for i in range(len(origins))]
    )
    names = _unique([_name(found, leaf_paths, sizes) for found in finder.found])
    return [
        Site(
            name=name,
            kind=found.kind,
            shape=tuple(found.x.aval.shape),
            dtype=np.dtype(found.x.aval.dtype),
            source=found.source,
            rewritable=found.reason is None,
            reason=found.reason,
            iterations=found.iterations,
            clamp=found.clamp,
            path=found.path,
            operand=found.operand,
            stacked_by=found.stacked_by,
            differentiated=found.differentiated,
            unobservable=found.unobservable,
        )
        for name, found in zip(names, finder.found, strict=True)
    ]


# Origins: which inputs of the traced function reach a value without passing through
# another site (so a layer's pre-activation is named after its own parameters), each with
# the step at which it joined the data flow: a parameter joins when an equation combines it
# with another origin (a bias joins the matmul's output after the kernel joined the data;
# a kernel joins a normalization's output). The ones that joined last name the site.
_NOT_JOINED = -1
Origins = dict[int, int]


@dataclasses.dataclass(frozen=True)
class _Scope:
    """Where the walk is: the path of equation indices and sub-jaxpr keys, the control flow
    around it (for names), why sites here cannot be rewritten (if so), the enclosing scans
    that slice parameters per iteration (their path, length and the sliced inputs), and
    what a use of the jaxpr's outputs is, for the clamp test (None: unknown)."""

    path: tuple[Any, ...] = ()
    contexts: tuple[str, ...] = ()
    blocked: str | None = None
    stacking: tuple[tuple[tuple, int, frozenset[int]], ...] = ()
    outputs_clamp: Callable[[int, bool], bool] | None = None
    unobservable: str | None = None
    # The location of the outermost call of a function of JAX's or leakyjax's own around
    # here (see internals.library_body), reported for its sites.
    source: str | None = None


# The primitives whose bodies JAX traces once per function for every caller (a jit's, a
# custom rule's): inside a library function's, the tracebacks are the first caller's. A
# checkpoint, scan or cond body is traced at each call: its equations have their own (Flax's
# nn.remat is a function of Flax's, excluded from tracebacks, around the user's module).
_CACHED_BODIES = frozenset(
    {internals.JIT, internals.CLOSED_CALL, internals.CUSTOM_JVP, internals.CUSTOM_VJP}
)


@dataclasses.dataclass
class _Found:
    kind: str
    x: Any
    origins: Origins
    source: str | None
    stack: str
    contexts: tuple[str, ...]
    reason: str | None
    path: tuple[Any, ...]
    operand: int
    iterations: int | None
    stacked_by: tuple[Any, ...] | None
    clamp: bool
    differentiated: bool
    unobservable: str | None


class _Finder:
    """One walk over a jaxpr and its sub-jaxprs, collecting ``_Found`` records in program
    order."""

    def __init__(
        self, patterns: tuple[str, ...], parameters: set[int], rebound: frozenset[str]
    ) -> None:
        self.patterns = patterns
        self.rebound = rebound
        self.parameters = parameters
        self.found: list[_Found] = []
        self.step = 0  # equations walked: when an origin joined the data flow
        # The variables that are parameters as they were given, up to layout (a transpose,
        # a reshape, a slice, a cast, a stack of them): what a scan over stacked layers
        # slices. An embedding lookup or a layer's output is data, however it was made.
        self.views: set[Any] = set()
        # The inputs of jit and call bodies that are zeros in the caller (jnp.clip(x, 0)).
        self.zeros: set[Any] = set()

    def is_view(self, atom: Any) -> bool:
        return not isinstance(atom, jex.Literal) and atom in self.views

    def walk(
        self, jaxpr: jex.Jaxpr, origins: list[Origins], scope: _Scope, views: list[bool]
    ) -> list[Origins]:
        """Adds the sites of ``jaxpr`` (``origins[i]``: those of its invar i; ``views[i]``:
        whether it is a view of parameters); returns the origins of its outputs."""
        env: dict[Any, Origins] = dict(zip(jaxpr.invars, origins, strict=True))
        self.views.update(v for v, view in zip(jaxpr.invars, views, strict=True) if view)
        producers = {v: e for e in jaxpr.eqns for v in e.outvars}
        uses = _uses(jaxpr)

        def read(atom: Any) -> Origins:
            return env.get(atom, {}) if not isinstance(atom, jex.Literal) else {}

        for i, eqn in enumerate(jaxpr.eqns):
            here = (*scope.path, i)
            kind, x = _match(eqn, producers, self.patterns, self.zeros)
            if kind is not None:
                self._add(kind, x, eqn, read, here, scope, jaxpr, producers, uses)
                for v in eqn.outvars:  # the next layer's name comes from its own parameters
                    env[v] = {}
                continue
            self.step += 1
            all_in = _combine([read(v) for v in eqn.invars], self.step)
            operands = [v for v in eqn.invars if not isinstance(v, jex.Literal)]
            if (
                eqn.primitive.name in internals.LAYOUT
                and operands
                and all(map(self.is_view, operands))
            ):
                self.views.update(eqn.outvars)
            outs: list[Origins] | None = None
            for body in internals.bodies(eqn):
                inner = body.jaxpr.jaxpr if isinstance(body.jaxpr, jex.ClosedJaxpr) else body.jaxpr
                inner_origins = [
                    dict(read(eqn.invars[j])) if j is not None else all_in for j in body.inputs
                ]
                inner_views = [j is not None and self.is_view(eqn.invars[j]) for j in body.inputs]
                if internals.call_body(eqn) is not None:
                    self.zeros.update(
                        var
                        for var, j in zip(inner.invars, body.inputs, strict=True)
                        if j is not None
                        and internals.is_zero(eqn.invars[j], producers, zeros=self.zeros)
                    )
                body_outs = self.walk(
                    inner,
                    inner_origins,
                    self._inner(scope, eqn, here, body, read, uses, jaxpr),
                    inner_views,
                )
                if (
                    internals.call_body(eqn) is not None
                    or eqn.primitive.name == internals.CHECKPOINT
                ):
                    self.views.update(
                        out
                        for out, body_out in zip(eqn.outvars, inner.outvars, strict=True)
                        if self.is_view(body_out)
                    )
                if len(body_outs) == len(eqn.outvars):  # outputs one to one (a while's body)
                    outs = (
                        body_outs
                        if outs is None
                        else [{**a, **b} for a, b in zip(outs, body_outs, strict=True)]
                    )
            for k, var in enumerate(eqn.outvars):
                env[var] = outs[k] if outs is not None else all_in
        return [read(var) for var in jaxpr.outvars]

    def _inner(self, scope, eqn, here, body, read, uses, jaxpr) -> _Scope:
        """The scope of ``body``, a sub-jaxpr of ``eqn`` at ``here``."""
        name = eqn.primitive.name
        label = internals.CONTEXT_LABEL.get(name)
        stacking = scope.stacking
        if name == internals.SCAN:
            num_consts, num_carry = internals.scan_layout(eqn)
            sliced = frozenset(
                leaf
                for var in eqn.invars[num_consts + num_carry :]
                if self.is_view(var)
                for leaf in read(var)
                if leaf in self.parameters
            )
            if sliced:
                stacking = (*stacking, (here, int(eqn.params["length"]), sliced))

        def clamp_in_caller(k: int, statistic: bool) -> bool:
            return _only_clamps(eqn.outvars[k], uses, jaxpr, scope.outputs_clamp, statistic)

        # Only where the body's outputs are the equation's, one to one.
        one_to_one = name in (internals.JIT, internals.CLOSED_CALL, internals.CHECKPOINT)
        outputs_clamp = clamp_in_caller if one_to_one else None

        unobservable = scope.unobservable
        if unobservable is None and name == internals.SHARD_MAP:
            unobservable = (
                "inside a shard_map: call the tracker's update inside your shard_map instead, "
                "with axis_name set to OR the masks across devices"
            )
        if unobservable is None and body.param == "cond_jaxpr":
            unobservable = "in a while_loop's condition, which returns a bool only"
        return _Scope(
            path=(*here, body.param, body.index),
            contexts=(*scope.contexts, label) if label else scope.contexts,
            blocked=scope.blocked if scope.blocked is not None else self._blocked(eqn),
            stacking=stacking,
            outputs_clamp=outputs_clamp,
            unobservable=unobservable,
            source=scope.source
            or (
                internals.source_location(eqn)
                if name in _CACHED_BODIES and internals.library_body(body.jaxpr)
                else None
            ),
        )

    def _blocked(self, eqn) -> str | None:
        """Why sites under ``eqn`` cannot be rewritten, if so."""
        name = eqn.primitive.name
        if name in self.rebound:
            return None
        if name in (internals.CUSTOM_JVP, internals.CUSTOM_VJP):
            wrapped = internals.custom_rule_name(eqn) or "a function"
            return (
                f"inside {wrapped!r} with a derivative rule of its own ({name}), which encodes "
                "ReLU's derivative: left as it is"
            )
        return f"inside `{name}`, which the transforms do not re-bind through: left as it is"

    def _add(self, kind, x, eqn, read, here, scope, jaxpr, producers, uses) -> None:
        origins = read(x)
        reason = scope.blocked
        if reason is None:
            reason = _dtype_reason(x.aval.dtype)
        if reason is None and kind == "relu" and not internals.is_jax_nn_relu(eqn):
            reason = (
                f"{internals.custom_rule_name(eqn) or 'a function'!r} is a custom_jvp of your own "
                "around max(x, 0), with a derivative rule of its own: left as it is"
            )
        clamp = reason is None and _only_clamps(
            eqn.outvars[0], uses, jaxpr, scope.outputs_clamp, _is_statistic(x, producers, read)
        )
        if clamp:
            reason = (
                "a clamp: its output only reaches a square root, reciprocal square root, "
                "logarithm or a division's denominator (a variance or a norm), or, for a "
                "statistic, the function's outputs (a running variance): left as it is "
                "unless `sites=` names it"
            )
        stacked = [s for s in scope.stacking if s[2] & origins.keys()]
        self.found.append(
            _Found(
                kind=kind,
                x=x,
                origins=origins,
                source=scope.source or internals.source_location(eqn),
                stack=internals.name_stack(eqn),
                contexts=scope.contexts,
                reason=reason,
                path=here,
                operand=list(eqn.invars).index(x),
                iterations=stacked[-1][1] if stacked else None,
                stacked_by=stacked[-1][0] if stacked else None,
                clamp=clamp,
                differentiated=_differentiated(eqn, x, producers, uses, jaxpr.outvars),
                unobservable=scope.unobservable,
            )
        )


def _uses(jaxpr: jex.Jaxpr) -> dict[Any, list[tuple[jex.JaxprEqn, int]]]:
    """The equations using each variable (and each literal value: a static input appears
    as one literal per use), with the operand's position."""
    uses: dict[Any, list[tuple[jex.JaxprEqn, int]]] = {}
    for eqn in jaxpr.eqns:
        for k, atom in enumerate(eqn.invars):
            uses.setdefault(_key(atom), []).append((eqn, k))
    return uses


def _key(atom: Any) -> Any:
    if isinstance(atom, jex.Literal):
        value = np.asarray(atom.val)
        return ("literal", str(atom.aval), value.dtype.str, value.tobytes())
    return atom


def _dtype_reason(dtype: Any) -> str | None:
    """Why a ReLU of ``dtype`` is not a float site (None if it is one): every inexact real
    dtype jax.nn.relu accepts is one (float16, bfloat16, float8, float32, float64)."""
    if jnp.issubdtype(dtype, jnp.floating):
        return None
    if jnp.issubdtype(dtype, jnp.complexfloating):
        kind = "complex"
    elif jnp.issubdtype(dtype, jnp.bool_):
        kind = "boolean"
    elif jnp.issubdtype(dtype, jnp.integer):
        kind = "integer"
    else:
        kind = "non-float"
    return f"{kind} ReLU ({np.dtype(dtype).name}): left as it is"


def _only_clamps(var: Any, uses, jaxpr: jex.Jaxpr, outputs_clamp, statistic: bool) -> bool:
    """Whether every use of ``var`` leads only to a square root, reciprocal square root,
    logarithm or a division's denominator (through elementwise arithmetic, casts and jit
    calls), and at least one does: then a ReLU producing it clamps, it is no activation.
    When the ReLU's input is a ``statistic``, reaching the outputs of ``fn`` counts too (a
    running variance written back as state)."""
    pending, seen, reached = [(var, uses, jaxpr, outputs_clamp)], set(), False
    while pending:
        var, var_uses, where, escape = pending.pop()
        if id(var) in seen:
            continue
        seen.add(id(var))
        if var in where.outvars:
            k = where.outvars.index(var)
            if escape is None:  # an output of fn
                if not statistic:
                    return False
            elif not escape(k, statistic):
                return False
            reached = True
        for eqn, k in var_uses.get(_key(var), []):
            name = eqn.primitive.name
            if name in internals.CLAMP_ENDS or (name == internals.DIV and k == 1):
                reached = True
            elif name in internals.CLAMP_PASSTHROUGH:
                pending += [(out, var_uses, where, escape) for out in eqn.outvars]
            elif (body := internals.call_body(eqn)) is not None:

                def inner_escape(j, statistic, eqn=eqn, var_uses=var_uses, where=where, e=escape):
                    return _only_clamps(eqn.outvars[j], var_uses, where, e, statistic)

                pending.append((body.invars[k], _uses(body), body, inner_escape))
            else:
                return False
    return reached


def _is_statistic(x: Any, producers, read: Callable[[Any], Origins]) -> bool:
    """Whether ``x`` is computed from reductions (a mean, a variance) through elementwise
    arithmetic only, with no matmul or convolution on the way and no data reaching it
    unreduced (an input with no origins: a bare array argument, or a value past another
    site): a statistic, not a unit's pre-activation. Inputs with origins (parameters, a
    running statistic) may join it."""
    # Each entry: an atom, the producers of its jaxpr, and how that jaxpr's inputs map to
    # the atoms of its caller (a jit body's inputs are the call's operands).
    pending: list[tuple[Any, dict, dict]] = [(x, producers, {})]
    seen, reduced = set(), False
    while pending:
        atom, where, callers = pending.pop()
        if isinstance(atom, jex.Literal) or id(atom) in seen:
            continue
        seen.add(id(atom))
        if atom in callers:
            pending.append(callers[atom])
            continue
        eqn = where.get(atom)
        if eqn is None:  # an input of the site's jaxpr: unreduced data, or a parameter
            if not read(atom):
                return False
            continue
        name = eqn.primitive.name
        if name in internals.REDUCTIONS:
            reduced = True
        elif name in internals.CLAMP_PASSTHROUGH or name in internals.ELEMENTWISE:
            pending += [(a, where, callers) for a in eqn.invars]
        elif (body := internals.call_body(eqn)) is not None:
            inner = {v: e for e in body.eqns for v in e.outvars}
            outer = {v: (a, where, callers) for v, a in zip(body.invars, eqn.invars, strict=True)}
            pending.append((body.outvars[list(eqn.outvars).index(atom)], inner, outer))
        else:
            return False
    return reduced


def _differentiated(eqn: jex.JaxprEqn, x: Any, producers, uses, outvars) -> bool:
    """Whether the program also holds the site's derivative, taken inside the traced
    function: its input compared with 0 elsewhere (jax.nn.relu's rule, select(x > 0, g,
    0)), its output compared with anything (max's rule), or its predicate used again
    (where's rule). A comparison of your own on a ReLU's input counts too: the rule cannot
    tell them apart, and refusing is the safe side."""
    unused = all(_key(out) not in uses and out not in outvars for out in eqn.outvars)
    if isinstance(x, jex.Literal) and unused:
        # A constant ReLU whose value is dropped: JAX folded its derivative's comparison
        # into a constant (jax.grad of fn at a Python number), so it cannot be told; refuse.
        return True
    own_predicate = None
    if eqn.primitive.name != internals.CUSTOM_JVP:  # where: the select's predicate is its own
        candidates = [producers.get(a) for a in eqn.invars if not isinstance(a, jex.Literal)]
        own_predicate = next(
            (p for p in candidates if p is not None and p.primitive.name in internals.COMPARISONS),
            None,
        )
    for user, k in uses.get(_key(x), []):
        if user is eqn or user is own_predicate or user.primitive.name not in internals.COMPARISONS:
            continue
        if not internals.is_zero(user.invars[1 - k], producers):
            continue
        # x > 0 that only feeds a jnp.where(x > 0, x, 0) of its own is that ReLU's test.
        if (
            any(
                internals.where_relu_operand(mask_user, producers) is not x
                for mask_user, _ in uses.get(user.outvars[0], [])
            )
            or user.outvars[0] in outvars
        ):
            return True
    for out in eqn.outvars:
        if any(user.primitive.name in internals.COMPARISONS for user, _ in uses.get(out, [])):
            return True
    if own_predicate is not None:
        if len(uses.get(own_predicate.outvars[0], [])) > 1:
            return True
    return False


def _match(eqn, producers, patterns, zeros) -> tuple[str | None, Any]:
    if "relu" in patterns and internals.is_relu_custom_jvp(eqn):
        return "relu", eqn.invars[0]
    if "leaky_relu" in patterns and internals.is_leakyjax(eqn):
        return "leaky_relu", eqn.invars[0]
    if "maximum" in patterns:
        x = internals.max_zero_operand(eqn, producers, zeros)
        if x is not None:
            return "maximum", x
    if "where" in patterns:
        x = internals.where_relu_operand(eqn, producers)
        if x is not None:
            return "where", x
    return None, None


# --- Naming -------------------------------------------------------------------------------


def _combine(inputs: list[Origins], step: int) -> Origins:
    joined = sum(1 for d in inputs if d) >= 2
    result: Origins = {}
    for d in inputs:
        for leaf, t in d.items():
            t = step if joined and t == _NOT_JOINED else t
            result[leaf] = min(result.get(leaf, t), t)
    return result


@dataclasses.dataclass(frozen=True)
class TransparentKey:
    """The key of a pytree node that is no part of a site's name: the function a leakified
    function wraps (the sites of ``leakify(module)`` are named as the module's)."""

    def __str__(self) -> str:
        return ""


def _format_key(key: Any) -> str:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_keys(path: Iterable[Any]) -> list[str]:
    """A key path's parts as site names and parameter paths write them (a leakified
    module's own key, which adds nothing to the path, left out)."""
    return [_format_key(k) for k in path if not isinstance(k, TransparentKey)]


def _name(found: _Found, leaf_paths: Sequence[tuple | None], sizes: dict[Any, int]) -> str:
    last = max(found.origins.values(), default=None)
    candidates = [
        path for i, t in found.origins.items() if t == last and (path := leaf_paths[i]) is not None
    ]
    base = ""
    if candidates:
        # Parameters and data both feed a first layer; the parameters are the argument with
        # the most leaves (Flax's variables, Haiku's params, an Equinox model).
        group = _parameter_group({c[0] for c in candidates}, sizes)
        paths = sorted(tuple(path_keys(c[1])) for c in candidates if c[0] == group)
        # A Flax NNX Variable's array sits under `.value`: the parameter is the Variable.
        paths = [p[:-1] if p and p[-1] == "value" else p for p in paths]
        base = "/".join(_common_prefix(paths))
    if not base:
        base = found.stack or found.source or "relu"
    for context in found.contexts:
        base += f" [in {context}]"
    return base


def _parameter_group(groups: Iterable[Any], sizes: dict[Any, int]) -> Any:
    """Of ``groups`` (``"fn"``, ``(1, position)`` or ``(2, keyword)``: see
    ``_tracing._group_and_path``), the one with the most leaves; on a tie, the first in the
    call: ``fn`` itself, then the positional arguments in order, then the keywords."""

    def order(group: Any) -> tuple:
        if group == "fn":
            return (0, 0, "")
        where, key = group  # a SequenceKey (positions) or a DictKey (keywords)
        return (where, getattr(key, "idx", 0), str(key))

    return min(groups, key=lambda g: (-sizes[g], order(g)))


def _common_prefix(paths: list[tuple[str, ...]]) -> tuple[str, ...]:
    prefix = paths[0]
    for p in paths[1:]:
        n = 0
        while n < min(len(prefix), len(p)) and prefix[n] == p[n]:
            n += 1
        prefix = prefix[:n]
    if len(set(paths)) == 1 and len(prefix) > 1:
        prefix = prefix[:-1]  # one leaf (a kernel without bias): name its layer
    return prefix


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return result
