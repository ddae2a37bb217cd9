"""Numerical gradients for the tests: central differences in float64.

Every op's backward is checked against the derivative of the scalar
sum(dout * f(x)), where dout is a random upstream gradient: this checks the
whole vector-Jacobian product, not just a few directions.
"""
import numpy as np

STEP = 1e-6
# Central differences of a function that is linear or piecewise linear near
# the point are exact up to rounding, about eps * |f| / STEP ~ 1e-9 here;
# a wrong gradient is off by O(1).
RTOL, ATOL = 1e-5, 1e-6


def numerical_gradient(f, x, dout, step=STEP):
    """d sum(dout * f()) / dx, element by element. ``f`` reads ``x``, which is
    perturbed in place and restored; x must be a float64 C-contiguous array."""
    assert x.dtype == np.float64 and x.flags.c_contiguous
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + step
        plus = np.sum(dout * f())
        flat[k] = old - step
        minus = np.sum(dout * f())
        flat[k] = old
        gflat[k] = (plus - minus) / (2 * step)
    return grad


def assert_gradient(analytic, numeric, name):
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=ATOL, err_msg=f"gradient of {name}")


def snapshot(*arrays):
    """Copies of the arrays, to check later that an op left its inputs unchanged."""
    return [np.array(a, copy=True) for a in arrays]


def assert_unchanged(before, after):
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b, err_msg="an op modified its input")
