"""Sweep samples for the data input ops (nbcaffe/ops/io.py): tiny TensorProtos DBs written
into a private temporary folder at import (removed at exit).

The sweep runs each op several times on the same reader object (op, reference engine, CPU
vs CUDA), so every sample reads a whole number of passes over its DB (batch_size a multiple
of the rows of its shard): the cursor is back at the first row after every run and each run
sees the same rows as the reference, which reads from a fresh cursor.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import tempfile

import numpy as np

from nbcaffe import db
from nbcaffe.datasets import write_tensor_protos_db
from nbcaffe.proto import caffe2_pb2
from tests.op_samples import case

F32 = np.float32
_FOLDER = []


def _folder():
    if not _FOLDER:
        _FOLDER.append(tempfile.mkdtemp(prefix="nbcaffe_io_samples_"))
        atexit.register(shutil.rmtree, _FOLDER[0], True)
    return _FOLDER[0]


def _path(name):
    return os.path.join(_folder(), name)


def _png(array):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_rows(path, images, labels, boxes=None):
    """A minidb of [raw BYTE HxWx3 image, INT32 label(, INT32 bounding box)] rows (images of
    different sizes, which write_tensor_protos_db's aligned arrays cannot hold)."""
    T = caffe2_pb2.TensorProto
    out = db.create_db("minidb", path, db.NEW)
    txn = out.new_transaction()
    for i, (image, label) in enumerate(zip(images, labels)):
        protos = caffe2_pb2.TensorProtos()
        img = protos.protos.add()
        img.data_type = T.BYTE
        img.dims.extend(image.shape)
        img.byte_data = image.tobytes()
        lab = protos.protos.add()
        lab.data_type = T.INT32
        lab.int32_data.append(int(label))
        if boxes is not None:
            box = protos.protos.add()
            box.data_type = T.INT32
            box.dims.append(4)
            box.int32_data.extend(boxes[i])
        txn.put(f"{i:08d}".encode(), protos.SerializeToString())
    txn.commit()
    out.close()


def samples():
    r = np.random.default_rng(7)
    x = r.standard_normal((2, 2, 3)).astype(F32)
    labels2 = np.array([3, 8], np.int64)
    write_tensor_protos_db(_path("pairs.minidb"), [x, labels2], db_type="minidb")
    pixels = r.integers(0, 256, (3, 2, 2), dtype=np.uint8)
    write_tensor_protos_db(_path("pixels.lmdb"), [pixels, np.array([0, 1, 2])], db_type="lmdb")
    write_tensor_protos_db(_path("one.minidb"), [x[:1], np.array([[1.5, -2.0]], F32)], db_type="minidb")
    write_tensor_protos_db(_path("four.minidb"), [np.arange(4, dtype=F32).reshape(4, 1) * 1.5], db_type="minidb")

    color = [r.integers(0, 256, (6, 8, 3), dtype=np.uint8), r.integers(0, 256, (9, 6, 3), dtype=np.uint8)]
    _image_rows(_path("raw_color.minidb"), color, [4, 5])
    gray = [r.integers(0, 256, (5, 7), dtype=np.uint8), r.integers(0, 256, (8, 8), dtype=np.uint8)]
    for name in ("png.lmdb", "png2.lmdb"):  # one reader per LMDB: py-lmdb opens a path once per process
        write_tensor_protos_db(_path(name), [[_png(g) for g in gray], np.array([1, 0])], db_type="lmdb")
    rgb_png = [_png(r.integers(0, 256, (4, 6, 3), dtype=np.uint8))]
    write_tensor_protos_db(_path("rgb_png.minidb"), [rgb_png, np.array([9])], db_type="minidb")
    _image_rows(_path("boxes.minidb"), color, [6, 7], [[1, 2, 4, 5], [0, 0, 20, 20]])  # the 2nd box does not fit

    def reader(name, db_type="minidb", **kw):
        return db.DBReader(db_type, _path(name), **kw)

    return {
        "TensorProtosDBInput": [
            case([reader("pairs.minidb")], outputs=2, batch_size=2),
            case([reader("pairs.minidb")], outputs=2, batch_size=4),  # wraps around inside the batch
            case([reader("pixels.lmdb", "lmdb")], outputs=2, batch_size=3),
            case([reader("one.minidb")], outputs=2),  # batch_size 0: one row, no batch dim
            case([reader("four.minidb", num_shards=2, shard_id=1)], outputs=1, batch_size=2),
        ],
        "ImageInput": [
            case([reader("raw_color.minidb")], outputs=2, batch_size=2, scale=4, crop=4, is_test=1),
            case([reader("raw_color.minidb")], outputs=2, batch_size=2, scale=7, crop=5, is_test=1,
                 mean_per_channel=[10.0, 120.0, 200.0], std_per_channel=[2.0, 50.0, 64.0]),
            case([reader("raw_color.minidb")], outputs=2, batch_size=2, minsize=7, crop=6, is_test=1, color=0),
            case([reader("png.lmdb", "lmdb")], outputs=2, batch_size=2, scale=5, warp=1, crop=3, is_test=1,
                 color=0, mean=128.0, std=64.0),
            case([reader("png2.lmdb", "lmdb")], outputs=2, batch_size=4, scale=10, crop=8, is_test=1),
            case([reader("rgb_png.minidb")], outputs=2, batch_size=1, scale=4, crop=4, is_test=1),
            case([reader("boxes.minidb")], outputs=2, batch_size=2, scale=3, crop=3, is_test=1),
            case([], outputs=2, batch_size=2, scale=6, crop=6, is_test=1, db=_path("raw_color.minidb")),
        ],
    }


# the DB reader (input 0) is a host object on every device
HOST_INPUTS = {"TensorProtosDBInput": {0}, "ImageInput": {0}}
