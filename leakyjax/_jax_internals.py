"""Every dependence of the transforms on JAX internals, in one place.

The transforms read jaxprs (``jax.make_jaxpr``) and re-bind their equations under the
caller's trace. Public APIs cover most of it (``jax.make_jaxpr``, ``jax.extend.core``); what
they do not cover is here, each with a comment: re-tracing a sub-jaxpr with its exact input
types, re-binding an equation with its source information, the parameter names of the
higher-order primitives, how ``jax.nn.relu`` is built, and source locations.

Checked on jax 0.8.0, 0.10.2 and 0.12.x. ``tests/test_jax_internals.py`` fails loudly when a
new JAX changes any of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.core
import jax.extend.core as jex
import numpy as np
from jax._src import api_util, core, sharding_impls, source_info_util
from jax._src import linear_util as lu
from jax._src.ad_checkpoint import remat_p as _remat_p
from jax._src.array import ArrayImpl as _ArrayImpl
from jax._src.interpreters import partial_eval as pe

P = jex.primitives

# The type of a concrete jax.Array, for a fast test on the eager path of a call; a traced
# value's type.
ArrayImpl = _ArrayImpl
Tracer = jax.core.Tracer

# leakyjax's own activation carries this name on its custom_jvp, so the tracker finds it.
MARKER = "leakyjax_leaky_relu"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# User-facing source locations (and JAX's own filtered tracebacks) skip leakyjax's files.
source_info_util.register_exclusion(_PACKAGE_DIR + os.sep)


# --- Calling as a jitted function is called --------------------------------------------

_JITTED = type(jax.jit(lambda: None))
_CALL_OPTIONS = ("static_argnums", "static_argnames", "donate_argnums", "donate_argnames")


def jit_call_options(fn: Any) -> dict[str, Any] | None:
    """For a function made by ``jax.jit``, the options that decide how a call of it binds its
    arguments (static and donated ones, by position and by name, as JAX resolved them from
    its signature) and, when given, its ``out_shardings``; None for anything else. JAX keeps
    them on the function, privately (``_jit_info``), and its C++ dispatch reads them from
    there; a copied or unpickled jitted function lacks them (None: it is then called as any
    other function is)."""
    info = getattr(fn, "_jit_info", None) if type(fn) is _JITTED else None
    if info is None:
        return None
    options: dict[str, Any] = {name: tuple(getattr(info, name)) for name in _CALL_OPTIONS}
    if any(leaf is not _UNSPECIFIED for leaf in info.out_shardings_leaves):
        options["out_shardings"] = jax.tree_util.tree_unflatten(
            info.out_shardings_treedef, info.out_shardings_leaves
        )
    return options


def eager() -> bool:
    """Whether nothing is being traced: a call from plain Python, not inside ``jit``,
    ``grad``, ``vmap`` or another transformation."""
    return isinstance(core.trace_ctx.trace, core.EvalTrace)


# --- Binding an equation under the caller's trace -------------------------------------


def bind(eqn: jex.JaxprEqn, invals: Sequence[Any], **params: Any) -> list[Any]:
    """Binds ``eqn``'s primitive on ``invals`` (with ``params`` replacing its own), keeping
    its source information; returns the outputs as a list. As ``jax.core.eval_jaxpr`` does.
    """
    bind_params = eqn.primitive.get_bind_params({**eqn.params, **params})
    # jax < 0.9 returns (subfuns, params); later versions the params alone.
    subfuns: Sequence[Any] = ()
    if isinstance(bind_params, tuple):
        subfuns, bind_params = bind_params
    with equation_context(eqn):
        out = eqn.primitive.bind(*subfuns, *invals, **bind_params)
    return list(out) if eqn.primitive.multiple_results else [out]


@contextlib.contextmanager
def equation_context(eqn: jex.JaxprEqn) -> Iterator[None]:
    """What is traced inside gets ``eqn``'s traceback and name stack (as if the user's code
    had run there), so rewritten programs keep their source locations and named scopes."""
    name_stack = source_info_util.current_name_stack() + eqn.source_info.name_stack
    with (
        source_info_util.user_context(eqn.source_info.traceback, name_stack=name_stack),
        eqn.ctx.manager,
    ):
        yield


def retrace(
    fn: Callable[..., Sequence[Any]], in_avals: Sequence[Any], name: str
) -> jex.ClosedJaxpr:
    """Traces ``fn`` (flat arguments to a flat list of outputs) at ``in_avals``.

    ``jax.make_jaxpr`` would take ``jax.ShapeDtypeStruct``s, which lose what an aval carries
    beyond shape and dtype (weak types, and the varying manual axes inside ``shard_map``);
    the sub-jaxpr must keep its exact input types to be bound in its primitive's place.
    """
    debug = api_util.debug_info(name, fn, tuple(in_avals), {})
    jaxpr, _, consts = pe.trace_to_jaxpr_dynamic(lu.wrap_init(fn, debug_info=debug), in_avals)
    return jex.ClosedJaxpr(jaxpr, consts)


def without_consts(closed: jex.ClosedJaxpr) -> tuple[jex.Jaxpr, list[Any]]:
    """An open jaxpr taking ``closed``'s constants as leading inputs, and the constants."""
    return pe.convert_constvars_jaxpr(closed.jaxpr), list(closed.consts)


def invar_avals(jaxpr: jex.Jaxpr | jex.ClosedJaxpr) -> list[Any]:
    inner = jaxpr.jaxpr if isinstance(jaxpr, jex.ClosedJaxpr) else jaxpr
    return [v.aval for v in inner.invars]


# --- Source information ----------------------------------------------------------------


def source_location(eqn: jex.JaxprEqn) -> str | None:
    """``file:line`` of the user's code that built ``eqn`` (JAX's and leakyjax's frames
    skipped), or None."""
    traceback = eqn.source_info.traceback
    code: Sequence[Any] = []
    lasti: Sequence[int] = []
    if traceback is not None:
        code, lasti = traceback.raw_frames()
    for i, frame_code in enumerate(code):  # innermost first
        if frame_code.co_name == "flat_fn" and frame_code.co_filename.endswith(_TRACE_ENTRY):
            return None  # the frames beyond called the transform: they are not in fn
        if source_info_util.is_user_filename(frame_code.co_filename):
            frame = source_info_util.raw_frame_to_frame(frame_code, lasti[i])
            return f"{os.path.basename(frame.file_name)}:{frame.start_line}"
    return None


# The function through which the transforms trace ``fn`` (``_tracing.trace``'s ``flat_fn``):
# a traceback's frames beyond it are the transform's caller's, outside ``fn`` (JAX < 0.9
# keeps them; a site in ``jax.nn.relu`` passed as ``fn`` would be named by the caller's line).
_TRACE_ENTRY = os.path.join("leakyjax", "_tracing.py")


def library_body(body: jex.ClosedJaxpr | jex.Jaxpr) -> bool:
    """Whether ``body`` (a jit's or a call's sub-jaxpr) traces a function of JAX's or
    leakyjax's own (``jax.nn.relu``, ``leakyjax.leaky_relu``). JAX keeps one trace of such a
    body for every caller, so the tracebacks of its equations are the first caller's: the
    caller's location is that of the call equation."""
    inner = body.jaxpr if isinstance(body, jex.ClosedJaxpr) else body
    info = getattr(getattr(inner, "debug_info", None), "func_src_info", None) or ""
    _, at, where = info.rpartition(" at ")
    file_name = where.rpartition(":")[0]
    return bool(at and file_name) and not source_info_util.is_user_filename(file_name)


def name_stack(eqn: jex.JaxprEqn) -> str:
    return str(eqn.source_info.name_stack)


# --- The higher-order primitives --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Body:
    """A sub-jaxpr of an equation: where it is in the params, and which of the equation's
    inputs feed its inputs (``inputs[i]`` is the equation input index feeding invar i, or
    None when it has no counterpart)."""

    param: str
    index: int | None  # position in a tuple-valued param (cond's branches), else None
    jaxpr: jex.ClosedJaxpr | jex.Jaxpr
    inputs: tuple[int | None, ...]


def bodies(eqn: jex.JaxprEqn) -> list[Body]:
    """The sub-jaxprs of ``eqn`` with their input mapping (empty for a first-order one)."""
    name = eqn.primitive.name
    n = len(eqn.invars)
    if name == P.cond_p.name:  # invars: index, *operands; each branch takes the operands
        return [
            Body("branches", i, br, tuple(range(1, n)))
            for i, br in enumerate(eqn.params["branches"])
        ]
    if name == P.while_p.name:  # invars: cond_consts, body_consts, carry
        nc, nb = eqn.params["cond_nconsts"], eqn.params["body_nconsts"]
        carry = tuple(range(nc + nb, n))
        return [
            Body("cond_jaxpr", None, eqn.params["cond_jaxpr"], tuple(range(nc)) + carry),
            Body("body_jaxpr", None, eqn.params["body_jaxpr"], tuple(range(nc, nc + nb)) + carry),
        ]
    found = []
    for param in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(param)
        if isinstance(sub, (jex.ClosedJaxpr, jex.Jaxpr)):
            m = len(invar_avals(sub))
            found.append(Body(param, None, sub, tuple(i if i < n else None for i in range(m))))
    if found:
        return found
    # Any other primitive with sub-jaxprs (pmap, custom_linear_solve, pallas_call...): found
    # for the site listing, with no input mapping.
    subs = []
    for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(sub, (jex.ClosedJaxpr, jex.Jaxpr)):
                subs.append(sub)
    return [Body("", None, sub, (None,) * len(invar_avals(sub))) for sub in subs]


# The names the interpreter keys its handlers by (and the finder reads), taken from the
# primitives themselves so that a renamed primitive fails at import, not at a missed match.
JIT = P.jit_p.name
CLOSED_CALL = P.closed_call_p.name
# jax.extend exports remat_p from jax 0.9 on.
CHECKPOINT = getattr(P, "remat_p", _remat_p).name
SCAN = P.scan_p.name
COND = P.cond_p.name
WHILE = P.while_p.name
SHARD_MAP = "shard_map"  # jax.shard_map's primitive; not exported by jax.extend
CUSTOM_JVP = P.custom_jvp_call_p.name
CUSTOM_VJP = P.custom_vjp_call_p.name

# How a control-flow body shows in a site's name.
CONTEXT_LABEL = {SCAN: "scan", COND: "cond", WHILE: "while_loop"}


# A jit output with no sharding of its own.
_UNSPECIFIED = sharding_impls.UNSPECIFIED  # pyright: ignore[reportPrivateImportUsage]


def extra_outputs(eqn: jex.JaxprEqn, n: int) -> dict[str, Any]:
    """The parameters of a jit equation bound with ``n`` outputs more than it had (each
    with no sharding or layout of its own); none for a closed_call."""
    if n == 0 or eqn.primitive.name != JIT:
        return {}
    return {
        "out_shardings": (*eqn.params["out_shardings"], *(_UNSPECIFIED,) * n),
        "out_layouts": (*eqn.params["out_layouts"], *(None,) * n),
    }


def scan_layout(eqn: jex.JaxprEqn) -> tuple[int, int]:
    """How many of a scan's inputs are constants, and how many carries (the rest are xs)."""
    if "num_consts" in eqn.params:  # jax < 0.12
        return eqn.params["num_consts"], eqn.params["num_carry"]
    consts, carry, _ = eqn.params["ft_in"].unpack()  # jax 0.12: flat trees of the inputs
    return len(list(consts.vals)), len(list(carry.vals))


def scan_options(eqn: jex.JaxprEqn) -> dict[str, Any]:
    """The keyword arguments of ``lax.scan`` that rebuild ``eqn``."""
    options = {k: eqn.params[k] for k in ("length", "reverse", "unroll")}
    if eqn.params.get("_split_transpose"):
        options["_split_transpose"] = True
    return options


def while_layout(eqn: jex.JaxprEqn) -> tuple[int, int]:
    return eqn.params["cond_nconsts"], eqn.params["body_nconsts"]


def shard_map_call(eqn: jex.JaxprEqn, body: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.shard_map`` applied to ``body`` with ``eqn``'s mesh, specs and checks.

    Re-binding through the public API traces ``body`` inside the manual-axes context, as
    the user's own call did."""
    params = eqn.params
    # jax 0.8 calls the manual axes `manual_axes`, later versions `newly_manual_axes`.
    axes = params["newly_manual_axes" if "newly_manual_axes" in params else "manual_axes"]
    return jax.shard_map(
        body,
        mesh=params["mesh"],
        in_specs=tuple(params["in_specs"]),
        out_specs=tuple(params["out_specs"]),
        axis_names=set(axes),
        check_vma=params["check_vma"],
    )


# --- How jax.nn.relu is built ------------------------------------------------------------
# jax.nn.relu is a custom_jvp around jit(lambda x: max(x, 0)); inside shard_map the zero is
# first made varying with `pvary`. Matched by structure (a custom_jvp whose function is
# max(x, 0)), not by name, so Flax's, Haiku's and Equinox's use of it is found, and so is a
# user's own custom_jvp ReLU of the same shape.

_ZERO_PASSTHROUGH = frozenset(
    {"pvary", "convert_element_type", "broadcast_in_dim", "reshape", "copy", "copy_p"}
)


def _producers(jaxpr: jex.Jaxpr) -> dict[Any, jex.JaxprEqn]:
    return {v: e for e in jaxpr.eqns for v in e.outvars}


def is_zero(
    atom: Any,
    producers: dict[Any, jex.JaxprEqn],
    outer: tuple[dict, dict] | None = None,
    zeros: frozenset[Any] | set[Any] = frozenset(),
) -> bool:
    """Whether ``atom`` is a zero (a literal, possibly cast, broadcast or made varying).
    ``outer`` = (the jaxpr's invars to the caller's atoms, the caller's producers) follows
    an input of a jit body out to its caller (jnp.where passes its zero in); ``zeros`` are
    variables known to be zeros (a jit body's inputs that are zeros in the caller: jnp.clip
    passes its bound in)."""
    while True:
        if isinstance(atom, jex.Literal):
            value = np.asarray(atom.val)
            return value.size == 1 and bool(value == 0)
        if atom in zeros:
            return True
        if outer is not None and atom in outer[0]:
            atom, producers, outer = outer[0][atom], outer[1], None
            continue
        eqn = producers.get(atom)
        if eqn is None or eqn.primitive.name not in _ZERO_PASSTHROUGH or len(eqn.invars) != 1:
            return False
        atom = eqn.invars[0]


def _single_call_body(jaxpr: jex.Jaxpr) -> jex.Jaxpr:
    """Unwraps ``jaxpr`` while it is one jit/closed_call equation on its own inputs."""
    while len(jaxpr.eqns) == 1 and jaxpr.eqns[0].primitive.name in (JIT, CLOSED_CALL):
        eqn = jaxpr.eqns[0]
        if list(eqn.invars) != list(jaxpr.invars) or list(eqn.outvars) != list(jaxpr.outvars):
            break
        inner = eqn.params["jaxpr" if "jaxpr" in eqn.params else "call_jaxpr"]
        jaxpr = inner.jaxpr if isinstance(inner, jex.ClosedJaxpr) else inner
    return jaxpr


def max_zero_operand(
    eqn: jex.JaxprEqn,
    producers: dict[Any, jex.JaxprEqn],
    zeros: frozenset[Any] | set[Any] = frozenset(),
) -> Any | None:
    """For ``max(x, 0)`` or ``max(0, x)``, the operand x; else None."""
    if eqn.primitive.name != P.max_p.name:
        return None
    a, b = eqn.invars
    if is_zero(b, producers, zeros=zeros) and not is_zero(a, producers, zeros=zeros):
        return a
    if is_zero(a, producers, zeros=zeros) and not is_zero(b, producers, zeros=zeros):
        return b
    return None


def is_relu_custom_jvp(eqn: jex.JaxprEqn) -> bool:
    """A custom_jvp equation whose function is max(x, 0) of its one input (jax.nn.relu, or
    a ReLU of the user's with a derivative rule of its own: see ``is_jax_nn_relu``)."""
    if eqn.primitive.name != CUSTOM_JVP or len(eqn.invars) != 1 or len(eqn.outvars) != 1:
        return False
    call = eqn.params["call_jaxpr"]
    body = _single_call_body(call.jaxpr if isinstance(call, jex.ClosedJaxpr) else call)
    if len(body.invars) != 1 or len(body.outvars) != 1:
        return False
    producers = _producers(body)
    last = producers.get(body.outvars[0])
    return last is not None and max_zero_operand(last, producers) is body.invars[0]


@functools.cache
def _jax_nn_relu_source() -> str:
    (eqn,) = jax.make_jaxpr(jax.nn.relu)(np.float32(0)).eqns
    return _function_source(eqn)


def _function_source(eqn: jex.JaxprEqn) -> str:
    call = eqn.params.get("call_jaxpr", eqn.params.get("fun_jaxpr"))
    inner = call.jaxpr if isinstance(call, jex.ClosedJaxpr) else call
    return getattr(getattr(inner, "debug_info", None), "func_src_info", None) or ""


def is_jax_nn_relu(eqn: jex.JaxprEqn) -> bool:
    """``jax.nn.relu`` itself (what Flax, Haiku, Equinox and Keras call): a ReLU custom_jvp
    whose function is jax's own (its debug information names jax's source line), so a
    user's custom_jvp of the same shape, with a rule of its own, is told apart."""
    return is_relu_custom_jvp(eqn) and _function_source(eqn) == _jax_nn_relu_source()


def where_relu_operand(eqn: jex.JaxprEqn, producers: dict[Any, jex.JaxprEqn]) -> Any | None:
    """For ``jnp.where(x > 0, x, 0)`` (a select on ``x > 0`` between 0 and x, possibly in
    jnp.where's own jit), the operand x; else None."""
    outer_in = list(eqn.invars)
    if eqn.primitive.name == JIT:
        body = eqn.params["jaxpr"].jaxpr
        inner = _producers(body)
        last = inner.get(body.outvars[0]) if len(body.outvars) == 1 else None
        if last is None or last.primitive.name != P.select_n_p.name or len(last.invars) != 3:
            return None
        bind_map = dict(zip(body.invars, outer_in, strict=True))
        pred, on_false, on_true = last.invars
        zero = is_zero(on_false, inner, (bind_map, producers))
        if not zero or on_true not in bind_map or pred not in bind_map:
            return None
        pred, x = bind_map[pred], bind_map[on_true]
    elif eqn.primitive.name == P.select_n_p.name and len(outer_in) == 3:
        pred, on_false, x = outer_in
        if not is_zero(on_false, producers):
            return None
    else:
        return None
    test = producers.get(pred)
    if test is None:
        return None
    a, b = test.invars
    if test.primitive.name == P.gt_p.name and a is x and is_zero(b, producers):
        return x
    if test.primitive.name == P.lt_p.name and b is x and is_zero(a, producers):
        return x
    return None


def custom_rule_name(eqn: jex.JaxprEqn) -> str:
    """The name of the function a custom_jvp/custom_vjp equation wraps ("" if unknown): the
    first word of its jaxpr's debug information (``"relu at .../functions.py:61"``)."""
    return _function_source(eqn).split(" ")[0]


def is_leakyjax(eqn: jex.JaxprEqn) -> bool:
    return eqn.primitive.name == CUSTOM_JVP and custom_rule_name(eqn) == MARKER


# --- Kinds of primitives the site analysis reads ----------------------------------------

# Comparisons: a derivative of a ReLU taken inside the traced function shows as one on the
# ReLU's input or output (jax.nn.relu's rule is select(x > 0, g, 0); max's compares its
# output with its operands; where's reuses its predicate).
COMPARISONS = frozenset({"gt", "ge", "lt", "le", "eq", "ne"})

# Where a clamp's output ends: a square root, its reciprocal, a logarithm (or a division's
# denominator, checked apart: a numerator flows on as a value).
CLAMP_ENDS = frozenset({"sqrt", "rsqrt", "log"})
DIV = P.div_p.name

# On the way from a clamp to its end: elementwise arithmetic with other values (an epsilon,
# a scale), casts and moves of the same numbers.
CLAMP_PASSTHROUGH = frozenset(
    {
        "add",
        "sub",
        "mul",
        "max",
        "min",
        "convert_element_type",
        "broadcast_in_dim",
        "reshape",
        "squeeze",
        "expand_dims",
        "transpose",
        "copy",
        "copy_p",
        "pvary",
    }
)


# What moves or casts an array's numbers without combining them with others: a parameter
# passed through these is still that parameter (what a scan over stacked layers slices).
LAYOUT = frozenset(
    {
        "transpose",
        "reshape",
        "squeeze",
        "expand_dims",
        "broadcast_in_dim",
        "convert_element_type",
        "copy",
        "copy_p",
        "pvary",
        "slice",
        "rev",
        "concatenate",
        "stack",
        "split",
    }
)


# A statistic (a mean, a variance) is computed from these by elementwise arithmetic.
REDUCTIONS = frozenset({"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "psum", "pmean"})
ELEMENTWISE = (
    frozenset(
        {
            "sqrt",
            "rsqrt",
            "div",
            "integer_pow",
            "square",
            "abs",
            "exp",
            "log",
            "log1p",
            "neg",
            "sign",
            "pow",
            "clamp",
            "select_n",
            "stop_gradient",
        }
    )
    | COMPARISONS
)


def call_body(eqn: jex.JaxprEqn) -> jex.Jaxpr | None:
    """The body of a jit or closed_call equation (its inputs and outputs one to one with
    the equation's), else None."""
    if eqn.primitive.name not in (JIT, CLOSED_CALL):
        return None
    inner = eqn.params["jaxpr" if "jaxpr" in eqn.params else "call_jaxpr"]
    return inner.jaxpr if isinstance(inner, jex.ClosedJaxpr) else inner
