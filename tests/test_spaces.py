"""The search-space contract (ssnas.nas.space.SearchSpace), for every registered space and for the complete example
of docs/spaces.md: a new space file is checked the moment it lands."""
from __future__ import annotations

import copy
import json
import re

import pytest
import torch

from ssnas import arch, registry
from ssnas.cli import main
from ssnas.errors import UserError
from ssnas.kernels import use_fast_kernels
from ssnas.nas.genotype import Cell, genotype_ops
from ssnas.nas.network import NetworkConfig
from ssnas.nas.space import REQUIRED, SearchSpace, SpaceConfig
from ssnas.nas.supernet import Supernet
from ssnas.training.heads import feature_maps
import ssnas.search_spaces
from tests.conftest import ROOT, requires_fashion, tiny_search_config

SPACES = registry.available_spaces()
TINY_SUPERNET = SpaceConfig(layers=3, init_channels=4, nodes=2)
TINY_NETWORK = dict(layers=3, init_channels=4)


def check_space(name: str, tmp_path) -> None:
    """The whole contract of one space, on a tiny supernet and network."""
    space = registry.space(name)
    assert isinstance(space, SearchSpace) and all(hasattr(space, m) for m in REQUIRED)
    assert space.NAME == name and set(space.PARAMETER_FREE) <= set(space.PRIMITIVES)

    # the supernet: alphas per cell kind, softmax op weights, disjoint parameters, features
    torch.manual_seed(0)
    net = space.build_supernet(TINY_SUPERNET, 3)
    assert isinstance(net, Supernet) and net.primitives == list(space.PRIMITIVES)
    alphas = net.alphas()
    assert tuple(alphas) == tuple(space.CELL_KINDS)
    assert all(a.shape == (len(net.edge_names), len(space.PRIMITIVES)) for a in alphas.values())
    for w in net.op_weights().values():
        torch.testing.assert_close(w.sum(-1), torch.ones(len(w)))
    assert not {id(p) for p in net.arch_parameters()} & {id(p) for p in net.weight_parameters()}
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    net = net.double()
    assert net(x).shape == (2, net.feature_dim)
    check_feature_maps(net, x)

    # the speed route computes the textbook supernet's outputs and gradients
    fast = use_fast_kernels(copy.deepcopy(net))
    out_t, out_f = net(x), fast(x)
    torch.testing.assert_close(out_f, out_t, rtol=1e-10, atol=1e-10)
    for a, b in zip(torch.autograd.grad(out_f.square().sum(), fast.arch_parameters()),
                    torch.autograd.grad(out_t.square().sum(), net.arch_parameters())):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)

    # genotypes: derived, from any scores, and through every format the space has
    with torch.no_grad():
        for a in alphas.values():
            a.normal_()
    scores = {kind: torch.rand(len(net.edge_names), len(space.PRIMITIVES)) for kind in space.CELL_KINDS}
    for genotype in (net.derive(), space.genotype_from_scores(scores), *space.PUBLISHED.values()):
        check_genotype(space, genotype, tmp_path)

    # the network of a genotype, at the space's own sizes unless told otherwise
    genotype = net.derive()
    encoder = arch.build_encoder(genotype, NetworkConfig(**TINY_NETWORK), 3)
    x = torch.randn(2, 3, 16, 16)
    assert encoder(x).shape == encoder.forward_features(x).shape == (2, encoder.feature_dim)
    torch.manual_seed(0)
    labelled = arch.build_encoder(genotype, NetworkConfig(**TINY_NETWORK), 3, num_classes=5).eval()
    assert isinstance(labelled.classifier, torch.nn.Linear) and labelled.classifier.out_features == 5
    torch.testing.assert_close(labelled(x), labelled.classifier(labelled.forward_features(x)))
    check_feature_maps(encoder.double(), x.double())
    resolved = arch.resolved_network(NetworkConfig(), genotype)
    assert (resolved.layers, resolved.init_channels) == tuple(space.NETWORK_DEFAULTS[k] for k in ("layers", "init_channels"))
    assert arch.size_words(genotype, resolved).split(",")[0].endswith(space.LAYERS_UNIT)


def check_feature_maps(net: torch.nn.Module, x: torch.Tensor) -> None:
    """`forward_maps` is the map the features pool: [B, feature_dim, h, w] whose spatial mean is `forward_features`
    (a network's) or `forward` (a supernet's)."""
    net.eval()  # BN on running statistics: the two calls see the same normalisation
    maps = feature_maps(net, x)
    assert maps.ndim == 4 and maps.shape[:2] == (x.shape[0], net.feature_dim) and maps.shape[-1] >= 1
    features = net.forward_features(x) if hasattr(net, "forward_features") else net(x)
    torch.testing.assert_close(maps.mean((2, 3)), features, rtol=1e-10, atol=1e-10)
    net.train()


def check_genotype(space, genotype, tmp_path) -> None:
    assert genotype.space == space.NAME
    cells = genotype.cells()
    assert tuple(cells) == tuple(space.CELL_KINDS)
    for cell in cells.values():
        assert isinstance(cell, Cell) and cell.edges and len(cell.names) > cell.inputs
        assert all(e.op in space.PRIMITIVES and 0 <= e.source < e.target < len(cell.names) for e in cell.edges)
        assert all(cell.inputs <= s < len(cell.names) for s in cell.output)
    assert set(genotype_ops(genotype)) <= set(space.PRIMITIVES)
    data = json.loads(json.dumps(genotype.to_json()))
    assert data["space"] == space.NAME and space.genotype_from_json(data, "g.json") == genotype
    text = space.to_text(genotype)
    assert text is None or space.parse_text(text, "text") == genotype
    assert space.parse_text("{not a genotype", "text") is None
    try:
        nni = space.to_nni(genotype)
    except UserError:
        nni = None
    if nni is not None:
        assert space.from_nni(json.loads(json.dumps(nni)), "nni.json") == genotype
    path = tmp_path / f"{space.NAME}.json"
    path.write_text(json.dumps(genotype.to_json()))
    assert arch.load_genotype(str(path)) == arch.load_genotype(str(path), space.NAME) == genotype


@pytest.mark.parametrize("name", SPACES)
def test_every_registered_space_fulfils_the_contract(name, tmp_path):
    check_space(name, tmp_path)


def test_a_space_missing_a_member_is_refused_by_name(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text("NAME = 'broken'\nPRIMITIVES = ['none']\n")
    monkeypatch.setattr(ssnas.search_spaces, "__path__", [*ssnas.search_spaces.__path__, str(tmp_path)])
    with pytest.raises(UserError, match="lacks PARAMETER_FREE, CELL_KINDS"):
        registry.space("broken")


@pytest.fixture
def toy_space(tmp_path, monkeypatch):
    """The example of docs/spaces.md, dropped in as one file."""
    text = (ROOT / "docs" / "spaces.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    folder = tmp_path / "spaces"
    folder.mkdir()
    (folder / "toy.py").write_text(code)
    monkeypatch.setattr(ssnas.search_spaces, "__path__", [*ssnas.search_spaces.__path__, str(folder)])
    yield "toy"
    import sys

    sys.modules.pop("ssnas.search_spaces.toy", None)


def test_the_documented_example_space_fulfils_the_contract(toy_space, tmp_path):
    assert toy_space in registry.available_spaces()
    check_space(toy_space, tmp_path)


@pytest.mark.slow
@requires_fashion
def test_the_documented_example_space_searches_shows_and_exports(toy_space, tmp_path, capsys, fashion_train):
    from ssnas.search import run_search

    out = tmp_path / "run"
    result = run_search(tiny_search_config(out, space=toy_space, **{"optim.epochs": 1}), fashion_train)
    assert result.finished and result.genotype.space == toy_space
    assert main(["show", str(out), "--layers", "2", "--init-channels", "4", "--image-size", "16"]) == 0
    shown = capsys.readouterr().out
    assert "space: toy" in shown and "node 2 = " in shown and "2 cells, 4 channels" in shown
    assert main(["export", str(out), "--to", "png", "--out", str(tmp_path / "cell.png")]) == 0
    assert (tmp_path / "cell.png").read_bytes()[:4] == b"\x89PNG"
