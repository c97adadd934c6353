"""Every row of docs/errors.md, as written there, and what happens to traced arguments."""

import inspect
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


def test_every_numbered_row_is_run():
    # A row that ROW does not read (a cell written differently) would go untested.
    numbered = [line for line in DOC.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(numbered) == len(ROWS), [line for line in numbered if not ROW.match(line)]


# An argument checked by the same code as another public function's argument of that name is
# tested by that function's rows: (function, argument) -> the function with the rows.
SAME_CHECK = {
    ("he_normal", "out_axis"): "he_uniform",
    ("he_uniform", "dtype"): "he_normal",
    ("track_dead_units", "patterns"): "leakify",
    ("track_dead_units", "sites"): "leakify",
    ("unit_wiring", "patterns"): "leakify",
    ("unit_wiring", "sites"): "leakify",
    ("revive", "sites"): "leakify",
    ("revive", "argnums"): "unit_wiring",
}


def test_every_argument_of_every_public_function_has_a_row():
    named = [re.match(r"`(?:TypeError|ValueError)`: (\w+): `(\w+)`", row[3]) for row in ROWS]
    tested = {m.groups() for m in named if m}
    missing = [
        f"{name}({arg})"
        for name in lj.__all__
        if not inspect.isclass(getattr(lj, name))
        for arg in inspect.signature(getattr(lj, name)).parameters
        if (SAME_CHECK.get((name, arg), name), arg) not in tested
    ]
    assert not missing, f"no row in docs/errors.md for: {missing}"


def test_the_readmes_figures_are_the_catalogues():
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text()
    figures = re.search(
        r"lists all\s+(\d+) rows \((\d+) calls, .*?; (\d+) rows show valid inputs", readme, re.S
    )
    valid = sum(1 for row in ROWS if row[3].startswith("returns"))
    assert tuple(map(int, figures.groups())) == (len(ROWS), len(CASES), valid)


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
