"""The evaluation network built from a genotype: shape, parameter count, wiring, drop-path, auxiliary head,
FLOPs; the ResNet-18 baseline; and where genotypes come from (`load_genotype`)."""
import json
import subprocess
import sys

import pytest
import torch
from torch import nn

from ssnas.arch import build_encoder, load_genotype, register_parser, unregister_parser
from ssnas.errors import UserError
from ssnas.nas.network import NetworkConfig, ResNet18Cifar, count_flops, count_parameters, describe
from ssnas.search_spaces import darts
from ssnas.search_spaces.darts import PUBLISHED, DartsGenotype
from tests.conftest import ROOT

TINY = NetworkConfig(layers=3, init_channels=4)


# ---- parameter count, by hand from the genotype ----------------------------------------------------------------

def _op_params(op: str, c: int, stride: int) -> int:
    """Weights of one DARTS op with affine BN (2 per channel), written out from the op definitions."""
    dw = {"3": 9, "5": 25}
    if op == "sep_conv_3x3" or op == "sep_conv_5x5":  # two (depthwise k x k, pointwise 1x1, BN) blocks
        return 2 * (dw[op[-1]] * c + c * c + 2 * c)
    if op in ("dil_conv_3x3", "dil_conv_5x5"):  # one (depthwise, pointwise, BN) block
        return dw[op[-1]] * c + c * c + 2 * c
    if op == "skip_connect":  # identity, or a factorized reduction: two 1x1 convs to c/2 each, BN
        return 0 if stride == 1 else c * c + 2 * c
    return 0  # pools


def _expected_params(genotype: DartsGenotype, layers: int, c0: int, in_channels: int) -> int:
    stem = 3 * c0
    total = in_channels * stem * 9 + 2 * stem
    c_pp, c_p, c = stem, stem, c0
    reduction_prev = False
    for layer in range(layers):
        reduction = layer in (layers // 3, 2 * layers // 3)
        c = 2 * c if reduction else c
        total += c_pp * c + 2 * c  # a 1x1 conv c_pp -> c, or after a reduction two 1x1 convs c_pp -> c/2; BN
        total += c_p * c + 2 * c
        pairs = genotype.reduce if reduction else genotype.normal
        total += sum(_op_params(op, c, 2 if reduction and j < 2 else 1) for op, j in pairs)
        concat = genotype.reduce_concat if reduction else genotype.normal_concat
        c_pp, c_p, reduction_prev = c_p, len(concat) * c, reduction
    return total


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2"])
@pytest.mark.parametrize("layers,c0,in_channels", [(3, 4, 1), (8, 16, 3)])
def test_parameter_count_follows_from_the_genotype(name, layers, c0, in_channels):
    net = darts.build_network(PUBLISHED[name], NetworkConfig(layers=layers, init_channels=c0), in_channels)
    assert count_parameters(net) == _expected_params(PUBLISHED[name], layers, c0, in_channels)


def test_darts_v2_at_full_size_has_the_published_parameter_count():
    # DARTS's train.py logs "param size = 3.349342MB" for DARTS_V2 at 20 cells, C = 36, CIFAR-10 classifier
    # included and the auxiliary head left out (cnn/utils.py count_parameters_in_MB).
    net = darts.build_network(PUBLISHED["DARTS_V2"], NetworkConfig(auxiliary=True), 3, num_classes=10)
    assert count_parameters(net) == 3_349_342
    assert sum(p.numel() for p in net.auxiliary_head.parameters()) > 0  # there, but not counted
    assert describe(net, (3, 32, 32))["params"] == 3_349_342 - (net.feature_dim * 10 + 10)  # the features' share


# ---- shape and wiring ----------------------------------------------------------------------------------------

def test_tiny_network_shape_reductions_and_spatial_sizes():
    net = darts.build_network(PUBLISHED["DARTS_V2"], TINY, 1)
    assert [cell.reduction for cell in net.cells] == [False, True, True]
    sizes = []
    for cell in net.cells:
        cell.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[1:])))
    features = net(torch.randn(2, 1, 28, 28))
    # 4 nodes concatenated; C doubles at each reduction: 4, 8, 16 channels per node; 28 -> 14 -> 7 pixels
    assert sizes == [(16, 28, 28), (32, 14, 14), (64, 7, 7)]
    assert features.shape == (2, net.feature_dim) == (2, 64)


def test_cell_output_is_the_genotypes_sum_of_inputs():
    """A normal cell of skips only: every node is a sum of earlier states, known from the genotype alone."""
    g = DartsGenotype((("skip_connect", 0), ("skip_connect", 1), ("skip_connect", 0), ("skip_connect", 2),
                       ("skip_connect", 1), ("skip_connect", 3), ("skip_connect", 2), ("skip_connect", 4)),
                      (2, 3, 4, 5), PUBLISHED["DARTS_V2"].reduce, (2, 3, 4, 5))
    net = darts.build_network(g, NetworkConfig(layers=3, init_channels=4), 3).eval()
    cell = net.cells[0]
    s = net.stem(torch.randn(2, 3, 8, 8))
    with torch.no_grad():
        p0, p1 = cell.pre0(s), cell.pre1(s)
        n2 = p0 + p1
        n3 = p0 + n2
        n4 = p1 + n3
        n5 = n2 + n4
        torch.testing.assert_close(cell(s, s), torch.cat([n2, n3, n4, n5], 1))


def test_concat_picks_the_listed_nodes_only():
    v2 = PUBLISHED["DARTS_V2"]
    g = DartsGenotype(v2.normal, (4, 5), v2.reduce, (2, 3, 4, 5))
    net = darts.build_network(g, TINY, 1)
    assert net.cells[0].multiplier == 2  # the first cell is normal: 2 of 4 nodes concatenated
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 64)


def test_drop_path_drops_whole_samples_and_keeps_the_mean():
    x = torch.ones(4000, 3, 2, 2)
    torch.manual_seed(0)
    y = darts.drop_path(x, 0.25)
    per_sample = y.flatten(1)
    assert per_sample.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]  # a sample is dropped whole or scaled
    assert (per_sample.std(1) == 0).all()
    assert abs(per_sample.mean().item() - 1.0) < 0.05
    assert darts.drop_path(x, 0.0) is x


def test_drop_path_is_active_only_while_training():
    net = darts.build_network(PUBLISHED["DARTS_V2"], NetworkConfig(layers=3, init_channels=4, drop_path=0.5), 1)
    net.drop_path_prob = 0.5
    x = torch.randn(4, 1, 16, 16)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    torch.manual_seed(0)
    a = net(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, net(x))


def test_identity_paths_are_never_dropped():
    skips = DartsGenotype((("skip_connect", 0), ("skip_connect", 1)) * 4, (2, 3, 4, 5),
                          PUBLISHED["DARTS_V2"].reduce, (2, 3, 4, 5))
    cell = darts.build_network(skips, TINY, 3).cells[0].train()
    s = torch.randn(4, 12, 8, 8)
    torch.manual_seed(0)
    torch.testing.assert_close(cell(s, s, 0.9), cell(s, s, 0.0))  # DARTS: no drop-path on identities


@pytest.mark.parametrize("size", [32, 28])
def test_auxiliary_head_only_in_training_and_not_counted(size):
    cfg = NetworkConfig(layers=3, init_channels=4, auxiliary=True)
    net = darts.build_network(PUBLISHED["DARTS_V2"], cfg, 3, num_classes=10)
    x = torch.randn(2, 3, size, size)
    logits, aux = net.forward_with_aux(x)
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    features, _ = net.forward_features_with_aux(x)
    assert features.shape == (2, 64)
    net.eval()
    assert net.forward_with_aux(x)[1] is None
    torch.testing.assert_close(net(x), net.classifier(net.forward_features(x)))
    plain = darts.build_network(PUBLISHED["DARTS_V2"], TINY, 3, num_classes=10)
    assert count_parameters(net) == count_parameters(plain)
    assert count_parameters(net, exclude_auxiliary=False) > count_parameters(plain)


def test_auxiliary_needs_classes():
    with pytest.raises(UserError, match="auxiliary"):
        darts.build_network(PUBLISHED["DARTS_V2"], NetworkConfig(layers=3, init_channels=4, auxiliary=True), 3)


def test_flops_of_one_convolution_by_hand():
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    # 4 output channels x 8 x 8 positions x 9 multiply-adds, 2 FLOPs each
    assert count_flops(conv, (1, 8, 8)) == 2 * 4 * 64 * 9
    net = darts.build_network(PUBLISHED["DARTS_V2"], TINY, 1)
    assert count_flops(net, (1, 16, 16)) < count_flops(net, (1, 32, 32))
    assert net.training  # counting leaves the mode alone


def test_resnet18_baseline_has_a_cifar_stem():
    net = build_encoder("ResNet18", NetworkConfig(), 3)
    assert isinstance(net, ResNet18Cifar) and net.feature_dim == 512
    assert net.net.conv1.kernel_size == (3, 3) and net.net.conv1.stride == (1, 1)
    assert isinstance(net.net.maxpool, nn.Identity)
    # torchvision's 11,689,512 less the 1000-way classifier (513,000) and the 7x7 stem (9,408), plus a 3x3 stem (1,728)
    assert count_parameters(net) == 11_168_832
    x = torch.randn(2, 3, 16, 16)
    assert net(x).shape == (2, 512)
    net.eval()
    maps = net.forward_maps(x)  # CIFAR stem: stride 1, then layer2..4 halve: 16 -> 2
    assert maps.shape == (2, 512, 2, 2)
    torch.testing.assert_close(maps.mean((2, 3)), net(x))
    with pytest.raises(UserError, match="DARTS cells only"):
        build_encoder("resnet18", NetworkConfig(drop_path=0.2), 3)


def test_network_config_rejects_odd_sizes():
    with pytest.raises(UserError, match="init-channels"):
        darts.check_network(NetworkConfig(init_channels=5))
    with pytest.raises(UserError, match="layers"):
        darts.check_network(NetworkConfig(layers=2))


# ---- where genotypes come from ---------------------------------------------------------------------------------

def test_load_genotype_from_names_files_and_run_folders(tmp_path):
    assert load_genotype("darts_v2") == load_genotype("DARTS-V2") == load_genotype("darts") == PUBLISHED["DARTS_V2"]
    assert load_genotype("Darts_V1") == PUBLISHED["DARTS_V1"]
    data = PUBLISHED["DARTS_V1"].to_json()
    (tmp_path / "genotype.json").write_text(json.dumps(data))
    assert load_genotype(str(tmp_path / "genotype.json")) == PUBLISHED["DARTS_V1"]
    assert load_genotype(str(tmp_path)) == PUBLISHED["DARTS_V1"]


@pytest.mark.parametrize("spec,needle", [
    ("resnet18", "fixed backbone"), ("DARTS_V3", "DARTS_V1, DARTS_V2"), ("runs/nothing/genotype.json", "no file"),
    ("", "empty")])
def test_load_genotype_errors_are_one_line(spec, needle):
    with pytest.raises(UserError, match=needle) as e:
        load_genotype(spec)
    assert "\n" not in str(e.value)


def test_load_genotype_reports_bad_files(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_genotype(str(tmp_path / "broken.json"))
    bad = PUBLISHED["DARTS_V2"].to_json()
    bad["normal"][0] = ["conv_7x7", 0]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(UserError, match="not a DARTS op"):
        load_genotype(str(tmp_path / "bad.json"))
    with pytest.raises(UserError, match="no genotype.json"):
        load_genotype(str(tmp_path))


def test_other_formats_plug_in_through_a_parser(tmp_path):
    def parse(data, source, space):
        return PUBLISHED["DARTS_V1"] if isinstance(data, dict) and data.get("format") == "mine" else None

    (tmp_path / "g.json").write_text(json.dumps({"format": "mine"}))
    register_parser(parse)
    try:
        assert load_genotype(str(tmp_path / "g.json")) == PUBLISHED["DARTS_V1"]
    finally:
        unregister_parser(parse)
    with pytest.raises(UserError, match="unknown field"):
        load_genotype(str(tmp_path / "g.json"))


def test_package_exports_are_lazy():
    code = "import sys, ssnas; print('create_model' in dir(ssnas), 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          check=True, timeout=300).stdout.split() == ["True", "False"]
    from ssnas import build_network, load_genotype as lazy

    assert lazy("darts_v2") == PUBLISHED["DARTS_V2"]
    net = build_network("DARTS_V1", layers=3, init_channels=4, in_channels=1)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, net.feature_dim)
