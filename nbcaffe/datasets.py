"""Data set utilities: write DBs of TensorProtos rows (what TensorProtosDBInput, ImageInput and
``brew.db_input`` read) and read MNIST's IDX files.

Example:
    >>> import numpy as np, tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> images = np.zeros((3, 28, 28), np.uint8); labels = np.array([1, 2, 3])
    >>> write_tensor_protos_db(os.path.join(folder, "train.minidb"), [images, labels], db_type="minidb")
    3
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

from nbcaffe import db as _db
from nbcaffe import errors, serialization
from nbcaffe.proto import caffe2_pb2

T = caffe2_pb2.TensorProto

# IDX type codes (the third byte of the magic number) -> big-endian NumPy dtypes
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_INT32 = np.iinfo(np.int32)


class DatasetError(errors.NbcaffeError, ValueError):
    """A data file or DB that cannot be read or written as asked."""


# ----------------------------------------------------------------------------- TensorProtos DBs

def _as_sample_array(array, index):
    """A column of samples as an array; lists of bytes (encoded images) become object arrays
    (not NumPy's fixed-width bytes, which would drop trailing NUL bytes)."""
    if isinstance(array, np.ndarray):
        return array
    if isinstance(array, (list, tuple)) and array and all(isinstance(v, (bytes, bytearray)) for v in array):
        out = np.empty(len(array), dtype=object)
        out[:] = [bytes(v) for v in array]
        return out
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"write_tensor_protos_db: array {index} cannot be converted to a NumPy array"
                           f" ({exc})") from None


def _column_kind(array, index):
    """The TensorProto data type column ``index`` is written with (see write_tensor_protos_db)."""
    kind = array.dtype.kind
    if kind in "OSU":
        return T.STRING
    if kind == "f":
        return T.FLOAT
    if kind == "b":
        return T.BOOL
    if kind in "iu":
        if array.dtype == np.uint8 and array.ndim > 1:
            return T.BYTE
        if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
            raise DatasetError(f"write_tensor_protos_db: array {index} ({array.dtype}) holds values outside int32;"
                               f" labels are written as INT32")
        return T.INT32
    raise DatasetError(f"write_tensor_protos_db: array {index} has dtype {array.dtype}, which has no TensorProtos"
                       f" encoding here (use uint8 images, float or integer arrays, or bytes)")


def _sample_proto(value, data_type):
    proto = T()
    proto.data_type = data_type
    proto.dims.extend(int(d) for d in np.shape(value))
    if data_type == T.BYTE:
        proto.byte_data = np.ascontiguousarray(value, dtype=np.uint8).tobytes()
    elif data_type == T.STRING:
        flat = np.asarray(value, dtype=object).reshape(-1)
        proto.string_data.extend(v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in flat)
    else:
        dtype = {T.FLOAT: np.float32, T.INT32: np.int32, T.BOOL: np.bool_}[data_type]
        serialization.fill_tensor_data(proto, np.asarray(value, dtype=dtype).reshape(-1), data_type)
    return proto


def tensor_protos_row(values, data_types) -> bytes:
    """One serialized TensorProtos row holding ``values`` (one tensor each)."""
    protos = caffe2_pb2.TensorProtos()
    for value, data_type in zip(values, data_types):
        protos.protos.add().CopyFrom(_sample_proto(value, data_type))
    return protos.SerializeToString()


def write_tensor_protos_db(path, arrays, db_type="lmdb"):
    """Write a DB with one TensorProtos row per sample: row i holds ``arrays[0][i]``,
    ``arrays[1][i]``, ... (e.g. an image and its label), under the key ``'%08d' % i``.

    This is the layout of Caffe2's tutorial DBs (the lmdb_create_example script and the MNIST
    LMDBs): one tensor per array with the sample's shape as dims; the keys are zero-padded so
    that LMDB's sorted order is the sample order.  Encodings:

    * uint8 arrays of samples with dims (images, e.g. N x 28 x 28): BYTE, raw ``byte_data``
      (what ImageInput reads as a raw image; TensorProtosDBInput gives uint8);
    * other integer arrays (labels): INT32 (values must fit);
    * floating arrays: FLOAT (float32), as the example script wrote its float images;
    * bool arrays: BOOL;
    * lists or object arrays of bytes (encoded JPEG/PNG files): STRING, one string per sample
      (what ImageInput decodes).

    The DB is written atomically (a complete new DB replaces any old one at ``path``).

    Args:
        path: DB path (an LMDB directory for "lmdb", a file for "minidb").
        arrays: sequence of arrays (or lists of bytes) with the same length N.
        db_type: "lmdb" (default, as the tutorials) or "minidb".

    Returns:
        N, the number of rows written.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "digits.minidb")
        >>> write_tensor_protos_db(path, [np.ones((2, 4, 4), np.uint8), np.array([7, 8])], "minidb")
        2
    """
    if db_type not in ("lmdb", "minidb"):
        raise DatasetError(f"write_tensor_protos_db: db_type must be 'lmdb' or 'minidb', got {db_type!r} (protodb"
                           f" holds one TensorProto per key, not rows)")
    if isinstance(arrays, np.ndarray) or not isinstance(arrays, (list, tuple)) or not arrays:
        raise DatasetError("write_tensor_protos_db: arrays must be a non-empty list of aligned arrays, e.g."
                           " [images, labels]")
    columns = [_as_sample_array(a, i) for i, a in enumerate(arrays)]
    for i, column in enumerate(columns):
        if column.ndim == 0:
            raise DatasetError(f"write_tensor_protos_db: array {i} is a scalar; every array needs one entry per"
                               f" sample along its first dim")
    lengths = [len(c) for c in columns]
    if len(set(lengths)) != 1:
        raise DatasetError(f"write_tensor_protos_db: the arrays must have the same number of samples, got lengths"
                           f" {lengths}")
    kinds = [_column_kind(c, i) for i, c in enumerate(columns)]
    path = os.fspath(path)
    try:
        out = _db.create_db(db_type, path, _db.NEW)
    except (OSError, errors.NbcaffeError) as exc:
        raise DatasetError(f"write_tensor_protos_db: cannot create the {db_type} DB at '{path}': {exc}") from None
    try:
        txn = out.new_transaction()
        for i in range(lengths[0]):
            txn.put(f"{i:08d}".encode("ascii"), tensor_protos_row([c[i] for c in columns], kinds))
        txn.commit()
    except BaseException:
        out.abort()
        raise
    out.close()
    return lengths[0]


# ----------------------------------------------------------------------------- IDX / MNIST

def read_idx(path) -> np.ndarray:
    """An IDX file (MNIST's format), gzip-compressed or raw, as a NumPy array.

    The magic number is two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64) and the number of dims; then one big-endian int32
    per dim and the data, big-endian.  The array has the file's shape and native byte order.

    Args:
        path: the ``.idx*-ubyte`` file, or its ``.gz``.

    Returns:
        The array (MNIST images: uint8 (N, 28, 28); labels: uint8 (N,)).

    Example:
        >>> import numpy as np, tempfile, os, struct
        >>> p = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
        >>> _ = open(p, "wb").write(struct.pack(">iI", 0x801, 3) + bytes([5, 0, 4]))
        >>> read_idx(p)
        array([5, 0, 4], dtype=uint8)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DatasetError(f"read_idx: '{path}' " + ("is a directory, not an IDX file" if os.path.isdir(path)
                                                      else "does not exist"))
    with open(path, "rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as handle:
            data = handle.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"read_idx: '{path}' looks gzip-compressed but cannot be decompressed ({exc})") from None
    if len(data) < 4:
        raise DatasetError(f"read_idx: '{path}' holds {len(data)} bytes, too few for an IDX header")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        magic = struct.unpack(">I", data[:4])[0]
        raise DatasetError(f"read_idx: '{path}' is not an IDX file: magic number 0x{magic:08X} ({magic}); IDX files"
                           f" start with 0x0000 and a type byte (MNIST: 2051 = 0x00000803 images, 2049 ="
                           f" 0x00000801 labels)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"read_idx: '{path}' is truncated inside its header ({len(data)} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(f"read_idx: '{path}' has dims {list(dims)} ({expected} data bytes) but holds"
                           f" {len(data) - header} data bytes" + (" (truncated)" if len(data) - header < expected
                                                                  else ""))
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(folder, stem):
    for name in (stem, stem + ".gz"):
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def load_mnist(folder, split=None):
    """MNIST images and labels from the IDX files in ``folder``.

    Looks for ``<split>-images-idx3-ubyte[.gz]`` and ``<split>-labels-idx1-ubyte[.gz]``;
    ``split`` is "train" or "t10k" (default: "train" when present, else "t10k").

    Args:
        folder: folder holding the IDX files (e.g. ``../shared/testdata/mnist``).
        split: "train", "t10k" or None.

    Returns:
        (images uint8 (N, 28, 28), labels int32 (N,)).

    Example:
        >>> images, labels = load_mnist("../shared/testdata/mnist")  # doctest: +SKIP
        >>> images.shape, labels[:3]  # doctest: +SKIP
        ((10000, 28, 28), array([7, 2, 1], dtype=int32))
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise DatasetError(f"load_mnist: '{folder}' is not a folder")
    splits = [split] if split is not None else ["train", "t10k"]
    for name in splits:
        images_path = _find(folder, f"{name}-images-idx3-ubyte")
        labels_path = _find(folder, f"{name}-labels-idx1-ubyte")
        if images_path and labels_path:
            break
    else:
        wanted = " or ".join(f"{s}-images-idx3-ubyte[.gz] + {s}-labels-idx1-ubyte[.gz]" for s in splits)
        present = sorted(os.listdir(folder))
        raise DatasetError(f"load_mnist: '{folder}' has no {wanted}; it holds: {present or 'nothing'}")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(f"load_mnist: '{images_path}' holds {images.dtype} {images.shape}, not uint8 N x H x W"
                           f" images")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DatasetError(f"load_mnist: '{labels_path}' holds labels of shape {labels.shape} for {len(images)}"
                           f" images")
    return images, labels.astype(np.int32)


__all__ = ["DatasetError", "write_tensor_protos_db", "tensor_protos_row", "read_idx", "load_mnist"]
