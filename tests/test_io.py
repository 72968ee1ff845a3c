"""Data input: nbcaffe.datasets (TensorProtos DBs, IDX/MNIST), TensorProtosDBInput and
ImageInput, checked against the arrays that were written and against NumPy/Pillow written
here (and OpenCV itself, when cv2 is importable)."""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np
import pytest

from nbcaffe import brew, core, datasets, db, errors, model_helper, workspace
from nbcaffe.devices import CPU, CUDA, DeviceOption
from nbcaffe.ops import io as io_ops
from nbcaffe.proto import caffe2_pb2
from tests._paths import shared_data

T = caffe2_pb2.TensorProto


# ----------------------------------------------------------------------------- helpers

def reader_blob(name, path, db_type="minidb", **kwargs):
    workspace.RunOperatorOnce(core.CreateOperator("CreateDB", [], [name], db=str(path), db_type=db_type, **kwargs))
    return name


def run(op_type, inputs, outputs, device=None, **kwargs):
    op = core.CreateOperator(op_type, inputs, outputs, device_option=device, **kwargs)
    workspace.RunOperatorOnce(op)
    return [workspace.FetchBlob(o) for o in outputs]


def raw_rows_db(path, rows, db_type="minidb", keys=None):
    """A DB whose rows are TensorProtos built from ``rows``: lists of TensorProto."""
    out = db.create_db(db_type, str(path), db.NEW)
    txn = out.new_transaction()
    for i, protos in enumerate(rows):
        msg = caffe2_pb2.TensorProtos()
        for p in protos:
            msg.protos.add().CopyFrom(p)
        key = keys[i] if keys else f"{i:08d}"
        txn.put(key.encode(), msg.SerializeToString())
    txn.commit()
    out.close()


def byte_image(image):
    p = T(data_type=T.BYTE, byte_data=np.ascontiguousarray(image).tobytes())
    p.dims.extend(image.shape)
    return p


def encoded_image(data):
    return T(data_type=T.STRING, string_data=[data])


def int_label(v):
    return T(data_type=T.INT32, int32_data=[int(v)])


def png(array):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- datasets

def test_write_tensor_protos_db_rows_decode_to_the_arrays(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4), dtype=np.uint8)
    labels = np.array([4, 0, 9, 2, 7], np.int64)
    feats = np.linspace(-1, 1, 10).reshape(5, 2)  # float64 -> FLOAT
    assert datasets.write_tensor_protos_db(tmp_path / "d.lmdb", [images, labels, feats]) == 5
    handle = db.create_db("lmdb", str(tmp_path / "d.lmdb"), db.READ)
    cursor = handle.new_cursor()
    cursor.seek_to_first()
    rows = list(cursor)
    handle.close()
    assert [k for k, _ in rows] == [f"{i:08d}".encode() for i in range(5)]
    for i, (_, value) in enumerate(rows):
        protos = caffe2_pb2.TensorProtos.FromString(value).protos
        assert protos[0].data_type == T.BYTE and list(protos[0].dims) == [3, 4]
        assert protos[0].byte_data == images[i].tobytes()
        assert protos[1].data_type == T.INT32 and list(protos[1].dims) == [] and protos[1].int32_data[0] == labels[i]
        assert protos[2].data_type == T.FLOAT and list(protos[2].dims) == [2]
        np.testing.assert_array_equal(np.array(protos[2].float_data), feats[i].astype(np.float32))


def test_write_tensor_protos_db_encoded_images_keep_every_byte(tmp_path):
    blobs = [b"\x89PNG\x00\x00", b"abc\x00"]  # trailing NULs survive (NumPy 'S' arrays would drop them)
    datasets.write_tensor_protos_db(tmp_path / "s.minidb", [blobs, np.array([1, 2])], db_type="minidb")
    handle = db.create_db("minidb", str(tmp_path / "s.minidb"), db.READ)
    values = [caffe2_pb2.TensorProtos.FromString(v).protos[0] for _, v in handle.new_cursor()]
    handle.close()
    assert [(p.data_type, list(p.string_data)) for p in values] == [(T.STRING, [b]) for b in blobs]


@pytest.mark.parametrize("arrays,db_type,match", [
    ([np.zeros((3, 2)), np.zeros(4)], "lmdb", "same number of samples"),
    ([np.zeros((3, 2))], "protodb", "db_type must be"),
    ([np.array([2 ** 40, 1])], "minidb", "outside int32"),
    (np.zeros((3, 2)), "minidb", "list of aligned arrays"),
    ([np.float32(1.0)], "minidb", "scalar"),
])
def test_write_tensor_protos_db_errors(tmp_path, arrays, db_type, match):
    with pytest.raises(datasets.DatasetError, match=match):
        datasets.write_tensor_protos_db(tmp_path / "x", arrays, db_type=db_type)


def test_write_tensor_protos_db_missing_folder_names_the_path(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "x.minidb"
    with pytest.raises(datasets.DatasetError, match=str(target)):
        datasets.write_tensor_protos_db(target, [np.zeros(2)], db_type="minidb")


def _write_idx(path, array, type_code=0x08, compress=False):
    header = struct.pack(">HBB", 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open(path, "wb") if compress else open(path, "wb")) as handle:
        handle.write(data)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D)])
def test_read_idx_round_trips(tmp_path, compress, dtype, code):
    array = (np.arange(24).reshape(2, 3, 4) * 3 - 5).astype(dtype) if dtype != np.uint8 else \
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a.idx", array, code, compress)
    out = datasets.read_idx(tmp_path / "a.idx")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(struct.pack(">I", 0x12345678) + b"\x00" * 8)
    with pytest.raises(datasets.DatasetError, match=r"bad\.idx.*0x12345678.*2051"):
        datasets.read_idx(bad)
    short = tmp_path / "short.idx"
    short.write_bytes(struct.pack(">HBBI", 0, 8, 1, 10) + b"\x01\x02")
    with pytest.raises(datasets.DatasetError, match=r"short\.idx.*10 data bytes.*holds 2.*truncated"):
        datasets.read_idx(short)
    with pytest.raises(datasets.DatasetError, match=r"missing\.idx.*does not exist"):
        datasets.read_idx(tmp_path / "missing.idx")
    fake_gz = tmp_path / "fake.gz"
    fake_gz.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(datasets.DatasetError, match=r"fake\.gz.*gzip"):
        datasets.read_idx(fake_gz)


def test_load_mnist_test_set():
    folder = shared_data("mnist")
    images, labels = datasets.load_mnist(folder)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and labels.dtype == np.int32
    # published facts about the t10k set: its first labels, and its class counts
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    # the raw IDX bytes, read independently: image 0 is bytes 16..800 of the decompressed file
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "rb") as handle:
        raw = handle.read(16 + 784)
    assert struct.unpack(">4I", raw[:16]) == (2051, 10000, 28, 28)
    np.testing.assert_array_equal(images[0].reshape(-1), np.frombuffer(raw[16:], np.uint8))


def test_load_mnist_errors(tmp_path):
    with pytest.raises(datasets.DatasetError, match=r"is not a folder"):
        datasets.load_mnist(tmp_path / "nope")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(datasets.DatasetError, match=r"train-images-idx3-ubyte.*readme\.txt"):
        datasets.load_mnist(tmp_path)


# ----------------------------------------------------------------------------- TensorProtosDBInput

@pytest.mark.parametrize("db_type", ["minidb", "lmdb"])
def test_db_input_batches_advance_and_wrap(tmp_path, db_type):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (10, 1, 4, 4), dtype=np.uint8)
    labels = rng.integers(0, 10, 10)
    path = tmp_path / f"d.{db_type}"
    datasets.write_tensor_protos_db(path, [images, labels], db_type=db_type)
    reader_blob("reader", path, db_type)
    op = core.CreateOperator("TensorProtosDBInput", ["reader"], ["data", "label"], batch_size=4)
    seen = []
    for step in range(4):  # 16 rows from a 10-row DB: rows 0-3, 4-7, 8,9,0,1, 2-5
        workspace.RunOperatorOnce(op)
        data, label = workspace.FetchBlob("data"), workspace.FetchBlob("label")
        rows = [(4 * step + i) % 10 for i in range(4)]
        assert data.shape == (4, 1, 4, 4) and data.dtype == np.uint8 and label.dtype == np.int32
        np.testing.assert_array_equal(data, images[rows])
        np.testing.assert_array_equal(label, labels[rows])
        seen += rows
    assert seen[8:12] == [8, 9, 0, 1]


def test_db_input_reads_the_lmdb_create_example_layout(tmp_path):
    """Caffe2's lmdb_create_example: float (3, 64, 32) images, an INT32 label without dims,
    keys str(j) (so LMDB's sorted order is 0, 1, 10, 100, 101, ...), and its checksum."""
    rng = np.random.default_rng(2)
    out = db.create_db("lmdb", str(tmp_path / "ex.lmdb"), db.NEW)
    txn = out.new_transaction()
    checksum, images = 0.0, {}
    for j in range(128):
        img = rng.random((3, 64, 32))
        protos = caffe2_pb2.TensorProtos()
        t = protos.protos.add()
        t.dims.extend(img.shape)
        t.data_type = 1
        t.float_data.extend(img.reshape(-1))
        lab = protos.protos.add()
        lab.data_type = 2
        lab.int32_data.append(j % 10)
        txn.put(str(j).encode("ascii"), protos.SerializeToString())
        images[str(j)] = img.astype(np.float32)
        checksum += img.astype(np.float32).sum() * (j % 10)
    txn.commit()
    out.close()
    m = model_helper.ModelHelper(name="lmdbtest")
    data, label = m.TensorProtosDBInput([], ["data", "label"], batch_size=32, db=str(tmp_path / "ex.lmdb"),
                                        db_type="lmdb")
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)
    total, order = 0.0, sorted(images)
    for batch in range(4):
        workspace.RunNet(m.net.Proto().name)
        d, lab = workspace.FetchBlob("data"), workspace.FetchBlob("label")
        assert d.shape == (32, 3, 64, 32) and lab.shape == (32,)
        for i in range(32):
            key = order[batch * 32 + i]
            np.testing.assert_array_equal(d[i], images[key])
            assert lab[i] == int(key) % 10
            total += d[i].astype(np.float64).sum() * lab[i]
    assert abs(total - checksum) < 1e-2 * abs(checksum) / 1e4


def test_db_input_batch_size_zero_outputs_one_row(tmp_path):
    datasets.write_tensor_protos_db(tmp_path / "d.minidb", [np.arange(6.0).reshape(3, 2), np.array([5, 6, 7])],
                                    db_type="minidb")
    reader_blob("r", tmp_path / "d.minidb")
    for i in range(4):
        x, y = run("TensorProtosDBInput", ["r"], ["x", "y"])
        np.testing.assert_array_equal(x, np.arange(6.0, dtype=np.float32).reshape(3, 2)[i % 3])
        assert y.shape == () and y == [5, 6, 7][i % 3]


def test_db_input_reuses_output_buffers(tmp_path):
    datasets.write_tensor_protos_db(tmp_path / "d.minidb", [np.arange(8.0).reshape(4, 2)], db_type="minidb")
    reader_blob("r", tmp_path / "d.minidb")
    net = core.Net("reuse")
    net.TensorProtosDBInput(["r"], ["x"], batch_size=2)
    workspace.CreateNet(net)
    workspace.RunNet("reuse")
    first = workspace.current().blobs["x"]
    workspace.RunNet("reuse")
    assert workspace.current().blobs["x"] is first  # consumers keep their bound fast path
    np.testing.assert_array_equal(workspace.FetchBlob("x"), [[4, 5], [6, 7]])


def test_db_input_sharded_readers_split_the_rows(tmp_path):
    datasets.write_tensor_protos_db(tmp_path / "d.minidb", [np.arange(6)], db_type="minidb")
    reader_blob("r0", tmp_path / "d.minidb", num_shards=2, shard_id=0)
    reader_blob("r1", tmp_path / "d.minidb", num_shards=2, shard_id=1)
    assert run("TensorProtosDBInput", ["r0"], ["a"], batch_size=4)[0].tolist() == [0, 2, 4, 0]
    assert run("TensorProtosDBInput", ["r1"], ["b"], batch_size=2)[0].tolist() == [1, 3]


def test_db_input_string_tensors_stay_object_arrays(tmp_path):
    datasets.write_tensor_protos_db(tmp_path / "s.minidb", [[b"a", b"bc"], np.array([1, 2])], db_type="minidb")
    reader_blob("r", tmp_path / "s.minidb")
    s, n = run("TensorProtosDBInput", ["r"], ["s", "n"], batch_size=2)
    assert s.dtype == object and s.tolist() == [b"a", b"bc"] and n.tolist() == [1, 2]


def test_db_input_row_errors_name_the_db_and_row(tmp_path):
    raw_rows_db(tmp_path / "count.minidb", [[int_label(1), int_label(2)], [int_label(3)]])
    reader_blob("r", tmp_path / "count.minidb")
    with pytest.raises(errors.ShapeError, match=r"count\.minidb', row with key '00000001' holds 1 tensor\(s\) but the"
                                                r" op has 2 output"):
        run("TensorProtosDBInput", ["r"], ["a", "b"], batch_size=2)
    raw_rows_db(tmp_path / "shape.minidb", [[byte_image(np.zeros((2, 2), np.uint8))],
                                             [byte_image(np.zeros((3, 2), np.uint8))]])
    reader_blob("r2", tmp_path / "shape.minidb")
    with pytest.raises(errors.ShapeError, match=r"shape\.minidb', row with key '00000001': tensor 0 .* is \(3, 2\)"
                                                r" uint8 but the batch's first row \(key '00000000'\) had \(2, 2\)"):
        run("TensorProtosDBInput", ["r2"], ["a"], batch_size=2)
    # a Save'd DB holds BlobProtos, not TensorProtos rows
    workspace.FeedBlob("w", np.ones(3, np.float32))
    workspace.RunOperatorOnce(core.CreateOperator("Save", ["w"], [], db=str(tmp_path / "saved.minidb"),
                                                  db_type="minidb", absolute_path=1))
    reader_blob("r3", tmp_path / "saved.minidb")
    with pytest.raises(errors.ProtoError, match=r"saved\.minidb', row with key 'w#%0'.* not a serialized"
                                                r" caffe2\.TensorProtos.* written by Save holds BlobProtos"):
        run("TensorProtosDBInput", ["r3"], ["a"], batch_size=1)
    workspace.FeedBlob("not_reader", np.zeros(2, np.float32))
    with pytest.raises(errors.ShapeError, match=r"must be a DB reader"):
        run("TensorProtosDBInput", ["not_reader"], ["a"], batch_size=1)


def test_missing_db_path_is_named():
    m = model_helper.ModelHelper(name="missing")
    brew.db_input(m, ["data", "label"], batch_size=2, db="/nonexistent/train.lmdb", db_type="lmdb")
    with pytest.raises(errors.NbcaffeError, match=r"/nonexistent/train\.lmdb.*does not exist"):
        workspace.RunNetOnce(m.param_init_net)


def test_mnist_through_brew_db_input(tmp_path):
    images, labels = datasets.load_mnist(shared_data("mnist"))
    datasets.write_tensor_protos_db(tmp_path / "mnist.lmdb", [images[:300], labels[:300]])
    m = model_helper.ModelHelper(name="mnist_input")
    data_uint8, label = brew.db_input(m, ["data_uint8", "label"], batch_size=64, db=str(tmp_path / "mnist.lmdb"),
                                      db_type="lmdb")
    data = m.net.Cast(data_uint8, "data", to=core.DataType.FLOAT)
    data = m.net.Scale(data, data, scale=float(1.0 / 256))
    workspace.RunNetOnce(m.param_init_net)
    workspace.CreateNet(m.net)
    for _ in range(5):  # 320 rows: the 5th batch wraps (256..299, then 0..19)
        workspace.RunNet(m.net)
    rows = [(256 + i) % 300 for i in range(64)]
    np.testing.assert_allclose(workspace.FetchBlob("data"), images[rows].astype(np.float32) / 256)
    np.testing.assert_array_equal(workspace.FetchBlob("label"), labels[rows])


@pytest.mark.cuda
def test_db_input_uploads_to_the_gpu(tmp_path):
    x = np.random.default_rng(3).standard_normal((4, 2, 3)).astype(np.float32)
    datasets.write_tensor_protos_db(tmp_path / "d.minidb", [x, np.arange(4)], db_type="minidb")
    reader_blob("r", tmp_path / "d.minidb")
    gpu = DeviceOption(CUDA, 0)
    op = core.CreateOperator("TensorProtosDBInput", ["r"], ["x", "y"], batch_size=2, device_option=gpu)
    for step in range(2):
        workspace.RunOperatorOnce(op)
        assert hasattr(workspace.current().blobs["x"], "copy_to_host")  # a device array
        np.testing.assert_array_equal(workspace.FetchBlob("x"), x[2 * step: 2 * step + 2])
        np.testing.assert_array_equal(workspace.FetchBlob("y"), [2 * step, 2 * step + 1])


# ----------------------------------------------------------------------------- ImageInput

def image_db(tmp_path, rows, name="img.minidb"):
    raw_rows_db(tmp_path / name, rows)
    return reader_blob("reader_" + name.replace(".", "_"), tmp_path / name)


def block_mean(img, f):
    """Independent INTER_AREA for an integer factor f: block means (2x2 rounds half up, as
    OpenCV's 8-bit SIMD path)."""
    h, w, c = img.shape
    blocks = img.reshape(h // f, f, w // f, f, c).astype(np.int64).sum(axis=(1, 3))
    return ((blocks + 2) // 4).astype(np.uint8) if f == 2 else np.rint(blocks / (f * f)).astype(np.uint8)


def test_image_input_downscale_center_crop_and_normalise(tmp_path):
    rng = np.random.default_rng(4)
    imgs = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), rng.integers(0, 256, (18, 12, 3), dtype=np.uint8)]
    r = image_db(tmp_path, [[byte_image(imgs[0]), int_label(3)], [byte_image(imgs[1]), int_label(8)]])
    mean, std = [104.0, 117.0, 123.0], [58.0, 57.0, 59.0]
    data, label = run("ImageInput", [r], ["data", "label"], batch_size=2, scale=6, crop=5, is_test=1,
                      mean_per_channel=mean, std_per_channel=std)
    assert data.shape == (2, 5, 5, 3) and data.dtype == np.float32
    assert label.dtype == np.int32 and label.tolist() == [3, 8]
    # image 0: 12x16 -> shorter side 6: 6x8 (factor 2); center crop rows 0..4, cols 1..5
    # image 1: 18x12 -> 9x6 (rows > cols: width 6, height int(18*6/12) = 9); crop rows 2..6, cols 0..4
    expected = [block_mean(imgs[0], 2)[0:5, 1:6], block_mean(imgs[1], 2)[2:7, 0:5]]
    for got, small in zip(data, expected):
        np.testing.assert_allclose(got, (small - np.float32(mean)) / np.float32(std), rtol=1e-6, atol=1e-6)


def test_image_input_encoded_png_is_bgr_and_gray_uses_opencv_weights(tmp_path):
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[..., 1] = np.arange(4)[None, :] * 50  # green ramp
    rgb[..., 2] = 10  # blue
    r = image_db(tmp_path, [[encoded_image(png(rgb)), int_label(1)]])
    data, _ = run("ImageInput", [r], ["d", "l"], batch_size=1, scale=4, crop=4, is_test=1)
    np.testing.assert_array_equal(data[0], rgb[..., ::-1].astype(np.float32))  # BGR, as OpenCV decodes
    r2 = image_db(tmp_path, [[encoded_image(png(rgb)), int_label(1)]], name="gray.minidb")
    gray, _ = run("ImageInput", [r2], ["g", "l"], batch_size=1, scale=4, crop=4, is_test=1, color=0)
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    assert gray.shape == (1, 4, 4, 1)
    assert np.abs(gray[0, ..., 0] - expected).max() < 1  # libpng's conversion, truncated to a grey level


def test_image_input_gray_png_to_color_replicates(tmp_path):
    g = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    r = image_db(tmp_path, [[encoded_image(png(g)), int_label(0)]])
    data, _ = run("ImageInput", [r], ["d", "l"], batch_size=1, scale=5, crop=5, is_test=1)
    np.testing.assert_array_equal(data[0], np.repeat(g[:, 0:5, None], 3, axis=2).astype(np.float32))


def test_image_input_minsize_warp_and_bounding_boxes(tmp_path):
    img = np.arange(10 * 14 * 3, dtype=np.int64).reshape(10, 14, 3).astype(np.uint8)
    r = image_db(tmp_path, [[byte_image(img), int_label(0)]])
    # minsize below the image: no resize, central 8x8 crop at rows 1..8, cols 3..10
    d, _ = run("ImageInput", [r], ["a", "l"], batch_size=1, minsize=8, crop=8, is_test=1)
    np.testing.assert_array_equal(d[0], img[1:9, 3:11].astype(np.float32))
    # warp: both sides become 5 (factor 2 down in rows, 14 -> 5 in cols): the shape says it
    d, _ = run("ImageInput", [r], ["b", "l"], batch_size=1, scale=5, warp=1, crop=5, is_test=1)
    assert d.shape == (1, 5, 5, 3)
    # default bounding box argument: crop to rows 2..7, cols 4..9 first (6x6, scale 6 keeps it)
    d, _ = run("ImageInput", [r], ["c", "l"], batch_size=1, scale=6, crop=6, is_test=1, bounding_ymin=2,
               bounding_xmin=4, bounding_height=6, bounding_width=6)
    np.testing.assert_array_equal(d[0], img[2:8, 4:10].astype(np.float32))
    # a per-row box (third tensor) wins; a box that does not fit is ignored (as in Caffe2)
    box = T(data_type=T.INT32, int32_data=[1, 1, 4, 4])
    big = T(data_type=T.INT32, int32_data=[5, 5, 20, 20])
    r2 = image_db(tmp_path, [[byte_image(img), int_label(0), box], [byte_image(img), int_label(1), big]],
                  name="boxes.minidb")
    d, _ = run("ImageInput", [r2], ["e", "l"], batch_size=2, minsize=4, crop=4, is_test=1)
    np.testing.assert_array_equal(d[0], img[1:5, 1:5].astype(np.float32))
    np.testing.assert_array_equal(d[1], img[3:7, 5:9].astype(np.float32))


def test_image_input_enlarges_small_images_to_minsize(tmp_path):
    img = np.random.default_rng(5).integers(0, 256, (3, 4, 1), dtype=np.uint8)
    r = image_db(tmp_path, [[byte_image(img[..., 0]), int_label(0)]])
    d, _ = run("ImageInput", [r], ["a", "l"], batch_size=1, minsize=6, crop=6, is_test=1, color=0)
    assert d.shape == (1, 6, 6, 1)  # 3x4 -> 6x8, central crop
    assert 0 <= d.min() and d.max() <= 255
    assert np.abs(d.mean() - img.mean()) < 12  # enlarging keeps the overall brightness


def image_net(name, reader, seed, **kwargs):
    net = core.Net(name)
    net.ImageInput([reader], [name + "_d", name + "_l"], device_option=DeviceOption(CPU, random_seed=seed), **kwargs)
    workspace.CreateNet(net)
    return net


def test_image_input_random_crops_and_mirrors_are_crops_of_the_image(tmp_path):
    img = np.random.default_rng(6).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    r = image_db(tmp_path, [[byte_image(img), int_label(0)]])
    image_net("train", r, 123, batch_size=1, scale=6, crop=4, mirror=1, is_test=0)
    offsets, flips = set(), 0
    for _ in range(80):
        workspace.RunNet("train")
        patch = workspace.FetchBlob("train_d")[0]
        matches = [(top, left, flip) for top in range(3) for left in range(6) for flip in (0, 1)
                   if np.array_equal(patch, (img[top:top + 4, left:left + 4, :][:, ::-1] if flip else
                                             img[top:top + 4, left:left + 4]).astype(np.float32))]
        assert matches, "every output must be a (possibly mirrored) 4x4 crop of the image"
        offsets.add(matches[0][:2])
        flips += matches[0][2]
    assert len(offsets) >= 12 and 20 <= flips <= 60  # 18 offsets, p(mirror) = 1/2
    # the same seed gives the same sequence of draws; another seed another one
    runs = {}
    for name, seed in (("a", 9), ("b", 9), ("c", 10)):
        image_net(name, r, seed, batch_size=1, scale=6, crop=4, mirror=1)
        runs[name] = []
        for _ in range(6):
            workspace.RunNet(name)
            runs[name].append(workspace.FetchBlob(name + "_d"))
    np.testing.assert_array_equal(runs["a"], runs["b"])
    assert not np.array_equal(runs["a"], runs["c"])


def test_image_input_float_labels_float16_output_and_db_argument(tmp_path):
    img = np.full((4, 4, 3), 100, np.uint8)
    raw_rows_db(tmp_path / "f.minidb", [[byte_image(img), T(data_type=T.FLOAT, float_data=[0.25])]])
    data, label = run("ImageInput", [], ["d", "l"], batch_size=2, scale=4, crop=4, is_test=1, mean=50.0, std=2.0,
                      output_type="float16", db=str(tmp_path / "f.minidb"), db_type="minidb")
    assert data.dtype == np.float16 and np.all(data == 25.0)
    assert label.dtype == np.float32 and label.tolist() == [0.25, 0.25]


@pytest.mark.parametrize("kwargs,match", [
    (dict(use_caffe_datum=1), "caffe.proto"),
    (dict(crop=-1), "crop size is required"),
    (dict(minsize=8), "exactly one of scale and minsize"),
    (dict(scale=3), "must be no smaller than crop"),
    (dict(mean_per_channel=[1.0, 2.0, 3.0]), "1 or 3 values each"),
    (dict(use_gpu_transform=1), "needs a CUDA op"),
    (dict(batch_size=0), "batch_size must be positive"),
    (dict(color_jitter=1), "not supported"),
    (dict(output_type="int32"), "FLOAT or FLOAT16"),
])
def test_image_input_argument_errors(tmp_path, kwargs, match):
    r = image_db(tmp_path, [[byte_image(np.zeros((4, 4, 3), np.uint8)), int_label(0)]])
    args = dict(batch_size=1, scale=4, crop=4, is_test=1)
    args.update(kwargs)
    with pytest.raises(errors.ArgumentError, match=match):
        run("ImageInput", [r], ["d", "l"], **args)


def test_image_input_row_errors_name_the_db_and_row(tmp_path):
    r = image_db(tmp_path, [[encoded_image(b"not an image"), int_label(0)]])
    with pytest.raises(errors.ProtoError, match=r"img\.minidb', row with key '00000000', image: the 12 bytes .*"
                                                r" not an image"):
        run("ImageInput", [r], ["d", "l"], batch_size=1, scale=4, crop=4, is_test=1)
    r2 = image_db(tmp_path, [[byte_image(np.zeros((4, 4, 3), np.uint8)), T(data_type=T.INT64, int64_data=[1])]],
                  name="lab.minidb")
    with pytest.raises(errors.ShapeError, match=r"lab\.minidb', row with key '00000000', label: .*INT32 or FLOAT"):
        run("ImageInput", [r2], ["d", "l"], batch_size=1, scale=4, crop=4, is_test=1)
    r3 = image_db(tmp_path, [[T(data_type=T.FLOAT, float_data=[1.0]), int_label(0)]], name="type.minidb")
    with pytest.raises(errors.ShapeError, match=r"data_type FLOAT; ImageInput reads STRING .* or BYTE"):
        run("ImageInput", [r3], ["d", "l"], batch_size=1, scale=4, crop=4, is_test=1)


@pytest.mark.cuda
def test_image_input_on_cuda_matches_cpu(tmp_path):
    img = np.random.default_rng(8).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    r = image_db(tmp_path, [[byte_image(img), int_label(2)]])
    args = dict(batch_size=2, scale=4, crop=4, is_test=1, mean=10.0)
    cpu = run("ImageInput", [r], ["c", "cl"], **args)
    gpu = run("ImageInput", [r], ["g", "gl"], device=DeviceOption(CUDA, 0), **args)
    np.testing.assert_array_equal(gpu[0], cpu[0])
    np.testing.assert_array_equal(gpu[1], cpu[1])


# ----------------------------------------------------------------------------- OpenCV parity

def test_resize_area_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(9)
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        img = rng.integers(0, 256, (h, w, 1 + 2 * (trial % 2)), dtype=np.uint8)
        oh, ow = (int(v) for v in rng.integers(1, 3 * np.array([h, w]) + 2))
        if trial % 3 == 0:  # integer shrink factors
            fy, fx = (int(v) for v in rng.integers(1, 4, 2))
            oh, ow = max(1, h // fy), max(1, w // fx)
            img = img[: oh * fy, : ow * fx]
        expected = cv2.resize(img, (ow, oh), interpolation=cv2.INTER_AREA).reshape(oh, ow, -1)
        np.testing.assert_array_equal(io_ops.resize_area(img, oh, ow), expected, err_msg=f"{img.shape} -> {oh}x{ow}")


def jpeg(array):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize("encode", [png, jpeg])
def test_image_input_matches_an_opencv_pipeline(tmp_path, encode):
    """Caffe2's ImageInput steps written with OpenCV itself: imdecode, resize(INTER_AREA),
    central crop, (x - mean) * (1 / std)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(10)
    rgbs = [rng.integers(0, 256, (23, 31, 3), dtype=np.uint8), rng.integers(0, 256, (40, 17, 3), dtype=np.uint8)]
    rows = [[encoded_image(encode(a)), int_label(i)] for i, a in enumerate(rgbs)]
    r = image_db(tmp_path, rows)
    mean, std = [90.0, 100.0, 110.0], [50.0, 60.0, 70.0]
    for color in (1, 0):
        data, _ = run("ImageInput", [r], [f"d{color}", "l"], batch_size=2, scale=13, crop=11, is_test=1, color=color,
                      mean_per_channel=mean, std_per_channel=std)
        for got, rgb in zip(data, rgbs):
            img = cv2.imdecode(np.frombuffer(encode(rgb), np.uint8),
                               cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
            img = img.reshape(img.shape[0], img.shape[1], -1)
            rows_, cols = img.shape[:2]
            if rows_ > cols:
                size = (13, int(np.float32(rows_) * 13 / cols))
            else:
                size = (int(np.float32(cols) * 13 / rows_), 13)
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
            top, left = (img.shape[0] - 11) // 2, (img.shape[1] - 11) // 2
            patch = img[top:top + 11, left:left + 11].astype(np.float32)
            c = patch.shape[2]
            expected = (patch - np.float32(mean[:c])) * (np.float32(1) / np.float32(std[:c]))
            np.testing.assert_array_equal(got, expected)
