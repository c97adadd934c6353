"""Evaluating a jaxpr under the caller's trace, with a callback at each selected site.

``evaluate`` binds every equation again, in order, under whatever trace is current (so
``jit``, ``grad``, ``vmap``... of the result compose as they would with the original
function). At a selected site it calls the rule instead (``leakify``: a Leaky ReLU;
tracking: the same ReLU plus an observation of its input). Higher-order primitives with
selected sites inside get a handler from ``HANDLERS``, keyed by primitive name: their bodies
are evaluated the same way and bound again with the primitive's own parameters, extended
to carry the observations out when there are any.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend.core as jex

from leakyjax import _jax_internals as internals
from leakyjax._sites import Site

# An observation per site name: a pytree of arrays that combines across calls.
Observations = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Observer:
    """How observations combine: a monoid, ``combine`` with identity ``empty(site)``. An
    observation is a pytree of arrays; it crosses a primitive's boundary as one."""

    empty: Callable[[Site], Any]
    combine: Callable[[Any, Any], Any]


@dataclasses.dataclass(frozen=True)
class Rule:
    """What happens at the selected sites: ``apply(site, eqn, invals)`` returns the site's
    outputs and its observation (None for a rule without ``observer``)."""

    sites: dict[tuple, Site]
    apply: Callable[[Site, jex.JaxprEqn, list[Any]], tuple[list[Any], Any]]
    observer: Observer | None = None
    # Rewritten jit bodies, by JAX's cached jaxpr of the original and where it is: the same
    # body object on each call, so jit's compile cache hits (the owner keeps this dict).
    cache: dict[Any, Any] | None = dataclasses.field(default=None, compare=False)

    def sites_under(self, path: tuple) -> list[Site]:
        n = len(path)
        return sorted((s for p, s in self.sites.items() if p[:n] == path), key=lambda s: s.name)

    def observed_under(self, path: tuple) -> list[Site]:
        """The sites under ``path`` whose observations cross its boundary (none for a rule
        that observes nothing)."""
        return self.sites_under(path) if self.observer is not None else []

    def combined(self, a: Observations, b: Observations) -> Observations:
        """``a`` and ``b`` combined site by site (a site in one only is taken as it is)."""
        out = dict(a)
        for name, value in b.items():
            if name in out:
                assert self.observer is not None  # only a rule that observes has any
                value = self.observer.combine(out[name], value)
            out[name] = value
        return out

    def filled(self, sites: list[Site], observed: Observations) -> Observations:
        """The observations of ``sites``, the identity for those not in ``observed``: the
        same pytree structure whatever was observed (what a loop carries, a branch
        returns)."""
        out = {}
        for site in sites:
            if site.name in observed:
                out[site.name] = observed[site.name]
            else:
                assert self.observer is not None  # ``sites`` is empty otherwise
                out[site.name] = self.observer.empty(site)
        return out


def evaluate(
    closed: jex.ClosedJaxpr | jex.Jaxpr, args: Sequence[Any], rule: Rule, path: tuple = ()
) -> tuple[list[Any], Observations]:
    """Binds ``closed``'s equations on ``args``; returns the outputs and the observations."""
    if isinstance(closed, jex.ClosedJaxpr):
        jaxpr, consts = closed.jaxpr, closed.consts
    else:
        jaxpr, consts = closed, []
    env: dict[Any, Any] = {}
    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    observed: Observations = {}

    def read(atom: Any) -> Any:
        return atom.val if isinstance(atom, jex.Literal) else env[atom]

    for i, eqn in enumerate(jaxpr.eqns):
        here = (*path, i)
        invals = [read(v) for v in eqn.invars]
        site = rule.sites.get(here)
        handler = HANDLERS.get(eqn.primitive.name)
        if site is not None:
            outs, observation = rule.apply(site, eqn, invals)
            if observation is not None:
                observed = rule.combined(observed, {site.name: observation})
        elif handler is not None and rule.sites_under(here):
            outs, inner = handler(eqn, invals, rule, here)
            observed = rule.combined(observed, inner)
        else:
            outs = internals.bind(eqn, invals)
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars], observed


# --- Handlers of the higher-order primitives ---------------------------------------------


def _retraced(body: Any, rule: Rule, path: tuple, name: str, observe: list[Site]) -> Any:
    """``body`` evaluated with ``rule`` and traced again, with the leaves of the
    observations of ``observe`` appended to its outputs (see ``_observations``)."""

    def run(*args: Any) -> list[Any]:
        outs, observed = evaluate(body, args, rule, path)
        return outs + jax.tree_util.tree_leaves(rule.filled(observe, observed))

    return internals.retrace(run, internals.invar_avals(body), name)


def _observations(rule: Rule, observe: list[Site], leaves: Sequence[Any]) -> Observations:
    """The observations of ``observe`` from the leaves a retraced body appended."""
    structure = jax.tree_util.tree_structure(rule.filled(observe, {}))
    return jax.tree_util.tree_unflatten(structure, list(leaves))


def _call(param: str) -> Callable:
    """jit and closed_call: the body is traced again and bound with the same parameters
    (shardings, donation, name...), observations as extra outputs. The traced body is kept
    in ``rule.cache``, so the jit's compiled program is reused across calls."""

    def handler(eqn, invals, rule, path):
        here = (*path, param, None)
        observe = rule.observed_under(here)
        original = eqn.params[param]
        key = (id(original), here, tuple(s.name for s in observe))
        entry = rule.cache.get(key) if rule.cache is not None else None
        if entry is not None and entry[0] is original:
            body = entry[1]
        else:
            name = str(eqn.params.get("name", eqn.primitive.name))
            body = _retraced(original, rule, here, name, observe)
            if rule.cache is not None:
                rule.cache[key] = (original, body)
        extra = len(body.jaxpr.outvars) - len(eqn.outvars)
        outs = internals.bind(eqn, invals, **{param: body}, **internals.extra_outputs(eqn, extra))
        n = len(eqn.outvars)
        return outs[:n], _observations(rule, observe, outs[n:])

    return handler


def _checkpoint(eqn, invals, rule, path):
    # jax.checkpoint's body is an open jaxpr: constants become leading inputs.
    here = (*path, "jaxpr", None)
    observe = rule.observed_under(here)
    body = _retraced(eqn.params["jaxpr"], rule, here, "checkpoint", observe)
    jaxpr, consts = internals.without_consts(body)
    outs = internals.bind(eqn, [*consts, *invals], jaxpr=jaxpr)
    n = len(eqn.outvars)
    return outs[:n], _observations(rule, observe, outs[n:])


def _scan(eqn, invals, rule, path):
    # Bound again through lax.scan (its parameters differ between JAX versions), with the
    # body's constants closed over. Observations ride along as extra carries, combined over
    # the iterations; those of sites whose layers this scan stacks (Site.stacked_by) come
    # out as extra stacked outputs instead, one row per iteration.
    here = (*path, "jaxpr", None)
    num_consts, num_carry = internals.scan_layout(eqn)
    observe = rule.observed_under(here)
    per_iteration = [s for s in observe if s.stacked_by == path]
    carried_sites = [s for s in observe if s.stacked_by != path]
    body = eqn.params["jaxpr"]
    consts = invals[:num_consts]
    init, xs = invals[num_consts : num_consts + num_carry], invals[num_consts + num_carry :]

    def step(carry: tuple, x: list) -> tuple:
        carry, carried = carry
        outs, observed = evaluate(body, [*consts, *carry, *x], rule, here)
        carried = rule.filled(carried_sites, rule.combined(carried, observed))
        rows = rule.filled(per_iteration, observed)
        return (outs[:num_carry], carried), (outs[num_carry:], rows)

    with internals.equation_context(eqn):
        (carry, carried), (ys, rows) = jax.lax.scan(
            step, (init, rule.filled(carried_sites, {})), xs, **internals.scan_options(eqn)
        )
    return [*carry, *ys], {**carried, **rows}


def _while(eqn, invals, rule, path):
    # Bound again through lax.while_loop, as scan is. A rule observes no site in the
    # condition: its only output is the bool.
    cond_nconsts, body_nconsts = internals.while_layout(eqn)
    cond_path, body_path = (*path, "cond_jaxpr", None), (*path, "body_jaxpr", None)
    observe = rule.observed_under(body_path)
    cond_consts = invals[:cond_nconsts]
    body_consts = invals[cond_nconsts : cond_nconsts + body_nconsts]
    init = invals[cond_nconsts + body_nconsts :]

    def cond_fun(carry: tuple) -> Any:
        return evaluate(eqn.params["cond_jaxpr"], [*cond_consts, *carry[0]], rule, cond_path)[0][0]

    def body_fun(carry: tuple) -> tuple:
        carry, carried = carry
        outs, observed = evaluate(eqn.params["body_jaxpr"], [*body_consts, *carry], rule, body_path)
        return outs, rule.filled(observe, rule.combined(carried, observed))

    with internals.equation_context(eqn):
        carry, carried = jax.lax.while_loop(
            cond_fun, body_fun, (list(init), rule.filled(observe, {}))
        )
    return list(carry), carried


def _cond(eqn, invals, rule, path):
    # Every branch returns the observations of all branches' sites (the identity for those
    # it does not contain), so the taken branch's are what comes out.
    observe = rule.observed_under(path)
    branches = tuple(
        _retraced(branch, rule, (*path, "branches", i), "cond_branch", observe)
        for i, branch in enumerate(eqn.params["branches"])
    )
    outs = internals.bind(eqn, invals, branches=branches)
    n = len(eqn.outvars)
    return outs[:n], _observations(rule, observe, outs[n:])


def _shard_map(eqn, invals, rule, path):
    # Observations do not cross a shard_map (a rule that observes selects no site inside
    # one: Site.unobservable says why).
    here = (*path, "jaxpr", None)

    def body(*args: Any) -> tuple[Any, ...]:
        return tuple(evaluate(eqn.params["jaxpr"], args, rule, here)[0])

    with internals.equation_context(eqn):
        return list(internals.shard_map_call(eqn, body)(*invals)), {}


HANDLERS: dict[str, Callable[..., tuple[list[Any], Observations]]] = {
    internals.JIT: _call("jaxpr"),
    internals.CLOSED_CALL: _call("call_jaxpr"),
    internals.CHECKPOINT: _checkpoint,
    internals.SCAN: _scan,
    internals.WHILE: _while,
    internals.COND: _cond,
    internals.SHARD_MAP: _shard_map,
}
