"""Helpers shared by the test modules: test data, the eager reference, no warnings."""

from __future__ import annotations

import contextlib
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np


def normal(seed: int, shape: tuple[int, ...]) -> jax.Array:
    """Standard normal float32 test data, from NumPy: module-level data made with jax.random
    compiles a program per shape when the module is imported, which made collection slow."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape, np.float32))


def eval_jaxpr(f, *args, **kwargs):
    """``f(*args, **kwargs)`` run equation by equation, as an eager call of a leakified
    function runs. Calling ``f`` eagerly is no reference for that: two eager programs can
    differ in the last bit where JAX compiles its own small functions as a unit (jnp.mean on
    jax 0.8); exactness is promised under jax.jit."""
    closed, shape = jax.make_jaxpr(functools.partial(f, **kwargs), return_shape=True)(*args)
    out = jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *jax.tree.leaves(args))
    return jax.tree.unflatten(jax.tree.structure(shape), out)


@contextlib.contextmanager
def no_warnings():
    """Normal use warns nothing: any warning is an error (tests/conftest.py makes this a
    fixture; tests that expect a warning say so with pytest.warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
