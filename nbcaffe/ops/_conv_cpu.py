"""CPU convolution: the strategies (plans) and their drivers, shared by Conv, ConvGradient,
ConvTranspose and ConvTransposeGradient.

Strategies (the measurements behind each choice are in docs/design.md, "Convolution"):

* 1x1, stride 1, no padding: GEMMs on the tensors themselves, no im2col.
* NCHW, unit strides, at most 2 spatial dims, padded width <= 1.2x the output width and
  KH*C/G >= 32 (e.g. 3x3 on 56x56x64): "row-shift" GEMMs.  The zero-padded image is
  flattened with its padded row length Wp, so shifting the window by a kernel column is a
  shift by one in the flat index.  Only the KH kernel-row shifts are copied (col3: KH x the
  input instead of im2col's KH*KW x); one GEMM with the filter rearranged to (KW*M, KH*C)
  gives KW partial images Z, and Y is the sum of those partials shifted by kw (one pass that
  also adds the bias).  Extra work: the Wp - Wo garbage columns per row (3.6% at 56x56).
* NCHW, unit strides, at most 2 spatial dims and a shallow GEMM (Cg*KH*KW <= 32, e.g. LeNet's
  first layer: 1 channel, 5x5): "direct" padded-row kernels, no GEMM and no im2col matrix
  (_conv_kernels.direct_*).  The forward pass accumulates each output channel over contiguous
  row passes of the (padded) input plane, five kernel columns per pass; the filter gradient
  is one dot product per tap between dY's rows (padded to the same row length) and the input
  plane, with the bias gradient summed on the way.
* NCHW, at most 2 spatial dims, one input channel per group (depthwise, e.g. UltraFace's 3x3
  stride 1/2 layers): a direct kernel per output plane (_direct_kernels.depthwise_conv_nchw),
  any stride, pad or dilation; the per-group GEMMs it replaces are 9 deep.
* Everything else: im2col per chunk of images, the chunk's images side by side in the col
  matrix so one GEMM serves them all (small images: LeNet's 8x8 outputs), then a scatter.
* Gradients: dX with unit strides is a row-shift convolution of dY with the flipped,
  transposed filter; otherwise the GEMM Wᵀ·dY followed by col2im.  dW accumulates
  col·dYᵀ per chunk into per-chunk partial sums that are added in a fixed order, so results
  do not depend on thread timing.
* Chunks / row blocks run on a small thread pool with OpenBLAS set to one thread
  (``nbcaffe.threads.run_tasks``).

ConvTranspose is the adjoint of a convolution: its forward pass is a convolution's input
gradient, its input gradient a convolution, its filter gradient a convolution's filter
gradient with the roles of input and output swapped; the same drivers serve both ops.
"""

from __future__ import annotations

import math

import numpy as np

from nbcaffe.devices import CPU
from nbcaffe.ops import _conv_pool as cp
from nbcaffe.ops._conv_kernels import (
    add_bias_cols,
    add_bias_rows,
    add_residual,
    bias_grad_cols,
    bias_grad_rows,
    col2im_nchw,
    col2im_nhwc,
    gather_images,
    im2col_nchw,
    im2col_nchw_rows,
    im2col_nhwc,
    rowshift_col3,
    rowshift_sum,
    scatter_images,
    sum_partials,
)
from nbcaffe.ops._direct_kernels import depthwise_conv_nchw, direct_conv_nchw, direct_filter_grad_nchw

# Scratch budget (bytes) of one task's col / col3+Z buffers: big enough that a 64-channel
# 56x56 image is one row-shift task, small enough to stay in a large L2/L3 slice.
TASK_BYTES = 8 << 20
# Image-chunk tasks per thread (GEMM strategies): several, so that a core slowed by a co-tenant
# hands its share to the other one (with one task per thread the op waits for the slow half).
TASKS_PER_THREAD = 4


# ============================================================================ plans
# A plan is a tuple of ints that the kernels (CPU and CUDA) take next to the arrays:
# (nchw, group, has_bias, strategy, chunk or rows, workers) + the 18 canonical window ints.
# Scratch (CPU only; the CUDA kernels need none) is a 4-tuple of per-worker / per-task
# arrays: (col, aux, parts, extra) whose meaning depends on the pass (see each driver).

FWD_GEMM1X1, FWD_ROWSHIFT, FWD_IM2COL, FWD_DIRECT, FWD_DEPTHWISE = 0, 1, 2, 3, 4
PLAN_HEAD = 6
# Row-shift computes padded-width columns; above this ratio of computed to needed columns
# (small images: LeNet's 12x12 -> 8x8 conv computes 1.5x) im2col is cheaper, and below this
# GEMM depth (KH x input channels per group; LeNet's conv1 has 5) the GEMMs are too thin.
ROWSHIFT_MAX_WASTE = 1.2
ROWSHIFT_MIN_DEPTH = 32
ROWSHIFT_MIN_SPLIT_POSITIONS = 512
# Direct padded-row kernels (_conv_kernels.direct_*) where the GEMM would be this shallow or
# less (input channels per group x taps: LeNet's first layer has 25), the padded rows waste
# at most this ratio of extra positions, and few output channels per group re-read the input
# plane (the GEMM reads it once for all of them) over short enough rows (positions per image,
# the accumulator row stays in L1).  Measured against im2col + GEMM on 1-3 input channels,
# 3x3 / 5x5, 16-64 outputs, 28-224 pixels: the forward pass wins up to ~20 outputs and ~3k
# positions and loses 1.5-6x beyond (224x224x64: 107 vs 17 ms); the filter gradient wins up to
# 32 outputs (0.7-0.9x) and loses from 64 outputs on small images.
DIRECT_MAX_DEPTH = 32
DIRECT_MAX_WASTE = 1.5
DIRECT_FWD_MAX_OUT = 24
DIRECT_FWD_MAX_POSITIONS = 4096
DIRECT_GRAD_MAX_OUT = 32
DIRECT_GRAD_MAX_POSITIONS = 16384
# A forward convolution with fewer multiply-adds than this runs on the calling thread alone:
# handing tasks to the pool cost 0.05-0.15 ms per op on the quiet 2-core VM (GIL hand-offs
# between the tasks' Python parts, waking the idle worker), more than the second core saves
# (MTCNN P-Net b8, five convs of 0.1-1.7 M MACs: 0.87 ms on two threads, 0.11 ms on one;
# CIFAR-10 quick b1, 2.4 and 6.5 M MACs: 0.27 / 0.42 ms on two, 0.10 / 0.29 ms on one).
FORWARD_SERIAL_MACS = 8 << 20
# Direct passes split the batch into about this many tasks per thread (balance under a
# co-tenant; a task of a few images costs ~5 us to hand out).
DIRECT_TASKS_PER_THREAD = 4


def _canon(plan):
    return plan[PLAN_HEAD:]


def _pointwise(geo):
    return all(k == 1 for k in geo.kernel) and all(s == 1 for s in geo.stride) and \
        not any(geo.pad_head) and not any(geo.pad_tail)


def _rowshift_ok(geo, canon):
    """Row-shift needs NCHW, unit strides, at most 2 spatial dims and non-negative head pads."""
    return geo.order == "NCHW" and all(s == 1 for s in geo.stride) and canon[0] == 1 and canon[3] == 1 \
        and canon[6] == 1 and min(canon[15:]) >= 0


def _direct_ok(geo, canon, cg, mg, forward):
    """Direct kernels: NCHW, at most 2 spatial dims, unit strides, non-negative head pads, a
    shallow GEMM depth, few wasted positions per padded row, few outputs, short rows."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = canon
    Wp = Wo + (KW - 1) * DW
    max_out, max_positions = ((DIRECT_FWD_MAX_OUT, DIRECT_FWD_MAX_POSITIONS) if forward
                              else (DIRECT_GRAD_MAX_OUT, DIRECT_GRAD_MAX_POSITIONS))
    return (geo.order == "NCHW" and D == 1 and KD == 1 and SH == 1 and SW == 1 and min(PH, PW) >= 0
            and cg * KH * KW <= DIRECT_MAX_DEPTH and Wp <= DIRECT_MAX_WASTE * Wo and mg <= max_out
            and Ho * Wp <= max_positions)


def _depthwise_ok(geo, canon, cg, group):
    """The depthwise kernel: NCHW, at most 2 spatial dims, one input channel per group."""
    return geo.order == "NCHW" and canon[0] == 1 and canon[6] == 1 and cg == 1 and group > 1


def _direct_plan(n, canon, cg, threads):
    """(chunk, workers, n_tasks, L, plane) of a direct pass: images per task, positions per
    padded-row image, and the padded planes' scratch size."""
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = canon
    Wp = Wo + (KW - 1) * DW
    Hp = Ho + (KH - 1) * DH
    chunk = max(1, -(-n // (threads * DIRECT_TASKS_PER_THREAD))) if threads > 1 else n
    n_tasks = -(-n // chunk)
    return chunk, min(threads, n_tasks), n_tasks, Ho * Wp, cg * Hp * Wp


def _chunk(n, per_image_bytes, threads):
    """Images per task: within TASK_BYTES, and at least TASKS_PER_THREAD tasks per thread when
    there are images enough."""
    if threads == 1:
        return max(1, min(TASK_BYTES // max(per_image_bytes, 1), n))
    return max(1, min(TASK_BYTES // max(per_image_bytes, 1), -(-n // (threads * TASKS_PER_THREAD))))


def forward_plan(geo: cp.Geometry, group, has_bias, m_out, itemsize, cpu=True, rowshift=True, direct=True,
                 depthwise=True, serial_macs=0):
    """(plan, scratch shapes) of y = conv(x) for ``geo`` (x: (N, C, in_sp) -> y: (N, m_out, out_sp));
    with fewer than ``serial_macs`` multiply-adds, one thread (the forward ops pass
    FORWARD_SERIAL_MACS; the gradients' plans keep the pool)."""
    canon = geo.canonical()
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = canon
    nchw = int(geo.order == "NCHW")
    n, c = max(geo.batch, 1), geo.channels  # an empty batch plans like one image (and runs nothing)
    cg, mg = c // group, m_out // group
    P = Do * Ho * Wo
    threads = cp.num_threads() if cpu else 1
    if n * m_out * cg * KD * KH * KW * P < serial_macs:
        threads = 1
    head = (nchw, group, int(has_bias))
    if depthwise and cpu and _depthwise_ok(geo, canon, cg, group):
        planes = n * m_out
        chunk = max(1, -(-planes // (threads * DIRECT_TASKS_PER_THREAD))) if threads > 1 else planes
        workers = min(threads, -(-planes // chunk))
        Hq, Wq = Ho + (KH - 1) * DH // SH, Wo + (KW - 1) * DW // SW
        shapes = ((workers, (Ho - 1) * Wq + Wo), (workers, SH * SW * Hq * Wq), (1,), (1,))
        return head + (FWD_DEPTHWISE, chunk, workers) + canon, shapes
    if _pointwise(geo):
        # tasks: image chunks, or row blocks of the (positions, channels) matrix when few images
        if nchw:
            chunk = _chunk(n, (c + m_out) * P * itemsize, threads)
            return head + (FWD_GEMM1X1, chunk, min(threads, -(-n // chunk))) + canon, ()
        rows = -(-(n * P) // threads)
        return head + (FWD_GEMM1X1, rows, min(threads, -(-(n * P) // rows))) + canon, ()
    if direct and cpu and _direct_ok(geo, canon, cg, mg, True):
        chunk, workers, _, L, plane = _direct_plan(n, canon, cg, threads)
        return head + (FWD_DIRECT, chunk, workers) + canon, ((workers, L), (workers, plane), (1,), (1,))
    Wp = Wo + (KW - 1) * DW
    # one image on several threads: below ROWSHIFT_MIN_SPLIT_POSITIONS the row blocks' GEMMs get
    # too narrow, and im2col's GEMM split by channels won (256ch 14x14: 1.6 vs 2.0 ms on two threads)
    split_small = n < threads and P < ROWSHIFT_MIN_SPLIT_POSITIONS
    if rowshift and _rowshift_ok(geo, canon) and Wp <= ROWSHIFT_MAX_WASTE * Wo and KH * cg >= ROWSHIFT_MIN_DEPTH \
            and not split_small:
        row_bytes = (KH * c + KW * m_out) * Wp * itemsize
        rows = max(1, TASK_BYTES // max(row_bytes, 1))
        tiles = -(-Ho // rows)
        if n * tiles < threads:
            # b1: row blocks for the threads too.  BLAS runs single-threaded inside nets, so one
            # task ran the whole GEMM on one core (3x3/64ch 56x56: 2.0 ms on 1 or 2 threads)
            tiles = min(Ho, -(-2 * threads // n))
        rows = -(-Ho // tiles)
        L = rows * Wp
        workers = min(threads, n * tiles)
        shapes = ((workers, group * KH * cg * L), (workers, group * KW * mg * L), (1,), (group * KW * mg * KH * cg,))
        return head + (FWD_ROWSHIFT, rows, workers) + canon, shapes
    kg = cg * KD * KH * KW
    chunk = _chunk(n, group * kg * P * itemsize, threads)
    workers = min(threads, -(-n // chunk))
    z = group * mg * chunk * P if (nchw and chunk > 1) else 1
    return head + (FWD_IM2COL, chunk, workers) + canon, ((workers, group * kg * chunk * P), (workers, z), (1,), (1,))


def filter_grad_plan(geo: cp.Geometry, group, m_out, itemsize, cpu=True):
    """(plan, scratch shapes) of dW: per-worker col and gathered dY, per-task partial sums."""
    canon = geo.canonical()
    nchw = int(geo.order == "NCHW")
    n = max(geo.batch, 1)
    cg, mg = geo.channels // group, m_out // group
    kg = cg * math.prod(canon[6:9])
    P = math.prod(canon[3:6])
    threads = cp.num_threads() if cpu else 1
    if cpu and _direct_ok(geo, canon, cg, mg, False):
        # partial sums of dW and db per task, added in task order
        chunk, workers, n_tasks, L, plane = _direct_plan(n, canon, cg, threads)
        shapes = ((workers, L), (workers, plane), (n_tasks, group * mg * kg), (n_tasks, group * mg))
        return (nchw, group, 0, FWD_DIRECT, chunk, workers) + canon, shapes
    # the partials (one per chunk) are summed in chunk order, so a result never depends on
    # which thread ran which chunk
    chunk = _chunk(n, group * kg * P * itemsize, threads)
    n_tasks = -(-n // chunk)
    workers = min(threads, n_tasks)
    strategy = FWD_GEMM1X1 if _pointwise(geo) else FWD_IM2COL
    col = group * kg * chunk * P if (strategy == FWD_IM2COL or (nchw and chunk > 1)) else 1
    aux = group * mg * chunk * P if (nchw and chunk > 1) else 1
    shapes = ((workers, col), (workers, aux), (n_tasks, group * mg * kg), (group * mg * kg,))
    return (nchw, group, 0, strategy, chunk, workers) + canon, shapes


def data_grad_plan(geo: cp.Geometry, group, m_out, itemsize, cpu=True):
    """(plan, flipped plan or None, scratch shapes) of dX for ``geo``.

    With unit strides, NCHW, pads within the dilated kernel and a large enough image, dX is
    a row-shift convolution of dY with the flipped filter (``flipped``); otherwise col2im(Wᵀ·dY).
    """
    canon = geo.canonical()
    plan, shapes = forward_plan(geo, group, 0, m_out, itemsize, cpu, rowshift=False, direct=False,
                                depthwise=False)
    if not _pointwise(geo) and geo.order == "NCHW" and all(s == 1 for s in geo.stride):
        ext = [d * (k - 1) for d, k in zip(geo.dilation, geo.kernel)]
        heads = [e - h for e, h in zip(ext, geo.pad_head)]
        if min(heads) >= 0:
            # tails from the sizes: what the flipped convolution needs to produce in_sp
            tails = [i + e - o - h for i, e, o, h in zip(geo.in_sp, ext, geo.out_sp, heads)]
            flip = cp.Geometry(geo.rank, geo.order, geo.batch, m_out, geo.out_sp, geo.in_sp, geo.kernel, geo.stride,
                               geo.dilation, heads, tails)
            flipped, fshapes = forward_plan(flip, group, 0, geo.channels, itemsize, cpu)
            if flipped[3] == FWD_ROWSHIFT:
                wf = (geo.channels * (m_out // group) * math.prod(canon[6:9]),)
                return plan, flipped, (fshapes[0], fshapes[1], wf, fshapes[3])
    nchw, chunk, workers = plan[0], plan[4], plan[5]
    P = math.prod(canon[3:6])
    aux = group * (m_out // group) * chunk * P if (nchw and chunk > 1) else 1
    if plan[3] == FWD_IM2COL:
        shapes = (shapes[0], (workers, aux), (1,), (1,))
    return plan, None, shapes


def allocate(ctx, shapes, dtype):
    """Scratch arrays for a CPU plan; () on other devices (their kernels need none)."""
    if ctx.device_type != CPU:
        return ()
    return tuple(ctx.empty(tuple(max(1, d) for d in shape), dtype) for shape in shapes)


# ============================================================================ CPU drivers


def conv_forward(x, w, b, y, plan, scratch, relu=False, res=None):
    """y = conv(x, w) (+ b when plan says so) (+ res, a view shaped as y: ConvSumRelu), through
    max(., 0) when ``relu`` (ConvRelu): the residual and the ReLU ride the pass that adds the
    bias (NCHW GEMM strategies; the others take one more pass over y).  x, y: 5-D views
    (N, C, D, H, W) for NCHW or (N, D, H, W, C) for NHWC; w (M, Cg, KD, KH, KW) / (M, KD, KH, KW, Cg).

    scratch: im2col (col, z, -, -); row-shift (col3, z, -, rearranged filter).
    """
    nchw, group, has_bias, strategy, chunk, workers = plan[:PLAN_HEAD]
    p = _canon(plan)
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    n = x.shape[0]
    m = w.shape[0]
    if n == 0 or y.size == 0:
        return
    if res is not None and not (nchw and strategy in (FWD_GEMM1X1, FWD_ROWSHIFT, FWD_IM2COL)):
        conv_forward(x, w, b, y, plan, scratch)
        add_residual(y.reshape(-1), res.reshape(-1), relu)
        return
    has_res = res is not None
    if strategy == FWD_GEMM1X1:
        _forward_1x1(x, w, b, y, nchw, group, has_bias, chunk, workers, relu, res)
        return
    if strategy == FWD_ROWSHIFT:
        _forward_rowshift(x, w, b, y, group, has_bias, chunk, workers, p, scratch, relu, res)
        return
    if strategy == FWD_DIRECT:
        zero = np.zeros(1, y.dtype)[0]

        def direct(t, worker):
            n0 = t * chunk
            direct_conv_nchw(x, n0, min(n, n0 + chunk), w, b, has_bias, y, scratch[0][worker], scratch[1][worker], p,
                             group, zero, relu)

        cp.run_tasks(direct, -(-n // chunk), workers)
        return
    if strategy == FWD_DEPTHWISE:
        zero = np.zeros(1, y.dtype)[0]
        planes = n * m

        def depthwise(t, worker):
            q0 = t * chunk
            depthwise_conv_nchw(x, q0, min(planes, q0 + chunk), w, b, has_bias, y, scratch[0][worker],
                                scratch[1][worker], p, zero, relu)

        cp.run_tasks(depthwise, -(-planes // chunk), workers)
        return
    mg = m // group
    kg = w[0].size
    P = Do * Ho * Wo
    if nchw:
        wg = w.reshape(group, mg, kg)
        y3 = y.reshape(n, m, P)
        r3 = res.reshape(n, m, P) if has_res else y3
    else:
        wg = w.reshape(group, mg, kg).transpose(0, 2, 1)  # (G, Kg, Mg) view
        y2 = y.reshape(n * P, m)

    def task(t, worker):
        n0 = t * chunk
        n1 = min(n, n0 + chunk)
        k = n1 - n0
        if nchw:
            col = scratch[0][worker, :group * kg * k * P].reshape(group, kg, k * P)
            kind, blocks, step = _gemm_blocks(n, chunk, m, P, m * kg * P, group) if k == 1 else (0, 1, 0)
            if kind:  # the only task: im2col split by tap rows, then the GEMM as below
                units = kg // KW
                per = -(-units // blocks)
                cp.run_tasks(lambda c, _w: im2col_nchw_rows(x, n0, col, p, group, c * per, min(units, (c + 1) * per)),
                             -(-units // per), blocks)
            else:
                im2col_nchw(x, n0, col, p, group)
            if k == 1:
                out = y3[n0].reshape(group, mg, P)
                if kind:  # the only task: the GEMM and the bias pass split by positions or channels

                    def block(c, _worker):
                        m0, m1, p0, p1 = _block_range(kind, c, step, m, P)
                        np.matmul(wg[:, m0:m1], col[:, :, p0:p1], out=out[:, m0:m1, p0:p1])
                        if has_bias or relu or has_res:
                            add_bias_rows(y3, n0, n1, b, has_bias, r3, has_res, relu, m0, m1, p0, p1)

                    cp.run_tasks(block, blocks, blocks)
                    return
                np.matmul(wg, col, out=out)
                if has_bias or relu or has_res:
                    add_bias_rows(y3, n0, n1, b, has_bias, r3, has_res, relu, 0, m, 0, P)
            else:
                z = scratch[1][worker, :group * mg * k * P].reshape(group, mg, k * P)
                np.matmul(wg, col, out=z)
                scatter_images(z, n0, y3, b, has_bias, r3, has_res, relu)
        else:
            col = scratch[0][worker, :k * P * group * kg].reshape(k * P, group, kg)
            im2col_nhwc(x, n0, col, p, group)
            np.matmul(col.transpose(1, 0, 2), wg, out=y2[n0 * P:n1 * P].reshape(k * P, group, mg).transpose(1, 0, 2))
            if has_bias or relu:
                add_bias_cols(y2, n0 * P, n1 * P, b, has_bias, relu)

    cp.run_tasks(task, -(-n // chunk), workers)


SPLIT_POSITIONS, SPLIT_CHANNELS = 1, 2


def _gemm_blocks(n, chunk, M, P, macs, group):
    """(kind, blocks, step): a pass whose images are one task (n <= chunk: b1) splits its GEMM
    and bias pass into blocks over the pool when the GEMM is large enough, by positions (blocks
    of ``step`` columns) or, for small images (ResNet's 7x7 and 14x14 stages), by output channels;
    (0, 1, 0) otherwise.  BLAS runs single-threaded inside nets (nbcaffe.threads), so one task
    would use one core."""
    threads = cp.num_threads()
    if n > chunk or threads == 1 or macs < FORWARD_SERIAL_MACS:
        return 0, 1, 0
    if P >= 128 * threads:
        kind, size, quantum = SPLIT_POSITIONS, P, 16  # whole vectors per block
    elif group == 1 and M >= 32 * threads:
        kind, size, quantum = SPLIT_CHANNELS, M, 8
    else:
        return 0, 1, 0
    step = -(-size // (2 * threads))
    step = -(-step // quantum) * quantum
    return kind, -(-size // step), step


def _block_range(kind, c, step, M, P):
    """(m0, m1, p0, p1) of block ``c`` of a _gemm_blocks split."""
    if kind == SPLIT_POSITIONS:
        return 0, M, c * step, min(P, (c + 1) * step)
    return c * step, min(M, (c + 1) * step), 0, P


def _forward_1x1(x, w, b, y, nchw, group, has_bias, chunk, workers, relu, res=None):
    n = x.shape[0]
    m = w.shape[0]
    cg = w.shape[1] if nchw else w.shape[-1]
    mg = m // group
    if nchw:
        P = x[0, 0].size
        x4 = x.reshape(n, group, cg, P)
        y4 = y.reshape(n, group, mg, P)
        wg = w.reshape(group, mg, cg)
        y3 = y.reshape(n, m, P)
        r3 = y3 if res is None else res.reshape(n, m, P)

        epilogue = has_bias or relu or res is not None
        kind, blocks, step = _gemm_blocks(n, chunk, m, P, m * cg * P, group)
        if kind:  # one task of images: split the positions or the channels instead

            def block(t, worker):
                m0, m1, p0, p1 = _block_range(kind, t, step, m, P)
                np.matmul(wg[:, m0:m1], x4[:, :, :, p0:p1], out=y4[:, :, m0:m1, p0:p1])
                if epilogue:
                    add_bias_rows(y3, 0, n, b, has_bias, r3, res is not None, relu, m0, m1, p0, p1)

            cp.run_tasks(block, blocks, blocks)
            return

        def task(t, worker):
            n0 = t * chunk
            n1 = min(n, n0 + chunk)
            np.matmul(wg, x4[n0:n1], out=y4[n0:n1])
            if epilogue:
                add_bias_rows(y3, n0, n1, b, has_bias, r3, res is not None, relu, 0, m, 0, P)

        cp.run_tasks(task, -(-n // chunk), workers)
        return
    R = x.size // (cg * group)
    x2 = x.reshape(R, group, cg)
    y2 = y.reshape(R, group, mg)
    wt = w.reshape(group, mg, cg).transpose(0, 2, 1)

    def rows(t, worker):
        r0 = t * chunk
        r1 = min(R, r0 + chunk)
        np.matmul(x2[r0:r1].transpose(1, 0, 2), wt, out=y2[r0:r1].transpose(1, 0, 2))
        if has_bias or relu:
            add_bias_cols(y.reshape(R, m), r0, r1, b, has_bias, relu)

    cp.run_tasks(rows, -(-R // chunk), workers)


def _forward_rowshift(x, w, b, y, group, has_bias, rows, workers, p, scratch, relu, res=None):
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    n, c = x.shape[0], x.shape[1]
    m = w.shape[0]
    cg, mg = c // group, m // group
    Wp = Wo + (KW - 1) * DW
    # a[g, kw*Mg + m, kh*Cg + c] = w[g*Mg + m, c, 0, kh, kw]
    a = scratch[3].reshape(group, KW * mg, KH * cg)
    a.reshape(group, KW, mg, KH, cg)[...] = w.reshape(group, mg, cg, KH, KW).transpose(0, 4, 1, 3, 2)
    tiles = -(-Ho // rows)
    x3 = x.reshape(n, c, H, W)
    y3 = y.reshape(n, m, Ho, Wo)
    r3 = y3 if res is None else res.reshape(n, m, Ho, Wo)

    def task(t, worker):
        img, tile = divmod(t, tiles)
        h0 = tile * rows
        h1 = min(Ho, h0 + rows)
        L = (h1 - h0) * Wp
        col3 = scratch[0][worker, :group * KH * cg * L].reshape(group, KH * cg, L)
        z = scratch[1][worker, :group * KW * mg * L].reshape(group, KW * mg, L)
        rowshift_col3(x3[img], col3, h0, group, KH, DH, PH, PW, Wp)
        np.matmul(a, col3, out=z)
        rowshift_sum(z, y3[img], h0, h1, b, has_bias, KW, DW, Wp, r3[img], res is not None, relu)

    cp.run_tasks(task, n * tiles, workers)


def fused_backward(fplan, dplan, flipped):
    """Whether dX can ride along dW's tasks: both NCHW im2col passes over the same chunks (then
    each task gathers its dY once, and its col buffer serves the dW GEMM, then Wᵀ·dY and col2im)."""
    return (flipped is None and dplan is not None and fplan[0] == 1 and fplan[3] == FWD_IM2COL
            and dplan[3] == FWD_IM2COL and fplan[4] == dplan[4] and fplan[PLAN_HEAD:] == dplan[PLAN_HEAD:])


def conv_backward_filter(x, dy, dw, plan, scratch, db=None, w=None, dx=None):
    """dw = Σ over images and output positions of dy ⊗ the input patch (shapes as conv_forward);
    with ``db`` (a non-empty array) also db = Σ of dy per output channel; with ``w`` and ``dx``
    (plans that pass fused_backward) also dx = col2im(wᵀ·dy) in the same tasks.

    scratch: (per-worker col, per-worker gathered dY, per-chunk partial sums, NHWC total); direct
    plans: (per-worker padded dY rows, per-worker padded planes, per-task dW and db partials).
    """
    nchw, group, _, strategy, chunk, workers = plan[:PLAN_HEAD]
    p = _canon(plan)
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    n = x.shape[0]
    m = dw.shape[0]
    mg = m // group
    kg = dw[0].size
    P = Do * Ho * Wo
    if strategy == FWD_DIRECT and n and dw.size:
        _filter_grad_direct(x, dy, dw, db, group, chunk, workers, p, scratch)
        return
    if db is not None:
        bias_grad(dy, db, nchw)
    if n == 0 or dw.size == 0:
        dw[...] = 0
        return
    n_tasks = -(-n // chunk)
    pointwise = strategy == FWD_GEMM1X1
    # partial sums are dWᵀ (Kg, Mg) per group: the (Kg x positions) @ (positions x Mg) GEMM ran
    # 20% faster than dY @ colᵀ on the 3x3/64-channel layer (1.95 vs 2.42 ms per image)
    parts = scratch[2][:n_tasks].reshape(n_tasks, group, kg, mg)
    if nchw:
        dy3 = dy.reshape(n, m, P)
    if dx is not None:
        wt = w.reshape(group, mg, kg).transpose(0, 2, 1)  # (G, Kg, Mg) view

    def task(t, worker):
        n0 = t * chunk
        n1 = min(n, n0 + chunk)
        k = n1 - n0
        if nchw:
            if pointwise and k == 1:
                col = x[n0].reshape(group, kg, P)
            elif pointwise:
                col = scratch[0][worker, :group * kg * k * P].reshape(group, kg, k * P)
                gather_images(x.reshape(n, group * kg, P), n0, col)
            else:
                col = scratch[0][worker, :group * kg * k * P].reshape(group, kg, k * P)
                im2col_nchw(x, n0, col, p, group)
            if k == 1:
                dyg = dy3[n0].reshape(group, mg, P)
            else:
                dyg = scratch[1][worker, :group * mg * k * P].reshape(group, mg, k * P)
                gather_images(dy3, n0, dyg)
            np.matmul(col, dyg.transpose(0, 2, 1), out=parts[t])
            if dx is not None:
                np.matmul(wt, dyg, out=col)
                col2im_nchw(col, n0, dx, p, group)
        else:
            if pointwise:
                col = x[n0:n1].reshape(k * P, group, kg)
            else:
                col = scratch[0][worker, :k * P * group * kg].reshape(k * P, group, kg)
                im2col_nhwc(x, n0, col, p, group)
            # the chunk's output positions are consecutive rows in NHWC: one GEMM per group
            np.matmul(col.transpose(1, 2, 0), dy[n0:n1].reshape(k * P, group, mg).transpose(1, 0, 2), out=parts[t])

    cp.run_tasks(task, n_tasks, workers)
    total = scratch[3][:group * kg * mg].reshape(group, kg, mg)
    sum_partials(parts, total)
    dw.reshape(group, mg, kg)[...] = total.transpose(0, 2, 1)


def _filter_grad_direct(x, dy, dw, db, group, chunk, workers, p, scratch):
    """dw (and db) by the direct kernel: per-task partials, summed in task order."""
    n, m = x.shape[0], dw.shape[0]
    n_tasks = -(-n // chunk)
    want_db = db is not None
    parts = scratch[2][:n_tasks].reshape(n_tasks, m, dw[0].size)
    dbs = scratch[3][:n_tasks].reshape(n_tasks, m)
    parts[...] = 0
    dbs[...] = 0
    zero = np.zeros(1, dw.dtype)[0]

    def task(t, worker):
        n0 = t * chunk
        direct_filter_grad_nchw(x, dy, n0, min(n, n0 + chunk), parts[t], dbs[t], want_db, scratch[0][worker],
                                scratch[1][worker], p, group, zero)

    cp.run_tasks(task, n_tasks, workers)
    sum_partials(parts, dw)
    if want_db:
        sum_partials(dbs, db)


def conv_backward_data(dy, w, dx, plan, flipped, scratch):
    """dx = the input gradient of y = conv(x, w) for the output gradient dy (shapes as
    conv_forward): a row-shift convolution of dy with the flipped filter when ``flipped`` is a
    plan, else col2im(wᵀ·dy).  scratch: (col, gathered dY, -, -) or (col3, z, flipped filter,
    rearranged filter)."""
    nchw, group, _, strategy, chunk, workers = plan[:PLAN_HEAD]
    p = _canon(plan)
    n = dx.shape[0]
    m = w.shape[0]
    if n == 0 or dx.size == 0:
        return
    if m == 0:
        dx[...] = 0
        return
    mg = m // group
    kg = w[0].size
    if flipped is not None:
        c = dx.shape[1]
        cg = c // group
        KD, KH, KW = w.shape[2:5]
        # wf[g*Cg + c, m, kd, kh, kw] = w[g*Mg + m, c, KD-1-kd, KH-1-kh, KW-1-kw]
        wf = scratch[2].reshape(c, mg, KD, KH, KW)
        wf.reshape(group, cg, mg, KD, KH, KW)[...] = \
            w.reshape(group, mg, cg, KD, KH, KW)[:, :, :, ::-1, ::-1, ::-1].transpose(0, 2, 1, 3, 4, 5)
        conv_forward(dy, wf, wf.reshape(-1), dx, flipped, scratch)
        return
    D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW = p
    P = Do * Ho * Wo
    if strategy == FWD_GEMM1X1:
        cg = kg
        if nchw:
            np.matmul(w.reshape(group, mg, cg).transpose(0, 2, 1), dy.reshape(n, group, mg, P),
                      out=dx.reshape(n, group, cg, P))
        else:
            R = dy.size // m
            np.matmul(dy.reshape(R, group, mg).transpose(1, 0, 2), w.reshape(group, mg, cg),
                      out=dx.reshape(R, group, cg).transpose(1, 0, 2))
        return
    if nchw:
        wt = w.reshape(group, mg, kg).transpose(0, 2, 1)  # (G, Kg, Mg) view
        dy3 = dy.reshape(n, m, P)
    else:
        wg = w.reshape(group, mg, kg)

    def task(t, worker):
        n0 = t * chunk
        n1 = min(n, n0 + chunk)
        k = n1 - n0
        if nchw:
            col = scratch[0][worker, :group * kg * k * P].reshape(group, kg, k * P)
            if k == 1:
                dyg = dy3[n0].reshape(group, mg, P)
            else:
                dyg = scratch[1][worker, :group * mg * k * P].reshape(group, mg, k * P)
                gather_images(dy3, n0, dyg)
            np.matmul(wt, dyg, out=col)
            col2im_nchw(col, n0, dx, p, group)
        else:
            col = scratch[0][worker, :k * P * group * kg].reshape(k * P, group, kg)
            np.matmul(dy[n0:n1].reshape(k * P, group, mg).transpose(1, 0, 2), wg, out=col.transpose(1, 0, 2))
            col2im_nhwc(col, n0, dx, p, group)

    cp.run_tasks(task, -(-n // chunk), workers)


def add_bias(y, b, nchw):
    """y += b along the channel axis of a 5-D NCHW / NHWC view."""
    if nchw:
        y3 = y.reshape(y.shape[0], y.shape[1], -1)
        add_bias_rows(y3, 0, y.shape[0], b, True, y3, False, False, 0, y3.shape[1], 0, y3.shape[2])
    else:
        r = y.size // y.shape[-1]
        add_bias_cols(y.reshape(r, y.shape[-1]), 0, r, b, True, False)


def bias_grad(dy, db, nchw):
    """db = Σ of dy over every axis but the channel axis (5-D view)."""
    if dy.size == 0:
        db[...] = 0
    elif nchw:
        bias_grad_rows(dy.reshape(dy.shape[0], dy.shape[1], -1), db)
    else:
        bias_grad_cols(dy.reshape(-1, dy.shape[-1]), db)
