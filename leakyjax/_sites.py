"""Finding and naming the ReLU sites of a jaxpr: a pass that returns plain ``Site`` records."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.extend.core as jex
import numpy as np

from leakyjax import _jax_internals as ji

# The patterns a site can match, and what each is.
PATTERNS = {
    "relu": "jax.nn.relu (what Flax, Haiku and Equinox use): a custom_jvp of max(x, 0)",
    "maximum": "jnp.maximum(x, 0) outside a ReLU",
    "where": "jnp.where(x > 0, x, 0)",
    "leaky_relu": "leakyjax's own leaky_relu, prelu and rrelu",
}

# Sub-jaxprs whose ReLUs the transforms re-bind through (see _interpreter.HANDLERS).
SUPPORTED = frozenset(
    {ji.JIT, ji.CLOSED_CALL, ji.CHECKPOINT, ji.SCAN, ji.COND, ji.WHILE, ji.SHARD_MAP}
)


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
      rewritable: whether :func:`leakyjax.leakify` can rewrite it.
      reason: why not, when it cannot (an integer ReLU, inside a custom derivative rule or
        an unsupported primitive); None otherwise.

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
    # Where the site is: equation indices and sub-jaxpr keys from the top-level jaxpr; and
    # which of its equation's inputs is the pre-activation.
    path: tuple[Any, ...] = dataclasses.field(default=(), repr=False, compare=False)
    operand: int = dataclasses.field(default=0, repr=False, compare=False)


def find(
    closed: jex.ClosedJaxpr, leaf_paths: Sequence[tuple | None], patterns: Sequence[str]
) -> list[Site]:
    """The sites of ``closed`` matching ``patterns``, named from ``leaf_paths``: per input,
    ``(argument, key path)`` (None for an input that names nothing, like a data array)."""
    raw: list[tuple[str, dict]] = []
    origins = [{i: _UNJOINED} if p is not None else {} for i, p in enumerate(leaf_paths)]
    _walk(closed.jaxpr, origins, (), (), None, tuple(patterns), raw, [0])
    sizes: dict[Any, int] = {}
    for p in leaf_paths:
        if p is not None:
            sizes[p[0]] = sizes.get(p[0], 0) + 1
    names = _unique([_name(info, leaf_paths, sizes) for _, info in raw])
    return [
        Site(
            name=name,
            kind=kind,
            shape=info["shape"],
            dtype=info["dtype"],
            source=info["source"],
            rewritable=info["reason"] is None,
            reason=info["reason"],
            path=info["path"],
            operand=info["operand"],
        )
        for name, (kind, info) in zip(names, raw, strict=True)
    ]


# Origins: which inputs of the traced function reach a value without passing through
# another site (so a layer's pre-activation is named after its own parameters), each with
# the step at which it joined the data flow: a parameter joins when an equation combines it
# with another origin (a bias joins the matmul's output after the kernel joined the data;
# a kernel joins a normalization's output). The ones that joined last name the site.
_UNJOINED = -1


def _combine(inputs: list[dict[int, int]], step: int) -> dict[int, int]:
    joined = sum(1 for d in inputs if d) >= 2
    result: dict[int, int] = {}
    for d in inputs:
        for leaf, t in d.items():
            t = step if joined and t == _UNJOINED else t
            result[leaf] = min(result.get(leaf, t), t)
    return result


def _walk(jaxpr, origins, path, contexts, blocked, patterns, out, clock) -> list[dict]:
    """Adds the sites of ``jaxpr`` to ``out``; returns the origins of its outputs.

    ``origins[i]`` are the origins of ``jaxpr``'s invar i; ``blocked`` is why sites here
    cannot be rewritten, if so; ``clock`` counts the equations walked.
    """
    env: dict[Any, dict] = dict(zip(jaxpr.invars, origins, strict=True))
    producers = {v: e for e in jaxpr.eqns for v in e.outvars}

    def read(atom):
        return env.get(atom, {}) if not isinstance(atom, jex.Literal) else {}

    for i, eqn in enumerate(jaxpr.eqns):
        here = (*path, i)
        kind, x = _match(eqn, producers, patterns)
        if kind is not None:
            reason = blocked
            if reason is None and not np.issubdtype(x.aval.dtype, np.floating):
                reason = f"integer ReLU ({x.aval.dtype}): left as it is"
            out.append(
                (
                    kind,
                    dict(
                        origins=read(x),
                        shape=tuple(x.aval.shape),
                        dtype=np.dtype(x.aval.dtype),
                        source=ji.source_location(eqn),
                        stack=ji.name_stack(eqn),
                        contexts=contexts,
                        reason=reason,
                        path=here,
                        operand=list(eqn.invars).index(x),
                    ),
                )
            )
            for v in eqn.outvars:  # the next layer's name comes from its own parameters
                env[v] = {}
            continue
        clock[0] += 1
        all_in = _combine([read(v) for v in eqn.invars], clock[0])
        outs: list[dict] | None = None
        for body in ji.bodies(eqn):
            inner = body.jaxpr.jaxpr if isinstance(body.jaxpr, jex.ClosedJaxpr) else body.jaxpr
            inner_origins = [
                dict(read(eqn.invars[j])) if j is not None else all_in for j in body.inputs
            ]
            label = ji.CONTEXT_LABEL.get(eqn.primitive.name)
            body_outs = _walk(
                inner,
                inner_origins,
                (*here, body.param, body.index),
                (*contexts, label) if label else contexts,
                blocked if blocked is not None else _blocked_reason(eqn),
                patterns,
                out,
                clock,
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


def _match(eqn, producers, patterns) -> tuple[str | None, Any]:
    if "relu" in patterns and ji.is_relu_custom_jvp(eqn):
        return "relu", eqn.invars[0]
    if "leaky_relu" in patterns and ji.is_leakyjax(eqn):
        return "leaky_relu", eqn.invars[0]
    if "maximum" in patterns:
        x = ji.max_zero_operand(eqn, producers)
        if x is not None:
            return "maximum", x
    if "where" in patterns:
        x = ji.where_relu_operand(eqn, producers)
        if x is not None:
            return "where", x
    return None, None


def _blocked_reason(eqn) -> str | None:
    name = eqn.primitive.name
    if name in SUPPORTED:
        return None
    if name in (ji.CUSTOM_JVP, ji.CUSTOM_VJP):
        return (
            f"inside {ji.custom_rule_name(eqn) or 'a function'!r} with a derivative rule of its "
            f"own ({name}), which encodes ReLU's derivative: left as it is"
        )
    return f"inside `{name}`, which the transforms do not re-bind through: left as it is"


# --- Naming -------------------------------------------------------------------------------


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


def _name(info: dict, leaf_paths: Sequence[tuple | None], sizes: dict[Any, int]) -> str:
    origins = info["origins"]
    last = max(origins.values(), default=None)
    candidates = [leaf_paths[i] for i, t in origins.items() if t == last]
    base = ""
    if candidates:
        # Parameters and data both feed a first layer; the parameters are the argument with
        # the most leaves (Flax's variables, Haiku's params, an Equinox model).
        group = max({c[0] for c in candidates}, key=lambda g: (sizes[g], str(g)))
        paths = sorted(tuple(_format_key(k) for k in c[1]) for c in candidates if c[0] == group)
        # A Flax NNX Variable's array sits under `.value`: the parameter is the Variable.
        paths = [p[:-1] if p and p[-1] == "value" else p for p in paths]
        base = "/".join(_common_prefix(paths))
    if not base:
        base = info["stack"] or info["source"] or "relu"
    for context in info["contexts"]:
        base += f" [in {context}]"
    return base


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
