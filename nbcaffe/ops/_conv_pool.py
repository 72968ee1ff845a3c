"""Window geometry shared by the convolution and pooling families, and the CPU task runner.

Argument parsing follows Caffe2's ``ConvPoolOpBase`` (caffe2/operators/conv_pool_op_base.h)
and ``ConvTransposeUnpoolBase`` (conv_transpose_unpool_op_base.h):

* kernel: ``kernels`` (one per spatial dim), or ``kernel`` (Caffe2: two dims; here: every
  spatial dim of the input), or ``kernel_h`` + ``kernel_w`` (2-D).  Likewise ``strides`` /
  ``stride`` / ``stride_h`` + ``stride_w`` (default 1), ``dilations`` / ``dilation`` /
  ``dilation_h`` + ``dilation_w`` (default 1), ConvTranspose's ``adjs`` / ``adj`` /
  ``adj_h`` + ``adj_w`` (default 0).
* pads: ``pads`` = all heads then all tails ([t, l, b, r] in 2-D), or ``pad`` (every side),
  or all four of ``pad_t``, ``pad_l``, ``pad_b``, ``pad_r`` (2-D).
* ``order`` NCHW (default) or NHWC; ``legacy_pad`` NOTSET=0, VALID=1, SAME=2,
  CAFFE_LEGACY_POOLING=3 (caffe2_legacy.proto); pooling's ``global_pooling``.

Where Caffe2 silently dropped or mixed arguments, nbcaffe raises ArgumentError instead: two
spellings of one quantity (``kernel`` with ``kernels``), half a pair (``kernel_h`` without
``kernel_w``), some but not all of ``pad_t/l/b/r``, pads with VALID/SAME, negative pads,
non-positive kernels/strides/dilations.  A scalar spelling (``kernel=3``) covers every spatial
dim of the input, so 1-D and 3-D ops accept it (Caffe2 made it two dims, which failed for 3-D).

Output size per spatial dim (``ComputeSizeAndPad``), with dk = dilation * (kernel - 1) + 1:

* NOTSET: floor((in + pad_head + pad_tail - dk) / stride) + 1, requires in + pads >= dk.
* VALID: pads are 0; floor((in - dk) / stride) + 1.
* SAME (dilation 1): target = ceil(in / stride); pad_needed = (target - 1) * stride + kernel - in,
  split head = pad_needed / 2 (C division, toward zero), tail = the rest (TensorFlow's split);
  out = (in + pad_needed - dk) / stride + 1.
* CAFFE_LEGACY_POOLING (Caffe's ceil mode): out = ceil((in + 2 * pad_head - kernel) / stride) + 1,
  minus 1 when pad_head > 0 and the last window would start at or beyond in + pad_head; the
  tail pad becomes pad_head + stride * (out - floor-mode out) (the given tail is ignored).
* global_pooling: kernel = the input's spatial size, output 1 per dim (pads 0, stride 1).

Kernels work on a canonical 3-D window (D, H, W): 1-D and 2-D ops get leading unit dims, so
one set of kernels serves 1-D, 2-D and 3-D ops.
"""

from __future__ import annotations

import math

from nbcaffe import errors
from nbcaffe.schema import Arg

NOTSET, VALID, SAME, CAFFE_LEGACY_POOLING = 0, 1, 2, 3
LEGACY_NAMES = {NOTSET: "NOTSET", VALID: "VALID", SAME: "SAME", CAFFE_LEGACY_POOLING: "CAFFE_LEGACY_POOLING"}
ORDERS = ("NCHW", "NHWC")


def window_args(kind: str) -> dict:
    """Declared arguments of a window op: kind 'conv', 'pool' or 'transpose'."""
    args = {
        "kernel": Arg("int", 0, "window size of every spatial dim"),
        "kernel_h": Arg("int", 0, "2-D window height (with kernel_w)"),
        "kernel_w": Arg("int", 0, "2-D window width (with kernel_h)"),
        "kernels": Arg("ints", (), "window size per spatial dim"),
        "stride": Arg("int", 1, "stride of every spatial dim"),
        "stride_h": Arg("int", 1, "2-D stride (with stride_w)"),
        "stride_w": Arg("int", 1, "2-D stride (with stride_h)"),
        "strides": Arg("ints", (), "stride per spatial dim"),
        "pad": Arg("int", 0, "padding of every side"),
        "pad_t": Arg("int", 0, "2-D top padding (with pad_l, pad_b, pad_r)"),
        "pad_l": Arg("int", 0, "2-D left padding"),
        "pad_b": Arg("int", 0, "2-D bottom padding"),
        "pad_r": Arg("int", 0, "2-D right padding"),
        "pads": Arg("ints", (), "paddings: every head, then every tail"),
        "order": Arg("str", "NCHW", "NCHW or NHWC"),
        "legacy_pad": Arg("int", NOTSET, "0 NOTSET, 1 VALID, 2 SAME, 3 CAFFE_LEGACY_POOLING"),
    }
    if kind in ("conv", "pool"):
        args.update({
            "dilation": Arg("int", 1, "dilation of every spatial dim"),
            "dilation_h": Arg("int", 1, "2-D dilation (with dilation_w)"),
            "dilation_w": Arg("int", 1, "2-D dilation (with dilation_h)"),
            "dilations": Arg("ints", (), "dilation per spatial dim"),
        })
    if kind == "pool":
        args["global_pooling"] = Arg("bool", False, "window = the whole spatial extent")
    if kind == "transpose":
        args.update({
            "adj": Arg("int", 0, "extra output size at the tail of every spatial dim"),
            "adj_h": Arg("int", 0, "2-D adj (with adj_w)"),
            "adj_w": Arg("int", 0, "2-D adj (with adj_h)"),
            "adjs": Arg("ints", (), "adj per spatial dim"),
        })
    return args


class Window:
    """Window arguments of one op as parsed from its OperatorDef.

    ``kernel``, ``stride``, ``dilation``, ``adj`` are tuples (rank fixed by the arguments) or
    ints (same value for every spatial dim); ``pads`` is a tuple of heads then tails, or an
    int.  ``rank`` is None while only scalar spellings were used.
    """

    __slots__ = ("rank", "kernel", "stride", "dilation", "pads", "adj", "legacy_pad", "global_pooling", "order",
                 "kind")

    def __init__(self, rank, kernel, stride, dilation, pads, adj, legacy_pad, global_pooling, order, kind):
        self.rank = rank
        self.kernel = kernel
        self.stride = stride
        self.dilation = dilation
        self.pads = pads
        self.adj = adj
        self.legacy_pad = legacy_pad
        self.global_pooling = global_pooling
        self.order = order
        self.kind = kind


def _spellings(args, where, quantity, scalar, pair, plural, default):
    """The one spelling of a per-dim quantity that the OperatorDef uses (int, tuple or default)."""
    given = args.given
    used = []
    if scalar in given:
        used.append(scalar)
    if pair and (pair[0] in given or pair[1] in given):
        if not (pair[0] in given and pair[1] in given):
            missing = pair[1] if pair[0] in given else pair[0]
            raise errors.ArgumentError(
                f"{where}: '{pair[0] if pair[0] in given else pair[1]}' is given without '{missing}'; give both"
                f" (or '{scalar}' / '{plural}')")
        used.append(f"{pair[0]}/{pair[1]}")
    if plural in given:
        used.append(plural)
    if len(used) > 1:
        raise errors.ArgumentError(f"{where}: the {quantity} is given twice ({' and '.join(used)}); use one spelling")
    if scalar in given:
        return int(args[scalar])
    if pair and pair[0] in given:
        return (int(args[pair[0]]), int(args[pair[1]]))
    if plural in given:
        return tuple(int(v) for v in args[plural])
    return default


def parse_window(args, where, kind) -> Window:
    """Parse and check the window arguments of a 'conv', 'pool' or 'transpose' op."""
    order = args["order"]
    if order not in ORDERS:
        raise errors.ArgumentError(f"{where}: order must be 'NCHW' or 'NHWC', got {order!r}")
    legacy = int(args["legacy_pad"])
    if legacy not in LEGACY_NAMES:
        raise errors.ArgumentError(
            f"{where}: legacy_pad={legacy} is not one of 0 (NOTSET), 1 (VALID), 2 (SAME), 3 (CAFFE_LEGACY_POOLING)")
    if kind == "transpose" and legacy == CAFFE_LEGACY_POOLING:
        raise errors.ArgumentError(f"{where}: legacy_pad=3 (CAFFE_LEGACY_POOLING) is not supported by ConvTranspose"
                                   " (Caffe2 rejects it too)")
    global_pooling = bool(args.get("global_pooling", False))
    kernel = _spellings(args, where, "kernel", "kernel", ("kernel_h", "kernel_w"), "kernels", None)
    stride = _spellings(args, where, "stride", "stride", ("stride_h", "stride_w"), "strides", 1)
    dilation = _spellings(args, where, "dilation", "dilation", ("dilation_h", "dilation_w"), "dilations", 1) \
        if kind != "transpose" else 1
    adj = _spellings(args, where, "adj", "adj", ("adj_h", "adj_w"), "adjs", 0) if kind == "transpose" else 0
    pads = _pad_spelling(args, where)
    if legacy in (VALID, SAME) and pads is not None:
        raise errors.ArgumentError(
            f"{where}: legacy_pad={legacy} ({LEGACY_NAMES[legacy]}) computes the padding itself; do not also give"
            f" pad/pads/pad_t/pad_l/pad_b/pad_r")
    if pads is None:
        pads = 0
    if legacy == SAME and _any(dilation, lambda v: v != 1):
        raise errors.ArgumentError(f"{where}: legacy_pad=2 (SAME) does not support dilation {dilation} (as in Caffe2)")
    if kernel is None and not global_pooling:
        raise errors.ArgumentError(
            f"{where}: the kernel size is required: give 'kernel', 'kernel_h' and 'kernel_w', or 'kernels'")
    if global_pooling and kernel is not None and not _any(kernel, lambda v: v != 0):
        # Caffe2's translator writes 'kernel: 0' beside 'global_pooling: 1' (zoo SqueezeNet,
        # DenseNet); Caffe2 ignored the kernel there, so do we
        kernel = None
    if global_pooling:
        moved = [name for name, value in (("stride", stride), ("dilation", dilation)) if _any(value, lambda v: v != 1)]
        if _any(pads, lambda v: v != 0):
            moved.append("pads")
        if moved:
            raise errors.ArgumentError(f"{where}: global_pooling=1 takes the whole spatial extent; {', '.join(moved)}"
                                       f" must not be set")
    ranks = {}
    for name, value, per_dim in (("kernel", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1),
                                 ("adj", adj, 1), ("pads", pads, 2)):
        if isinstance(value, tuple):
            if len(value) % per_dim:
                raise errors.ArgumentError(f"{where}: {name} {list(value)} must hold {per_dim} values per spatial dim")
            ranks[name] = len(value) // per_dim
    if len(set(ranks.values())) > 1:
        described = ", ".join(f"{name} has {r}" for name, r in ranks.items())
        raise errors.ArgumentError(
            f"{where}: the window arguments disagree on the number of spatial dims ({described})")
    rank = next(iter(ranks.values())) if ranks else None
    if rank == 0:
        raise errors.ArgumentError(f"{where}: kernels must not be empty")
    if rank is not None and not 1 <= rank <= 3:
        raise errors.ArgumentError(f"{where}: {rank} spatial dims are not supported (1, 2 or 3)")
    for name, value, low in (("kernel", kernel, 1), ("stride", stride, 1), ("dilation", dilation, 1),
                             ("adj", adj, 0), ("pads", pads, 0)):
        if value is not None and _any(value, lambda v, low=low: v < low):
            raise errors.ArgumentError(f"{where}: {name} must be >= {low}, got {value}")
    if kind == "transpose" and _any_pair(adj, stride, lambda a, s: a > s):
        raise errors.ArgumentError(f"{where}: adj {adj} must not exceed stride {stride} (Caffe2's rule)")
    return Window(rank, kernel, stride, dilation, pads, adj, legacy, global_pooling, order, kind)


def _pad_spelling(args, where):
    given = args.given
    corners = [n for n in ("pad_t", "pad_l", "pad_b", "pad_r") if n in given]
    used = [n for n in ("pad", "pads") if n in given]
    if corners:
        if len(corners) != 4:
            missing = sorted({"pad_t", "pad_l", "pad_b", "pad_r"} - set(corners))
            raise errors.ArgumentError(f"{where}: {', '.join(corners)} given without {', '.join(missing)}; give all"
                                       f" four of pad_t, pad_l, pad_b, pad_r (or 'pad' / 'pads')")
        used.append("pad_t/pad_l/pad_b/pad_r")
    if len(used) > 1:
        raise errors.ArgumentError(f"{where}: the padding is given twice ({' and '.join(used)}); use one spelling")
    if "pad" in given:
        return int(args["pad"])
    if corners:
        return (int(args["pad_t"]), int(args["pad_l"]), int(args["pad_b"]), int(args["pad_r"]))
    if "pads" in given:
        return tuple(int(v) for v in args["pads"])
    return None


def _any(value, test):
    values = value if isinstance(value, tuple) else (value,)
    return any(test(v) for v in values)


def _any_pair(a, b, test):
    n = max(len(a) if isinstance(a, tuple) else 1, len(b) if isinstance(b, tuple) else 1)
    a = a if isinstance(a, tuple) else (a,) * n
    b = b if isinstance(b, tuple) else (b,) * n
    return any(test(x, y) for x, y in zip(a, b))


def _per_dim(value, rank):
    return tuple(value) if isinstance(value, tuple) else (int(value),) * rank


class Geometry:
    """A window resolved against an input shape: every size, per spatial dim (rank r).

    ``pad_head``/``pad_tail`` are the effective paddings (legacy modes applied); ``in_sp`` and
    ``out_sp`` the input and output spatial sizes.  ``canonical()`` gives the 18 ints the
    kernels take: (D, H, W, Do, Ho, Wo, KD, KH, KW, SD, SH, SW, DD, DH, DW, PD, PH, PW) with
    leading unit dims for 1-D and 2-D windows.
    """

    __slots__ = ("rank", "order", "batch", "channels", "in_sp", "out_sp", "kernel", "stride", "dilation",
                 "pad_head", "pad_tail")

    def __init__(self, rank, order, batch, channels, in_sp, out_sp, kernel, stride, dilation, pad_head, pad_tail):
        self.rank = rank
        self.order = order
        self.batch = batch
        self.channels = channels
        self.in_sp = tuple(in_sp)
        self.out_sp = tuple(out_sp)
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.dilation = tuple(dilation)
        self.pad_head = tuple(pad_head)
        self.pad_tail = tuple(pad_tail)

    def canonical(self) -> tuple:
        lead = 3 - self.rank

        def c(values, fill):
            return (fill,) * lead + tuple(int(v) for v in values)

        return (c(self.in_sp, 1) + c(self.out_sp, 1) + c(self.kernel, 1) + c(self.stride, 1) + c(self.dilation, 1)
                + c(self.pad_head, 0))

    def shape(self, channels, spatial) -> tuple:
        """An (N, C, *spatial) or (N, *spatial, C) shape in this geometry's order."""
        if self.order == "NCHW":
            return (self.batch, channels) + tuple(spatial)
        return (self.batch,) + tuple(spatial) + (channels,)

    def describe(self) -> str:
        return (f"kernel {list(self.kernel)}, stride {list(self.stride)}, dilation {list(self.dilation)}, pads "
                f"{list(self.pad_head) + list(self.pad_tail)}")


def split_shape(shape, order, what="X"):
    """(N, C, spatial) of an NCHW or NHWC tensor shape; ShapeError below 3 dims."""
    shape = tuple(int(d) for d in shape)
    if len(shape) < 3:
        raise errors.ShapeError(
            f"{what} {shape} must have at least 3 dims: (N, C, spatial...) for NCHW or (N, spatial..., C) for NHWC")
    if len(shape) > 5:
        raise errors.ShapeError(f"{what} {shape} has {len(shape) - 2} spatial dims; at most 3 are supported")
    if order == "NCHW":
        return shape[0], shape[1], shape[2:]
    return shape[0], shape[-1], shape[1:-1]


def _c_div(a, b):
    """C integer division (toward zero), as Caffe2's int arithmetic."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def resolve(window: Window, x_shape, what="X") -> Geometry:
    """Output sizes and effective pads of ``window`` applied to input ``x_shape``.

    Raises ShapeError naming the input shape and the window when they do not fit.
    """
    n, c, in_sp = split_shape(x_shape, window.order, what)
    rank = len(in_sp)
    if window.rank is not None and window.rank != rank:
        raise errors.ShapeError(
            f"{what} {tuple(x_shape)} ({window.order}) has {rank} spatial dims but the window arguments describe"
            f" {window.rank}")
    if window.global_pooling:
        kernel = tuple(in_sp)
        one = (1,) * rank
        return Geometry(rank, window.order, n, c, in_sp, one, kernel, one, one, (0,) * rank, (0,) * rank)
    kernel = _per_dim(window.kernel, rank)
    stride = _per_dim(window.stride, rank)
    dilation = _per_dim(window.dilation, rank)
    pads = _per_dim(window.pads, 2 * rank) if isinstance(window.pads, tuple) else (int(window.pads),) * (2 * rank)
    heads, tails = list(pads[:rank]), list(pads[rank:])
    out = []
    for i in range(rank):
        size, k, s, d = in_sp[i], kernel[i], stride[i], dilation[i]
        dk = d * (k - 1) + 1
        legacy = window.legacy_pad
        if legacy == NOTSET:
            if size + heads[i] + tails[i] < dk:
                raise errors.ShapeError(
                    f"{what} {tuple(x_shape)}: spatial dim {i} of size {size} with pads ({heads[i]}, {tails[i]}) is"
                    f" smaller than the dilated kernel {dk} ({window_text(kernel, stride, dilation, pads)})")
            o = (size + heads[i] + tails[i] - dk) // s + 1
        elif legacy == VALID:
            heads[i] = tails[i] = 0
            if size < dk:
                raise errors.ShapeError(f"{what} {tuple(x_shape)}: legacy_pad=VALID and spatial dim {i} of size {size}"
                                        f" is smaller than the dilated kernel {dk}")
            o = (size - dk) // s + 1
        elif legacy == SAME:
            target = (size + s - 1) // s
            needed = (target - 1) * s + k - size
            heads[i] = _c_div(needed, 2)
            tails[i] = needed - heads[i]
            o = _c_div(size + needed - dk, s) + 1
        else:  # CAFFE_LEGACY_POOLING: Caffe's ceil mode (uses the kernel, not the dilated kernel)
            head = heads[i]
            o = math.ceil((size + 2 * head - k) / s) + 1
            if head > 0 and (o - 1) * s >= size + head:
                o -= 1
            standard = int((size + 2 * head - k) / s + 1)  # C's float-to-int truncation
            tails[i] = head + s * (o - standard)
        if o < 1:
            raise errors.ShapeError(f"{what} {tuple(x_shape)}: spatial dim {i} of size {size} gives an empty output"
                                    f" ({window_text(kernel, stride, dilation, heads + tails)},"
                                    f" legacy_pad={LEGACY_NAMES[legacy]})")
        out.append(o)
    return Geometry(rank, window.order, n, c, in_sp, out, kernel, stride, dilation, heads, tails)


def window_text(kernel, stride, dilation, pads) -> str:
    return f"kernel {list(kernel)}, stride {list(stride)}, dilation {list(dilation)}, pads {list(pads)}"


def check_pool_windows(geo: Geometry, legacy_pad=NOTSET, what="X"):
    """Every pooling window must hold at least one image cell: a window made only of padding
    (or whose dilated taps all miss the image) has no maximum or mean.  Caffe2 wrote -FLT_MAX
    or NaN there; nbcaffe refuses the geometry."""
    for i in range(geo.rank):
        size, k, s, d, head = geo.in_sp[i], geo.kernel[i], geo.stride[i], geo.dilation[i], geo.pad_head[i]
        for o in range(geo.out_sp[i]):
            start = o * s - head
            if not any(0 <= start + t * d < size for t in range(k)):
                why = ("Caffe's ceil mode added a window beyond the image (stride larger than the kernel)"
                       if legacy_pad == CAFFE_LEGACY_POOLING else "pads must be smaller than the kernel")
                raise errors.ShapeError(
                    f"pooling {what} of spatial size {list(geo.in_sp)} with {geo.describe()},"
                    f" legacy_pad={LEGACY_NAMES[legacy_pad]}: window {o} along spatial dim {i} covers only padding"
                    f" ({why})")


def transpose_geometry(window: Window, x_shape, out_channels, what="X") -> Geometry:
    """ConvTranspose sizes: out = (in - 1) * stride + kernel + adj - pad_head - pad_tail.

    The returned geometry describes the *equivalent convolution* that maps the transpose's
    output (its ``in_sp``) to the transpose's input (its ``out_sp``); VALID and SAME mean no
    padding (Caffe2).
    """
    n, c, in_sp = split_shape(x_shape, window.order, what)
    rank = len(in_sp)
    if window.rank is not None and window.rank != rank:
        raise errors.ShapeError(
            f"{what} {tuple(x_shape)} ({window.order}) has {rank} spatial dims but the window arguments describe"
            f" {window.rank}")
    kernel = _per_dim(window.kernel, rank)
    stride = _per_dim(window.stride, rank)
    adj = _per_dim(window.adj, rank)
    pads = _per_dim(window.pads, 2 * rank) if isinstance(window.pads, tuple) else (int(window.pads),) * (2 * rank)
    heads, tails = list(pads[:rank]), list(pads[rank:])
    if window.legacy_pad in (VALID, SAME):
        heads, tails = [0] * rank, [0] * rank
    out = []
    for i in range(rank):
        o = (in_sp[i] - 1) * stride[i] + kernel[i] + adj[i] - heads[i] - tails[i]
        if o < 1:
            raise errors.ShapeError(
                f"{what} {tuple(x_shape)}: ConvTranspose output along spatial dim {i} would be {o} (input {in_sp[i]},"
                f" kernel {kernel[i]}, stride {stride[i]}, adj {adj[i]}, pads ({heads[i]}, {tails[i]}))")
        out.append(o)
    return Geometry(rank, window.order, n, out_channels, out, in_sp, kernel, stride, (1,) * rank, heads, tails)


# ------------------------------------------------------------------------------ CPU task runner
# The task pool and the BLAS thread policy live in nbcaffe.threads (shared with FC and the
# other GEMM users); re-exported here for the convolution and pooling kernels.
from nbcaffe.threads import get_num_threads as num_threads  # noqa: E402,F401
from nbcaffe.threads import run_tasks  # noqa: E402,F401
