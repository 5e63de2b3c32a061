"""`ssnas export` and `ssnas show`: lossless genotype formats, NNI interoperability, ONNX/TorchScript."""
from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from ssnas.arch import from_python, is_nni_dict, load_genotype
from ssnas.cli import main
from ssnas.errors import UserError
from ssnas.export import ExportConfig, export
from ssnas.export.python import to_python
from ssnas.search_spaces.darts import from_nni as from_nni_dict
from ssnas.search_spaces.darts import to_nni as to_nni_dict
from ssnas.search_spaces.darts import PUBLISHED, DartsGenotype
from tests.test_graph import genotypes

HAS_NNI = importlib.util.find_spec("nni") is not None
requires_nni = pytest.mark.skipif(not HAS_NNI, reason="nni is not installed (pip install nni==3.0)")


@pytest.fixture(autouse=True)
def _one_thread():
    """These networks are tiny (per-op overhead only): a second OpenMP thread gains nothing, and on a shared,
    loaded 2-core machine it stalls each forward pass at the thread barrier (measured 2.3 s vs 0.02 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def full_concat(g: DartsGenotype) -> DartsGenotype:
    """The same cells with every node concatenated, as NNI's DARTS cell always does."""
    concat = tuple(range(2, 2 + g.nodes))
    return DartsGenotype(g.normal, concat, g.reduce, concat)


# ---- lossless round-trips ------------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(genotypes())
def test_json_python_and_nni_round_trips_are_lossless(g):
    assert DartsGenotype.from_json(json.loads(json.dumps(g.to_json()))) == g
    assert from_python(to_python(g, "FOUND")) == g
    nni_ready = full_concat(g)
    assert from_nni_dict(json.loads(json.dumps(to_nni_dict(nni_ready)))) == nni_ready


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2"])
def test_published_cells_round_trip(name):
    g = PUBLISHED[name]
    assert DartsGenotype.from_json(g.to_json()) == g
    assert from_python(to_python(g, name), name=name) == g
    assert from_nni_dict(to_nni_dict(g)) == g


def test_python_target_is_darts_genotypes_py_style_and_runs_as_is():
    text = to_python(PUBLISHED["DARTS_V2"], "DARTS_V2")
    scope: dict = {}
    exec(compile(text, "genotypes.py", "exec"), scope)  # our own output: self-contained, nothing to import
    v2 = scope["DARTS_V2"]
    assert type(v2).__name__ == "Genotype" and v2._fields == ("normal", "normal_concat", "reduce", "reduce_concat")
    assert v2.normal[7] == ("dil_conv_3x3", 2) and list(v2.reduce_concat) == [2, 3, 4, 5]


def test_python_reader_takes_darts_own_spelling():
    # quark0/darts cnn/genotypes.py writes concat as range(2, 6) and positional-free keywords
    v1, v2 = PUBLISHED["DARTS_V1"], PUBLISHED["DARTS_V2"]
    text = ("from collections import namedtuple\n"
            "Genotype = namedtuple('Genotype', 'normal normal_concat reduce reduce_concat')\n"
            f"DARTS_V1 = Genotype(normal={list(v1.normal)}, normal_concat=[2, 3, 4, 5], "
            f"reduce={list(v1.reduce)}, reduce_concat=range(2, 6))\n"
            f"DARTS_V2 = Genotype({list(v2.normal)}, range(2, 6), {list(v2.reduce)}, range(2, 6))\n")
    assert from_python(text, name="DARTS_V1") == PUBLISHED["DARTS_V1"]
    assert from_python(text, name="DARTS_V2") == PUBLISHED["DARTS_V2"]
    with pytest.raises(UserError, match="holds 2 genotypes"):
        from_python(text)


# ---- NNI ------------------------------------------------------------------------------------------------------

def test_nni_dict_has_nnis_labels():
    d = to_nni_dict(PUBLISHED["DARTS_V2"])
    assert len(d) == 32 and is_nni_dict(d) and not is_nni_dict(PUBLISHED["DARTS_V2"].to_json())
    assert d["normal/op_5_1"] == "dil_conv_3x3" and d["normal/input_5_1"] == [2]
    assert d["reduce/op_3_0"] == "skip_connect" and d["reduce/input_3_0"] == [2]


def _nnis_darts_v2_dict() -> dict:
    """The `arch` literal of `DARTS.load_searched_model('darts-v2')`, read from NNI's own source file."""
    spec = importlib.util.find_spec("nni")
    source = Path(spec.submodule_search_locations[0]) / "nas" / "hub" / "pytorch" / "nasnet.py"
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name == "load_searched_model":
            for sub in ast.walk(node):
                if isinstance(sub, ast.Assign) and getattr(sub.targets[0], "id", "") == "arch":
                    return ast.literal_eval(sub.value)
    raise AssertionError(f"no arch dict in {source}")


@requires_nni
def test_darts_v2_dict_equals_nnis_own():
    nni_v2 = _nnis_darts_v2_dict()
    assert to_nni_dict(PUBLISHED["DARTS_V2"]) == nni_v2
    assert from_nni_dict(nni_v2) == PUBLISHED["DARTS_V2"]


def test_nni_dict_files_load_everywhere(tmp_path, capsys):
    path = tmp_path / "arch_nni.json"
    path.write_text(json.dumps({**to_nni_dict(PUBLISHED["DARTS_V1"]), "width": 16, "depth": 8}))
    g = load_genotype(str(path))  # the loader every command uses (search --arch, retrain, eval, export, show)
    assert g == PUBLISHED["DARTS_V1"] and g.meta["nni"] == {"width": 16, "depth": 8}
    assert main(["show", str(path), "--no-size"]) == 0
    assert "node 5 = sep_conv_3x3(c_{k-2}) + skip_connect(2)" in capsys.readouterr().out  # nodes 2..5, as in the file
    # NNI's exporter may write inputs as bare ints; both spellings mean the same architecture
    bare = {k: (v[0] if isinstance(v, list) else v) for k, v in to_nni_dict(PUBLISHED["DARTS_V2"]).items()}
    assert from_nni_dict(bare) == PUBLISHED["DARTS_V2"]


@pytest.mark.slow
@requires_nni
def test_exported_dict_freezes_nnis_darts_space_into_our_network():
    """NNI builds the same network from our dict: same parameters, and with our weights the same features."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NNI 3.0 warns about torch classes it does not know
        from nni.nas.hub.pytorch import DARTS
        from nni.nas.space import model_context

    from ssnas.arch import build_network

    rng = np.random.default_rng(0)
    ops = ["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]

    def random_cell():  # pair p belongs to node p // 2, which may read states 0 .. p // 2 + 1
        return [[ops[rng.integers(len(ops))], int(rng.integers(0, p // 2 + 2))] for p in range(8)]

    random_g = DartsGenotype.from_json({"normal": random_cell(), "reduce": random_cell()})
    torch.manual_seed(0)
    for g in (PUBLISHED["DARTS_V1"], PUBLISHED["DARTS_V2"], random_g):
        with model_context(to_nni_dict(g)):
            theirs = DARTS(width=4, num_cells=3, dataset="cifar").eval()
        ours = build_network(g, layers=3, init_channels=4).eval()
        mine = list(ours.state_dict().items())
        their_keys = [k for k in theirs.state_dict() if not k.startswith("classifier")]
        assert [v.shape for _, v in mine] == [theirs.state_dict()[k].shape for k in their_keys]
        with torch.no_grad():
            for _, v in mine:
                if v.dtype.is_floating_point:
                    v.copy_(torch.rand_like(v) + 0.5)
        theirs.load_state_dict({k: v for k, (_, v) in zip(their_keys, mine)}, strict=False)
        pooled = {}
        theirs.global_pooling.register_forward_hook(lambda m, i, o: pooled.setdefault("features", o.flatten(1)))
        x = torch.randn(2, 3, 16, 16)
        with torch.no_grad():
            logits = theirs(x)
            features = ours(x)
        assert logits.shape == (2, 10)  # NNI's forward pass ran on its own frozen space
        torch.testing.assert_close(pooled["features"], features)


# ---- malformed inputs: one line naming the field ------------------------------------------------------------

def _v2() -> dict:
    return to_nni_dict(PUBLISHED["DARTS_V2"])


def _nni(**changes) -> dict:
    d = _v2()
    for key, value in changes.items():
        key = key.replace("__", "/")
        if value is None:
            d.pop(key)
        else:
            d[key] = value
    return d


def _json(**changes) -> dict:
    d = PUBLISHED["DARTS_V2"].to_json()
    d.update(changes)
    return {k: v for k, v in d.items() if v is not None}


MALFORMED = [
    ("nni-op", _nni(normal__op_2_0="conv_7x7"), "'normal/op_2_0' is 'conv_7x7'"),
    ("nni-none-op", _nni(reduce__op_4_1="none"), "'reduce/op_4_1' is 'none'"),
    ("nni-input-range", _nni(normal__input_3_1=[3]), "'normal/input_3_1' is 3, out of range for node 3"),
    ("nni-input-type", _nni(normal__input_2_0=[0, 1]), "'normal/input_2_0' must be one input index"),
    ("nni-missing-key", _nni(normal__input_4_1=None), "'normal/input_4_1' is missing"),
    ("nni-no-reduce", {k: v for k, v in _v2().items() if k.startswith("normal/")}, "'reduce/op_2_0' is missing"),
    ("nni-other-space", {"cell/0_1": "conv_3x3", "cell/1_2": "skip_connect"}, "another NNI space"),
    ("nni-bad-slot", _nni(normal__op_2_2="sep_conv_3x3"), "slot 2"),
    ("json-op", _json(normal=[["conv_7x7", 0]] + [["sep_conv_3x3", 1]] * 7), "'normal[0]'"),
    ("json-edges", _json(normal=[["sep_conv_3x3", 0]] * 7), "'normal' has 7 pairs"),
    ("json-input-range", _json(reduce=[["max_pool_3x3", 0]] * 7 + [["max_pool_3x3", 6]]), "'reduce[7]': input 6 is out of range"),
    ("json-no-reduce", _json(reduce=None, reduce_concat=None), "'reduce' is missing"),
    ("json-other-space", {"space": "nb201", "arch": "|skip_connect~0|"}, "belongs to the 'nb201' space, not 'darts'"),
]


@pytest.mark.parametrize("data,needle", [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_genotypes_give_one_line_naming_the_field(tmp_path, capsys, data, needle):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    code = main(["export", str(path), "--space", "darts", "--to", "png", "--out", str(tmp_path / "x.png")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and err.startswith("ssnas: error:"), err
    assert needle in err, err
    assert not (tmp_path / "x.png").exists()


def test_a_genotype_of_another_space_is_named():
    with pytest.raises(UserError, match="field 'space' is 'nb201'"):
        DartsGenotype.from_json({"space": "nb201", "arch": "|skip_connect~0|"}, "g.json")
    with pytest.raises(UserError, match="NNI's DARTS space; a 'nb201' genotype"):
        to_nni_dict(type("NB201Like", (), {"space": "nb201"})())


def test_malformed_python_is_read_not_run(tmp_path):
    marker = tmp_path / "ran"
    text = f"X = Genotype(normal=__import__('pathlib').Path({str(marker)!r}).touch(), normal_concat=[2])\n"
    with pytest.raises(UserError, match="X.normal must be a literal"):
        from_python(text, "evil.py")
    assert not marker.exists()
    with pytest.raises(UserError, match="line 1"):
        from_python("X = Genotype(", "broken.py")
    with pytest.raises(UserError, match="unknown field 'normals'"):
        from_python("X = Genotype(normals=[])", "typo.py")
    with pytest.raises(UserError, match="'normal' has 1 pairs"):
        from_python("X = Genotype(normal=[('sep_conv_3x3', 0)], reduce=[('sep_conv_3x3', 0)])", "short.py")


def test_nni_refuses_a_partial_concat():
    g = DartsGenotype(PUBLISHED["DARTS_V2"].normal, (2, 3), PUBLISHED["DARTS_V2"].reduce, (2, 3, 4, 5))
    with pytest.raises(UserError, match="normal_concat"):
        to_nni_dict(g)


# ---- the command -------------------------------------------------------------------------------------------

def test_export_command_writes_every_genotype_target(tmp_path, capsys):
    from PIL import Image

    suffix = {"nni": "nni.json", "python": "py"}
    for target in ("json", "nni", "python", "dot", "graphml", "svg", "png"):
        out = tmp_path / f"v2.{suffix.get(target, target)}"
        assert main(["export", "darts_v2", "--to", target, "--out", str(out)]) == 0
        assert out.stat().st_size > 300
    assert load_genotype(str(tmp_path / "v2.json")) == PUBLISHED["DARTS_V2"]
    assert load_genotype(str(tmp_path / "v2.nni.json")) == PUBLISHED["DARTS_V2"]
    assert from_python((tmp_path / "v2.py").read_text(), name="DARTS_V2") == PUBLISHED["DARTS_V2"]
    assert (tmp_path / "v2.svg").read_text().lstrip().startswith("<?xml")
    with Image.open(tmp_path / "v2.png") as image:
        assert image.format == "PNG" and image.width > 1000 and image.height > 400
    # text targets print when no --out is given; a python file is itself a source
    capsys.readouterr()
    assert main(["export", str(tmp_path / "v2.py"), "--to", "nni"]) == 0
    assert json.loads(capsys.readouterr().out) == to_nni_dict(PUBLISHED["DARTS_V2"])


def test_export_command_errors(tmp_path, capsys):
    for argv, needle in ((["DARTS_V2", "--to", "png"], "--out"), (["DARTS_V2", "--to", "tiff"], "must be one of json"),
                         (["--to", "json"], "pass the source once"),
                         (["DARTS_V2", "--to", "png", "--renderer", "graphviz", "--out", str(tmp_path / "g.png")]
                          if not __import__("shutil").which("dot") else ["DARTS_V9", "--to", "json"], "")):
        code = main(["export", *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and "\n" not in err and needle in err, err


def test_show_prints_genotype_size_and_nni_note(capsys):
    assert main(["show", "DARTS_V2", "--layers", "3", "--init-channels", "4", "--image-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "node 5 = skip_connect(c_{k-2}) + dil_conv_3x3(2)" in out
    assert "parameter-free ops: 10 of 16" in out and "freezes NNI's DARTS space" in out
    assert "network (3 cells, 4 channels, input 3x16x16): 0.002M parameters" in out


# ---- networks: ONNX and TorchScript of a retrained run --------------------------------------------------------

@pytest.fixture(scope="module")
def retrain_run(tmp_path_factory, fashion_train):
    """A real (tiny) retrain run on Fashion-MNIST: DARTS_V2, 3 cells, 4 channels, 2 steps."""
    from ssnas.config import apply_overrides
    from ssnas.retrain import RetrainConfig, run_retrain

    out = tmp_path_factory.mktemp("retrain")
    torch.set_num_threads(1)  # module-scoped, so set up before the per-test `_one_thread`
    cfg = apply_overrides(RetrainConfig(), {
        "arch": "DARTS_V2", "network.layers": 3, "network.init_channels": 4, "optim.epochs": 1,
        "optim.batch_size": 8, "optim.steps_per_epoch": 2, "optim.warmup_epochs": 0, "augment.size": 16,
        "objective.proj_dim": 16, "knn.every": 0, "run.out": str(out), "run.progress": False, "run.device": "cpu",
        "run.tensorboard": False, "data.dataset": "fashion-mnist"})
    run_retrain(cfg, train=fashion_train.subset(torch.arange(64)))
    return out


def _trained_encoder(run: Path) -> torch.nn.Module:
    """The retrained network, rebuilt by hand, taking raw [0, 1] images as the exports do: it normalises them with
    the run's own mean and std first."""
    from ssnas.arch import build_network
    from ssnas.runs.checkpoint import load

    state = load(run / "checkpoint.pt")
    net = build_network("DARTS_V2", layers=3, init_channels=4, in_channels=1)
    net.load_state_dict(state["encoder"])
    mean, std = (torch.tensor(state["data"][k]).view(1, -1, 1, 1) for k in ("mean", "std"))
    return lambda x: net.eval()((x - mean) / std)


@pytest.mark.slow
def test_onnx_export_matches_pytorch(retrain_run, tmp_path, capsys):
    import onnxruntime as ort
    from onnx.reference import ReferenceEvaluator

    out = tmp_path / "model.onnx"
    assert main(["export", str(retrain_run), "--to", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "trained weights" in printed and "onnxruntime" in printed
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))  # raw images in [0, 1]
    with torch.no_grad():
        expected = _trained_encoder(retrain_run)(x).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"images": x.numpy()})[0], expected, rtol=1e-4, atol=1e-5)
    # the fallback runtime, used where onnxruntime is not installed
    np.testing.assert_allclose(ReferenceEvaluator(str(out)).run(None, {"images": x.numpy()})[0], expected,
                               rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_matches_pytorch(retrain_run, tmp_path):
    out = tmp_path / "model.pt"
    result = export(str(retrain_run), ExportConfig(to="torchscript", out=str(out)))
    assert result["trained"] and result["max_error"] <= 1e-4
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    extra = {"ssnas.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), _trained_encoder(retrain_run)(x))
    meta = json.loads(extra["ssnas.json"])  # what the file takes, stored with it
    assert meta["normalisation_in_graph"] and "[0, 1]" in meta["input"] and meta["input_size"] == [1, 16, 16]
    assert len(meta["mean"]) == len(meta["std"]) == 1 and meta["pretrained"]


def test_network_export_from_a_genotype_and_size_mismatch(retrain_run, tmp_path, capsys):
    out = tmp_path / "v1.pt"
    result = export("DARTS_V1", ExportConfig(to="torchscript", out=str(out), layers=3, init_channels=4, image_size=16))
    assert not result["trained"] and "3 cells, 4 channels, input 3x16x16" in result["network"]
    assert main(["export", str(retrain_run), "--to", "onnx", "--layers", "5", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "drop --layers" in capsys.readouterr().err


def test_found_network_drops_into_a_training_script():
    import ssnas

    net = ssnas.build_network(ssnas.load_genotype("DARTS_V2"), layers=3, init_channels=4)
    features = net(torch.randn(2, 3, 16, 16))
    features.sum().backward()
    assert features.shape == (2, net.feature_dim)
