"""Deployment: Predictor, mobile_exporter, predictor_exporter, model_helper.ExtractPredictorNet and
the local model-zoo loader, on a LeNet trained briefly on real MNIST digits.

Every path (exported nets in a fresh workspace, a predictor DB, a model folder) must give outputs
identical to running the test net directly where it was trained.
"""

from __future__ import annotations

import logging
import os
import types

import numpy as np
import pytest

import nbcaffe
from nbcaffe import brew, core, db, errors, mobile_exporter, model_helper, optimizer, predictor_exporter, workspace
from nbcaffe.datasets import load_mnist
from nbcaffe.devices import CUDA
from nbcaffe.models import download, lenet
from nbcaffe.predictor import Predictor
from tests import caffe2_files as cf
from tests._paths import shared_data


@pytest.fixture(scope="module")
def trained():
    """LeNet after 40 SGD steps on 2,560 MNIST test-set digits; its test net, parameters and the
    softmax of 200 held-out digits computed directly in the training workspace."""
    images, labels = load_mnist(shared_data("mnist"))
    x = (images.astype(np.float32) / 255.0)[:, None]
    core.Net._net_names_used.clear()
    with workspace.temp_workspace("_predictor_train_"):
        train = model_helper.ModelHelper(name="lenet_train")
        softmax = lenet.lenet(train, "data")
        loss = train.net.AveragedLoss(train.net.LabelCrossEntropy([softmax, "label"], "xent"), "loss")
        train.AddGradientOperators([loss])
        optimizer.build_sgd(train, base_learning_rate=0.05, momentum=0.9)
        workspace.RunNetOnce(train.param_init_net)
        workspace.FeedBlob("data", x[:64])
        workspace.FeedBlob("label", labels[:64])
        workspace.CreateNet(train.net)
        for step in range(40):
            workspace.FeedBlob("data", x[64 * step:64 * (step + 1)])
            workspace.FeedBlob("label", labels[64 * step:64 * (step + 1)])
            workspace.RunNet(train.net)
        test = model_helper.ModelHelper(name="lenet_test", init_params=False)
        lenet.lenet(test, "data", is_test=True)
        x_eval, y_eval = x[5000:5200], labels[5000:5200]
        workspace.FeedBlob("data", x_eval)
        workspace.RunNetOnce(test.net)
        reference = workspace.FetchBlob("softmax")
        params = {str(p): workspace.FetchBlob(p) for p in train.GetParams()}
    assert (reference.argmax(1) == y_eval).mean() > 0.8  # it learned something real
    return types.SimpleNamespace(test_net=test.net.Proto(), params=params, x=x_eval, y=y_eval, reference=reference)


def _feed_params(trained):
    for name, value in trained.params.items():
        workspace.FeedBlob(name, value)


def _direct(trained, batch):
    """softmax of the test net run directly (no predictor) on ``batch``."""
    with workspace.temp_workspace("_predictor_direct_"):
        _feed_params(trained)
        workspace.FeedBlob("data", batch)
        workspace.RunNetOnce(trained.test_net)
        return workspace.FetchBlob("softmax")


def _exported(trained):
    """(init_net, predict_net) of the trained LeNet through ExtractPredictorNet + mobile_exporter."""
    _feed_params(trained)
    predict_net, params = model_helper.ExtractPredictorNet(trained.test_net, ["data"], ["softmax"])
    assert sorted(params) == sorted(trained.params)
    init_net, predict_net = mobile_exporter.Export(workspace, predict_net, params)
    workspace.ResetWorkspace()
    return init_net, predict_net


def test_exported_lenet_reloaded_in_a_fresh_workspace_gives_identical_outputs(trained):
    init_net, predict_net = _exported(trained)
    assert list(predict_net.external_input[:1]) == ["data"] and list(predict_net.external_output) == ["softmax"]
    assert {op.type for op in init_net.op} == {"GivenTensorFill"}
    predictor = workspace.Predictor(init_net.SerializeToString(), predict_net.SerializeToString())
    (prob,) = predictor.run([trained.x])
    np.testing.assert_array_equal(prob, trained.reference)
    assert workspace.Blobs() == []  # the predictor keeps its parameters in its own workspace


def test_predictor_binds_inputs_like_caffe2_and_matches_direct_runs(trained):
    init_net, predict_net = _exported(trained)
    predictor = nbcaffe.Predictor(init_net, predict_net, device="cpu")
    for start, size in ((0, 1), (0, 8), (8, 8), (0, 200)):
        batch = trained.x[start:start + size]
        want = _direct(trained, batch)  # the GEMMs round differently per batch size: same batch here
        for inputs in ([batch], {"data": batch}, batch):
            (prob,) = predictor.run(inputs)
            np.testing.assert_array_equal(prob, want)
    # one shape after another reuses the input buffer: the ops keep their bound fast path
    predictor.run([trained.x[:8]])
    kept = predictor.ws.blobs["data"]
    predictor.run([trained.x[8:16]])
    assert predictor.ws.blobs["data"] is kept


def test_predictor_errors_name_the_problem(trained, tmp_path):
    init_net, predict_net = _exported(trained)
    predictor = Predictor(init_net, predict_net)
    with pytest.raises(errors.ArgumentError, match="'dat' is not an input of net .*Did you mean: data"):
        predictor.run({"dat": trained.x})
    with pytest.raises(errors.ArgumentError, match="10 inputs given but net"):
        predictor.run([trained.x] * 10)
    with pytest.raises(errors.ArgumentError, match="device 'tpu'"):
        Predictor(init_net, predict_net, device="tpu")
    with pytest.raises(errors.NbcaffeError, match="no such file"):
        Predictor(tmp_path / "init_net.pb", predict_net)
    no_outputs = type(predict_net)()
    no_outputs.CopyFrom(predict_net)
    del no_outputs.external_output[:]
    with pytest.raises(errors.ArgumentError, match="declares no external_output"):
        Predictor(init_net, no_outputs)
    with pytest.raises(errors.ArgumentError, match="'image' is not an external input"):
        Predictor(init_net, predict_net, input_names=["image"])


def test_predictor_reads_net_files_and_runs_in_a_given_workspace(trained, tmp_path):
    init_net, predict_net = _exported(trained)
    (tmp_path / "init_net.pb").write_bytes(init_net.SerializeToString())
    (tmp_path / "predict_net.pbtxt").write_text(str(predict_net))
    ws = workspace.Workspace("mine")
    predictor = Predictor(str(tmp_path / "init_net.pb"), tmp_path / "predict_net.pbtxt", workspace=ws)
    np.testing.assert_array_equal(predictor.run([trained.x])[0], trained.reference)
    assert ws.has_blob("conv1_w") and predictor.workspace is ws


@pytest.mark.parametrize("db_type", ["minidb", "lmdb"])
def test_predictor_db_round_trip(trained, tmp_path, db_type):
    if db_type == "lmdb":
        pytest.importorskip("lmdb")
    _feed_params(trained)
    workspace.FeedBlob("data", trained.x[:1])
    workspace.FeedBlob("softmax", trained.reference[:1])
    predict_net, params = model_helper.ExtractPredictorNet(trained.test_net, ["data"], ["softmax"])
    meta = predictor_exporter.PredictorExportMeta(predict_net, params, ["data"], ["softmax"])
    path = str(tmp_path / f"lenet.{db_type}")
    predictor_exporter.save_to_db(db_type, path, meta)
    workspace.ResetWorkspace()

    net = predictor_exporter.prepare_prediction_net(path, db_type)  # Caffe2's path: the current workspace
    workspace.FeedBlob("data", trained.x)
    workspace.RunNet(net.Proto().name)
    np.testing.assert_array_equal(workspace.FetchBlob("softmax"), trained.reference)
    workspace.ResetWorkspace()

    predictor = predictor_exporter.load_predictor(path, db_type)  # a Predictor of its own
    assert predictor.input_names == ["data"] and predictor.output_names == ["softmax"]
    np.testing.assert_array_equal(predictor.run({"data": trained.x})[0], trained.reference)
    assert workspace.Blobs() == []


def test_predictor_db_holds_caffe2s_meta_net_def(trained, tmp_path):
    _feed_params(trained)
    workspace.FeedBlob("data", trained.x[:1])
    workspace.FeedBlob("softmax", trained.reference[:1])
    predict_net, params = model_helper.ExtractPredictorNet(trained.test_net, ["data"], ["softmax"])
    meta = predictor_exporter.PredictorExportMeta(predict_net, params, ["data"], ["softmax"])
    path = str(tmp_path / "lenet.minidb")
    predictor_exporter.save_to_db("minidb", path, meta)
    handle = db.create_db("minidb", path, db.READ)
    cursor = handle.new_cursor()
    keys = []
    while cursor.valid():
        keys.append(cursor.key().decode())
        cursor.next()
    handle.close()
    assert keys[0] == "!!META_NET_DEF" and sorted(keys[1:]) == sorted(f"{p}#%0" for p in params)
    meta_net_def = predictor_exporter.load_from_db(path, "minidb")
    assert [n.key for n in meta_net_def.nets] == ["PREDICT_INIT_NET_TYPE", "GLOBAL_INIT_NET_TYPE", "PREDICT_NET_TYPE"]
    assert [b.key for b in meta_net_def.blobs] == ["PARAMETERS_BLOB_TYPE", "INPUTS_BLOB_TYPE", "OUTPUTS_BLOB_TYPE"]
    (load,) = meta_net_def.nets[1].value.op
    assert load.type == "Load" and list(load.input) == ["!!PREDICTOR_DBREADER"]


def test_a_failed_save_leaves_the_previous_predictor_file_intact(trained, tmp_path):
    _feed_params(trained)
    workspace.FeedBlob("data", trained.x[:1])
    workspace.FeedBlob("softmax", trained.reference[:1])
    predict_net, params = model_helper.ExtractPredictorNet(trained.test_net, ["data"], ["softmax"])
    meta = predictor_exporter.PredictorExportMeta(predict_net, params, ["data"], ["softmax"])
    path = tmp_path / "lenet.minidb"
    predictor_exporter.save_to_db("minidb", str(path), meta)
    before = path.read_bytes()
    workspace.FeedBlob("pred_b", object())  # a blob Save cannot serialize, met after the others
    with pytest.raises(errors.NbcaffeError):
        predictor_exporter.save_to_db("minidb", str(path), meta)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["lenet.minidb"]  # no temporary file left behind
    with pytest.raises(errors.ArgumentError, match="disjoint"):
        predictor_exporter.PredictorExportMeta(predict_net, params, ["data"], ["conv1_w"])


def test_export_keeps_batch_norm_statistics_when_told_the_inputs(caplog):
    model = model_helper.ModelHelper(name="bn_net", init_params=False)
    brew.spatial_bn(model, "data", "bn", 3, is_test=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    values = {"bn_s": [1.0, 2.0, 0.5], "bn_b": [0.1, 0.0, -0.1], "bn_rm": [0.5, -1.0, 2.0], "bn_riv": [4.0, 1.0, 0.25]}
    for name, value in values.items():
        workspace.FeedBlob(name, np.array(value, np.float32))
    workspace.FeedBlob("data", x)
    workspace.RunNetOnce(model.net)
    want = workspace.FetchBlob("bn")
    with caplog.at_level(logging.WARNING, logger="nbcaffe"):
        mobile_exporter.Export(workspace, model.net, model.GetParams())
    assert "bn_rm" in caplog.text and "zero placeholder" in caplog.text
    init_net, predict_net = mobile_exporter.Export(workspace, model.net, model.GetParams(), inputs=["data"])
    assert {op.output[0] for op in init_net.op} == set(values) | {"data"}
    np.testing.assert_allclose(Predictor(init_net, predict_net).run([x])[0], want, rtol=1e-6)


def test_export_writes_each_dtype_with_its_fill_op():
    arrays = {"f": np.arange(6, dtype=np.float32).reshape(2, 3), "d": np.array([0.5]), "i": np.array([1, 2], np.int32),
              "l": np.array([2 ** 40], np.int64), "u": np.array([[1, 255]], np.uint8), "b": np.array([True, False])}
    net = core.Net("copies")
    for name in arrays:
        workspace.FeedBlob(name, arrays[name])
        net.Copy(name, name + "_out")
    init_net, predict_net = mobile_exporter.Export(workspace, net, list(arrays))
    assert [op.type for op in init_net.op] == ["GivenTensorFill", "GivenTensorDoubleFill", "GivenTensorIntFill",
                                               "GivenTensorInt64Fill", "GivenTensorByteStringToUInt8Fill",
                                               "GivenTensorBoolFill"]
    workspace.ResetWorkspace()
    workspace.RunNetOnce(init_net)
    for name, value in arrays.items():
        np.testing.assert_array_equal(workspace.FetchBlob(name), value)
        assert workspace.FetchBlob(name).dtype == value.dtype
    with pytest.raises(errors.ArgumentError, match="dtype complex64"):
        mobile_exporter.add_tensor(init_net, "c", np.zeros(2, np.complex64))


def test_extract_predictor_net_refuses_training_ops():
    model = model_helper.ModelHelper(name="train_net")
    fc = brew.fc(model, "data", "fc", 4, 3)
    brew.dropout(model, fc, "drop", is_test=False)
    with pytest.raises(errors.NbcaffeError, match="is_test=0"):
        model_helper.ExtractPredictorNet(model.net.Proto(), ["data"], ["drop"])
    net, params = model_helper.ExtractPredictorNet(model.net.Proto(), ["data"], ["fc"])
    assert [op.type for op in net.Proto().op] == ["FC"] and sorted(params) == ["fc_b", "fc_w"]


def test_model_folder_round_trip_and_errors(trained, tmp_path, monkeypatch):
    init_net, predict_net = _exported(trained)
    download.write_model(tmp_path / "lenet", init_net, predict_net, {"data": trained.x[:1]})
    download.write_model(tmp_path / "lenet_text", init_net, predict_net, {"data": [1, [1, 1, 28, 28]]}, text=True)
    monkeypatch.setenv("CAFFE2_MODELS", str(tmp_path))
    init, predict, info = download.ModelDownloader().get_c2_model("lenet")
    assert (predict.name, init.name, info) == ("lenet", "lenet_init", {"data": [1, [1, 1, 28, 28]]})
    np.testing.assert_array_equal(Predictor(init, predict).run([trained.x])[0], trained.reference)
    model = download.load_model(tmp_path / "lenet_text")
    assert model.inputs() == {"data": (np.dtype(np.float32), (1, 1, 28, 28))}
    np.testing.assert_array_equal(model.predictor().run(model.dummy_input(batch_size=3))[0].shape, (3, 10))

    os.remove(tmp_path / "lenet" / "value_info.json")
    with pytest.raises(download.ModelNotFoundError, match=r"lenet' lacks value_info.json \(it holds: init_net.pb,"
                                                          r" predict_net.pb\)"):
        download.ModelDownloader().get_c2_model("lenet")
    with pytest.raises(FileNotFoundError, match="squeezenet' does not exist. nbcaffe does not download"):
        download.ModelDownloader().get_c2_model("squeezenet")
    assert download.main([str(tmp_path / "lenet_text")]) == 0
    assert download.main(["squeezenet"]) == 1


def test_zoo_folder_from_the_model_zoo_runs_like_caffe2():
    folder = shared_data("caffe2", "zoo_predict_nets", "resnet50")
    model = download.load_model(folder, init_net="init_net_const002.pbtxt", name="resnet50")
    ((name, (dtype, shape)),) = model.inputs().items()
    (prob,) = model.predictor().run({name: cf.ramp(shape)})
    np.testing.assert_allclose(prob, np.load(folder / "caffe2.const002.gpu_0_softmax.npy"), rtol=1e-4, atol=1e-6)
    with pytest.raises(download.ModelNotFoundError, match="lacks init_net.pb"):
        download.load_model(folder)


# ----------------------------------------------------------------------------- CUDA

@pytest.mark.cuda
def test_predictor_on_cuda_matches_caffe2():
    folder = shared_data("caffe2", "translated_from_caffe1", "mtcnn_det1")
    predictor = Predictor(folder / "init_net.pb", folder / "predict_net.pb", device="cuda")
    assert all(op.device_option.device_type == CUDA for op in predictor.predict_net.op)
    x = np.load(folder / "input.npy")
    for _ in range(2):  # the second run reuses the device input buffer
        outputs = dict(zip(predictor.output_names, predictor.run([x])))
        for blob in ("prob1", "conv4-2"):
            np.testing.assert_allclose(outputs[blob], np.load(folder / f"caffe2.{blob}.npy"), rtol=1e-4, atol=1e-5)
            assert isinstance(outputs[blob], np.ndarray)


@pytest.mark.cuda
def test_predictor_db_loads_onto_cuda(tmp_path):
    model = model_helper.ModelHelper(name="tiny")
    brew.softmax(model, brew.relu(model, brew.fc(model, "data", "fc", 6, 4), "relu"), "prob")
    workspace.RunNetOnce(model.param_init_net)
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    workspace.FeedBlob("data", x)
    workspace.RunNetOnce(model.net)
    want = workspace.FetchBlob("prob")
    meta = predictor_exporter.PredictorExportMeta(model.net, model.GetParams(), ["data"], ["prob"])
    predictor_exporter.save_to_db("minidb", str(tmp_path / "tiny.minidb"), meta)
    predictor = predictor_exporter.load_predictor(str(tmp_path / "tiny.minidb"), device="cuda")
    np.testing.assert_allclose(predictor.run([x])[0], want, rtol=1e-5, atol=1e-6)
