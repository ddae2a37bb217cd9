"""A register-tiled float32 matrix product, out (M, N) = a (M, K) @ B (K, N) (+ bias, ReLU), written as
LLVM vector code: the inference plan's convolutions at batch 1.

A convolution at batch 1 is a thin product (M = F filters, K = C*K*K, N = Ho*Wo pixels: 128 x 1152 x 16
for conv6, 32 x 75 x 3136 for nin1's). A general BLAS first copies both operands into its own blocked
layout, made for big matrices; on products this small that copying costs a good share of the time, and
so does the im2col matrix B itself (940 KB for nin1, written and then read again). This kernel copies
nothing, B included:

- B is read by rows from a flat array, B[k, n] = b[rows_b[k] + n]. Where B is a stored matrix, rows_b[k]
  = k * (its row stride). Where B is a convolution's im2col matrix, b is the input's (polyphase) planes
  and row k = (c, p, q) starts at tap (p, q) of channel c: ``kernels.conv.conv2d_forward_tiled``.
- The micro-kernel keeps a tile of out, MR = 4 rows by NV = 3 vectors of W lanes (W = 16 where the
  processor has AVX-512, 8 elsewhere), in 12 vector registers while k runs over K. Each step loads the
  tile's NV vectors of B's row k (unaligned loads of adjacent columns), broadcasts a[i, k] for its 4
  rows, and does the 4 * NV fused multiply-adds ``acc[r, v] += a[i + r, k] * B[k, j + v*W : j + (v+1)*W]``.
  Then it stores the tile once, adding the bias and clipping at 0 on the way (the layer's epilogue, so
  the output is not read and written again for it).
- The tiles of one panel of NV*W columns run down the rows of out, so the panel of B (K x NV*W values)
  is read from the cache for each block of rows; a's rows are read where they lie, 4 rows at a time.
- Edges: the last 1-3 rows are a tile with fewer rows; the last columns, fewer than a panel, a tile whose
  vectors are loaded and stored under a lane mask (lane l of vector v is live when v*W + l < the number
  of columns left), so nothing outside a, B's rows, out or bias is touched.

Each out[i, j] is summed over k in increasing order, in blocks of KC = 256 terms: within a block one fused
multiply-add at a time in a register (``llvm.fmuladd``: fused where the processor has the instruction),
then the block's sum is added into out. So a result depends only on the operands and K, never on the
shapes around it or on timing. The loop is written directly in LLVM's vector IR (through
``numba.extending.intrinsic``), because Numba's loop vectoriser does not keep a 2-D block of accumulators
in registers. ``direct_fits`` and ``fits`` say which convolutions the tiles take (the others are left to
the BLAS); ``python -m benchmarks.tiles`` times both ways on Table 2's convolutions.

``tiled_matmul_reference`` is the slow, obvious version: the same sums in float64.
"""
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import carray, cfunc, types
from numba.core import cgutils
from numba.extending import intrinsic

from kernels.jit import FASTMATH, kernel

_FEATURES = llvm.get_host_cpu_features()


def _has(feature):
    return _FEATURES.get(feature, False)


# Only where the processor has AVX2 and fused multiply-adds (elsewhere every product goes to the BLAS)
AVAILABLE = _has("avx2") and _has("fma")
W = 16 if _has("avx512f") else 8          # lanes per vector: one zmm register, or one ymm
MR = 4                                    # rows of out per tile
NV = 3                                    # vectors per tile row
PANEL = NV * W                            # columns of out per tile
KC = 256                                  # terms a tile sums in registers before adding them into out

_F32 = ir.FloatType()
_I1, _I32, _I64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
_VEC = ir.VectorType(_F32, W)


def _splat(builder, value, vector_type):
    """<value, value, ..., value> of vector_type."""
    lanes = vector_type.count
    one = builder.insert_element(ir.Constant(vector_type, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vector_type, None),
                                  ir.Constant(ir.VectorType(_I32, lanes), [0] * lanes))


def _tile(rows, vectors, masked):
    """The micro-kernel for one tile of ``rows`` x ``vectors`` vectors, as a Numba intrinsic:

        tile(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)

    a, b, out, bias: float32 arrays (any shape); a0, o0, bias0: the flat element offsets of the
    tile's a[i, 0], out[i, j] and bias[i] from each array's first element; lda, ldo: the row
    strides in elements. b's row k (of the tile's K) starts at the flat offset b0 + rows_b[k0 + k]
    (rows_b: int64; b0 = the tile's first column j). ``ncols`` is the number of live columns when
    ``masked`` (ignored otherwise). If accumulate, the tile's sums are added to what out holds.
    Epilogue: out = acc + bias[i + r] if has_bias (bias is not read otherwise), then 0 where
    out <= 0 if relu (a NaN stays NaN: NaN <= 0 is false), the rule of ``kernels.blas.add_bias``.
    """
    @intrinsic
    def tile(typingctx, a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu,
             accumulate):
        sig = types.void(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu,
                         accumulate)

        def codegen(context, builder, signature, args):
            t = signature.args

            def integer(i):
                return context.cast(builder, args[i], t[i], types.int64)

            def pointer(i, offset):
                array = context.make_array(t[i])(context, builder, args[i])
                return builder.gep(array.data, [offset], inbounds=True)

            a0, lda, b0, k0, o0, ldo, K, ncols, bias0 = (integer(i) for i in (1, 2, 4, 6, 8, 9, 10, 11, 13))
            has_bias = context.cast(builder, args[14], t[14], types.boolean)
            relu = context.cast(builder, args[15], t[15], types.boolean)
            accumulate = context.cast(builder, args[16], t[16], types.boolean)
            a_ptr, b_ptr, o_ptr, rows_ptr = pointer(0, a0), pointer(3, b0), pointer(7, o0), pointer(5, k0)
            module = builder.module
            fmuladd = cgutils.get_or_insert_function(
                module, ir.FunctionType(_VEC, [_VEC, _VEC, _VEC]), f"llvm.fmuladd.v{W}f32")
            zero = ir.Constant(_VEC, [0.0] * W)
            masks = [None] * vectors
            if masked:
                mask_type = ir.VectorType(_I1, W)
                masked_load = cgutils.get_or_insert_function(
                    module, ir.FunctionType(_VEC, [ir.PointerType(), _I32, mask_type, _VEC]),
                    f"llvm.masked.load.v{W}f32.p0")
                masked_store = cgutils.get_or_insert_function(
                    module, ir.FunctionType(ir.VoidType(), [_VEC, ir.PointerType(), _I32, mask_type]),
                    f"llvm.masked.store.v{W}f32.p0")
                live = _splat(builder, ncols, ir.VectorType(_I64, W))
                for v in range(vectors):
                    lane_columns = ir.Constant(ir.VectorType(_I64, W), [v * W + lane for lane in range(W)])
                    masks[v] = builder.icmp_signed("<", lane_columns, live)

            def load_vector(address, v):
                if masked:
                    return builder.call(masked_load, [address, ir.Constant(_I32, 4), masks[v], zero])
                return builder.load(builder.bitcast(address, _VEC.as_pointer()), typ=_VEC, align=4)

            def store_vector(value, address, v):
                if masked:
                    builder.call(masked_store, [value, address, ir.Constant(_I32, 4), masks[v]])
                else:
                    builder.store(value, builder.bitcast(address, _VEC.as_pointer()), align=4)

            def column(base, v):
                return builder.gep(base, [ir.Constant(_I64, v * W)], inbounds=True)

            def row(base, r, stride):
                return builder.gep(base, [builder.mul(ir.Constant(_I64, r), stride)], inbounds=True)

            # What the block's sums are added to: 0, or, to accumulate, what out holds (a select, so the loads
            # are harmless whatever out holds; they bring into the cache the lines the tile will store).
            start = [[zero] * vectors for _ in range(rows)]
            held = []
            for r in range(rows):
                out_row = row(o_ptr, r, ldo)
                held.append([builder.select(accumulate, load_vector(column(out_row, v), v), zero)
                             for v in range(vectors)])

            # The k loop. acc[r][v] are phi nodes (registers); k runs 0 .. K-1.
            entry = builder.basic_block
            loop = builder.append_basic_block("tile.k")
            summed_up = builder.append_basic_block("tile.summed")
            with_bias = builder.append_basic_block("tile.bias")
            epilogue = builder.append_basic_block("tile.store")
            builder.cbranch(builder.icmp_signed(">", K, ir.Constant(_I64, 0)), loop, summed_up)
            builder.position_at_end(loop)
            k = builder.phi(_I64)
            acc = [[builder.phi(_VEC) for _ in range(vectors)] for _ in range(rows)]
            b_start = builder.load(builder.gep(rows_ptr, [k], inbounds=True), typ=_I64, align=8)
            b_row = builder.gep(b_ptr, [b_start], inbounds=True)
            b_k = [load_vector(column(b_row, v), v) for v in range(vectors)]
            step = []
            for r in range(rows):
                a_rk = builder.load(builder.gep(row(a_ptr, r, lda), [k], inbounds=True), typ=_F32, align=4)
                a_rk = _splat(builder, a_rk, _VEC)
                step.append([builder.call(fmuladd, [a_rk, b_k[v], acc[r][v]]) for v in range(vectors)])
            k_next = builder.add(k, ir.Constant(_I64, 1))
            builder.cbranch(builder.icmp_signed("<", k_next, K), loop, summed_up)
            k.add_incoming(ir.Constant(_I64, 0), entry)
            k.add_incoming(k_next, loop)
            for r in range(rows):
                for v in range(vectors):
                    acc[r][v].add_incoming(start[r][v], entry)
                    acc[r][v].add_incoming(step[r][v], loop)

            # The sums (zero when K = 0); the bias is read only when there is one.
            builder.position_at_end(summed_up)
            total = [[builder.phi(_VEC) for _ in range(vectors)] for _ in range(rows)]
            for r in range(rows):
                for v in range(vectors):
                    total[r][v].add_incoming(start[r][v], entry)
                    total[r][v].add_incoming(step[r][v], loop)
            builder.cbranch(has_bias, with_bias, epilogue)
            builder.position_at_end(with_bias)
            bias_ptr = pointer(12, bias0)
            bias_r = [builder.load(builder.gep(bias_ptr, [ir.Constant(_I64, r)], inbounds=True), typ=_F32, align=4)
                      for r in range(rows)]
            builder.branch(epilogue)

            # out = acc (+ bias) (then ReLU), one store per vector.
            builder.position_at_end(epilogue)
            for r in range(rows):
                b_r = builder.phi(_F32)
                b_r.add_incoming(bias_r[r], with_bias)
                b_r.add_incoming(ir.Constant(_F32, 0.0), summed_up)
                bias_r[r] = b_r
            for r in range(rows):
                b_r = _splat(builder, bias_r[r], _VEC)
                out_row = row(o_ptr, r, ldo)
                for v in range(vectors):
                    value = builder.select(accumulate, builder.fadd(held[r][v], total[r][v]), total[r][v])
                    value = builder.select(has_bias, builder.fadd(value, b_r), value)
                    clipped = builder.select(builder.fcmp_ordered("<=", value, zero), zero, value)
                    store_vector(builder.select(relu, clipped, value), column(out_row, v), v)
            return context.get_dummy_value()
        return sig, codegen
    return tile


# The full tile and the tiles of the edges: _FULL[rows], _MASKED[rows][vectors] (rows 1..4, vectors 1..3).
_FULL = {r: _tile(r, NV, False) for r in range(1, MR + 1)}
_MASKED = {r: {v: _tile(r, v, True) for v in range(1, NV + 1)} for r in range(1, MR + 1)}
_full4, _full3, _full2, _full1 = _FULL[4], _FULL[3], _FULL[2], _FULL[1]
_m41, _m42, _m43 = _MASKED[4][1], _MASKED[4][2], _MASKED[4][3]
_m31, _m32, _m33 = _MASKED[3][1], _MASKED[3][2], _MASKED[3][3]
_m21, _m22, _m23 = _MASKED[2][1], _MASKED[2][2], _MASKED[2][3]
_m11, _m12, _m13 = _MASKED[1][1], _MASKED[1][2], _MASKED[1][3]


@kernel
def _full_tile(rows, a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, bias, bias0, has_bias, relu, accumulate):
    """One tile of PANEL columns and ``rows`` (1..4) rows."""
    if rows == 4:
        _full4(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, PANEL, bias, bias0, has_bias, relu, accumulate)
    elif rows == 3:
        _full3(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, PANEL, bias, bias0, has_bias, relu, accumulate)
    elif rows == 2:
        _full2(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, PANEL, bias, bias0, has_bias, relu, accumulate)
    else:
        _full1(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, PANEL, bias, bias0, has_bias, relu, accumulate)


@kernel
def _edge_tile(rows, ncols, a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, bias, bias0, has_bias, relu, accumulate):
    """One tile of ``ncols`` (1 .. PANEL-1) columns under a lane mask and ``rows`` (1..4) rows."""
    vectors = (ncols + W - 1) // W
    if rows == 4:
        if vectors == 1:
            _m41(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
        elif vectors == 2:
            _m42(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
        else:
            _m43(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
    elif rows == 3:
        if vectors == 1:
            _m31(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
        elif vectors == 2:
            _m32(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
        else:
            _m33(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
    elif rows == 2:
        if vectors == 1:
            _m21(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
        elif vectors == 2:
            _m22(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
        else:
            _m23(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
    else:
        if vectors == 1:
            _m11(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
        elif vectors == 2:
            _m12(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)
        else:
            _m13(a, a0, lda, b, b0, rows_b, k0, out, o0, ldo, K, ncols, bias, bias0, has_bias, relu, accumulate)


@kernel
def fits(N, K):
    """True when the tiles take a product of N columns summed over K from an im2col matrix
    (``kernels.conv.conv2d_forward_tiled``, where ``direct_fits`` is false: conv6):

    - K >= 256: on a short sum a tile spends much of its time setting up and storing, and on products
      from an im2col matrix (before the tiles read the planes) the BLAS was faster there (nin1's 75-long
      patches, Table 2's 1x1 layers);
    - the lanes the mask leaves idle in the last panel are at most N/8 (N = 49, the 7 x 7 layers,
      would leave 15 of 64 idle with W = 16, and the BLAS was faster there too).
    """
    return AVAILABLE and N > 0 and K >= 256 and ((-N) % W) * 8 <= N


@kernel
def direct_fits(Ho, Wo, Wh):
    """True when a convolution with Ho x Wo outputs runs on the tiles straight from its input planes, over
    rows Wh wide (``kernels.conv.conv2d_forward_tiled``): when those Ho*Wh columns take at most 5/4 of the
    vectors the Ho*Wo columns of its im2col matrix would. Measured against im2col + the BLAS on Table 2's
    convolutions (``python -m benchmarks.tiles``): every one with at most 1.22x the vectors ran faster
    (align.conv4, 12 x 14 columns for 12 x 12), conv6 with 2x (4 x 5 columns in 2 vectors for 4 x 4 in 1)
    ran slower.
    """
    wide, compact = -(-Ho * Wh // W), -(-Ho * Wo // W)
    return AVAILABLE and Ho > 0 and Wo > 0 and 4 * wide <= 5 * compact


@kernel
def tiled_matmul(a, lda, b, rows_b, out, ldo, bias, has_bias, relu):
    """out (M, N) = a (M, K) @ B [+ bias (M,) broadcast along each row] [then ReLU], float32, where
    B (K, N) is read from the flat array b by rows: B[k, n] = b[rows_b[k] + n].

    For a row-major matrix b (K, N) with row stride ldb, rows_b[k] = k * ldb (``matrix_rows``); a
    convolution's input planes give the rows of its im2col matrix without copying them
    (``kernels.conv.conv2d_forward_tiled``). a and out are given by their arrays and row strides in
    elements (lda, ldo): their columns must be adjacent (stride 1), their rows ``ld`` elements apart (a
    view of a bigger matrix is fine). bias is read only when has_bias. The caller checks all of this.

    A tile sums KC terms at a time in its registers and adds each such partial sum into out
    (the bias and the ReLU come with the last): one running sum over all of a long K (1152 for
    conv6) would carry about twice the rounding error of the BLAS, which sums in blocks too.
    """
    M, K = a.shape
    N = out.shape[1]
    full = N - N % PANEL
    for j in range(0, N, PANEL):                      # panels of PANEL columns; the last may be narrower
        for i in range(0, M, MR):                     # blocks of MR rows; the last may be shorter
            rows = min(MR, M - i)
            k0 = 0
            while True:                               # K in blocks of KC (one empty block if K = 0)
                k1 = min(K, k0 + KC)
                last = k1 == K
                if j < full:
                    _full_tile(rows, a, i * lda + k0, lda, b, j, rows_b, k0, out, i * ldo + j, ldo, k1 - k0,
                               bias, i, has_bias and last, relu and last, k0 > 0)
                else:                                 # under a lane mask
                    _edge_tile(rows, N - full, a, i * lda + k0, lda, b, full, rows_b, k0, out, i * ldo + full,
                               ldo, k1 - k0, bias, i, has_bias and last, relu and last, k0 > 0)
                if last:
                    break
                k0 = k1


@kernel
def matrix_rows(K, ldb, rows_b):
    """rows_b[k] = k * ldb for k < K: the rows of a row-major matrix with row stride ldb."""
    for k in range(K):
        rows_b[k] = k * ldb


def tiled_matmul_reference(a, b, rows_b, N, bias=None, relu=False):
    """The same product the slow, obvious way: B gathered row by row, float64 sums, then + bias, then
    ReLU; returns float64."""
    B = np.stack([b[start:start + N] for start in rows_b]) if len(rows_b) else np.zeros((0, N))
    out = a.astype(np.float64) @ B.astype(np.float64)
    if bias is not None:
        out += bias.astype(np.float64)[:, None]
    if relu:
        out = np.where(out <= 0.0, 0.0, out)
    return out


# ---------------------------------------------------------------------------------------------
# One compiled copy, called through its address: ``kernels.blas`` gives the kernels that multiply this
# entry point as an external function, so the tiles are compiled once rather than inlined into each.
# ---------------------------------------------------------------------------------------------
TILES_SIGNATURE = types.void(types.int64, types.int64, types.int64, types.voidptr, types.int64, types.voidptr,
                             types.int64, types.voidptr, types.voidptr, types.int64, types.voidptr, types.int64,
                             types.int64)


def _tiles_entry(M, N, K, A, lda, B, b_size, rows_b, C, ldc, bias, has_bias, relu):
    """out = a @ B (+ bias) (ReLU) on raw addresses: a (M, K) rows lda apart; B[k, n] = b[rows_b[k] + n] with
    b b_size floats long and rows_b (K,) int64; out (M, N) rows ldc apart; bias (M,) when has_bias."""
    a = carray(A, (max(M, 1), max(lda, 1)), np.float32)[:M, :K]
    b = carray(B, (max(b_size, 1),), np.float32)
    r = carray(rows_b, (max(K, 1),), np.int64)
    c = carray(C, (max(M, 1), max(ldc, 1)), np.float32)[:M, :N]
    bv = carray(bias, (max(M, 1),), np.float32)
    tiled_matmul(a, lda, b, r, c, ldc, bv, has_bias != 0, relu != 0)


def tiles_address():
    """The address of the compiled C entry point (compiled, or loaded from the cache, on first use)."""
    return cfunc(TILES_SIGNATURE, cache=True, fastmath=set(FASTMATH))(_tiles_entry).address
