"""Persistence: DB formats (minidb bytes, lmdb, protodb), Caffe2 blob serialization, the
Save/Checkpoint/Load/CreateDB/DBExists ops (atomic saves and damaged files:
test_persistence_safety.py)."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest

from nbcaffe import core, db, errors, serialization, utils, workspace
from nbcaffe.devices import CPU, CUDA, DeviceOption
from nbcaffe.proto import caffe2_pb2
from tests._persistence_common import DB_TYPES, T, leftovers, load, need, read_minidb, run, save  # noqa: F401

# ----------------------------------------------------------------------------- minidb bytes

def test_minidb_file_is_plain_little_endian_records(tmp_path):
    path = tmp_path / "plain.minidb"
    records = [(b"alpha", b"1"), (b"k" * 300, bytes(range(256)) * 3), ("utf8-\u00e9", b"\x00\xff")]
    with db.create_db("minidb", path, "n") as out:
        txn = out.new_transaction()
        for key, value in records:
            txn.put(key, value)
        txn.commit()
    data = path.read_bytes()
    assert data[:8] == struct.pack("<ii", 5, 1) and data[8:14] == b"alpha1"  # no file header
    assert read_minidb(path) == [(k.encode() if isinstance(k, str) else k, v) for k, v in records]
    cursor = db.create_db("minidb", path, db.Mode.read).new_cursor()
    seen = []
    while cursor.valid():
        seen.append((cursor.key(), cursor.value()))
        cursor.next()
    assert seen == read_minidb(path)
    cursor.seek_to_first()
    assert cursor.key() == b"alpha"


def test_save_writes_caffe2_blob_protos(root):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    workspace.FeedBlob("x", x)
    workspace.FeedBlob("msg", b"hi there")
    run("Save", ["x", "msg"], [], db="ckpt.minidb")
    (k0, v0), (k1, v1) = read_minidb(root / "ckpt.minidb")
    assert (k0, k1) == (b"x#%0", b"msg")
    blob = caffe2_pb2.BlobProto.FromString(v0)
    assert (blob.name, blob.type, blob.tensor.name) == ("x", "Tensor", "x")
    assert list(blob.tensor.dims) == [2, 3] and blob.tensor.data_type == T.FLOAT
    assert (blob.tensor.segment.begin, blob.tensor.segment.end) == (0, 6)
    assert blob.tensor.HasField("device_detail") and blob.tensor.device_detail.device_type == CPU
    assert list(blob.tensor.float_data) == x.reshape(-1).tolist()
    text = caffe2_pb2.BlobProto.FromString(v1)
    assert (text.name, text.type, text.content) == ("msg", "std::string", b"hi there")
    assert not text.HasField("tensor")


def test_fast_float_path_matches_field_by_field_serialization():
    for dtype in (np.float32, np.float64):
        x = np.random.default_rng(0).standard_normal(1000).astype(dtype)
        ((_, data),) = serialization.serialize_blob("w", x)
        reference = utils.NumpyArrayToCaffe2Tensor(x, "w")
        reference.segment.begin, reference.segment.end = 0, x.size
        reference.device_detail.device_type = CPU
        expected = caffe2_pb2.BlobProto(name="w", type="Tensor", tensor=reference).SerializeToString()
        assert data == expected


# ----------------------------------------------------------------------------- chunking

def test_chunking_keys_segments_and_reassembly():
    x = np.arange(10, dtype=np.int64).reshape(2, 5) * (2 ** 40)
    records = serialization.serialize_blob("x", x, chunk_size=3)
    assert [k for k, _ in records] == ["x#%0", "x#%1", "x#%2", "x#%3"]
    segments = [(b.tensor.segment.begin, b.tensor.segment.end)
                for b in (caffe2_pb2.BlobProto.FromString(v) for _, v in records)]
    assert segments == [(0, 3), (3, 6), (6, 9), (9, 10)]
    for _, v in records:
        assert list(caffe2_pb2.BlobProto.FromString(v).tensor.dims) == [2, 5]  # full dims in every chunk
    np.testing.assert_array_equal(serialization.deserialize_blobs(records)["x"], x)
    np.testing.assert_array_equal(serialization.deserialize_blobs(records[::-1])["x"], x)  # any order
    assert len(serialization.serialize_blob("x", x)) == 1  # default 1,000,000 elements
    assert len(serialization.serialize_blob("x", x, chunk_size=0)) == 1  # 0 = no chunking
    assert len(serialization.serialize_blob("x", x, chunk_size=-1)) == 1  # -1 = default


def test_missing_or_duplicated_chunks_are_errors():
    records = serialization.serialize_blob("x", np.arange(10, dtype=np.float32), chunk_size=4)
    with pytest.raises(errors.ProtoError, match=r"Data size mismatch for blob 'x': expected 10 elements.*read 6"):
        serialization.deserialize_blobs(records[:1] + records[2:])
    with pytest.raises(errors.ProtoError, match="overlaps"):
        serialization.deserialize_blobs(records + records[1:2])


def test_save_op_chunk_size_and_load(root):
    x = np.random.default_rng(1).standard_normal((7, 3)).astype(np.float32)
    workspace.FeedBlob("x", x)
    run("Save", ["x"], [], db="c.minidb", chunk_size=5)
    assert [k for k, _ in read_minidb(root / "c.minidb")] == [f"x#%{i}".encode() for i in range(5)]
    workspace.ResetWorkspace()
    run("Load", [], ["x"], db="c.minidb")
    np.testing.assert_array_equal(workspace.FetchBlob("x"), x)


# ----------------------------------------------------------------------------- dtypes

def _strings(values, shape):
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out.reshape(shape)


DTYPE_CASES = {
    "float32": np.array([[1.5, -2.25], [np.inf, 3e-38]], np.float32),
    "float64": np.array([1e300, -1e-300, np.pi]),
    "float16": np.array([0.5, -65504.0, 6e-8, np.inf], np.float16),
    "int8": np.array([-128, 0, 127], np.int8),
    "int16": np.array([-32768, 32767], np.int16),
    "int32": np.array([[-(2 ** 31), 2 ** 31 - 1]], np.int32),
    "int64": np.array([-(2 ** 62), 2 ** 40 + 3, 0], np.int64),
    "uint8": np.array([0, 200, 255], np.uint8),
    "uint16": np.array([0, 65535], np.uint16),
    "bool": np.array([[True, False, True]]),
    "strings": _strings([b"a", b"", "\u00e9t\u00e9".encode(), b"\x00\xff"], (2, 2)),
    "empty": np.zeros((0,), np.float32),
    "empty_2d": np.zeros((2, 0, 3), np.int64),
    "scalar": np.array(7.5, np.float32),
    "scalar_int": np.array(-3, np.int64),
    "nan": np.array([np.nan, 1.0], np.float32),
}


@pytest.mark.parametrize("name", sorted(DTYPE_CASES))
def test_every_dtype_round_trips_through_blob_protos(name):
    value = DTYPE_CASES[name]
    records = serialization.serialize_blob("v", value, chunk_size=2)
    out = serialization.deserialize_blobs(records)["v"]
    assert out.shape == value.shape and out.dtype == value.dtype
    np.testing.assert_array_equal(out, value)
    blob = caffe2_pb2.BlobProto.FromString(records[0][1])
    assert blob.tensor.data_type == utils.data_type_of(value.dtype)
    if value.size == 0:
        assert len(records) == 1 and (blob.tensor.segment.begin, blob.tensor.segment.end) == (0, 0)


def test_storage_fields_follow_caffe2():
    def tensor_of(value):
        return caffe2_pb2.BlobProto.FromString(serialization.serialize_blob("v", value)[0][1]).tensor

    half = tensor_of(np.array([1.0, -2.0], np.float16))
    assert half.data_type == T.FLOAT16 and list(half.int32_data) == [0x3C00, 0xC000]
    assert list(tensor_of(np.array([3, 255], np.uint8)).int32_data) == [3, 255]
    assert tensor_of(np.array([3], np.uint8)).data_type == T.UINT8
    assert list(tensor_of(np.array([True, False])).int32_data) == [1, 0]
    assert list(tensor_of(np.array([2 ** 40], np.int64)).int64_data) == [2 ** 40]
    assert list(tensor_of(np.array([0.5])).double_data) == [0.5]
    assert list(tensor_of(_strings([b"x", b"yz"], (2,))).string_data) == [b"x", b"yz"]
    assert list(tensor_of(np.array(1.0, np.float32)).dims) == []


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_every_dtype_round_trips_through_save_and_load(tmp_path, db_type):
    need(db_type)
    names = sorted(DTYPE_CASES)
    for name in names:
        workspace.FeedBlob(name, DTYPE_CASES[name])
    workspace.FeedBlob("text", b"\x00binary string\xff")
    path = tmp_path / f"all.{db_type}"
    save(path, names + ["text"], db_type, chunk_size=3)
    workspace.ResetWorkspace()
    load(path, names + ["text"], db_type)
    for name in names:
        out = workspace.FetchBlob(name)
        assert out.dtype == DTYPE_CASES[name].dtype and out.shape == DTYPE_CASES[name].shape, name
        np.testing.assert_array_equal(out, DTYPE_CASES[name])
    assert workspace.FetchBlob("text") == b"\x00binary string\xff"


def test_caffe2_written_records_load(tmp_path):
    """Records shaped as older Caffe2 wrote them: no segment, no device_detail, legacy fields."""
    path = tmp_path / "legacy.minidb"

    def blob(name, **tensor_fields):
        return caffe2_pb2.BlobProto(name=name, type="Tensor", tensor=T(name=name, **tensor_fields))

    rows = [("w", blob("w", dims=[2], data_type=T.FLOAT, float_data=[1.0, 2.0])),
            ("h#%0", blob("h", dims=[2], data_type=T.FLOAT16,
                          byte_data=np.array([1.0, 0.5], np.float16).tobytes())),  # fp16 as bytes flag
            ("b", blob("b", dims=[3], data_type=T.BYTE, byte_data=b"\x01\x02\xff")),
            ("r", blob("r", dims=[2], data_type=T.INT32, raw_data=np.array([7, -7], "<i4").tobytes(),
                       storage_type=T.RAW)),
            ("e", blob("e", dims=[0], data_type=T.UNDEFINED))]
    with db.create_db("minidb", path, "n") as out:
        txn = out.new_transaction()
        for key, proto in rows:
            txn.put(key, proto.SerializeToString())
    load(path, ["w", "h", "b", "r", "e"])
    np.testing.assert_array_equal(workspace.FetchBlob("w"), [1.0, 2.0])
    np.testing.assert_array_equal(workspace.FetchBlob("h"), np.array([1.0, 0.5], np.float16))
    np.testing.assert_array_equal(workspace.FetchBlob("b"), np.array([1, 2, 255], np.uint8))
    np.testing.assert_array_equal(workspace.FetchBlob("r"), [7, -7])
    assert workspace.FetchBlob("e").shape == (0,)


# ----------------------------------------------------------------------------- Save / Load ops

@pytest.mark.parametrize("db_type", DB_TYPES)
def test_save_load_round_trip_and_overwrite(tmp_path, db_type):
    need(db_type)
    path = tmp_path / f"model.{db_type}"
    a, b = np.ones((3, 4), np.float32), np.arange(5, dtype=np.int32)
    workspace.FeedBlob("a", a)
    workspace.FeedBlob("b", b)
    save(path, ["a", "b"], db_type)
    workspace.FeedBlob("a", a * 2)  # a second save replaces the DB as a whole
    save(path, ["a"], db_type)
    workspace.ResetWorkspace()
    load(path, ["a"], db_type)
    np.testing.assert_array_equal(workspace.FetchBlob("a"), a * 2)
    with pytest.raises(errors.BlobNotFoundError, match=r"'b'.*The DB has 1 blob\(s\): 'a'"):
        load(path, ["b"], db_type)
    assert leftovers(tmp_path, [path.name]) == []


def test_prefixes_overrides_and_source_names(root):
    workspace.FeedBlob("gpu_0/w", np.array([1.0], np.float32))
    workspace.FeedBlob("gpu_0/b", np.array([2.0], np.float32))
    run("Save", ["gpu_0/w", "gpu_0/b"], [], db="p.minidb", strip_prefix="gpu_0/")
    assert [k for k, _ in read_minidb(root / "p.minidb")] == [b"w#%0", b"b#%0"]
    run("Load", [], ["gpu_1/w", "gpu_1/b"], db="p.minidb", add_prefix="gpu_1/")
    assert workspace.FetchBlob("gpu_1/b")[0] == 2.0
    run("Load", [], ["renamed"], db="p.minidb", source_blob_names=["w"])
    assert workspace.FetchBlob("renamed")[0] == 1.0
    run("Save", ["gpu_0/w", "gpu_0/b"], [], db="o.minidb", blob_name_overrides=["first", "second"])
    assert [k for k, _ in read_minidb(root / "o.minidb")] == [b"first#%0", b"second#%0"]
    run("Load", [], ["gpu_3/second"], db="o.minidb", strip_prefix="fir", add_prefix="gpu_3/", allow_incomplete=1)
    assert workspace.FetchBlob("gpu_3/second")[0] == 2.0


def test_load_all_allow_incomplete_and_multiple_dbs(tmp_path):
    for name, value in (("a", 1), ("b", 2), ("c", 3)):
        workspace.FeedBlob(name, np.array([value], np.int64))
    save(tmp_path / "ab.minidb", ["a", "b"])
    save(tmp_path / "c.minidb", ["c"])
    workspace.ResetWorkspace()
    run("Load", [], [], db=str(tmp_path / "ab.minidb"), absolute_path=1, load_all=1)
    assert sorted(workspace.Blobs()) == ["a", "b"]
    workspace.ResetWorkspace()
    run("Load", [], ["a", "c"], dbs=[str(tmp_path / "ab.minidb"), str(tmp_path / "c.minidb")], absolute_path=1)
    assert workspace.FetchBlob("c")[0] == 3 and not workspace.HasBlob("b")
    load(tmp_path / "ab.minidb", ["a", "zz"], allow_incomplete=1)
    assert not workspace.HasBlob("zz") or workspace.current().blobs["zz"] is None
    with pytest.raises(errors.BlobNotFoundError, match="does not exist|not in"):
        load(tmp_path / "c.minidb", ["a"], load_all=1)
    (tmp_path / "copy.minidb").write_bytes((tmp_path / "ab.minidb").read_bytes())
    with pytest.raises(errors.ProtoError, match="'a' is in two DBs"):
        run("Load", [], ["a"], dbs=[str(tmp_path / "ab.minidb"), str(tmp_path / "copy.minidb")], absolute_path=1)


def test_missing_blob_error_lists_the_db_contents(tmp_path):
    workspace.FeedBlob("conv1_w", np.zeros(2, np.float32))
    workspace.FeedBlob("conv1_b", np.zeros(2, np.float32))
    save(tmp_path / "m.minidb", ["conv1_w", "conv1_b"])
    workspace.FeedBlob("conv1_w", np.ones(2, np.float32))
    with pytest.raises(errors.BlobNotFoundError) as info:
        load(tmp_path / "m.minidb", ["conv1_w", "conv2_w"])
    text = str(info.value)
    assert "conv2_w" in text and "'conv1_w', 'conv1_b'" in text and "Did you mean: conv1_w" in text
    np.testing.assert_array_equal(workspace.FetchBlob("conv1_w"), np.ones(2))  # nothing was written


def test_relative_paths_use_the_workspace_root_folder(root, tmp_path_factory):
    workspace.FeedBlob("x", np.array([4.0], np.float32))
    run("Save", ["x"], [], db="sub.minidb")
    assert (root / "sub.minidb").exists()
    other = tmp_path_factory.mktemp("other")
    run("Save", ["x"], [], db=str(other / "abs.minidb"), absolute_path=1)
    assert (other / "abs.minidb").exists()
    workspace.ResetWorkspace(str(other))  # the same relative name now means another folder
    run("Load", [], ["x"], db="abs.minidb")
    with pytest.raises(db.DBError, match=r"cannot open '.*other.*sub\.minidb'"):
        run("Load", [], ["x"], db="sub.minidb")


def test_argument_errors_are_reported_at_creation(tmp_path):
    workspace.FeedBlob("x", np.zeros(1, np.float32))
    with pytest.raises(errors.ArgumentError, match="'db'"):
        run("Save", ["x"], [])
    with pytest.raises(errors.ArgumentError, match="unknown db_type 'leveldb'.*does not implement"):
        run("Save", ["x"], [], db="a", db_type="leveldb")
    with pytest.raises(errors.ArgumentError, match="mutually exclusive"):
        run("Save", ["x"], [], db="a", strip_prefix="g", blob_name_overrides=["y"])
    with pytest.raises(errors.ArgumentError, match="2 names for 1 input"):
        run("Save", ["x"], [], db="a", blob_name_overrides=["y", "z"])
    with pytest.raises(errors.ArgumentError, match="source_blob_names has 1 names for 2"):
        run("Load", [], ["a", "b"], db="a", source_blob_names=["q"])
    with pytest.raises(errors.ArgumentError, match="either 'db' or 'dbs'"):
        run("Load", [], ["a"], db="a", dbs=["b"])
    with pytest.raises(errors.ArgumentError, match="load_all"):
        run("Load", [], ["a"], db="a", load_all=1, source_blob_names=["b"])
    with pytest.raises(db.DBError, match="folder .* does not exist"):
        save(tmp_path / "no" / "such" / "dir.minidb", ["x"])


def test_checkpoint_saves_every_n_iterations(root):
    workspace.FeedBlob("w", np.array([1.5], np.float32))
    for it in range(1, 7):
        workspace.FeedBlob("iter", np.array([it], np.int64))
        run("Checkpoint", ["iter", "w"], [], db="ckpt_%03d.minidb", every=3)
    assert sorted(p for p in os.listdir(root) if p.startswith("ckpt")) == ["ckpt_003.minidb", "ckpt_006.minidb"]
    load(root / "ckpt_006.minidb", ["iter", "w"])
    assert workspace.FetchBlob("iter")[0] == 6
    workspace.FeedBlob("iter", np.array([4], np.int64))
    run("Snapshot", ["iter", "w"], [], db="snap.minidb", every=2)
    assert (root / "snap.minidb").exists()


def test_net_reading_a_loaded_blob_sees_new_values(tmp_path):
    workspace.FeedBlob("w", np.array([1.0, 2.0], np.float32))
    save(tmp_path / "w.minidb", ["w"])
    net = core.Net("uses_w")
    net.Relu(["w"], ["y"])
    workspace.CreateNet(net)
    workspace.RunNet(net)
    workspace.FeedBlob("w", np.array([-5.0, -5.0], np.float32))
    workspace.RunNet(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [0.0, 0.0])
    load(tmp_path / "w.minidb", ["w"])
    workspace.RunNet(net)
    np.testing.assert_array_equal(workspace.FetchBlob("y"), [1.0, 2.0])


# ----------------------------------------------------------------------------- DB API

def test_db_registry_modes_and_errors(tmp_path):
    assert {"minidb", "MiniDB", "lmdb", "LMDB", "protodb", "ProtoDB"} <= set(db.registered_dbs())
    assert db.parse_mode("r") == db.Mode.read == 0 and db.parse_mode("new") == db.Mode.new == 2
    with pytest.raises(db.DBError, match="unknown db mode"):
        db.parse_mode("x")
    with pytest.raises(db.DBError, match="unknown db_type 'minidbb'.*Did you mean"):
        db.create_db("minidbb", tmp_path / "a", "n")
    path = tmp_path / "m.minidb"
    writer = db.create_db("MiniDB", path, db.Mode.new)
    with pytest.raises(db.DBError, match="cursors need"):
        writer.new_cursor()
    with pytest.raises(db.DBError, match="empty value"):
        writer.new_transaction().put("k", b"")
    writer.close()
    reader = db.create_db("minidb", path, "r")
    assert not reader.new_cursor().valid()  # an empty DB is valid
    with pytest.raises(db.DBError, match="opened for reading"):
        reader.new_transaction()
    with pytest.raises(db.DBError, match="past the last record"):
        reader.new_cursor().key()
    reader.close()


def test_protodb_holds_named_tensor_protos(tmp_path):
    path = tmp_path / "t.protodb"
    with db.create_db("protodb", path, "n") as out:
        txn = out.new_transaction()
        txn.put("w", utils.NumpyArrayToCaffe2Tensor(np.array([1.0, 2.0], np.float32)).SerializeToString())
        with pytest.raises(db.DBError, match="already exists"):
            txn.put("w", b"")
    protos = caffe2_pb2.TensorProtos.FromString(path.read_bytes())
    assert [p.name for p in protos.protos] == ["w"]
    load(path, ["w"], "protodb")  # a plain TensorProto row loads as a tensor
    np.testing.assert_array_equal(workspace.FetchBlob("w"), [1.0, 2.0])
    workspace.FeedBlob("s", b"text")
    save(path, ["w", "s"], "protodb", chunk_size=1)
    names = [p.name for p in caffe2_pb2.TensorProtos.FromString(path.read_bytes()).protos]
    assert names == ["w#%0", "w#%1", "s"]
    workspace.ResetWorkspace()
    load(path, ["w", "s"], "protodb")
    assert workspace.FetchBlob("s") == b"text"


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_db_exists(tmp_path, root, db_type):
    need(db_type)
    workspace.FeedBlob("x", np.zeros(1, np.float32))
    save(tmp_path / f"here.{db_type}", ["x"], db_type)
    run("DBExists", [], ["yes"], db_name=f"here.{db_type}", db_type=db_type)
    run("DBExists", [], ["no"], db_path=str(tmp_path / "gone"), db_type=db_type, absolute_path=1)
    assert workspace.FetchBlob("yes").shape == () and workspace.FetchBlob("yes").dtype == np.bool_
    assert bool(workspace.FetchBlob("yes")) and not bool(workspace.FetchBlob("no"))
    assert db.db_exists(db_type, tmp_path / f"here.{db_type}")


# ----------------------------------------------------------------------------- readers

def test_create_db_and_load_from_a_reader(tmp_path):
    workspace.FeedBlob("w", np.array([3.0, 4.0], np.float32))
    workspace.FeedBlob("b", np.array([5], np.int32))
    save(tmp_path / "r.minidb", ["w", "b"])
    workspace.ResetWorkspace()
    run("CreateDB", [], ["reader"], db=str(tmp_path / "r.minidb"), db_type="minidb")
    reader = workspace.FetchBlob("reader")
    assert isinstance(reader, db.DBReader) and reader.source == str(tmp_path / "r.minidb")
    run("Load", ["reader"], ["w", "b"])
    run("Load", ["reader"], ["w"])  # a reader can be loaded from again
    np.testing.assert_array_equal(workspace.FetchBlob("w"), [3.0, 4.0])
    assert workspace.FetchBlob("b")[0] == 5
    workspace.FeedBlob("not_a_reader", np.zeros(1))
    with pytest.raises(errors.ShapeError, match="must be a DB reader"):
        run("Load", ["not_a_reader"], ["w"])


def test_sharded_reader_and_reader_serialization(tmp_path):
    path = tmp_path / "rows.minidb"
    with db.create_db("minidb", path, "n") as out:
        txn = out.new_transaction()
        for i in range(5):
            txn.put(f"row{i}", str(i).encode())
    reader = db.DBReader("minidb", path, num_shards=2, shard_id=1)
    assert [reader.read()[0] for _ in range(4)] == [b"row1", b"row3", b"row1", b"row3"]
    with pytest.raises(db.DBError, match="shard_id"):
        db.DBReader("minidb", path, num_shards=2, shard_id=2)
    workspace.current().blobs["reader"] = db.DBReader("minidb", path)
    workspace.current().blobs["reader"].read()
    restored = {}
    for key, data in serialization.serialize_blob("reader", workspace.current().blobs["reader"]):
        assert key == "reader" and caffe2_pb2.BlobProto.FromString(data).type == "DBReader"
        restored = serialization.deserialize_blobs([(key, data)])
    assert restored["reader"] == db.DBReader("minidb", path) and restored["reader"].cursor.key() == b"row1"


def test_workspace_serialize_and_deserialize_blob():
    workspace.FeedBlob("w", np.arange(2 * 1_000_003, dtype=np.float32).reshape(2, -1))
    data = workspace.SerializeBlob("w")
    proto = caffe2_pb2.BlobProto.FromString(data)
    assert proto.tensor.segment.end == 2 * 1_000_003  # one BlobProto, no chunking
    workspace.DeserializeBlob("w2", data)
    np.testing.assert_array_equal(workspace.FetchBlob("w2"), workspace.FetchBlob("w"))
    workspace.FeedBlob("s", "caf\u00e9")
    workspace.DeserializeBlob("s2", workspace.SerializeBlob("s"))
    assert workspace.FetchBlob("s2") == "caf\u00e9".encode()
    with pytest.raises(errors.BlobNotFoundError, match="'nope' does not exist"):
        workspace.SerializeBlob("nope")
    with pytest.raises(errors.ProtoError, match="DeserializeBlob"):
        workspace.DeserializeBlob("bad", b"\xff\xff\xff")
    workspace.current().blobs["obj"] = object()
    with pytest.raises(serialization.SerializationError, match="no serializer"):
        workspace.SerializeBlob("obj")


# ----------------------------------------------------------------------------- CUDA

GPU = DeviceOption(CUDA, 0)


@pytest.mark.cuda
def test_save_from_gpu_and_load_onto_gpu(tmp_path):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    workspace.FeedBlob("x", x, GPU)
    workspace.FeedBlob("n", np.array([1, 2], np.int64), GPU)
    workspace.RunOperatorOnce(core.CreateOperator("Save", ["x", "n"], [], db=str(tmp_path / "g.minidb"),
                                                  absolute_path=1, chunk_size=4, device_option=GPU))
    blob = caffe2_pb2.BlobProto.FromString(read_minidb(tmp_path / "g.minidb")[0][1])
    assert blob.tensor.device_detail.device_type == CUDA
    workspace.ResetWorkspace()
    workspace.RunOperatorOnce(core.CreateOperator("Load", [], ["x", "n"], db=str(tmp_path / "g.minidb"),
                                                  absolute_path=1, device_option=GPU))
    value = workspace.current().blobs["x"]
    assert not isinstance(value, np.ndarray) and hasattr(value, "copy_to_host")
    np.testing.assert_array_equal(workspace.FetchBlob("x"), x)
    np.testing.assert_array_equal(workspace.FetchBlob("n"), [1, 2])
    load(tmp_path / "g.minidb", ["x"])  # a CPU Load puts it on the host
    assert isinstance(workspace.current().blobs["x"], np.ndarray)
    load(tmp_path / "g.minidb", ["x"], keep_device=1)  # keep_device: back onto the GPU it came from
    assert not isinstance(workspace.current().blobs["x"], np.ndarray)


@pytest.mark.cuda
def test_gpu_scalars_empty_tensors_and_db_exists(tmp_path):
    workspace.FeedBlob("s", np.array(2.5, np.float32))
    workspace.FeedBlob("e", np.zeros((0, 2), np.float32))
    save(tmp_path / "se.minidb", ["s", "e"])
    workspace.ResetWorkspace()
    workspace.RunOperatorOnce(core.CreateOperator("Load", [], ["s", "e"], db=str(tmp_path / "se.minidb"),
                                                  absolute_path=1, device_option=GPU))
    assert workspace.FetchBlob("s").shape == () and workspace.FetchBlob("s") == 2.5
    assert workspace.FetchBlob("e").shape == (0, 2)
    workspace.RunOperatorOnce(core.CreateOperator("DBExists", [], ["ok"], db_name=str(tmp_path / "se.minidb"),
                                                  absolute_path=1, device_option=GPU))
    assert bool(workspace.FetchBlob("ok"))
    workspace.DeserializeBlob("s2", serialization.serialize_whole("s2", np.array(1.0, np.float32),
                                                                   serialization.device_detail_of(None, 0)))
    assert workspace.FetchBlob("s2").shape == ()


def test_two_lmdb_readers_on_one_path_share_the_environment(tmp_path):
    """A train and a test net (or an init net run twice) may read one LMDB at the same time."""
    pytest.importorskip("lmdb")
    from nbcaffe import db as dbmod

    path = str(tmp_path / "shared.lmdb")
    writer = dbmod.create_db("lmdb", path, "n")
    txn = writer.new_transaction()
    txn.put(b"k0", b"v0")
    txn.put(b"k1", b"v1")
    txn.commit()
    writer.close()
    first = dbmod.create_db("lmdb", path, "r")
    second = dbmod.create_db("lmdb", path, "r")
    for reader in (first, second):
        cursor = reader.new_cursor()
        cursor.seek_to_first()
        assert (cursor.key(), cursor.value()) == (b"k0", b"v0")
    first.close()
    cursor = second.new_cursor()
    cursor.seek_to_first()
    cursor.next()
    assert cursor.value() == b"v1"
    second.close()
    third = dbmod.create_db("lmdb", path, "r")  # reopens after everything was closed
    third.close()
