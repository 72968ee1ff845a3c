"""Data input ops: TensorProtosDBInput and ImageInput read rows of a DB (through a reader made
by CreateDB) and produce batches.

Each DB row is a serialized ``TensorProtos``.  These ops do their work on the host: they read
``batch_size`` rows (the reader's cursor advances across runs and wraps around at the end of
the DB), decode them with NumPy (and Pillow for encoded images) and assemble the batch.  The
registered "kernel" only stores the host batch into the op's output buffers: on the CPU a copy,
on CUDA (nbcaffe/cuda/io.py) an upload to the op's GPU.  Output buffers are reused while the
batch shape stays the same, so the ops that consume a batch keep their fast path.

Both ops re-run their logic on every run (``values_dependent``) and have no gradient.  Caffe2
ran them as prefetching operators (the next batch was read in a background thread); the rows
each run sees are the same, only read one run later here.
"""

from __future__ import annotations

import functools
import io

import numba
import numpy as np
from google.protobuf import message as _message

from nbcaffe import db as _db
from nbcaffe import errors, utils
from nbcaffe.operator import Operator
from nbcaffe.proto import caffe2_pb2
from nbcaffe.registry import register_op
from nbcaffe.schema import Arg

T = caffe2_pb2.TensorProto


# ----------------------------------------------------------------------------- rows

def describe_reader(reader) -> str:
    return f"{reader.db_type} '{reader.source}'"


def _unknown_fields(msg) -> int:
    try:
        from google.protobuf import unknown_fields
    except ImportError:  # very old protobuf: no foreign-row check
        return 0
    return len(unknown_fields.UnknownFieldSet(msg))


_ROW_HINT = ("TensorProtos rows are written by nbcaffe.datasets.write_tensor_protos_db or Caffe2's DB tools; a DB"
             " written by Save holds BlobProtos, which Load reads")


def parse_row(value, where) -> caffe2_pb2.TensorProtos:
    """The TensorProtos of one DB row; ProtoError naming ``where`` for anything else."""
    protos = caffe2_pb2.TensorProtos()
    try:
        protos.ParseFromString(value)
    except _message.DecodeError as exc:
        raise errors.ProtoError(f"{where}: its {len(value)} bytes are not a serialized caffe2.TensorProtos ({exc});"
                                f" {_ROW_HINT}") from None
    # bytes of another message often parse "successfully" into unknown fields (a Save record,
    # a protodb TensorProto): refuse them instead of producing garbage tensors
    if _unknown_fields(protos) or any(_unknown_fields(t) for t in protos.protos):
        raise errors.ProtoError(f"{where}: its {len(value)} bytes parse only with fields caffe2.TensorProtos does"
                                f" not define, so they are not a serialized caffe2.TensorProtos; {_ROW_HINT}")
    return protos


def decode_tensor(proto, where) -> np.ndarray:
    """A TensorProto as a host array; ProtoError naming ``where`` on bad data."""
    try:
        return utils.Caffe2TensorToNumpyArray(proto)
    except errors.NbcaffeError as exc:
        raise errors.ProtoError(f"{where}: {exc}") from None


def read_row(reader):
    """(key text, TensorProtos, where) of the reader's next row."""
    key, value = reader.read()
    text = key.decode("utf-8", errors="replace") if isinstance(key, (bytes, bytearray)) else str(key)
    where = f"{describe_reader(reader)}, row with key '{text}'"
    return text, parse_row(value, where), where


def check_reader(op, value):
    if not isinstance(value, _db.DBReader):
        raise errors.ShapeError(f"input 0 '{op.input_names[0]}' must be a DB reader (made by CreateDB), got a"
                                f" {type(value).__name__}")
    return value


def store_outputs(arrays, outputs):
    """Host kernel: copy each host array of the batch into its output buffer."""
    for array, out in zip(arrays, outputs):
        np.copyto(out, array)


class DBInputOp(Operator):
    """Base of the DB input ops: ``read_batch`` makes the host arrays, the kernel stores them."""

    values_dependent = True
    gradient = None
    input_device = "any"  # a DB reader is a host object on every device
    cpu = staticmethod(store_outputs)

    def read_batch(self, inputs) -> list:
        raise NotImplementedError

    def prepare(self, inputs):
        arrays = self.read_batch(inputs)
        if self.ctx.device_type:
            for name, array in zip(self.output_names, arrays):
                if array.dtype == object:
                    raise errors.DeviceMismatchError(
                        f"output '{name}' holds strings, which cannot live on {self.ctx.name}; run this op on the"
                        f" CPU (strings stay on the host)")
        outputs = self.allocate_outputs(inputs, [a.shape for a in arrays], [a.dtype for a in arrays])
        kernel = self.kernel if callable(self.kernel) else type(self).cpu  # REFERENCE: the same host code
        self._call = functools.partial(kernel, arrays, outputs)
        return outputs


# ----------------------------------------------------------------------------- TensorProtosDBInput

def reference_rows(reader, count):
    """``count`` rows as an independent plain read would return them: every record from a
    fresh cursor, this shard's records (shard_id, shard_id + num_shards, ...), repeated."""
    cursor = reader.db.new_cursor()
    cursor.seek_to_first()
    records = [value for _key, value in cursor][reader.shard_id::reader.num_shards]
    if not records:
        raise errors.ProtoError(f"{describe_reader(reader)} has no records for shard {reader.shard_id}")
    return [records[i % len(records)] for i in range(count)]


@register_op
class TensorProtosDBInput(DBInputOp):
    """outputs[j] = tensor j of the next ``batch_size`` DB rows, stacked on a new leading dim.

    Input 0 is a DB reader (CreateDB); every row is a serialized TensorProtos with one tensor
    per output.  The reader's cursor advances across runs and wraps around at the end of the
    DB.  All rows of a batch must hold tensors of the same shapes and types; a row with a
    different number of tensors, other shapes or undecodable bytes raises, naming the DB and
    the row's key.  ``batch_size=0`` reads one row and outputs its tensors as they are (no
    batch dim).  On CUDA the batch is uploaded to the op's GPU.  Arguments: batch_size (0).
    """

    inputs, outputs = ("reader",), ("data",)
    num_outputs = (1, None)
    args = {"batch_size": Arg("int", 0, "rows per run; 0 = one row without a batch dim")}

    def setup(self):
        if self.args["batch_size"] < 0:
            raise errors.ArgumentError(f"{self.where()}: batch_size={self.args['batch_size']} must be >= 0")

    def read_batch(self, inputs):
        reader = check_reader(self, inputs[0])
        batch_size = self.args["batch_size"]
        n_out = len(self.output_names)
        arrays = None
        first = None
        for item in range(max(batch_size, 1)):
            key, protos, where = read_row(reader)
            if len(protos.protos) != n_out:
                raise errors.ShapeError(f"{where} holds {len(protos.protos)} tensor(s) but the op has {n_out}"
                                        f" output(s) {list(self.output_names)}; every row needs one tensor per"
                                        f" output")
            tensors = [decode_tensor(p, f"{where}, tensor {j}") for j, p in enumerate(protos.protos)]
            if batch_size == 0:
                return tensors
            if arrays is None:
                first = (key, [(t.shape, t.dtype) for t in tensors])
                arrays = [np.empty((batch_size,) + t.shape, dtype=t.dtype) for t in tensors]
            else:
                for j, t in enumerate(tensors):
                    shape, dtype = first[1][j]
                    if t.shape != shape or t.dtype != dtype:
                        raise errors.ShapeError(
                            f"{where}: tensor {j} (output '{self.output_names[j]}') is {t.shape} {t.dtype.name} but"
                            f" the batch's first row (key '{first[0]}') had {shape} {dtype.name}; all rows of a"
                            f" batch must have the same shapes and types")
            for j, t in enumerate(tensors):
                arrays[j][item] = t
        return arrays

    @staticmethod
    def reference(reader, batch_size=0):
        reader = reader.item() if isinstance(reader, np.ndarray) else reader
        rows = []
        for value in reference_rows(reader, max(batch_size, 1)):
            protos = caffe2_pb2.TensorProtos.FromString(value)
            rows.append([utils.Caffe2TensorToNumpyArray(p) for p in protos.protos])
        if batch_size == 0:
            return tuple(rows[0])
        return tuple(np.stack([row[j] for row in rows]) for j in range(len(rows[0])))

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        from nbcaffe.shape_inference import UnknownShape

        raise UnknownShape()  # the shapes are in the DB rows


# ----------------------------------------------------------------------------- images

def bgr_to_gray(bgr):
    """OpenCV's 8-bit BGR -> gray: (1868 B + 9617 G + 4899 R + 2^13) >> 14 (0.114/0.587/0.299)."""
    b, g, r = (bgr[..., i].astype(np.int32) for i in range(3))
    return ((b * 1868 + g * 9617 + r * 4899 + (1 << 13)) >> 14).astype(np.uint8)[..., None]


def _decode_gray(img) -> np.ndarray:
    """An encoded image as OpenCV's IMREAD_GRAYSCALE decodes it: the codec's own gray
    conversion for JPEG (libjpeg) and PNG (libpng's (9797 R + 19234 G + 3737 B) >> 15, no
    rounding), OpenCV's BGR2GRAY for the others."""
    if img.mode == "L":
        img.load()
        return np.asarray(img, dtype=np.uint8)[..., None]
    if img.format == "JPEG":
        img.draft("L", img.size)  # libjpeg's grayscale output, as OpenCV asks for it
        return np.asarray(img.convert("L"), dtype=np.uint8)[..., None]
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).astype(np.int32)
    if img.format == "PNG":
        gray = (rgb[..., 0] * 9797 + rgb[..., 1] * 19234 + rgb[..., 2] * 3737) >> 15
        return gray.astype(np.uint8)[..., None]
    return bgr_to_gray(np.ascontiguousarray(rgb[..., ::-1]))


def decode_image(proto, color, where) -> np.ndarray:
    """The image of an ImageInput row as uint8 (H, W, 3) in BGR order (color) or (H, W, 1).

    STRING tensors hold one encoded image (JPEG, PNG, ... decoded by Pillow, converted to BGR
    or gray as OpenCV's imdecode gives it); BYTE tensors hold raw HxW or HxWxC (C = 1 or 3) pixels,
    used as stored (3-channel raw images are taken to be BGR already, as Caffe2 did).
    """
    if proto.data_type == T.STRING:
        if len(proto.string_data) != 1:
            raise errors.ShapeError(f"{where}: an encoded image tensor holds exactly one string, found"
                                    f" {len(proto.string_data)}")
        from PIL import Image

        data = proto.string_data[0]
        try:
            with Image.open(io.BytesIO(data)) as img:
                if color:
                    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8)[..., ::-1])
                return _decode_gray(img)
        except (OSError, ValueError, SyntaxError) as exc:
            raise errors.ProtoError(f"{where}: the {len(data)} bytes of the image tensor are not an image Pillow can"
                                    f" decode ({type(exc).__name__}: {exc})") from None
    if proto.data_type == T.BYTE:
        dims = [int(d) for d in proto.dims]
        if len(dims) not in (2, 3) or (len(dims) == 3 and dims[2] not in (1, 3)):
            raise errors.ShapeError(f"{where}: a raw image tensor has dims (H, W) or (H, W, C) with C 1 or 3, got"
                                    f" {dims}")
        channels = dims[2] if len(dims) == 3 else 1
        if len(proto.byte_data) != dims[0] * dims[1] * channels:
            raise errors.ShapeError(f"{where}: raw image dims {dims} need {dims[0] * dims[1] * channels} bytes,"
                                    f" byte_data holds {len(proto.byte_data)}")
        src = np.frombuffer(proto.byte_data, dtype=np.uint8).reshape(dims[0], dims[1], channels)
        if color and channels == 1:
            return np.repeat(src, 3, axis=2)  # OpenCV's GRAY2BGR
        if not color and channels == 3:
            return bgr_to_gray(src)
        return src
    name = T.DataType.Name(proto.data_type) if proto.data_type in T.DataType.values() else str(proto.data_type)
    raise errors.ShapeError(f"{where}: the image tensor has data_type {name}; ImageInput reads STRING (one encoded"
                            f" image) or BYTE (raw HxWxC uint8 pixels)")


@functools.lru_cache(maxsize=64)
def _area_taps(n_in, n_out):
    """OpenCV's INTER_AREA shrink table for one axis: for each output pixel, the input pixels
    its cell covers and their float32 weights (overlap / cell size), padded to a common length
    with zero weights.  Returns (indices, weights), both (n_out, taps)."""
    scale = 1.0 / (n_out / n_in)  # OpenCV's scale_x = 1 / inv_scale_x
    rows = []
    for d in range(n_out):
        start, stop = d * scale, d * scale + scale
        cell = min(scale, n_in - start)
        first = min(int(np.ceil(start)), n_in - 1)
        last = min(int(np.floor(stop)), n_in - 1)
        first = min(first, last)
        taps = []
        if first - start > 1e-3:
            taps.append((first - 1, (first - start) / cell))
        taps.extend((s, 1.0 / cell) for s in range(first, last))
        if stop - last > 1e-3:
            taps.append((last, min(min(stop - last, 1.0), cell) / cell))
        rows.append(taps)
    width = max(len(t) for t in rows)
    index = np.zeros((n_out, width), np.intp)
    weight = np.zeros((n_out, width), np.float32)
    for d, taps in enumerate(rows):
        for k, (s, w) in enumerate(taps):
            index[d, k], weight[d, k] = s, np.float32(w)
    return index, weight


@numba.njit(cache=True)
def shrink_area_cpu(src, xi, xw, yi, yw, out):
    """uint8 src (H, W, C) -> uint8 out (oh, ow, C): each input row summed across its column
    taps (xi, xw: (ow, K)), then rows summed with their weights (yi, yw: (oh, Ky)), float32
    in OpenCV's order (a zero-weight pad tap adds an exact 0)."""
    rows = np.empty((src.shape[0], out.shape[1], src.shape[2]), np.float32)
    for h in range(src.shape[0]):
        for dx in range(out.shape[1]):
            for c in range(src.shape[2]):
                acc = np.float32(0.0)
                for k in range(xi.shape[1]):
                    acc += np.float32(src[h, xi[dx, k], c]) * xw[dx, k]
                rows[h, dx, c] = acc
    for dy in range(out.shape[0]):
        for dx in range(out.shape[1]):
            for c in range(src.shape[2]):
                acc = np.float32(0.0)
                for k in range(yi.shape[1]):
                    acc += yw[dy, k] * rows[yi[dy, k], dx, c]
                out[dy, dx, c] = min(max(np.rint(acc), 0.0), 255.0)


def _shrink_area(img, out_h, out_w):
    """OpenCV's general INTER_AREA shrink (float32 sums in OpenCV's summation order)."""
    xi, xw = _area_taps(img.shape[1], out_w)
    yi, yw = _area_taps(img.shape[0], out_h)
    out = np.empty((out_h, out_w, img.shape[2]), np.uint8)
    shrink_area_cpu(np.ascontiguousarray(img), xi, xw, yi, yw, out)
    return out


@functools.lru_cache(maxsize=64)
def _linear_taps(n_in, n_out):
    """OpenCV's area-mode linear taps for one axis (used when enlarging): input pixels
    (s, s + 1) with weights (1 - f, f) as 11-bit fixed point; f is how far the output cell
    reaches into the next input pixel."""
    inv_scale = n_out / n_in
    scale = 1.0 / inv_scale
    index = np.zeros((n_out, 2), np.intp)
    weight = np.zeros((n_out, 2), np.int64)
    for d in range(n_out):
        s = int(np.floor(d * scale))
        f = np.float32((d + 1) - (s + 1) * inv_scale)
        f = np.float32(0.0) if f <= 0 else f - np.floor(f)
        if s < 0:
            s, f = 0, np.float32(0.0)
        if s >= n_in - 1:
            s, f = n_in - 1, np.float32(0.0)
        index[d] = (s, min(s + 1, n_in - 1))
        weight[d] = np.rint(np.array([np.float32(1.0) - f, f], np.float32) * np.float32(2048))
    return index, weight


@numba.njit(cache=True)
def enlarge_area_cpu(src, xi, xw, yi, yw, out):
    """uint8 src -> uint8 out with two fixed-point taps per axis: horizontal integer sums,
    then the vertical blend rounded as OpenCV's SIMD path: ((b * (s >> 4)) >> 16) per tap,
    summed, + 2, >> 2."""
    rows = np.empty((src.shape[0], out.shape[1], src.shape[2]), np.int64)
    for h in range(src.shape[0]):
        for dx in range(out.shape[1]):
            for c in range(src.shape[2]):
                rows[h, dx, c] = np.int64(src[h, xi[dx, 0], c]) * xw[dx, 0] + np.int64(src[h, xi[dx, 1], c]) * xw[dx, 1]
    for dy in range(out.shape[0]):
        for dx in range(out.shape[1]):
            for c in range(src.shape[2]):
                top = (yw[dy, 0] * (rows[yi[dy, 0], dx, c] >> 4)) >> 16
                bottom = (yw[dy, 1] * (rows[yi[dy, 1], dx, c] >> 4)) >> 16
                out[dy, dx, c] = min(max((top + bottom + 2) >> 2, 0), 255)


def _enlarge_area(img, out_h, out_w):
    """OpenCV's INTER_AREA when a side grows (area-mode linear taps in fixed point)."""
    xi, xw = _linear_taps(img.shape[1], out_w)
    yi, yw = _linear_taps(img.shape[0], out_h)
    out = np.empty((out_h, out_w, img.shape[2]), np.uint8)
    enlarge_area_cpu(np.ascontiguousarray(img), xi, xw, yi, yw, out)
    return out


def resize_area(img, out_h, out_w):
    """uint8 (H, W, C) -> (out_h, out_w, C) as OpenCV's ``cv::resize(..., INTER_AREA)``.

    Shrinking by integer factors averages blocks (2x2 rounds half up, as OpenCV's SIMD path;
    other factors multiply the sum by 1/area in float32); other shrinks weight partially
    covered pixels by their overlap (float32, OpenCV's summation order); when a side grows,
    OpenCV's area-mode linear taps in fixed point.  Checked equal to OpenCV 4.14 on random
    sizes (tests/test_io.py, when cv2 is importable).
    """
    in_h, in_w, _ = img.shape
    if (in_h, in_w) == (out_h, out_w):
        return img
    scale_x, scale_y = 1.0 / (out_w / in_w), 1.0 / (out_h / in_h)
    if scale_x < 1 or scale_y < 1:
        return _enlarge_area(img, out_h, out_w)
    ix, iy = int(round(scale_x)), int(round(scale_y))
    if abs(scale_x - ix) >= np.finfo(float).eps or abs(scale_y - iy) >= np.finfo(float).eps:
        return _shrink_area(img, out_h, out_w)
    blocks = img[: out_h * iy, : out_w * ix].reshape(out_h, iy, out_w, ix, img.shape[2])
    sums = blocks.sum(axis=(1, 3), dtype=np.int64)
    if ix == 2 and iy == 2:
        return ((sums + 2) >> 2).astype(np.uint8)
    return np.clip(np.rint(sums.astype(np.float32) * np.float32(1.0 / (ix * iy))), 0, 255).astype(np.uint8)


def scaled_size(rows, cols, scale, minsize, warp):
    """(height, width) ImageInput resizes to, or None to keep the image: the shorter side
    becomes ``scale`` (or ``minsize``, only enlarging), the other keeps the aspect ratio
    (truncated, computed in float32 as Caffe2 did); ``warp`` makes both sides that size."""
    size = scale if scale > 0 else minsize
    if warp:
        height = width = size
    elif rows > cols:
        width, height = size, int(np.float32(rows) * np.float32(size) / np.float32(cols))
    else:
        height, width = size, int(np.float32(cols) * np.float32(size) / np.float32(rows))
    if (scale > 0 and (height != rows or width != cols)) or height > rows or width > cols:
        return height, width
    return None


class ImageSettings:
    """ImageInput's per-op constants (parsed once)."""

    def __init__(self, args):
        self.batch_size = args["batch_size"]
        self.color = bool(args["color"])
        self.channels = 3 if self.color else 1
        self.scale, self.minsize, self.warp = args["scale"], args["minsize"], bool(args["warp"])
        self.crop, self.mirror, self.is_test = args["crop"], bool(args["mirror"]), bool(args["is_test"])
        mean = list(args["mean_per_channel"]) or [args["mean"]]
        std = list(args["std_per_channel"]) or [args["std"]]
        if len(mean) == 1:
            mean, std = mean * 3, std * 3
        self.mean = np.array(mean[: self.channels], np.float32)
        # Caffe2 multiplies by 1/std computed in float
        self.inv_std = (np.float32(1.0) / np.array(std[: self.channels], np.float32)).astype(np.float32)
        box = [args["bounding_ymin"], args["bounding_xmin"], args["bounding_height"], args["bounding_width"]]
        self.default_box = box if min(box) >= 0 else None
        self.out_dtype = np.dtype(np.float16) if output_type_code(args["output_type"]) == T.FLOAT16 else \
            np.dtype(np.float32)


def output_type_code(value) -> int:
    """Caffe2's output_type: a DataType name ('float', 'FLOAT16', ...) or number; FLOAT default."""
    if value is None or value == "":
        return T.FLOAT
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        name = value.upper()
        if name in T.DataType.keys():
            return T.DataType.Value(name)
        raise errors.ArgumentError(f"output_type {value!r} is not a TensorProto data type name")
    return int(value)


def transform_image(img, settings, box, rng, where):
    """Bounding box, resize, crop (random or central), optional mirror, normalisation: one
    (crop, crop, C) image of ImageInput's output (Caffe2's TransformImage)."""
    rows, cols = img.shape[:2]
    if box is not None and box[0] + box[2] <= rows and box[1] + box[3] <= cols:
        img = img[box[0]: box[0] + box[2], box[1]: box[1] + box[3]]  # (an out-of-image box is ignored, as in Caffe2)
    size = scaled_size(img.shape[0], img.shape[1], settings.scale, settings.minsize, settings.warp)
    if size is not None:
        img = resize_area(img, *size)
    rows, cols = img.shape[:2]
    crop = settings.crop
    if rows < crop or cols < crop:
        raise errors.ShapeError(f"{where}: the scaled image is {rows}x{cols}, smaller than crop={crop}")
    if settings.is_test or rng is None:
        top, left = (rows - crop) // 2, (cols - crop) // 2
    else:
        left = int(rng.integers(0, cols - crop + 1))
        top = int(rng.integers(0, rows - crop + 1))
    patch = img[top: top + crop, left: left + crop]
    if settings.mirror and rng is not None and rng.random() < 0.5:
        patch = patch[:, ::-1]
    return (patch.astype(np.float32) - settings.mean) * settings.inv_std


def read_label(proto, where):
    if proto.data_type == T.INT32 and len(proto.int32_data) == 1:
        return np.int32(proto.int32_data[0])
    if proto.data_type == T.FLOAT and len(proto.float_data) == 1:
        return np.float32(proto.float_data[0])
    name = T.DataType.Name(proto.data_type) if proto.data_type in T.DataType.values() else str(proto.data_type)
    raise errors.ShapeError(f"{where}: the label tensor must hold one INT32 or FLOAT value, got data_type {name}"
                            f" with {len(proto.int32_data) or len(proto.float_data)} value(s)")


def read_box(protos, settings, where):
    if len(protos.protos) == 2:
        return settings.default_box
    box = protos.protos[2]
    if box.data_type != T.INT32 or len(box.int32_data) != 4:
        raise errors.ShapeError(f"{where}: a third tensor is a bounding box of 4 INT32 values (ymin, xmin, height,"
                                f" width)")
    return [int(v) for v in box.int32_data]


def image_batch(values, settings, rng, where_of):
    """(data, label) host arrays for ``values`` (serialized rows); ``where_of(i)`` names row i."""
    data = np.empty((len(values), settings.crop, settings.crop, settings.channels), dtype=settings.out_dtype)
    labels = None
    for i, (value, where) in enumerate(zip(values, where_of)):
        protos = value if isinstance(value, caffe2_pb2.TensorProtos) else parse_row(value, where)
        if not 2 <= len(protos.protos) <= 3:
            raise errors.ShapeError(f"{where} holds {len(protos.protos)} tensor(s); ImageInput rows hold the image,"
                                    f" the label and optionally a bounding box")
        label = read_label(protos.protos[1], f"{where}, label")
        if labels is None:
            labels = np.empty(len(values), dtype=label.dtype)
        elif label.dtype != labels.dtype:
            raise errors.ShapeError(f"{where}: label is {label.dtype.name} but the batch's first label was"
                                    f" {labels.dtype.name}")
        labels[i] = label
        img = decode_image(protos.protos[0], settings.color, f"{where}, image")
        data[i] = transform_image(img, settings, read_box(protos, settings, where), rng, where)
    return data, labels


_UNSUPPORTED = ("color_jitter", "color_lighting", "scale_jitter_type", "label_type")


@register_op
class ImageInput(DBInputOp):
    """(data, label) = the next ``batch_size`` images of a DB, decoded, resized, cropped and
    normalised: data is NHWC (batch_size, crop, crop, 3 if color else 1), label (batch_size,).

    Rows are TensorProtos [image, label(, bounding box)]: the image a STRING tensor with one
    encoded image (decoded with Pillow into BGR, OpenCV's order; color=0 converts to gray as
    OpenCV does) or a BYTE tensor of raw HxW(xC) pixels (used as stored); the label one INT32
    (output int32) or FLOAT value; the optional box 4 INT32 (ymin, xmin, height, width).  Per
    image: crop to the box (per-row box, else the bounding_* arguments; ignored when it does
    not fit), resize so the shorter side is ``scale`` (or at least ``minsize``; ``warp`` makes
    both sides that size) with OpenCV's INTER_AREA, cut a crop x crop patch (central when
    is_test, else at a random offset), mirror it horizontally with probability 1/2 when
    ``mirror``, then ``(pixel - mean[c]) / std[c]`` with mean/std per channel in BGR order.
    The reader is input 0, or made from ``db``/``db_type`` when there is no input.  Random
    draws are seeded by the DeviceOption's random_seed.  On CUDA the batch is uploaded to the
    op's GPU.  Arguments: batch_size (required), scale or minsize (exactly one), crop
    (required, <= scale/minsize), warp (0), mirror (0), is_test (0), color (1), mean (0), std
    (1), mean_per_channel / std_per_channel (1 or 3 values), bounding_ymin/xmin/height/width
    (-1: none), output_type ('float'; 'float16' gives float16 data), use_gpu_transform (CUDA
    only; same numbers), decode_threads (accepted; decoding is serial), db, db_type ('minidb').
    use_caffe_datum=1 is refused (no caffe.proto Datum here), as are color jitter/lighting,
    scale jitter and multi-label rows.
    """

    inputs, outputs = ("reader",), ("data", "label")
    num_inputs = (0, 1)
    args = {
        "batch_size": Arg("int", 0, "images per run (> 0)"),
        "color": Arg("int", 1, "1: 3-channel BGR output, 0: gray"),
        "scale": Arg("int", -1, "resize so the shorter side is this"),
        "minsize": Arg("int", -1, "enlarge so the shorter side is at least this"),
        "warp": Arg("bool", False, "resize both sides to scale/minsize"),
        "crop": Arg("int", -1, "output height and width"),
        "mirror": Arg("bool", False, "random horizontal flips"),
        "is_test": Arg("bool", False, "central crop instead of a random one"),
        "mean": Arg("float", 0.0, "subtracted from every channel"),
        "std": Arg("float", 1.0, "divides every channel"),
        "mean_per_channel": Arg("floats", (), "per-channel means (BGR)"),
        "std_per_channel": Arg("floats", (), "per-channel std devs (BGR)"),
        "bounding_ymin": -1, "bounding_xmin": -1, "bounding_height": -1, "bounding_width": -1,
        "use_caffe_datum": Arg("bool", False, "rows are Caffe1 Datum protos (not supported)"),
        "use_gpu_transform": Arg("bool", False, "normalise on the GPU (CUDA ops only)"),
        "decode_threads": Arg("int", 4, "accepted for Caffe2 compatibility; decoding is serial"),
        "output_type": Arg("any", "float", "FLOAT or FLOAT16 data"),
        "db": Arg("str", "", "DB path when there is no reader input"),
        "db_type": Arg("str", "minidb", "DB type when there is no reader input"),
        "color_jitter": 0, "color_lighting": 0, "scale_jitter_type": 0, "label_type": 0,
        "img_saturation": 0.4, "img_brightness": 0.4, "img_contrast": 0.4, "color_lighting_std": 0.1,
    }

    def setup(self):
        args, where = self.args, self.where()
        if args["use_caffe_datum"]:
            raise errors.ArgumentError(f"{where}: use_caffe_datum=1 reads Caffe1 Datum rows, which nbcaffe cannot"
                                       f" parse (it has no caffe.proto); write the rows as TensorProtos [image,"
                                       f" label] instead")
        for name in _UNSUPPORTED:
            if args[name]:
                raise errors.ArgumentError(f"{where}: {name}={args[name]} is not supported by nbcaffe's ImageInput")
        if args["batch_size"] <= 0:
            raise errors.ArgumentError(f"{where}: batch_size must be positive, got {args['batch_size']}")
        if (args["scale"] > 0) == (args["minsize"] > 0):
            raise errors.ArgumentError(f"{where}: give exactly one of scale and minsize (got scale={args['scale']},"
                                       f" minsize={args['minsize']})")
        if args["crop"] <= 0:
            raise errors.ArgumentError(f"{where}: the crop size is required (crop > 0)")
        if max(args["scale"], args["minsize"]) < args["crop"]:
            raise errors.ArgumentError(f"{where}: scale/minsize={max(args['scale'], args['minsize'])} must be no"
                                       f" smaller than crop={args['crop']}")
        mean, std = args["mean_per_channel"], args["std_per_channel"]
        n_mean, n_std = len(mean) or 1, len(std) or 1
        if n_mean != n_std or n_mean not in (1, 3):
            raise errors.ArgumentError(f"{where}: mean and std need 1 or 3 values each, the same number (got"
                                       f" {n_mean} and {n_std})")
        if any(s == 0 for s in (list(std) or [args["std"]])):
            raise errors.ArgumentError(f"{where}: std must not be 0")
        if args["use_gpu_transform"] and not self.ctx.device_type:
            raise errors.ArgumentError(f"{where}: use_gpu_transform=1 needs a CUDA op (Caffe2: 'use_gpu_transform"
                                       f" only for GPUs')")
        if output_type_code(args["output_type"]) not in (T.FLOAT, T.FLOAT16):
            raise errors.ArgumentError(f"{where}: output_type must be FLOAT or FLOAT16, got {args['output_type']!r}")
        self.settings = ImageSettings(args)
        self.owned_reader = None
        if not self.input_names:
            if not args["db"]:
                raise errors.ArgumentError(f"{where}: give a DB reader as input, or the DB path as argument 'db'")
            self.owned_reader = _db.DBReader(args["db_type"], args["db"])
        option = self.device_option
        seed = int(option.random_seed) if option is not None and option.HasField("random_seed") else None
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def read_batch(self, inputs):
        reader = self.owned_reader if self.owned_reader is not None else check_reader(self, inputs[0])
        values, wheres = [], []
        for _ in range(self.settings.batch_size):
            _key, protos, where = read_row(reader)
            values.append(protos)
            wheres.append(where)
        return list(image_batch(values, self.settings, self.rng, wheres))

    def reference_kwargs(self):
        return {"args": dict(self.args), "owned_reader": self.owned_reader}

    @staticmethod
    def reference(*readers, args=None, owned_reader=None):
        """The deterministic path (central crop, no mirror) over the reader's first rows."""
        reader = readers[0].item() if readers and isinstance(readers[0], np.ndarray) else \
            (readers[0] if readers else owned_reader)
        settings = ImageSettings(args)
        values = reference_rows(reader, settings.batch_size)
        return image_batch(values, settings, None, [f"reference row {i}" for i in range(len(values))])

    @classmethod
    def static_infer(cls, args, shapes, dtypes, op_def):
        channels = 3 if args["color"] else 1
        dtype = np.dtype(np.float16) if output_type_code(args["output_type"]) == T.FLOAT16 else np.dtype(np.float32)
        # the label type is the DB's (INT32 unless the rows hold FLOAT labels), as Caffe2 inferred it
        return ([(args["batch_size"], args["crop"], args["crop"], channels), (args["batch_size"],)],
                [dtype, np.dtype(np.int32)])


__all__ = ["TensorProtosDBInput", "ImageInput", "decode_image", "resize_area", "scaled_size", "parse_row"]
