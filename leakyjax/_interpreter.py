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

from leakyjax import _jax_internals as ji
from leakyjax._sites import SUPPORTED, Site

# An observation per site name: a pytree of arrays that combines across calls.
Observations = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Observer:
    """How observations combine (a monoid: ``combine`` with identity ``empty(site)``) and
    cross a primitive's boundary (``flatten`` to ``arity`` arrays, ``unflatten`` back)."""

    empty: Callable[[Site], Any]
    combine: Callable[[Any, Any], Any]
    arity: int
    flatten: Callable[[Any], list[Any]]
    unflatten: Callable[[list[Any]], Any]


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

    def below(self, path: tuple) -> list[Site]:
        n = len(path)
        return sorted((s for p, s in self.sites.items() if p[:n] == path), key=lambda s: s.name)


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
                _merge_into(observed, {site.name: observation}, rule)
        elif handler is not None and rule.below(here):
            outs, inner = handler(eqn, invals, rule, here)
            _merge_into(observed, inner, rule)
        else:
            outs = ji.bind(eqn, invals)
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars], observed


def _merge_into(observed: Observations, new: Observations, rule: Rule) -> None:
    for name, value in new.items():
        if name in observed:
            assert rule.observer is not None
            value = rule.observer.combine(observed[name], value)
        observed[name] = value


# --- Observations as flat lists (to cross a primitive's boundary) -------------------------


# ``sites`` is empty for a rule without an observer: nothing crosses.


def _flat(rule: Rule, sites: list[Site], observed: Observations) -> list[Any]:
    out: list[Any] = []
    for site in sites:
        assert rule.observer is not None
        value = observed.get(site.name)
        out += rule.observer.flatten(value if value is not None else rule.observer.empty(site))
    return out


def _unflat(rule: Rule, sites: list[Site], flat: Sequence[Any]) -> Observations:
    observed, k = {}, 0
    for site in sites:
        assert rule.observer is not None
        n = rule.observer.arity
        observed[site.name] = rule.observer.unflatten(list(flat[k : k + n]))
        k += n
    return observed


def _observed_below(rule: Rule, path: tuple) -> list[Site]:
    """The sites under ``path`` whose observations cross its boundary."""
    return rule.below(path) if rule.observer is not None else []


# --- Handlers of the higher-order primitives ---------------------------------------------


def _retraced(body: Any, rule: Rule, path: tuple, name: str, observe: list[Site]) -> Any:
    """``body`` evaluated with ``rule`` and traced again, with the observations of
    ``observe`` appended to its outputs."""

    def run(*args: Any) -> list[Any]:
        outs, observed = evaluate(body, args, rule, path)
        return outs + _flat(rule, observe, observed)

    return ji.retrace(run, ji.invar_avals(body), name)


def _call(param: str) -> Callable:
    """jit and closed_call: the body is traced again and bound with the same parameters
    (shardings, donation, name...), observations as extra outputs. The traced body is kept
    in ``rule.cache``, so the jit's compiled program is reused across calls."""

    def handler(eqn, invals, rule, path):
        here = (*path, param, None)
        observe = _observed_below(rule, here)
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
        outs = ji.bind(eqn, invals, **{param: body}, **ji.extra_outputs(eqn, extra))
        n = len(eqn.outvars)
        return outs[:n], _unflat(rule, observe, outs[n:])

    return handler


def _checkpoint(eqn, invals, rule, path):
    # jax.checkpoint's body is an open jaxpr: constants become leading inputs.
    here = (*path, "jaxpr", None)
    observe = _observed_below(rule, here)
    body = _retraced(eqn.params["jaxpr"], rule, here, "checkpoint", observe)
    jaxpr, consts = ji.without_consts(body)
    outs = ji.bind(eqn, [*consts, *invals], jaxpr=jaxpr)
    n = len(eqn.outvars)
    return outs[:n], _unflat(rule, observe, outs[n:])


def _merged(rule: Rule, sites: list[Site], carried: Sequence[Any], observed: Observations) -> list:
    """The flat observations ``carried`` across iterations, combined with this iteration's."""
    state = _unflat(rule, sites, carried)
    _merge_into(state, {s.name: observed[s.name] for s in sites if s.name in observed}, rule)
    return _flat(rule, sites, state)


def _scan(eqn, invals, rule, path):
    # Bound again through lax.scan (its parameters differ between JAX versions), with the
    # body's constants closed over. Observations ride along as extra carries, combined over
    # the iterations; those of sites whose layers this scan stacks (Site.stacked_by) come
    # out as extra stacked outputs instead, one row per iteration.
    here = (*path, "jaxpr", None)
    num_consts, num_carry = ji.scan_layout(eqn)
    observe = _observed_below(rule, here)
    per_iteration = [s for s in observe if s.stacked_by == path]
    carried_sites = [s for s in observe if s.stacked_by != path]
    body = eqn.params["jaxpr"]
    consts = invals[:num_consts]
    init, xs = invals[num_consts : num_consts + num_carry], invals[num_consts + num_carry :]

    def step(carry: tuple, x: list) -> tuple:
        carry, carried = carry
        outs, observed = evaluate(body, [*consts, *carry, *x], rule, here)
        rows = _flat(rule, per_iteration, observed)
        return (outs[:num_carry], _merged(rule, carried_sites, carried, observed)), (
            outs[num_carry:],
            rows,
        )

    with ji.equation_context(eqn):
        (carry, carried), (ys, rows) = jax.lax.scan(
            step, (init, _flat(rule, carried_sites, {})), xs, **ji.scan_options(eqn)
        )
    observed = _unflat(rule, carried_sites, carried)
    observed.update(_unflat(rule, per_iteration, rows))
    return [*carry, *ys], observed


def _while(eqn, invals, rule, path):
    # Bound again through lax.while_loop, as scan is. Sites in the condition are evaluated
    # as they are (a rule observes none there: the condition's outputs are a bool only).
    cond_nconsts, body_nconsts = ji.while_layout(eqn)
    cond_path, body_path = (*path, "cond_jaxpr", None), (*path, "body_jaxpr", None)
    observe = _observed_below(rule, body_path)
    cond_consts = invals[:cond_nconsts]
    body_consts = invals[cond_nconsts : cond_nconsts + body_nconsts]
    init = invals[cond_nconsts + body_nconsts :]

    def cond_fun(carry: tuple) -> Any:
        return evaluate(eqn.params["cond_jaxpr"], [*cond_consts, *carry[0]], rule, cond_path)[0][0]

    def body_fun(carry: tuple) -> tuple:
        carry, carried = carry
        outs, observed = evaluate(eqn.params["body_jaxpr"], [*body_consts, *carry], rule, body_path)
        return outs, _merged(rule, observe, carried, observed)

    with ji.equation_context(eqn):
        carry, carried = jax.lax.while_loop(
            cond_fun, body_fun, (list(init), _flat(rule, observe, {}))
        )
    return list(carry), _unflat(rule, observe, carried)


def _cond(eqn, invals, rule, path):
    # Every branch returns the observations of all branches' sites (the identity for those
    # it does not contain), so the taken branch's are what comes out.
    observe = _observed_below(rule, path)
    branches = tuple(
        _retraced(branch, rule, (*path, "branches", i), "cond_branch", observe)
        for i, branch in enumerate(eqn.params["branches"])
    )
    outs = ji.bind(eqn, invals, branches=branches)
    n = len(eqn.outvars)
    return outs[:n], _unflat(rule, observe, outs[n:])


def _shard_map(eqn, invals, rule, path):
    # Observations do not cross a shard_map (a rule that observes selects no site inside
    # one: Site.unobservable says why).
    here = (*path, "jaxpr", None)

    def body(*args: Any) -> tuple[Any, ...]:
        return tuple(evaluate(eqn.params["jaxpr"], args, rule, here)[0])

    with ji.equation_context(eqn):
        return list(ji.shard_map_call(eqn, body)(*invals)), {}


HANDLERS: dict[str, Callable[..., tuple[list[Any], Observations]]] = {
    ji.JIT: _call("jaxpr"),
    ji.CLOSED_CALL: _call("call_jaxpr"),
    ji.CHECKPOINT: _checkpoint,
    ji.SCAN: _scan,
    ji.WHILE: _while,
    ji.COND: _cond,
    ji.SHARD_MAP: _shard_map,
}
# The site finder marks sites under any other primitive as left alone: the two lists agree.
assert set(HANDLERS) == SUPPORTED
