"""Every row of docs/errors.md, as written there, and what happens to traced arguments."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import leakyjax as lj

DOC = (pathlib.Path(__file__).parent.parent / "docs" / "errors.md").read_text()
WRONG = ["None", "'1.0'", "['a', 'b']", "{'a': 1.0}", "object()"]
ROW = re.compile(r"^\| (\d+) \| (.+?) \| `(.+?)` \| (.+) \|$", re.MULTILINE)
CODE = re.findall(r"```python\n(.*?)```", DOC, re.DOTALL)


def _cases():
    rows = ROW.findall(DOC)
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    for number, _what, call, gets in rows:
        values = WRONG[1:] if "WRONG?" in call else WRONG if "WRONG" in call else [None]
        for value in values:
            code = call if value is None else call.replace("WRONG?", value).replace("WRONG", value)
            yield pytest.param(code, gets.replace("\\|", "|"), id=f"{number}:{code}")


CASES = list(_cases())


def test_catalogue_size():
    rows = ROW.findall(DOC)
    assert len(rows) >= 90
    assert len(CASES) >= 140


@pytest.fixture(scope="module")
def names():
    namespace = {}
    exec(CODE[0], namespace)
    return namespace


@pytest.mark.parametrize("code,gets", CASES)
def test_row(names, code, gets):
    returns = re.fullmatch(r"returns `(\w+)`", gets)
    if returns:
        assert eval(code, dict(names)).dtype == np.dtype(returns[1])
        return
    kind, message = re.fullmatch(r"`(TypeError|ValueError)`: (.+)", gets).groups()
    with pytest.raises((TypeError, ValueError)) as info:
        eval(code, dict(names))
    assert type(info.value).__name__ == kind, info.value
    assert str(info.value).startswith(message), info.value


def test_checkify_example_in_the_doc(names):
    with pytest.raises(checkify.JaxRuntimeError, match="`negative_slope` must be finite"):
        exec(CODE[1], dict(names))


X = jnp.array([-3.0, -1.0, -0.0, 0.0, 1e-3, 2.0])


def _traced(fn):
    """``fn`` with its second argument traced: concrete checks cannot see its value."""
    return jax.jit(fn)


TRACED = {
    "leaky_relu": (lambda x, a: lj.leaky_relu(x, a), jnp.float32(0.2), jnp.float32(jnp.nan)),
    "leaky_relu grad_at_zero": (
        lambda x, a: jax.vmap(jax.grad(lambda x: lj.leaky_relu(x, a, grad_at_zero=0.5)))(x),
        jnp.float32(0.2),
        jnp.float32(0.75),
    ),
    "prelu": (lambda x, a: lj.prelu(x[:, None], a), jnp.array([0.2]), jnp.array([jnp.inf])),
    "inverse_leaky_relu": (lambda y, a: lj.inverse_leaky_relu(y, a), jnp.float32(0.2), 0.0),
    "leaky_relu_log_abs_det_jacobian": (
        lambda x, a: lj.leaky_relu_log_abs_det_jacobian(x, a),
        jnp.float32(0.2),
        jnp.float32(-1.0),
    ),
}


@pytest.mark.parametrize("name", TRACED)
def test_traced_valid_value_is_exact_and_passes_checkify(name):
    fn, good, _ = TRACED[name]
    traced = _traced(fn)(X, good)
    np.testing.assert_array_equal(traced, fn(X, good))
    err, out = checkify.checkify(_traced(fn))(X, good)
    assert err.get() is None
    np.testing.assert_array_equal(out, traced)


@pytest.mark.parametrize("name", TRACED)
def test_traced_bad_value_skips_the_check_and_checkify_catches_it(name):
    fn, _, bad = TRACED[name]
    with pytest.raises(ValueError):  # the concrete value is checked ...
        fn(X, jnp.asarray(bad, jnp.float32))
    out = _traced(fn)(X, jnp.asarray(bad, jnp.float32))  # ... the traced one is not
    assert out.shape[0] == X.shape[0]
    err, _ = checkify.checkify(_traced(fn))(X, jnp.asarray(bad, jnp.float32))
    assert err.get() is not None
    assert "must be" in err.get() or "subgradient" in err.get()


def test_debug_checks_compile_away():
    hlo = jax.jit(lambda x, a: lj.leaky_relu(x, a)).lower(X, jnp.float32(0.2)).compile().as_text()
    assert "is-finite" not in hlo and "reduce" not in hlo
