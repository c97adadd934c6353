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
ROWS = ROW.findall(DOC)


def _cases():
    assert [int(r[0]) for r in ROWS] == list(range(1, len(ROWS) + 1))
    for number, _what, call, gets in ROWS:
        values = WRONG[1:] if "WRONG?" in call else WRONG if "WRONG" in call else [None]
        for value in values:
            code = call if value is None else call.replace("WRONG?", value).replace("WRONG", value)
            yield pytest.param(code, gets.replace("\\|", "|"), id=f"{number}:{code}")


CASES = list(_cases())


def test_catalogue_size():
    assert len(ROWS) >= 90
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


TRACED = re.findall(
    r"^\| (T\d+) \| .+? \| `(.+?)` \| `(.+?)` \| `(.+?)` \| (.+?) \|$", DOC, re.MULTILINE
)


def test_traced_table_size():
    assert [row[0] for row in TRACED] == [f"T{i}" for i in range(1, 10)]


@pytest.mark.parametrize("number,f,a,gives,reports", TRACED, ids=[r[0] for r in TRACED])
def test_traced_row(names, number, f, a, gives, reports):
    f, a = eval(f, dict(names)), eval(a, dict(names))
    x = jnp.array([-1.0, 0.0, 2.0])
    expected = np.array(eval(gives, {"nan": np.nan, "inf": np.inf}), np.float32)
    out = jax.jit(f)(x, a)
    signed = ~np.isnan(expected)  # a NaN's sign is not specified
    np.testing.assert_array_equal(np.signbit(out)[signed], np.signbit(expected)[signed])
    np.testing.assert_array_equal(out, expected)
    err, checked = checkify.checkify(jax.jit(f), errors=checkify.float_checks)(x, a)
    np.testing.assert_array_equal(checked, expected)
    assert (err.get() or "nothing").startswith(reports), err.get()
    if reports == "nothing":
        return
    # The concrete value is checked at the boundary (a ValueError), except grad_at_zero's
    # interval, which is tested in the catalogue above.
    with pytest.raises(ValueError, match="negative_slope|slope"):
        f(x, np.asarray(a))


def test_valid_traced_values_pass_float_checks():
    x = jnp.array([-1.0, 0.0, 2.0])
    for f in (
        lambda x, a: lj.leaky_relu(x, a),
        lambda x, a: lj.prelu(x[:, None], a[None]),
        lambda x, a: lj.inverse_leaky_relu(x, a),
        lambda x, a: lj.leaky_relu_log_abs_det_jacobian(x, a),
    ):
        err, _ = checkify.checkify(jax.jit(f), errors=checkify.float_checks)(x, jnp.float32(0.2))
        assert err.get() is None
