"""Dead-unit tracking for any JAX model: a pure-functional metric (init / update / merge)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from leakyjax import _jax_internals as internals
from leakyjax import _sites
from leakyjax import _validation as checks
from leakyjax._interpreter import Observer, Rule
from leakyjax._sites import Site, SiteSelection
from leakyjax._tracing import eager_key, jitted_front, select_sites, trace

_MAX_COUNT = np.uint32(np.iinfo(np.uint32).max)


class SiteState(NamedTuple):
    """What the tracker keeps per site: which units were ever active, on how many examples
    (per unit; saturates at 2**32 - 1), and the sum of each unit's absolute activation (the
    site's output, in float32), from which ReDo's dormancy score is computed (None for a
    tracker made with ``scores=False``).

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> tracker = lj.track_dead_units(jax.nn.relu)
      >>> _, state = tracker.update(tracker.init(jnp.ones((2, 3))), jnp.array([[1.0, -1, 0]]))
      >>> (site_state,) = state.values()
      >>> site_state.active, int(site_state.examples)
      (Array([ True, False, False], dtype=bool), 1)
    """

    active: jax.Array
    examples: jax.Array
    magnitude: jax.Array | None


class DeadUnits(NamedTuple):
    """The result for one site.

    Attributes:
      dead: bool per unit: its pre-activation was <= 0 on every example seen.
      fraction: the fraction of units that are dead (float32 scalar).
      units: the number of units.
      examples: the number of examples seen (per unit: batch times spatial positions).
      score: ReDo's dormancy score per unit (Sokar et al., 2023, as dopamine's
        ``estimate_neuron_score`` computes it): the unit's mean absolute activation divided by
        the mean of that over the site's units (plus 1e-9); 0 where nothing was seen or
        the whole site is zero. ``score <= tau`` is the tau-dormant mask; at tau = 0 it is
        ``dead`` for a ReLU site (once examples were seen). None for a tracker made with
        ``scores=False``.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> tracker = lj.track_dead_units(jax.nn.relu)
      >>> _, state = tracker.update(tracker.init(jnp.ones((2, 3))), jnp.array([[1.0, -1, 0]]))
      >>> (result,) = tracker.result(state).values()
      >>> result.dead, result.units
      (Array([False,  True,  True], dtype=bool), 3)
    """

    dead: jax.Array
    fraction: jax.Array
    units: int
    examples: jax.Array
    score: jax.Array | None


class DeadUnitTracker(NamedTuple):
    """The functions :func:`leakyjax.track_dead_units` returns (see there).

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> def layer(params, x):
      ...     return jax.nn.relu(x @ params["dense"]["w"])
      >>> params = {"dense": {"w": jnp.array([[1.0, -1.0]])}}
      >>> init, update, merge, result = lj.track_dead_units(layer)
      >>> state = init(params, jnp.ones((2, 1)))
      >>> _, a = update(state, params, jnp.ones((2, 1)))  # one shard of the data
      >>> _, b = update(state, params, -jnp.ones((2, 1)))  # another
      >>> result(a)["dense"].dead, result(merge(a, b))["dense"].dead
      (Array([False,  True], dtype=bool), Array([False, False], dtype=bool))
    """

    init: Callable[..., dict[str, SiteState]]
    update: Callable[..., tuple[Any, dict[str, SiteState]]]
    merge: Callable[[dict[str, SiteState], dict[str, SiteState]], dict[str, SiteState]]
    result: Callable[[dict[str, SiteState]], dict[str, DeadUnits]]


def _combine(a: SiteState, b: SiteState) -> SiteState:
    total = a.examples + b.examples
    return SiteState(
        a.active | b.active,
        jnp.where(total < a.examples, _MAX_COUNT, total),
        None if a.magnitude is None or b.magnitude is None else a.magnitude + b.magnitude,
    )


def track_dead_units(
    fn: Callable,
    *,
    unit_axis: int = -1,
    patterns: Sequence[str] = ("relu", "leaky_relu"),
    sites: SiteSelection = None,
    axis_name: Any = None,
    scores: bool = True,
) -> DeadUnitTracker:
    r"""Finds the dead units of any JAX model over a data set, without editing it.

    A unit is dead when its pre-activation is :math:`\le 0` on every example seen: a ReLU
    passes it no gradient, so it never learns again (NaN counts as alive, as in
    :func:`leakyjax.dead_units`). The tracker watches every ReLU of ``fn`` (and every
    :func:`leakyjax.leaky_relu`, so models already using leakyjax, or transformed by
    :func:`leakyjax.leakify`, work too) and is a pure-functional metric, as in optax:

    - ``init(*args, **kwargs)`` returns the state: per site name, a :class:`SiteState`
      (``active``, a bool per unit, all False; ``examples``, 0; ``magnitude``, the sum
      of absolute activations per unit, 0, or None without ``scores``);
    - ``update(state, *args, **kwargs)`` runs ``fn(*args, **kwargs)`` and returns ``(its
      output, the new state)``. It is jit-able and grad-safe: in a training step, use it
      through ``jax.value_and_grad(lambda p: tracker.update(state, p, x), has_aux=True)``.
      Inside ``lax.scan`` the state ORs over iterations; with ``axis_name`` (under
      ``vmap``, ``shard_map`` or ``pmap``), across that axis;
    - ``merge(a, b)`` ORs two states (from two data shards or processes);
    - ``result(state)`` gives per site a :class:`DeadUnits` (``dead``, ``fraction``,
      ``units``, ``examples``, and ReDo's dormancy ``score``).

    Args:
      fn: the model, as for :func:`leakyjax.leakify`.
      unit_axis: the axis of a pre-activation that indexes units: -1 for (batch, features)
        and NHWC (channels); 1 for NCHW. Every other axis is an example axis.
      patterns: as for :func:`leakyjax.relu_sites`.
      sites: which sites to track (None: all), as for :func:`leakyjax.leakify`.
      axis_name: a named axis (or tuple of them) to OR the observations over.
      scores: whether to keep the sums of absolute activations from which ``result`` gives
        ReDo's dormancy ``score``. Without them the state is a bool and a count per unit,
        each update skips one reduction per site, and ``score`` is None.

    Returns:
      A ``DeadUnitTracker(init, update, merge, result)``.

    Example:
      >>> import jax, jax.numpy as jnp, leakyjax as lj
      >>> def layer(params, x):
      ...     return jax.nn.relu(x @ params["dense"]["w"])
      >>> params = {"dense": {"w": jnp.array([[1.0, -1.0, 0.0]])}}
      >>> tracker = lj.track_dead_units(layer)
      >>> state = tracker.init(params, jnp.ones((4, 1)))
      >>> for batch in (jnp.ones((4, 1)), -jnp.ones((4, 1))):
      ...     _, state = jax.jit(tracker.update)(state, params, batch)
      >>> r = tracker.result(state)["dense"]
      >>> r.dead, float(r.fraction), int(r.examples)
      (Array([False, False,  True], dtype=bool), 0.3333333432674408, 8)
    """
    checks.check_fn("track_dead_units", fn)
    checks.check_int("track_dead_units", "unit_axis", unit_axis)
    _check_axis_name(axis_name)
    checks.check_bool("track_dead_units", "scores", scores)
    return _Tracker(
        fn,
        unit_axis,
        checks.check_patterns("track_dead_units", patterns, tuple(_sites.PATTERNS)),
        checks.check_sites("track_dead_units", sites),
        axis_name,
        scores,
    ).functions()


class _Tracker:
    """The tracker's configuration and the functions built on it."""

    def __init__(self, fn, unit_axis, patterns, selection, axis_name, scores) -> None:
        self.fn = fn
        self.scores = scores
        self.unit_axis = unit_axis
        self.patterns = patterns
        self.selection = selection
        self.axis_name = axis_name
        self.cache: dict[Any, Any] = {}  # rewritten jit bodies: see _interpreter.Rule
        self.compiled: dict[Any, Any] = {}  # eager updates of a jitted body: see eager_key
        # fn made by jax.jit: eager updates go through a jax.jit of the traced update, with
        # fn's static arguments (donating none: the tracker only observes), so that JAX's C++
        # dispatch keys and runs them as it does fn's calls (see leakify).
        self.front = jitted_front(fn, self.named_update(fn), leading=1, donate=False)

    def named_update(self, fn: Callable) -> Callable[..., tuple[Any, dict]]:
        """The traced update, named and signed as ``fn`` with ``state`` first (so JAX's
        messages about an argument name the user's function and parameter)."""

        def update(state: dict[str, SiteState], *args: Any, **kwargs: Any) -> tuple[Any, dict]:
            return self.traced_update(state, args, kwargs)

        update.__qualname__ = f"track_dead_units({checks.describe_fn(fn)}).update"
        try:
            signature = inspect.signature(fn)
            state = inspect.Parameter("state", inspect.Parameter.POSITIONAL_ONLY)
            cast(Any, update).__signature__ = signature.replace(
                parameters=[state, *signature.parameters.values()]
            )
        except (TypeError, ValueError):  # no signature, or a parameter named "state"
            pass
        return update

    def functions(self) -> DeadUnitTracker:
        return DeadUnitTracker(self.init, self.update, self.merge, self.result)

    def tracked(self, args: tuple, kwargs: dict, call: str) -> tuple[Any, list[Site]]:
        """``fn`` traced at the arguments, and the sites it tracks there (each checked to
        have a unit axis); a warning lists the selected sites it cannot observe."""
        traced = trace(self.fn, args, kwargs, self.patterns)
        chosen = select_sites("track_dead_units", traced.sites, self.selection)
        unobservable = [s for s in chosen if s.unobservable is not None]
        if unobservable:
            listing = "; ".join(f"{s.name} ({s.unobservable})" for s in unobservable)
            checks.warn(f"track_dead_units: {len(unobservable)} site(s) not tracked: {listing}")
        sites = [s for s in chosen if s.unobservable is None]
        for site in sites:
            self.units(site, call)
        return traced, sites

    def units(self, site: Site, call: str) -> int:
        if not site.shape:
            raise ValueError(
                f"track_dead_units.{call}: site {site.name!r} applies a ReLU to a scalar; it "
                "has no unit axis. Leave it out with `sites=`."
            )
        axis = checks.check_axis(
            f"track_dead_units.{call} (site {site.name!r}, shape {site.shape})",
            "unit_axis",
            self.unit_axis,
            len(site.shape),
        )
        return site.shape[axis]

    def empty(self, site: Site) -> SiteState:
        rows = () if site.iterations is None else (site.iterations,)
        units = (*rows, self.units(site, "update"))
        magnitude = jnp.zeros(units, jnp.float32) if self.scores else None
        return SiteState(jnp.zeros(units, bool), jnp.zeros(rows, jnp.uint32), magnitude)

    def observe(self, site: Site, eqn: jex.JaxprEqn, invals: list[Any]) -> tuple[list, Any]:
        x = invals[site.operand]
        axis = self.unit_axis % x.ndim
        others = tuple(a for a in range(x.ndim) if a != axis)
        outs = internals.bind(eqn, invals)
        active = jnp.any(~(x <= 0), axis=others)  # NaN counts as alive
        examples = min(math.prod(x.shape[a] for a in others), int(_MAX_COUNT))  # saturates
        magnitude = None
        if self.scores:
            magnitude = jnp.sum(jnp.abs(outs[0].astype(jnp.float32)), axis=others)
        observation = SiteState(active, jnp.asarray(examples, jnp.uint32), magnitude)
        if self.axis_name is not None:
            observation = SiteState(
                jax.lax.psum(observation.active.astype(jnp.int32), self.axis_name) > 0,
                jax.lax.psum(observation.examples, self.axis_name),
                None if magnitude is None else jax.lax.psum(magnitude, self.axis_name),
            )
        return outs, observation

    def init(self, *args: Any, **kwargs: Any) -> dict[str, SiteState]:
        traced, sites = self.tracked(args, kwargs, "init")
        if not traced.sites:
            checks.warn("track_dead_units: found no ReLU to track; relu_sites lists what it finds")
        return {s.name: self.empty(s) for s in sites}

    def update(self, state: dict[str, SiteState], *args: Any, **kwargs: Any) -> tuple[Any, dict]:
        if self.front is not None and internals.eager():
            try:
                return self.front(state, *args, **kwargs)
            except TypeError:
                checks.check_no_shape_structs("track_dead_units.update", args, kwargs)
                raise
        checks.check_no_shape_structs("track_dead_units.update", args, kwargs)
        return self.traced_update(state, args, kwargs, eager_key(self.fn, args, kwargs))

    def traced_update(
        self, state: dict[str, SiteState], args: tuple, kwargs: dict, eager: Any = None
    ) -> tuple[Any, dict]:
        """``update``, from the compiled programs' cache or by tracing ``fn``."""
        if eager is not None:
            state_key = (
                jax.tree_util.tree_structure(state),
                tuple((np.shape(x), jnp.result_type(x)) for x in jax.tree_util.tree_leaves(state)),
            )
            entry = self.compiled.get((eager[0], state_key))
            if entry is not None:
                program, out_tree = entry
                out, new_state = program(state, *eager[1])
                return jax.tree_util.tree_unflatten(out_tree, out), new_state
        traced, sites = self.tracked(args, kwargs, "update")
        _check_state("update", "state", state, {s.name: self.empty(s) for s in sites})
        rule = Rule(
            sites={s.path: s for s in sites},
            apply=self.observe,
            observer=Observer(empty=self.empty, combine=_combine),
            cache=self.cache,
        )
        if len(self.cache) > 256:
            self.cache.clear()

        def run(state: dict, inputs: Any = None) -> tuple[Any, dict]:
            out, observed = traced.run(rule, inputs)
            new_state = {
                name: _combine(SiteState(*old), observed[name]) if name in observed else old
                for name, old in state.items()
            }
            return out, new_state

        if eager is not None and traced.one_jit:
            # fn is a jitted function: eager updates get a jitted program too (see leakify).
            def flat(state: dict, *inputs: Any) -> tuple[Any, dict]:
                out, new_state = run(state, inputs)
                return jax.tree_util.tree_leaves(out), new_state

            program = jax.jit(flat)
            if len(self.compiled) > 256:
                self.compiled.clear()
            self.compiled[(eager[0], state_key)] = (program, traced.out_tree)
            out, new_state = program(state, *traced.inputs)
            return jax.tree_util.tree_unflatten(traced.out_tree, out), new_state
        return run(state)

    def merge(self, a: dict[str, SiteState], b: dict[str, SiteState]) -> dict[str, SiteState]:
        _check_state("merge", "a", a, None, self.scores)
        _check_state("merge", "b", b, a)
        return {name: _combine(SiteState(*a[name]), SiteState(*b[name])) for name in a}

    def result(self, state: dict[str, SiteState]) -> dict[str, DeadUnits]:
        _check_state("result", "state", state, None, self.scores)
        out = {}
        for name, (active, examples, magnitude) in state.items():
            active, examples = jnp.asarray(active), jnp.asarray(examples)
            seen = (examples > 0)[..., None]
            # No example seen is not "all dead": a unit is dead once it has been seen, and
            # only ever <= 0 (lj.dead_units agrees on an empty batch).
            dead = ~active & seen
            out[name] = DeadUnits(
                dead,
                jnp.mean(dead, axis=-1, dtype=jnp.float32),
                int(dead.shape[-1]),
                examples,
                None if magnitude is None else _dormancy(magnitude, examples, seen),
            )
        return out


def _dormancy(magnitude: Any, examples: jax.Array, seen: jax.Array) -> jax.Array:
    # dopamine's estimate_neuron_score: mean absolute activation per unit over the examples,
    # divided by its mean over the units plus 1e-9.
    mean = jnp.asarray(magnitude, jnp.float32) / jnp.maximum(examples, 1)[..., None]
    score = mean / (jnp.mean(mean, axis=-1, keepdims=True) + 1e-9)
    return jnp.where(seen, score, 0.0)


def _check_axis_name(axis_name: Any) -> None:
    names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
    if axis_name is not None and not (names and all(isinstance(n, str) for n in names)):
        raise TypeError(
            "track_dead_units: `axis_name` must be None, a named axis (a str, as given to "
            f"jax.vmap, shard_map or pmap) or a tuple of them, got {checks.describe(axis_name)}"
        )


def _check_state(
    call: str, name: str, state: Any, expected: dict[str, Any] | None, scores: bool | None = None
) -> None:
    """``state`` must be a tracker state; with ``expected``, with its sites, shapes and
    dtypes; with ``scores``, with magnitudes exactly when the tracker keeps scores."""
    where = f"track_dead_units.{call}: `{name}`"
    if not isinstance(state, dict) or not all(
        isinstance(s, (tuple, list)) and len(s) == 3 for s in state.values()
    ):
        raise TypeError(
            f"{where} must be a tracker state (a dict of SiteState, from init), got "
            f"{checks.describe(state)}"
        )
    for site, value in state.items():
        if scores is not None and (value[2] is None) == scores:
            raise ValueError(
                f"{where}[{site!r}].magnitude is {'None' if scores else 'an array'}: a state "
                f"from a tracker made with scores={not scores}, and this one was made with "
                f"scores={scores}"
            )
    if expected is None:
        return
    if sorted(state) != sorted(expected):
        raise ValueError(
            f"{where} must be a state from this tracker's init, with sites "
            f"{sorted(expected)}; got {sorted(state)}"
        )
    for site, value in state.items():
        for field, got, want in zip(SiteState._fields, value, expected[site], strict=True):
            if (got is None) != (want is None):
                raise ValueError(
                    f"{where}[{site!r}].{field} must be "
                    + ("None: the tracker keeps no scores" if want is None else "an array")
                    + " (a state from a tracker made with the same `scores`), got "
                    + checks.describe(got)
                )
            if got is None:
                continue
            shape, dtype = np.shape(got), jnp.result_type(got)
            if shape != np.shape(want) or dtype != want.dtype:
                raise ValueError(
                    f"{where}[{site!r}].{field} must have shape {np.shape(want)} and dtype "
                    f"{np.dtype(want.dtype).name} (from a model of the same width), got shape "
                    f"{shape} and dtype {np.dtype(dtype).name}"
                )
