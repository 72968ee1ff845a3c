"""Helpers shared by the persistence tests (test_persistence.py, test_persistence_safety.py)."""

from __future__ import annotations

import os
import struct

import pytest

from nbcaffe import core, workspace
from nbcaffe.proto import caffe2_pb2

T = caffe2_pb2.TensorProto
DB_TYPES = ["minidb", "protodb", "lmdb"]


def read_minidb(path):
    """An independent minidb reader: [(key, value)] via struct, every byte accounted for."""
    with open(path, "rb") as handle:
        data = handle.read()
    records, offset = [], 0
    while offset < len(data):
        key_len, value_len = struct.unpack_from("<ii", data, offset)
        offset += 8
        records.append((data[offset:offset + key_len], data[offset + key_len:offset + key_len + value_len]))
        offset += key_len + value_len
    assert offset == len(data)
    return records


def need(db_type):
    if db_type == "lmdb":
        pytest.importorskip("lmdb")


def run(op_type, inputs, outputs, **kwargs):
    return workspace.RunOperatorOnce(core.CreateOperator(op_type, inputs, outputs, **kwargs))


def save(path, names, db_type="minidb", **kwargs):
    run("Save", names, [], db=str(path), db_type=db_type, absolute_path=1, **kwargs)


def load(path, names, db_type="minidb", **kwargs):
    run("Load", [], names, db=str(path), db_type=db_type, absolute_path=1, **kwargs)


def leftovers(folder, keep):
    return sorted(set(os.listdir(folder)) - set(keep))
