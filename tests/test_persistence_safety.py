"""Persistence that loses nothing: atomic saves (a crash mid-save keeps the previous
checkpoint; the lmdb swap recovers), and clear errors for truncated, foreign or damaged files."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from nbcaffe import db, errors, serialization, workspace
from tests._persistence_common import DB_TYPES, T, leftovers, load, need, read_minidb, run, save  # noqa: F401

# ----------------------------------------------------------------------------- atomicity

class _Crash(Exception):
    pass


def _crash_after(monkeypatch, n_records):
    real = serialization.iter_blob_records
    count = [0]

    def failing(*args, **kwargs):
        for record in real(*args, **kwargs):
            if count[0] == n_records:
                raise _Crash("simulated crash mid-save")
            count[0] += 1
            yield record

    monkeypatch.setattr(serialization, "iter_blob_records", failing)


@pytest.mark.parametrize("db_type", DB_TYPES)
def test_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, db_type):
    need(db_type)
    path = tmp_path / f"ckpt.{db_type}"
    workspace.FeedBlob("w", np.arange(20, dtype=np.float32))
    workspace.FeedBlob("b", np.ones(3, np.float32))
    save(path, ["w", "b"], db_type, chunk_size=4)
    before = sorted(os.listdir(tmp_path))
    snapshot = path.read_bytes() if path.is_file() else None
    workspace.FeedBlob("w", np.zeros(20, np.float32))
    _crash_after(monkeypatch, 2)
    with pytest.raises(errors.OperatorError, match="_Crash: simulated crash mid-save"):
        save(path, ["w", "b"], db_type, chunk_size=4)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == before  # no temporary file or folder left behind
    if snapshot is not None:
        assert path.read_bytes() == snapshot
    workspace.ResetWorkspace()
    load(path, ["w", "b"], db_type)
    np.testing.assert_array_equal(workspace.FetchBlob("w"), np.arange(20, dtype=np.float32))


def test_first_save_that_crashes_leaves_nothing(tmp_path, monkeypatch):
    workspace.FeedBlob("w", np.arange(20, dtype=np.float32))
    _crash_after(monkeypatch, 1)
    with pytest.raises(errors.OperatorError, match="simulated crash"):
        save(tmp_path / "new.minidb", ["w"], chunk_size=4)
    assert os.listdir(tmp_path) == []


def test_db_api_publishes_on_close_and_aborts_on_error(tmp_path):
    path = tmp_path / "api.minidb"
    with db.create_db("minidb", path, "n") as out:
        out.new_transaction().put("k", b"old")
    with pytest.raises(RuntimeError):
        with db.create_db("minidb", path, "n") as out:
            txn = out.new_transaction()
            txn.put("k", b"new")
            txn.commit()
            assert read_minidb(path) == [(b"k", b"old")]  # committed, not yet visible
            raise RuntimeError("interrupted")
    assert read_minidb(path) == [(b"k", b"old")] and os.listdir(tmp_path) == ["api.minidb"]
    out = db.create_db("minidb", path, "w")  # WRITE appends, as Caffe2's minidb
    out.new_transaction().put("k2", b"more")
    with pytest.warns(ResourceWarning, match="uncommitted"):
        del out
    assert read_minidb(path) == [(b"k", b"old")] and os.listdir(tmp_path) == ["api.minidb"]
    out = db.create_db("minidb", path, "w")
    out.new_transaction().put("k2", b"more")
    out.close()
    assert read_minidb(path) == [(b"k", b"old"), (b"k2", b"more")]
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_lmdb_swap_without_rename_exchange_recovers_after_a_crash(tmp_path, monkeypatch):
    pytest.importorskip("lmdb")
    path = tmp_path / "data.lmdb"
    workspace.FeedBlob("w", np.array([1.0], np.float32))
    save(path, ["w"], "lmdb")
    workspace.FeedBlob("w", np.array([2.0], np.float32))
    monkeypatch.setattr("nbcaffe.db._lmdb._exchange", lambda a, b: False)  # where the lmdb backend looks it up
    save(path, ["w"], "lmdb")  # the two-rename fallback
    assert os.listdir(tmp_path) == ["data.lmdb"]
    real_rename = os.rename
    calls = []

    def crash_on_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise _Crash("power cut between the renames")
        real_rename(src, dst)

    workspace.FeedBlob("w", np.array([3.0], np.float32))
    monkeypatch.setattr(os, "rename", crash_on_second)
    with pytest.raises(errors.OperatorError, match="power cut"):
        save(path, ["w"], "lmdb")
    monkeypatch.undo()
    assert not path.exists()  # only the backup holds the old database now
    load(path, ["w"], "lmdb")  # the reader restores it
    assert workspace.FetchBlob("w")[0] == 2.0 and path.is_dir()


# ----------------------------------------------------------------------------- damaged files

def _saved_file(tmp_path):
    path = tmp_path / "good.minidb"
    workspace.FeedBlob("a", np.arange(6, dtype=np.float32))
    workspace.FeedBlob("b", np.arange(4, dtype=np.int64))
    save(path, ["a", "b"], chunk_size=3)
    return path, path.read_bytes()


@pytest.mark.parametrize("cut", ["header", "key", "value"])
def test_truncated_minidb_is_a_clear_error(tmp_path, cut):
    path, data = _saved_file(tmp_path)
    (k0, v0), (k1, v1) = read_minidb(path)[:2]
    second = 8 + len(k0) + len(v0)  # record #1 starts here
    end = {"header": second + 5, "key": second + 8 + 2, "value": second + 8 + len(k1) + len(v1) - 1}[cut]
    path.write_bytes(data[:end])
    workspace.FeedBlob("a", np.full(6, -1.0, np.float32))
    with pytest.raises(errors.ProtoError) as info:
        load(path, ["a", "b"])
    text = str(info.value)
    assert str(path) in text and "record #1" in text and f"byte offset {second}" in text and "truncated" in text
    np.testing.assert_array_equal(workspace.FetchBlob("a"), np.full(6, -1.0))  # no partial load
    with pytest.raises(db.DBFormatError):
        db.create_db("minidb", path, "r")


def test_foreign_files_are_clear_errors(tmp_path):
    png = tmp_path / "image.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    with pytest.raises(errors.ProtoError, match=r"record #0 at byte offset 0.*not a minidb file.*PNG"):
        load(png, ["x"])
    noise = tmp_path / "noise.bin"
    noise.write_bytes(np.random.default_rng(7).bytes(4096))
    with pytest.raises(errors.ProtoError, match=r"noise\.bin.*record #\d+ at byte offset \d+"):
        load(noise, ["x"])
    with pytest.raises(errors.ProtoError, match=r"protodb .*image\.png.*not"):
        load(png, ["x"], "protodb")
    with pytest.raises(errors.ProtoError, match="protodb"):
        load(noise, ["x"], "protodb")
    assert not db.db_exists("minidb", png) and not db.db_exists("protodb", noise)


def test_record_that_is_not_a_blob_proto_names_the_record(tmp_path):
    path = tmp_path / "odd.minidb"
    with db.create_db("minidb", path, "n") as out:
        out.new_transaction().put("x#%0", b"\xff\xff\xff\xff not a proto")
    with pytest.raises(errors.ProtoError, match=r"odd\.minidb.*record #0 \(key 'x#%0'\).*BlobProto"):
        load(path, ["x"])


def test_foreign_lmdb_and_missing_paths(tmp_path):
    pytest.importorskip("lmdb")
    bad = tmp_path / "bad.lmdb"
    bad.mkdir()
    (bad / "data.mdb").write_bytes(np.random.default_rng(3).bytes(8192))
    with pytest.raises(errors.ProtoError, match=r"bad\.lmdb.*not an LMDB file"):
        load(bad, ["x"], "lmdb")
    with pytest.raises(db.DBError, match="does not exist"):
        load(tmp_path / "nowhere.lmdb", ["x"], "lmdb")
    with pytest.raises(db.DBError, match="is a directory.*lmdb"):
        load(bad, ["x"], "minidb")


def test_missing_lmdb_package_is_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lmdb", None)
    with pytest.raises(db.DBError, match="pip install lmdb"):
        db.create_db("lmdb", tmp_path / "x", "n")
    workspace.FeedBlob("x", np.zeros(1, np.float32))
    with pytest.raises(errors.ArgumentError, match="pip install lmdb"):
        save(tmp_path / "x.lmdb", ["x"], "lmdb")
