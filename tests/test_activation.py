"""leaky_relu: forward, exact derivatives, transformations, dtypes, special values, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads

import leakyjax as lj

DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32]


def special_points(dtype):
    tiny = float(jnp.finfo(dtype).tiny)
    return jnp.array([-np.inf, -1.0, -tiny, -0.0, 0.0, tiny, 1.0, np.inf, np.nan], dtype=dtype)


def expected_grad(x, slope, grad_at_zero, dtype):
    """The exact derivative: 1 above 0, the slope below, grad_at_zero at 0 and nan."""
    slope = np.asarray(slope, dtype)
    g = slope if grad_at_zero is None else np.asarray(grad_at_zero, dtype)
    x = np.asarray(x, np.float64)
    return np.where(x > 0, np.asarray(1, dtype), np.where(x < 0, slope, g)).astype(dtype)


def platform_flushes(dtype):
    """Whether XLA here flushes a subnormal result of this dtype to zero (CPU: f32, bf16)."""
    tiny = jnp.array(jnp.finfo(dtype).tiny, dtype)
    return bool(jax.jit(lambda t: t * jnp.asarray(0.5, dtype))(tiny) == 0)


def flush(a, dtype):
    a = np.asarray(a).astype(dtype)
    if platform_flushes(dtype):
        tiny = np.asarray(jnp.finfo(dtype).tiny, dtype)
        a = np.where(
            np.abs(a.astype(np.float64)) < float(tiny), np.copysign(0, a.astype(np.float64)), a
        ).astype(dtype)
    return a


def bits(a):
    a = np.asarray(a)
    return a.view(f"u{a.dtype.itemsize}")


class ForwardTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*DTYPES)
    def test_forward_exact_and_keeps_dtype(self, dtype):
        x = special_points(dtype)
        y = self.variant(lj.leaky_relu)(x, 0.1)
        chex.assert_type(y, dtype)
        expected = np.where(
            np.asarray(x, np.float64) < 0,
            flush(np.asarray(x) * np.asarray(0.1, dtype), dtype),
            np.asarray(x),
        ).astype(dtype)
        np.testing.assert_array_equal(bits(y), bits(expected))

    @chex.variants(with_jit=True, without_jit=True)
    def test_zero_slope_gives_exact_zero_at_minus_inf(self):
        x = jnp.array([-np.inf, -2.0, -0.0, 0.0, 3.0, np.inf, np.nan])
        for slope in (0.0, jnp.array(0.0)):
            y = self.variant(lj.leaky_relu)(x, slope)
            np.testing.assert_array_equal(y, [0.0, 0.0, 0.0, 0.0, 3.0, np.inf, np.nan])
        # jax.nn.leaky_relu gives nan there; leakyjax does not copy that.
        assert np.isnan(jax.nn.leaky_relu(-jnp.inf, 0.0))

    @chex.variants(with_jit=True, without_jit=True)
    def test_zeros_keep_their_sign(self):
        y = self.variant(lj.leaky_relu)(jnp.array([-0.0, 0.0]))
        np.testing.assert_array_equal(np.signbit(y), [True, False])

    def test_matches_jax_nn_away_from_zero(self):
        x = jax.random.normal(jax.random.key(0), (1000,))
        np.testing.assert_array_equal(lj.leaky_relu(x, 0.2), jax.nn.leaky_relu(x, 0.2))

    def test_python_slope_never_upcasts_and_array_slope_is_cast(self):
        x = jnp.ones(3, jnp.bfloat16)
        chex.assert_type(lj.leaky_relu(x, 0.3), jnp.bfloat16)
        chex.assert_type(lj.leaky_relu(x, jnp.array(0.3, jnp.float32)), jnp.bfloat16)
        with jax.enable_x64(True):
            x32 = -jnp.ones(3, jnp.float32)
            y = lj.leaky_relu(x32, np.array(0.3, np.float64))
            chex.assert_type(y, jnp.float32)
            assert y[0] == -np.float32(0.3)
            x64 = jnp.array([-1.0, 2.0], jnp.float64)
            y64 = lj.leaky_relu(x64, 0.1)
            chex.assert_type(y64, jnp.float64)
            np.testing.assert_array_equal(y64, [-0.1, 2.0])
            np.testing.assert_array_equal(jax.grad(lj.leaky_relu)(jnp.float64(-1.0)), 0.01)

    @parameterized.parameters(jnp.int32, jnp.int8, jnp.bool_)
    def test_integer_and_bool_promote_to_default_float(self, dtype):
        y = lj.leaky_relu(jnp.array([-2, 0, 1], dtype), 0.5)
        chex.assert_type(y, jnp.float32)
        chex.assert_type(jax.nn.leaky_relu(jnp.array([1], dtype)), y.dtype)
        x = np.asarray(jnp.array([-2, 0, 1], dtype), np.float32)
        np.testing.assert_array_equal(y, np.where(x < 0, 0.5 * x, x))

    def test_python_scalars_and_numpy_inputs(self):
        assert lj.leaky_relu(-2.0) == np.float32(-0.02)
        np.testing.assert_array_equal(lj.leaky_relu(np.array([-1.0, 1.0]), 0.5), [-0.5, 1.0])

    def test_broadcasting_slopes(self):
        x = -jnp.ones((2, 3))
        y = lj.leaky_relu(x, jnp.array([0.1, 0.2, 0.3]))
        np.testing.assert_array_equal(y, -jnp.broadcast_to(jnp.array([0.1, 0.2, 0.3]), (2, 3)))
        y = lj.leaky_relu(-1.0, jnp.array([0.5, 0.25]))
        chex.assert_shape(y, (2,))

    def test_subnormals_follow_what_the_platform_does(self):
        # XLA on CPU treats float32 and bfloat16 subnormals as zero in compares (denormals
        # are zero) and flushes subnormal results; float16 is computed in float32, where
        # its subnormals are normal numbers. Whatever the platform does, the forward and
        # the derivative agree on one reading of x: as zero, or as its own sign.
        for dtype in DTYPES:
            sub = jnp.finfo(dtype).smallest_subnormal
            x = jnp.array([sub, -sub], dtype)
            probe = jax.grad(lambda x: lj.leaky_relu(x, 0.01, grad_at_zero=0.5))(x[0])
            as_zero = bool(probe == 0.5)
            if jax.default_backend() == "cpu":
                assert as_zero == (dtype != jnp.float16), dtype
            for g in (None, 1.0, 0.5):
                d = jax.vmap(jax.grad(lambda x, g=g: lj.leaky_relu(x, 0.01, grad_at_zero=g)))(x)
                g_value = np.asarray(0.01 if g is None else g, dtype)
                if as_zero:
                    np.testing.assert_array_equal(d, [g_value, g_value])
                    np.testing.assert_array_equal(bits(lj.leaky_relu(x)), bits(x))
                else:
                    np.testing.assert_array_equal(d, np.asarray([1, 0.01], dtype))


class DerivativeTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.product(dtype=DTYPES, grad_at_zero=[None, 1.0, 0.3], slope=[0.01, 0.0, 0.2])
    def test_grad_exact_at_special_points(self, dtype, grad_at_zero, slope):
        x = special_points(dtype)

        def f(x):
            return lj.leaky_relu(x, slope, grad_at_zero=grad_at_zero)

        d = self.variant(jax.vmap(jax.grad(f)))(x)
        chex.assert_type(d, dtype)
        np.testing.assert_array_equal(d, expected_grad(x, slope, grad_at_zero, dtype))
        # Forward mode gives the same numbers as reverse mode.
        _, d_fwd = jax.jvp(f, (x,), (jnp.ones_like(x),))
        np.testing.assert_array_equal(d_fwd, d)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(*DTYPES)
    def test_grad_exact_with_array_slope(self, dtype):
        x = special_points(dtype)
        for g in (None, 1.0):
            d = self.variant(jax.vmap(jax.grad(lj.leaky_relu), (0, None)))(
                x, jnp.asarray(0.2, dtype)
            )
            if g is None:
                np.testing.assert_array_equal(d, expected_grad(x, 0.2, None, dtype))

    @parameterized.product(dtype=DTYPES, slope=[0.1, 0.0, 2.0, -0.5])
    def test_grad_at_zero_one_is_jax_nn_derivative_except_at_nan(self, dtype, slope):
        """As the README says: jax.nn.leaky_relu's d/dx at every x but NaN, where jax.nn
        takes the slope (NaN >= 0 is false) and leakyjax grad_at_zero (NaN is neither side
        of 0). Every bit pattern of float16 and bfloat16; float32's specials."""
        if dtype == jnp.float32:
            x = special_points(dtype)
        else:
            x = jax.lax.bitcast_convert_type(jnp.arange(2**16, dtype=jnp.uint32).astype(
                jnp.uint16), dtype)  # fmt: skip
        ours = jax.vmap(jax.grad(lambda x: lj.leaky_relu(x, slope, grad_at_zero=1.0)))(x)
        theirs = jax.vmap(jax.grad(lambda x: jax.nn.leaky_relu(x, slope)))(x)
        nan = np.isnan(np.asarray(x, np.float64))
        np.testing.assert_array_equal(bits(ours)[~nan], bits(theirs)[~nan])
        np.testing.assert_array_equal(ours[nan], np.asarray(1.0, dtype))
        np.testing.assert_array_equal(theirs[nan], np.asarray(slope, dtype))

    @chex.variants(with_jit=True, without_jit=True)
    def test_slope_derivative(self):
        x = jnp.array([-np.inf, -2.0, -0.0, 0.0, 3.0, np.inf])
        d = self.variant(jax.vmap(jax.grad(lj.leaky_relu, argnums=1), (0, None)))(x, jnp.array(0.1))
        np.testing.assert_array_equal(d, [-np.inf, -2.0, -0.0, 0.0, 0.0, 0.0])

    @chex.variants(with_jit=True, without_jit=True)
    def test_slope_gradient_is_reduced_to_its_shape_and_dtype(self):
        x = jnp.array([[-1.0, 2.0, -3.0], [-4.0, -5.0, 6.0]], jnp.bfloat16)
        slope = jnp.array([0.1, 0.2, 0.3], jnp.float32)
        g = self.variant(jax.grad(lambda a: lj.leaky_relu(x, a).astype(jnp.float32).sum()))(slope)
        chex.assert_type(g, jnp.float32)
        chex.assert_shape(g, (3,))
        np.testing.assert_array_equal(g, [-5.0, -5.0, -3.0])

    def test_second_derivatives_exact(self):
        for x in (-2.0, -0.5, 0.5, 2.0):
            x = jnp.float32(x)
            assert jax.hessian(lj.leaky_relu)(x) == 0.0
            assert jax.hessian(lambda x: lj.leaky_relu(x, jnp.float32(0.3)))(x) == 0.0
            mixed = jax.jacfwd(jax.grad(lj.leaky_relu, argnums=1), argnums=0)(x, jnp.float32(0.3))
            mixed_rev = jax.grad(jax.grad(lj.leaky_relu, argnums=0), argnums=1)(x, jnp.float32(0.3))
            assert mixed == mixed_rev == (1.0 if x < 0 else 0.0)
            assert jax.hessian(lj.leaky_relu, argnums=1)(x, jnp.float32(0.3)) == 0.0
        h = jax.hessian(lambda x: lj.leaky_relu(x, 0.1).sum())(jnp.array([-1.0, 0.0, 1.0]))
        np.testing.assert_array_equal(h, np.zeros((3, 3)))

    @parameterized.parameters(None, 1.0)
    @pytest.mark.slow  # numerical third derivatives: about 15 s each
    def test_check_grads_order_3_away_from_zero(self, grad_at_zero):
        x = jnp.array([-2.0, -0.7, 0.4, 1.5], jnp.float32)
        a = jnp.float32(0.2)
        with jax.enable_x64(True):
            x64, a64 = x.astype(jnp.float64), a.astype(jnp.float64)
            check_grads(
                lambda x, a: lj.leaky_relu(x, a, grad_at_zero=grad_at_zero),
                (x64, a64),
                order=3,
                modes=["fwd", "rev"],
            )
            check_grads(
                lambda x: lj.leaky_relu(x, 0.2, grad_at_zero=grad_at_zero),
                (x64,),
                order=3,
                modes=["fwd", "rev"],
            )

    def test_jvp_transposes_to_vjp(self):
        x = jnp.array([-1.0, 0.0, -0.0, 2.0])
        a = jnp.array([0.1, 0.2, 0.3, 0.4])
        tx = jnp.array([1.0, 2.0, 3.0, 4.0])
        ta = jnp.array([0.5, -1.0, 2.0, 1.0])
        ct = jnp.array([0.3, -0.7, 1.1, 2.0])
        for static in (True, False):
            if static:
                f = lambda x, a: lj.leaky_relu(x, 0.25)  # noqa: E731
            else:
                f = lj.leaky_relu
            _, y_dot = jax.jvp(f, (x, a), (tx, ta))
            _, vjp = jax.vjp(f, x, a)
            cx, ca = vjp(ct)
            np.testing.assert_allclose(jnp.vdot(ct, y_dot), jnp.vdot(cx, tx) + jnp.vdot(ca, ta))

    def test_jacfwd_equals_jacrev(self):
        x = jnp.array([-1.0, 0.0, 2.0])
        np.testing.assert_array_equal(jax.jacfwd(lj.leaky_relu)(x), jax.jacrev(lj.leaky_relu)(x))
        np.testing.assert_array_equal(
            jax.jacrev(lj.leaky_relu)(x), jnp.diag(jnp.array([0.01, 0.01, 1.0]))
        )


class TransformTest(chex.TestCase):
    def test_vmap_over_x_slope_and_both_equals_loop(self):
        x = jnp.array([[-1.0, 2.0], [0.0, -3.0], [4.0, -0.5]])
        a = jnp.array([0.1, 0.2, 0.3])
        both = jax.vmap(lj.leaky_relu)(x, a)
        loop = jnp.stack([lj.leaky_relu(x[i], a[i]) for i in range(3)])
        np.testing.assert_array_equal(both, loop)
        over_slope = jax.vmap(lj.leaky_relu, (None, 0))(x[0], a)
        np.testing.assert_array_equal(over_slope, jnp.stack([lj.leaky_relu(x[0], s) for s in a]))
        over_x = jax.vmap(lj.leaky_relu, (0, None))(x, a[1])
        np.testing.assert_array_equal(over_x, jnp.stack([lj.leaky_relu(r, a[1]) for r in x]))
        grads = jax.vmap(jax.grad(lambda x, a: lj.leaky_relu(x, a).sum(), argnums=(0, 1)))(x, a)
        for i in range(3):
            gi = jax.grad(lambda x, a: lj.leaky_relu(x, a).sum(), argnums=(0, 1))(x[i], a[i])
            np.testing.assert_array_equal(grads[0][i], gi[0])
            np.testing.assert_array_equal(grads[1][i], gi[1])

    def test_scan_and_checkpoint_compose(self):
        def step(h, w):
            h = jax.checkpoint(lambda h: lj.leaky_relu(h @ w, 0.1))(h)
            return h, h.sum()

        ws = jax.random.normal(jax.random.key(1), (4, 3, 3))
        h0 = jnp.array([1.0, -2.0, 0.5])

        def loss(ws):
            h, ys = jax.lax.scan(step, h0, ws)
            return h.sum() + ys.sum()

        def loss_unrolled(ws):
            h, total = h0, 0.0
            for w in ws:
                h = lj.leaky_relu(h @ w, 0.1)
                total += h.sum()
            return h.sum() + total

        np.testing.assert_allclose(jax.grad(loss)(ws), jax.grad(loss_unrolled)(ws), rtol=1e-6)
        np.testing.assert_allclose(jax.jit(jax.grad(loss))(ws), jax.grad(loss)(ws), rtol=1e-6)

    def test_no_leaked_tracers_in_scan(self):
        with jax.checking_leaks():
            out = jax.lax.scan(
                lambda c, x: (c + lj.leaky_relu(x, jnp.float32(0.2)), lj.prelu(x, 0.1)),
                0.0,
                jnp.array([-1.0, 2.0]),
            )
            jax.grad(
                lambda a: jax.lax.scan(
                    lambda c, x: (c + lj.leaky_relu(x, a), None), 0.0, jnp.array([-1.0, 2.0])
                )[0]
            )(jnp.float32(0.1))
        assert out[0] == np.float32(2.0) + np.float32(-1.0) * np.float32(0.2)

    def test_nested_jit_vmap_grad(self):
        f = jax.jit(jax.vmap(jax.jit(jax.grad(jax.jit(lambda x: lj.leaky_relu(x, 0.5))))))
        np.testing.assert_array_equal(f(jnp.array([-1.0, 0.0, 1.0])), [0.5, 0.5, 1.0])

    def test_tracing_does_not_materialize(self):
        jaxpr = jax.make_jaxpr(lambda: lj.leaky_relu(jnp.ones(10**12)))()
        assert jaxpr.out_avals[0].shape == (10**12,)


class GradAtZeroTest(parameterized.TestCase):
    def test_grad_at_zero_in_subdifferential_for_slope_above_one(self):
        g = jax.grad(lambda x: lj.leaky_relu(x, 2.0, grad_at_zero=1.5))(0.0)
        assert g == 1.5


# Slopes whose derivatives every order must get right: zero (Keras's PReLU default), one that
# is subnormal in float32 (it counts as 0 in the forward), a tiny normal one, negative ones.
EDGE_SLOPES = [0.0, -0.0, 1e-40, -1e-40, 1e-37, 0.2, -0.5, -3.0]


def _edge_x():
    return jnp.array([-2.0, -0.5, 0.5, 3.0, -np.inf, np.inf], jnp.float32)


class HigherOrderTest(chex.TestCase):
    """Every derivative order of every function, at zero, tiny and negative slopes, exactly.

    For x != 0: d/dx = 1 or a, d/da = 0 or x, d2/dx2 = d2/da2 = 0 and d2/dxda = 0 or 1.
    """

    @parameterized.parameters(*EDGE_SLOPES)
    def test_mixed_second_derivative_is_one_below_zero(self, slope):
        x = jnp.array([-2.0, 1.0, -1.0])
        a = jnp.float32(slope)
        hessian = jax.hessian(lambda x, a: lj.leaky_relu(x, a).sum(), argnums=(0, 1))(x, a)
        np.testing.assert_array_equal(hessian[0][1], [1.0, 0.0, 1.0])
        np.testing.assert_array_equal(hessian[1][0], [1.0, 0.0, 1.0])
        np.testing.assert_array_equal(hessian[0][0], np.zeros((3, 3)))
        assert hessian[1][1] == 0.0

    @parameterized.parameters(*EDGE_SLOPES)
    def test_every_order_of_leaky_relu_in_x_and_slope(self, slope):
        x = _edge_x()
        finite = np.isfinite(np.asarray(x))
        a = jnp.float32(slope)
        a_used = np.float32(0.0 if abs(slope) < float(jnp.finfo(jnp.float32).tiny) else slope)
        neg = np.asarray(x) < 0

        def f(x, a):
            return lj.leaky_relu(x, a)

        # first order, each way, and the primal output under an outer derivative
        d_x = np.where(neg, a_used, 1.0)
        d_a = np.where(neg, np.asarray(x), 0.0)
        for mode in (jax.jacfwd, jax.jacrev):
            np.testing.assert_array_equal(jax.vmap(mode(f, 0), (0, None))(x, a), d_x)
            np.testing.assert_array_equal(jax.vmap(mode(f, 1), (0, None))(x, a), d_a)
        # the value's own derivative when it is computed together with a derivative
        value_and_d_x = jax.vmap(jax.value_and_grad(f), (0, None))
        _, tangent = jax.jvp(lambda x: value_and_d_x(x, a)[0], (x,), (jnp.ones_like(x),))
        np.testing.assert_array_equal(tangent, d_x)
        _, tangent = jax.jvp(lambda a: value_and_d_x(x, a)[0], (a,), (jnp.float32(1),))
        np.testing.assert_array_equal(tangent, d_a)
        # second order: all four, forward over reverse and reverse over reverse
        second = {
            (0, 0): np.zeros(x.shape),
            (0, 1): neg.astype(np.float32),
            (1, 0): neg.astype(np.float32),
            (1, 1): np.zeros(x.shape),
        }
        for (i, j), want in second.items():
            for outer in (jax.jacfwd, jax.jacrev):
                got = jax.vmap(outer(jax.grad(f, i), j), (0, None))(x, a)
                if (i, j) == (1, 1):
                    got = np.where(finite, got, 0.0)  # d/da of x: 0, inf * 0 aside
                np.testing.assert_array_equal(got, want, err_msg=f"{(i, j)} {outer.__name__}")
        # third order: all zero
        third = jax.vmap(jax.jacfwd(jax.jacfwd(jax.grad(f, 0), 1), 0), (0, None))(x, a)
        np.testing.assert_array_equal(third, np.zeros(x.shape))
        # the static-slope rule, in x, to the third order
        if slope == a_used:
            g = lambda x: lj.leaky_relu(x, slope)  # noqa: E731
            np.testing.assert_array_equal(jax.vmap(jax.grad(g))(x), d_x)
            np.testing.assert_array_equal(jax.vmap(jax.hessian(g))(x), np.zeros(x.shape))
            _, tangent = jax.jvp(
                lambda x: jax.vmap(jax.value_and_grad(g))(x)[0], (x,), (jnp.ones_like(x),)
            )
            np.testing.assert_array_equal(tangent, d_x)

    def test_value_tangent_at_zero_follows_the_zero_convention(self):
        # d/dx at x == 0 is grad_at_zero, also for a value computed beside its derivative.
        x = jnp.array([0.0, -0.0])
        for slope in (0.1, jnp.float32(0.1)):
            for g, want in ((None, 0.1), (1.0, 1.0), (0.5, 0.5)):

                def f(x, g=g, slope=slope):
                    return jax.vmap(
                        jax.value_and_grad(lambda x: lj.leaky_relu(x, slope, grad_at_zero=g))
                    )(x)[0]

                _, tangent = jax.jvp(f, (x,), (jnp.ones_like(x),))
                np.testing.assert_array_equal(tangent, np.float32(want))

    @parameterized.parameters(*EDGE_SLOPES)
    def test_prelu_and_rrelu_every_order(self, slope):
        x = jnp.array([[-2.0, 0.5], [3.0, -1.0]])
        slopes = jnp.array([slope, 0.3], jnp.float32)
        a_used = np.where(np.abs(np.asarray(slopes)) < jnp.finfo(jnp.float32).tiny, 0, slopes)
        neg = np.asarray(x) < 0
        f = lambda x, a: lj.prelu(x, a).sum()  # noqa: E731
        np.testing.assert_array_equal(jax.grad(f)(x, slopes), np.where(neg, a_used, 1.0))
        np.testing.assert_array_equal(
            jax.grad(f, 1)(x, slopes), np.where(neg, np.asarray(x), 0.0).sum(0)
        )
        mixed = jax.jacfwd(jax.grad(f, 1), 0)(x, slopes)  # d/dx_ij of d/da_k
        want = np.zeros((2, 2, 2), np.float32)
        for i, j in zip(*np.nonzero(neg), strict=True):
            want[j, i, j] = 1.0
        np.testing.assert_array_equal(mixed, want)
        np.testing.assert_array_equal(
            jax.jacrev(jax.grad(f, 0), 1)(x, slopes), want.transpose(1, 2, 0)
        )
        # rrelu: its slopes are drawn, so only x is differentiable; second order is 0
        key = jax.random.key(0)
        r = lambda x: lj.rrelu(key, x, 0.0, 0.0).sum()  # noqa: E731
        np.testing.assert_array_equal(jax.grad(r)(x), np.where(neg, 0.0, 1.0))
        np.testing.assert_array_equal(jax.hessian(r)(x), np.zeros((2, 2, 2, 2)))


class JaxArrayLike:
    """The least an object needs for JAX to take it as an array."""

    def __init__(self, value):
        self.value = value

    def __jax_array__(self):
        return jnp.asarray(self.value)


def test_every_public_function_accepts_jax_array_objects():
    """Anything with __jax_array__ (a Flax nnx.Param, say), in every array argument."""
    x = jnp.array([[-2.0, 0.0, 3.0]])
    key = jax.random.key(0)
    calls = [
        lambda w: lj.leaky_relu(w(x), w(0.2)),
        lambda w: lj.leaky_relu(x, grad_at_zero=w(1.0)),
        lambda w: lj.prelu(w(x), w(jnp.array([0.1, 0.2, 0.3]))),
        lambda w: lj.rrelu(w(key), w(x), w(0.1), w(0.3)),
        lambda w: lj.gain(w(0.2)),
        lambda w: lj.he_normal(w(0.2))(w(key), (3, 4)),
        lambda w: lj.he_uniform(w(0.2))(w(key), (3, 4)),
        lambda w: lj.dead_units(w(x)),
        lambda w: lj.dead_fraction(w(x)),
        lambda w: lj.inverse_leaky_relu(w(x), w(0.5)),
        lambda w: lj.leaky_relu_log_abs_det_jacobian(w(x), w(0.5)),
    ]
    for call in calls:
        np.testing.assert_array_equal(call(JaxArrayLike), call(jnp.asarray))
    # and under jit and grad, where the wrapped value is traced
    g = jax.jit(jax.grad(lambda a: lj.leaky_relu(x, JaxArrayLike(a)).sum()))(jnp.float32(0.2))
    assert g == -2.0


def test_flax_nnx_param_slope():
    nnx = pytest.importorskip("flax.nnx")

    class PReLU(nnx.Module):
        def __init__(self, channels):
            self.slope = nnx.Param(jnp.zeros(channels))  # Keras's default: 0

        def __call__(self, x):
            return lj.prelu(x, self.slope)

    model = PReLU(3)
    x = jnp.array([[-2.0, 1.0, -1.0]])
    np.testing.assert_array_equal(model(x), [[0.0, 1.0, 0.0]])
    grads = nnx.grad(lambda m: m(x).sum())(model)
    np.testing.assert_array_equal(grads.slope[...], [-2.0, 0.0, -1.0])
    np.testing.assert_array_equal(
        lj.leaky_relu(x, nnx.Param(jnp.float32(0.5))), [[-1.0, 1.0, -0.5]]
    )
