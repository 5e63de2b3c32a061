"""NAS-Bench-201 genotypes wherever a genotype is accepted: load_genotype, retrain, eval, export, show, NNI."""
from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
import torch

import ssnas
from ssnas.arch import from_python, load_genotype, resolved_network
from ssnas.cli import main
from ssnas.errors import UserError
from ssnas.nas.network import NetworkConfig
from ssnas.search_spaces.darts import PUBLISHED
from ssnas.search_spaces.nb201 import from_nni as from_nni_nb201_dict
from ssnas.search_spaces.nb201 import to_nni as to_nni_dict
from ssnas.search_spaces.nb201 import EDGES, NB201Genotype, NB201Network
from tests.conftest import FASHION_DIR, requires_fashion
from tests.test_nb201 import _params

# the benchmark's own example, with one `none` edge so the pictures have something to dash
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
G = NB201Genotype.from_string(EXAMPLE)
HAS_NNI = importlib.util.find_spec("nni") is not None


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("ssnas: error:") and "\n" not in err, err
    return err


# ---- where a genotype comes from --------------------------------------------------------------------------------

def test_load_from_string_files_and_a_search_run_folder(tmp_path):
    assert load_genotype(EXAMPLE) == load_genotype(f"  {EXAMPLE}\n", space="nb201") == G
    (tmp_path / "cell.txt").write_text(EXAMPLE + "\n")  # just the string, as the benchmark's tools print it
    (tmp_path / "cell.json").write_text(json.dumps(EXAMPLE))  # the string as a JSON document
    run = tmp_path / "search"
    run.mkdir()
    (run / "genotype.json").write_text(json.dumps({**G.to_json(), "meta": {"epoch": 3}}))  # as `ssnas search` writes
    for spec in ("cell.txt", "cell.json", "search", "search/genotype.json"):
        assert load_genotype(str(tmp_path / spec)) == G, spec
    assert load_genotype(str(run)).meta == {"epoch": 3}
    (tmp_path / "nni.json").write_text(json.dumps(to_nni_dict(G)))  # NNI's NasBench201 dict
    assert load_genotype(str(tmp_path / "nni.json")) == G


MALFORMED = [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|", None,
     "node 2, edge 1->2: 'conv_3x3' is not a NAS-Bench-201 op; use one of"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~1|avg_pool_3x3~1|+|skip_connect~0|none~1|skip_connect~2|", None,
     "node 2, edge 0->2: input must be ~0"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|none~1|skip_connect~2|", None,
     "node 2 must read 2 edge(s), written |op~0|op~1|"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", None, "3 '+'-separated nodes"),
    (EXAMPLE, "darts", "belongs to the 'nb201' space, not 'darts'"),
    ("DARTS_V2", "nb201", "belongs to the 'darts' space, not 'nb201'"),
]


@pytest.mark.parametrize("spec,space,needle", MALFORMED)
def test_malformed_strings_and_wrong_spaces_are_one_line_errors(capsys, spec, space, needle):
    with pytest.raises(UserError, match=re.escape(needle)):
        load_genotype(spec, space)
    argv = ["show", spec, "--no-size", *(["--space", space] if space else [])]
    assert main(argv) == 2
    assert needle in _one_line_error(capsys)


def test_wrong_space_in_files_and_nni_dicts(tmp_path):
    (tmp_path / "darts.json").write_text(json.dumps(PUBLISHED["DARTS_V2"].to_json()))
    with pytest.raises(UserError, match="belongs to the 'darts' space, not 'nb201'"):
        load_genotype(str(tmp_path / "darts.json"), "nb201")
    (tmp_path / "nb201.txt").write_text(EXAMPLE)
    with pytest.raises(UserError, match="belongs to the 'nb201' space, not 'darts'"):
        load_genotype(str(tmp_path / "nb201.txt"), "darts")
    bad = {**to_nni_dict(G), "cell/1_3": "conv_5x5"}
    with pytest.raises(UserError, match=re.escape("'cell/1_3' is 'conv_5x5', not an op of NNI's NasBench201")):
        from_nni_nb201_dict(bad)
    with pytest.raises(UserError, match=re.escape("'cell/2_3' is missing")):
        from_nni_nb201_dict({k: v for k, v in to_nni_dict(G).items() if k != "cell/2_3"})


# ---- the network: the space's own sizes unless told otherwise ----------------------------------------------------

def test_unset_sizes_are_each_spaces_own_network():
    unset = NetworkConfig()
    nb201 = resolved_network(unset, G)
    darts = resolved_network(unset, PUBLISHED["DARTS_V2"])
    assert (nb201.layers, nb201.init_channels) == (5, 16)  # NAS-Bench-201 Sec. 2.1: N = 5, C = 16
    assert (darts.layers, darts.init_channels) == (20, 36)  # DARTS App. A.2.1
    assert (unset.layers, unset.init_channels) == (20, 36)  # a bare NetworkConfig() still reads as DARTS's
    # a size that was set is kept, even when it equals DARTS's default; the other still follows the space
    explicit = resolved_network(NetworkConfig(layers=20), G)
    assert (explicit.layers, explicit.init_channels) == (20, 16)
    # the public API builds the benchmark's network: the all-3x3 cell's published 1,531,546 parameters
    # (tests/test_nb201.py checks that count at explicit N = 5, C = 16; here it must come from the defaults)
    net = ssnas.build_network(ssnas.load_genotype(ALL_3X3), num_classes=10)
    assert isinstance(net, NB201Network)
    assert sum(p.numel() for p in net.parameters()) == _params(ALL_3X3) == 1_531_546


@pytest.mark.parametrize("overrides", [{"auxiliary": True}, {"drop_path": 0.2}])
def test_darts_only_settings_are_refused_for_nb201(overrides):
    with pytest.raises(UserError, match="belong to DARTS's evaluation network"):
        ssnas.build_network(EXAMPLE, layers=1, init_channels=4, **overrides)


# ---- retrain, eval, show and export of a real (tiny) run ---------------------------------------------------------

@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory):
    """`ssnas retrain --arch '<string>'` on real Fashion-MNIST: 1 cell per stage, --init-channels left unset."""
    if not FASHION_DIR.is_dir():
        pytest.skip("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    out = tmp_path_factory.mktemp("nb201") / "run"
    torch.set_num_threads(1)
    argv = ["retrain", "--arch", EXAMPLE, "--layers", "1", "--dataset", "fashion-mnist", "--subset", "40",
            "--epochs", "1", "--batch-size", "8", "--steps-per-epoch", "2", "--warmup-epochs", "0",
            "--view-size", "16", "--proj-dim", "8", "--knn-every", "0", "--no-progress", "--device", "cpu",
            "--no-tensorboard", "--out", str(out)]
    assert main(argv) == 0
    return out


@requires_fashion
def test_retrain_records_the_resolved_network(nb201_run):
    network = json.loads((nb201_run / "network.json").read_text())
    config = json.loads((nb201_run / "config.json").read_text())
    assert (network["layers"], network["init_channels"]) == (1, 16)  # C = 16: NAS-Bench-201's, not DARTS's 36
    assert (config["network"]["layers"], config["network"]["init_channels"]) == (1, 16)
    assert network["genotype"] == G.to_json() and load_genotype(str(nb201_run)) == G
    # 1 cell per stage, C = 16, 1-channel stem, no classifier: the network's own parameter count
    expected = NB201Network(G, cells_per_stage=1, channels=16, in_channels=1)
    assert network["params"] == sum(p.numel() for p in expected.parameters())


@requires_fashion
def test_eval_rebuilds_the_same_network(nb201_run, capsys):
    base = ["--test-subset", "50", "--device", "cpu", "--no-progress", "--no-tensorboard"]
    assert main(["eval", str(nb201_run), "--protocol", "knn", *base]) == 0
    assert main(["eval", str(nb201_run), "--protocol", "linear", "--linear-epochs", "3", *base]) == 0
    network = json.loads((nb201_run / "network.json").read_text())
    for tag in ("knn", "linear"):
        record = json.loads((nb201_run / f"eval-{tag}.json").read_text())
        assert record["arch"] == G.to_json() and record["params"] == network["params"]
        assert 0 <= record["accuracy"] <= 1 and record["n_test"] == 50 and record["pretrained_epochs"] == 1
    capsys.readouterr()
    assert main(["show", str(nb201_run)]) == 0
    out = capsys.readouterr().out
    assert "node 2 = nor_conv_3x3(0) + avg_pool_3x3(1)" in out and "1 cells per stage, 16 channels" in out


def _trained(run) -> NB201Network:
    from ssnas.runs.checkpoint import load

    net = ssnas.build_network(EXAMPLE, layers=1, in_channels=1)
    net.load_state_dict(load(run / "checkpoint.pt")["encoder"])
    return net.eval()


@requires_fashion
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_onnx_and_torchscript_of_the_run_match_pytorch(nb201_run, tmp_path, capsys):
    import onnxruntime as ort

    assert main(["export", str(nb201_run), "--to", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["export", str(nb201_run), "--to", "torchscript", "--out", str(tmp_path / "m.pt")]) == 0
    assert "trained weights" in capsys.readouterr().out
    from ssnas.runs.checkpoint import load

    data = load(nb201_run / "checkpoint.pt")["data"]  # the exports take raw [0, 1] images and normalise them
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    normalised = (x - torch.tensor(data["mean"]).view(1, -1, 1, 1)) / torch.tensor(data["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        expected = _trained(nb201_run)(normalised)
        torch.testing.assert_close(torch.jit.load(str(tmp_path / "m.pt"))(x), expected)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"images": x.numpy()})[0], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert main(["export", str(nb201_run), "--to", "onnx", "--init-channels", "8", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "drop --layers/--init-channels" in _one_line_error(capsys)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_a_genotype_exports_at_the_benchmarks_size(tmp_path):
    from ssnas.export import ExportConfig, export

    result = export(EXAMPLE, ExportConfig(to="torchscript", out=str(tmp_path / "m.pt"), image_size=16))
    assert not result["trained"] and result["max_error"] <= 1e-4
    assert "5 cells per stage, 16 channels, input 3x16x16" in result["network"]


# ---- genotype targets ------------------------------------------------------------------------------------------

def test_every_genotype_target_round_trips(tmp_path, capsys):
    import networkx as nx
    from PIL import Image

    from ssnas.export import graph

    suffix = {"nni": "nni.json", "python": "py"}
    for target in ("json", "nni", "python", "dot", "graphml", "svg", "png"):
        out = tmp_path / f"cell.{suffix.get(target, target)}"
        assert main(["export", EXAMPLE, "--to", target, "--out", str(out)]) == 0, target
    assert load_genotype(str(tmp_path / "cell.json")) == load_genotype(str(tmp_path / "cell.nni.json")) == G
    assert from_python((tmp_path / "cell.py").read_text()) == G
    capsys.readouterr()
    assert main(["export", str(tmp_path / "cell.py"), "--to", "json"]) == 0  # a python file is itself a source
    assert json.loads(capsys.readouterr().out)["arch"] == EXAMPLE
    scope: dict = {}
    exec((tmp_path / "cell.py").read_text(), scope)  # our own output: one string constant, the benchmark's format
    assert scope["NB201_CELL"] == EXAMPLE
    whole = nx.read_graphml(tmp_path / "cell.graphml", force_multigraph=True)
    cell = whole.subgraph([n for n in whole if n.startswith("cell/")])
    cell = nx.relabel_nodes(nx.MultiDiGraph(cell), lambda n: n.split("/", 1)[1])
    cell.graph["cell"] = "cell"
    assert tuple(e.op for e in graph.edges_from_graph(cell)[0]) == G.edges and cell.number_of_edges() == len(EDGES)
    dot = (tmp_path / "cell.dot").read_text()
    assert dot.count("->") == 6 and dot.count("style=dashed") == 1  # the one `none` edge
    assert '"cell/1" -> "cell/2" [color="#56B4E9", label="avg_pool_3x3"]' in dot
    fig = graph.cells_figure(G)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sorted(t for t in texts if "_" in t or t == "none") == sorted(G.edges)  # every edge labelled once
    dashed = [p for ax in fig.axes for p in ax.patches if p.get_linestyle() not in ("-", "solid")]
    assert len(dashed) == 1
    with Image.open(tmp_path / "cell.png") as image:
        assert image.format == "PNG" and image.width > 600
    assert (tmp_path / "cell.svg").read_text().lstrip().startswith("<?xml")


# ---- NNI ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not HAS_NNI, reason="nni is not installed (pip install nni==3.0)")
def test_exported_dict_freezes_nnis_nasbench201_space_into_our_network():
    """NNI builds the same network from our dict: same parameters in the same order, and with our weights the
    same logits; at NNI's default size the all-3x3 cell has the benchmark's 1,531,546 parameters there too."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NNI 3.0 warns about torch classes it does not know
        from nni.nas.hub.pytorch import NasBench201
        from nni.nas.space import model_context

    with model_context(to_nni_dict(NB201Genotype.from_string(ALL_3X3))):
        full = NasBench201()  # stem_out_channels=16, num_modules_per_stack=5, num_labels=10
    assert sum(p.numel() for p in full.parameters()) == 1_531_546
    rng = np.random.default_rng(0)
    random_g = NB201Genotype(tuple(rng.choice(["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3",
                                               "avg_pool_3x3"], size=6).tolist()))
    torch.manual_seed(0)
    for g in (G, random_g):
        with model_context(to_nni_dict(g)):
            theirs = NasBench201(stem_out_channels=4, num_modules_per_stack=1, num_labels=10).eval()
        ours = NB201Network(g, cells_per_stage=1, channels=4, num_classes=10).eval()
        mine, their_keys = list(ours.state_dict().items()), list(theirs.state_dict())
        assert [v.shape for _, v in mine] == [theirs.state_dict()[k].shape for k in their_keys]
        with torch.no_grad():
            for _, v in mine:
                if v.dtype.is_floating_point:
                    v.copy_(torch.rand_like(v) + 0.5)
        theirs.load_state_dict(dict(zip(their_keys, (v for _, v in mine))))
        x = torch.randn(2, 3, 16, 16)
        with torch.no_grad():
            torch.testing.assert_close(theirs(x), ours(x))
