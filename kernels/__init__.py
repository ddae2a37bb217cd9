"""Numba kernels: the loops behind ``npface.ops``.

Every kernel writes into arrays its caller allocated and trusts its inputs
(shapes, dtypes, contiguity are checked once, in ``npface.ops``). Beside each
kernel stays a slow, obvious reference (the ``*_reference`` functions): the
test oracle and the benchmark baseline. The compile policy lives in
``kernels.jit``.
"""
