"""`ssnas.create_model`: the found network as a library object (logits, features, preprocessing, pretrained weights),
the genotype formats `load_genotype` reads, and the exports that take raw images."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ssnas
from ssnas.arch import load_genotype
from ssnas.cli import main
from ssnas.errors import UserError
from ssnas.export.python import to_python
from ssnas.search_spaces.darts import PUBLISHED
from tests.conftest import requires_fashion

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture(scope="module")
def retrain_run(tmp_path_factory, fashion_train):
    """A real (tiny) SimCLR retrain of DARTS_V2 on Fashion-MNIST: 3 cells, 4 channels, 16x16 views of 28x28 images."""
    from ssnas.config import apply_overrides
    from ssnas.retrain import RetrainConfig, run_retrain

    out = tmp_path_factory.mktemp("retrain") / "run"
    torch.set_num_threads(1)
    cfg = apply_overrides(RetrainConfig(), {
        "arch": "DARTS_V2", "network.layers": 3, "network.init_channels": 4, "optim.epochs": 1,
        "optim.batch_size": 8, "optim.steps_per_epoch": 2, "optim.warmup_epochs": 0, "augment.size": 16,
        "objective.proj_dim": 16, "knn.every": 0, "run.out": str(out), "run.progress": False, "run.device": "cpu",
        "run.tensorboard": False, "data.dataset": "fashion-mnist"})
    run_retrain(cfg, train=fashion_train.subset(torch.arange(64)))
    return out


# ---- logits, features, sizes ------------------------------------------------------------------------------------

def test_num_classes_gives_logits_and_forward_features_the_embedding():
    model = ssnas.create_model("DARTS_V2", num_classes=10, layers=3, init_channels=4).eval()
    x = model.preprocess(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    features = model.forward_features(x)
    assert model(x).shape == (2, 10) and features.shape == (2, model.num_features) == (2, 64)
    torch.testing.assert_close(model(x), model.classifier(features))
    bare = ssnas.create_model("DARTS_V2", layers=3, init_channels=4).eval()
    assert bare(x).shape == (2, 64) and bare.pretrained_cfg["num_classes"] == 0  # timm's num_classes=0: features


@pytest.mark.slow
def test_published_names_and_space_strings_build_each_spaces_own_network():
    nb201 = ssnas.create_model(ALL_3X3, num_classes=10)  # NAS-Bench-201's network: N = 5, C = 16
    assert sum(p.numel() for p in nb201.parameters()) == 1_531_546  # the benchmark's record, classifier included
    assert nb201(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    darts = ssnas.create_model("darts_v2", num_classes=10)  # DARTS's 20 cells, C = 36: the paper's 3.3M
    assert sum(p.numel() for n, p in darts.named_parameters() if "auxiliary" not in n) == 3_349_342
    resnet = ssnas.create_model("resnet18", num_classes=100, in_channels=1)
    assert resnet(torch.randn(2, 1, 16, 16)).shape == (2, 100) and resnet.num_features == 512
    cfg = darts.pretrained_cfg
    assert cfg is darts.default_cfg and cfg["input_size"] == (3, 32, 32) and cfg["num_features"] == 576
    assert (cfg["layers"], cfg["init_channels"], cfg["space"], cfg["pretrained"]) == (20, 36, "darts", False)
    assert cfg["mean"] == cfg["std"] == (0.5, 0.5, 0.5)  # no training data known: [0, 1] -> [-1, 1]


def test_the_supernet_of_a_search_run_folder_is_read_as_its_genotype(tmp_path):
    (tmp_path / "genotype.json").write_text(json.dumps(PUBLISHED["DARTS_V1"].to_json()))  # what `ssnas search` writes
    model = ssnas.create_model(tmp_path, num_classes=3, layers=3, init_channels=4, in_channels=1, image_size=16,
                               mean=[0.3], std=[0.2])
    assert model.pretrained_cfg["genotype"] == PUBLISHED["DARTS_V1"].to_json()
    raw = torch.full((1, 1, 16, 16), 0.5)
    torch.testing.assert_close(model.preprocess(raw), torch.full((1, 1, 16, 16), 1.0))  # (0.5 - 0.3) / 0.2
    with pytest.raises(UserError, match="holds no retrained weights.*pretrained=False"):
        ssnas.create_model(tmp_path, pretrained=True)


def test_preprocess_takes_uint8_or_float_and_resizes_to_the_input_size():
    model = ssnas.create_model("DARTS_V1", layers=3, init_channels=4, image_size=16)
    images = torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8)
    a, b = model.preprocess(images), model.preprocess(images.float() / 255)
    assert a.shape == (2, 3, 16, 16)
    torch.testing.assert_close(a, b)
    assert not any("preprocess" in k for k in model.state_dict())  # the state dict is the network's alone
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.preprocess(torch.rand(2, 24, 24, 3))  # NHWC is refused, not silently misread


@pytest.mark.parametrize("kwargs,needle", [
    ({"source": "DARTS_V2", "pretrained": True}, "holds no retrained weights"),
    ({"source": "nonexistent/genotype.json"}, "no file or folder"),
    ({"source": "DARTS_V2", "num_classes": -1}, "num_classes must be >= 0"),
    ({"source": "DARTS_V2", "in_channels": 1, "mean": [0.5, 0.5, 0.5]}, "mean and std need 1 entries"),
])
def test_bad_input_is_one_line(kwargs, needle):
    with pytest.raises(UserError, match=needle) as e:
        ssnas.create_model(**kwargs)
    assert "\n" not in str(e.value)


# ---- load_genotype reads every format the CLI reads ---------------------------------------------------------------

def test_load_genotype_reads_genotypes_py_files(tmp_path):
    path = tmp_path / "cells.py"
    path.write_text(to_python(PUBLISHED["DARTS_V1"], "V1") + to_python(PUBLISHED["DARTS_V2"], "V2").split("\n", 4)[-1])
    assert load_genotype(f"{path}:V2") == PUBLISHED["DARTS_V2"]
    with pytest.raises(UserError, match="holds 2 genotypes"):
        load_genotype(str(path))
    (tmp_path / "nb.py").write_text(to_python(load_genotype(EXAMPLE), "CELL"))
    assert load_genotype(str(tmp_path / "nb.py")) == load_genotype(EXAMPLE)
    assert ssnas.create_model(str(tmp_path / "nb.py"), layers=1).pretrained_cfg["space"] == "nb201"
    with pytest.raises(UserError, match="belongs to the 'nb201' space"):
        load_genotype(str(tmp_path / "nb.py"), "darts")
    with pytest.raises(UserError, match="no file at"):
        load_genotype(str(tmp_path / "missing.py"))


# ---- pretrained weights of a real retrain --------------------------------------------------------------------------

@pytest.mark.slow
@requires_fashion
def test_pretrained_features_equal_the_retrains(retrain_run, fashion_train):
    """The model's features on raw images equal those `ssnas eval` computes with the retrain's own encoder."""
    from ssnas.data.augment import AugmentConfig, ViewMaker
    from ssnas.runs.checkpoint import load
    from ssnas.training.knn import extract_features

    state = load(retrain_run / "checkpoint.pt")
    model = ssnas.create_model(retrain_run, pretrained=True, num_classes=10).eval()
    cfg = model.pretrained_cfg
    assert cfg["pretrained"] and cfg["input_size"] == (1, 16, 16) and cfg["mean"] == tuple(state["data"]["mean"])
    assert cfg["dataset"] == "fashion-mnist" and cfg["objective"] == "simclr" and cfg["pretrain_epochs"] == 1
    images = fashion_train.images[:6]  # uint8 NHWC, 28x28: the retrain trained on 16x16 views of them
    encoder = ssnas.build_network("DARTS_V2", layers=3, init_channels=4, in_channels=1)
    encoder.load_state_dict(state["encoder"])
    plain = ViewMaker(AugmentConfig(size=16), state["data"]["mean"], state["data"]["std"]).plain  # eval's inputs
    expected = extract_features(encoder, images, plain, torch.device("cpu"))
    with torch.no_grad():
        x = model.preprocess(images.permute(0, 3, 1, 2))
        torch.testing.assert_close(model.forward_features(x), expected, rtol=1e-5, atol=1e-5)
        assert model(x).shape == (6, 10)
    # the classifier starts fresh; everything else is the retrain's
    assert all(torch.equal(v, state["encoder"][k]) for k, v in model.state_dict().items() if k in state["encoder"])
    with pytest.raises(UserError, match="weights are for layers=3, init_channels=4"):
        ssnas.create_model(retrain_run, pretrained=True, layers=5)
    fresh = ssnas.create_model(retrain_run)  # its architecture and preprocessing, fresh weights
    assert not fresh.pretrained_cfg["pretrained"] and fresh.pretrained_cfg["mean"] == cfg["mean"]


@pytest.mark.slow
@requires_fashion
def test_onnx_on_raw_images_matches_pytorch_and_says_what_it_takes(retrain_run, tmp_path):
    import onnx
    import onnxruntime as ort

    assert main(["export", str(retrain_run), "--to", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    model = ssnas.create_model(retrain_run, pretrained=True).eval()
    raw = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(model.preprocess(raw)).numpy()
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"images": raw.numpy()})[0], expected, rtol=1e-4, atol=1e-5)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    meta = json.loads(props["ssnas"])
    assert meta["normalisation_in_graph"] and meta["input_size"] == [1, 16, 16] and "[0, 1]" in meta["input"]
    # the bare network, for runtimes that normalise themselves: it takes normalised images
    assert main(["export", str(retrain_run), "--to", "onnx", "--no-raw-input", "--out", str(tmp_path / "n.onnx")]) == 0
    bare = ort.InferenceSession(str(tmp_path / "n.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(bare.run(None, {"images": model.preprocess(raw).numpy()})[0], expected, rtol=1e-4, atol=1e-5)
    meta = json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "n.onnx")).metadata_props}["ssnas"])
    assert not meta["normalisation_in_graph"] and "already normalised" in meta["input"]


@pytest.mark.slow
@requires_fashion
def test_supervised_eval_of_an_nb201_genotype_has_one_classifier(tmp_path, fashion_train):
    """The network's own classifier gives the logits; no second linear head on top of them."""
    from ssnas.evaluate import evaluate
    from tests.test_evaluate import eval_config

    small = fashion_train.subset(torch.arange(40))
    cfg = eval_config(**{"protocol": "supervised", "arch": EXAMPLE, "layers": 1, "init_channels": 4,
                         "supervised.epochs": 1, "supervised.batch_size": 20})
    record = evaluate(tmp_path / "sup", cfg, small, small)
    assert not record["auxiliary"] and record["feature_dim"] == 16
    assert record["params_with_classifier"] == record["params"] + 16 * 10 + 10
