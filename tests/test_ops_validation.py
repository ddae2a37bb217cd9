"""Bad shapes, dtypes and arguments raise ValueError at the op boundary, with a
message naming the op, the argument and what was expected."""
import numpy as np
import pytest

from npface import ops

f32, f64 = np.float32, np.float64
z = np.zeros


@pytest.mark.parametrize("call, match", [
    (lambda: ops.conv2d_forward(z((2, 3, 4)), z((1, 3, 3, 3)), z(1)), r"conv2d_forward: x must have shape \(N, C, H, W\), got shape \(2, 3, 4\)"),
    (lambda: ops.conv2d_forward(z((1, 3, 4, 4)), z((1, 2, 3, 3)), z(1)), r"w has 2 input channels but x has 3"),
    (lambda: ops.conv2d_forward(z((1, 3, 4, 4)), z((1, 3, 3, 2)), z(1)), r"square kernels"),
    (lambda: ops.conv2d_forward(z((1, 3, 4, 4)), z((2, 3, 3, 3)), z(3)), r"b must have shape \(F,\) = \(2,\), got \(3,\)"),
    (lambda: ops.conv2d_forward(z((1, 3, 2, 2)), z((1, 3, 3, 3)), z(1)), r"does not fit the 2x2 input"),
    (lambda: ops.conv2d_forward(z((1, 3, 4, 4)), z((1, 3, 3, 3)), z(1), stride=0), r"stride must be an integer >= 1, got 0"),
    (lambda: ops.conv2d_forward(z((1, 3, 4, 4)), z((1, 3, 3, 3)), z(1), stride=1.5), r"stride must be an integer"),
    (lambda: ops.conv2d_forward(z((1, 3, 4, 4)), z((1, 3, 3, 3)), z(1), pad=-1), r"pad must be an integer >= 0, got -1"),
    (lambda: ops.conv2d_forward(z((1, 3, 4, 4), f32), z((1, 3, 3, 3), f64), z(1, f32)), r"w has dtype float64 but the other inputs are float32"),
    (lambda: ops.conv2d_forward(z((1, 3, 4, 4), np.uint8), z((1, 3, 3, 3)), z(1)), r"x must be float32 or float64, got dtype uint8"),
    (lambda: ops.conv2d_forward([[1.0]], z((1, 3, 3, 3)), z(1)), r"x must be a numpy array"),
    (lambda: ops.conv2d_forward(z((0, 3, 4, 4)), z((1, 3, 3, 3)), z(1)), r"x must not be empty"),
    (lambda: ops.conv2d_backward(z((1, 1, 3, 3)), ops.conv2d_forward(z((1, 3, 4, 4)), z((1, 3, 3, 3)), z(1))[1]), r"dout must have shape \(N, F, Ho, Wo\) = \(1, 1, 2, 2\)"),
    (lambda: ops.linear_forward(z((2, 3)), z((4, 5)), z(4)), r"w must have shape \(F, D=3\)"),
    (lambda: ops.linear_forward(z((2, 3)), z((4, 3)), z(5)), r"b must have shape \(F,\) = \(4,\)"),
    (lambda: ops.linear_forward(z(3), z((4, 3)), z(4)), r"x must have shape \(N, D\)"),
    (lambda: ops.linear_backward(z((2, 5)), ops.linear_forward(z((2, 3)), z((4, 3)), z(4))[1]), r"dout must have shape \(N, F\) = \(2, 4\)"),
    (lambda: ops.relu_forward(z(3, np.int64)), r"relu_forward: x must be a float32 or float64 array"),
    (lambda: ops.relu_backward(z(4), ops.relu_forward(z(3))[1]), r"dout must be a float64 array of the forward shape \(3,\)"),
    (lambda: ops.maxpool2d_forward(z((1, 1, 4, 4)), size=0), r"size must be an integer >= 1"),
    (lambda: ops.maxpool2d_backward(z((1, 1, 3, 3)), ops.maxpool2d_forward(z((1, 1, 4, 4)))[1]), r"dout must have shape \(N, C, Ho, Wo\) = \(1, 1, 2, 2\)"),
    (lambda: ops.maxpool2d_backward(z((1, 1, 2, 2), f64), ops.maxpool2d_forward(z((1, 1, 4, 4), f32))[1]), r"maxpool2d_backward: dout has dtype float64 but the other inputs are float32"),
    (lambda: ops.warp_backward(z((1, 3, 5, 4)), ops.warp_forward(z((1, 3, 4, 4)), z((1, 2, 3)), 4, 4)[1]), r"dout must have shape \(N, C, out_h, out_w\) = \(1, 3, 4, 4\), got \(1, 3, 5, 4\)"),
    (lambda: ops.pose_to_theta(z((2, 3))), r"pose must be a float array of shape \(N, 4\)"),
    (lambda: ops.warp_forward(z((1, 3, 4, 4)), z((1, 3, 2)), 4, 4), r"theta must have shape \(N, 2, 3\)"),
    (lambda: ops.warp_forward(z((1, 3, 4, 4)), z((1, 2, 3)), 0, 4), r"out_h must be an integer >= 1, got 0"),
    (lambda: ops.warp_forward(z((1, 3, 4, 4), f32), z((1, 2, 3), f64), 4, 4), r"theta has dtype float64 but the other inputs are float32"),
    (lambda: ops.warp_backward(z((1, 2, 4, 4)), ops.warp_forward(z((1, 3, 4, 4)), z((1, 2, 3)), 4, 4)[1]), r"dout must have shape \(N, C, out_h, out_w\)"),
    (lambda: ops.pair_hinge_backward(ops.pair_hinge_forward(z((2, 2)), np.array([0, 1]), 1.0)[1], dloss="1"), r"dloss must be a real scalar"),
])
def test_bad_input_raises_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_float32_stays_float32_through_every_op():
    x = np.ones((1, 2, 4, 4), f32)
    assert ops.conv2d_forward(x, np.ones((3, 2, 3, 3), f32), np.ones(3, f32), 1, 1)[0].dtype == f32
    assert ops.maxpool2d_forward(x)[0].dtype == f32
    assert ops.relu_forward(x)[0].dtype == f32
    assert ops.warp_forward(x, np.zeros((1, 2, 3), f32), 2, 2)[0].dtype == f32
    assert ops.linear_forward(np.ones((2, 3), f32), np.ones((4, 3), f32), np.ones(4, f32))[0].dtype == f32
    assert ops.maxpool2d_backward(np.ones((1, 2, 2, 2), f32), ops.maxpool2d_forward(x)[1]).dtype == f32
    assert ops.pose_to_theta(np.ones((3, 4), f32)).dtype == f32


def test_threads_limit_validates_and_restores():
    import numba

    from npface.threads import limit
    before = numba.get_num_threads()
    with limit(1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    for bad in (0, 1.0, True, 10**6):
        with pytest.raises(ValueError, match="threads must be an integer from 1 to"):
            with limit(bad):
                pass


def test_overlapping_thread_limits_keep_blas_single_threaded_until_the_last_leaves():
    # Blocks on different Python threads overlap in any order; BLAS's thread count is process-wide.
    from npface.threads import _blas_controller, limit

    def blas_threads():
        return [lib.get_num_threads() for lib in _blas_controller().lib_controllers if lib.user_api == "blas"]

    before = blas_threads()
    first, second = limit(1), limit(1)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)                     # the first block ends while the second runs
    try:
        assert set(blas_threads()) == {1}
    finally:
        second.__exit__(None, None, None)
    assert blas_threads() == before
