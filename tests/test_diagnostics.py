import math

import pytest

from ssnas.nas.diagnostics import edge_entropy, search_diagnostics
from ssnas.search_spaces.darts import PARAMETER_FREE, PUBLISHED


def test_entropy_of_uniform_and_decided_edges():
    assert edge_entropy({"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25}) == pytest.approx(math.log(4))
    assert edge_entropy({"a": 1.0, "b": 0.0}) == 0.0
    assert edge_entropy({"a": 0.5, "b": 0.5}) == pytest.approx(math.log(2))


def test_parameter_free_share_of_darts_v2():
    probs = {"normal": {"0->2": {"x": 0.5, "y": 0.5}}, "reduce": {"0->2": {"x": 1.0, "y": 0.0}}}
    out = search_diagnostics(probs, PUBLISHED["DARTS_V2"], PARAMETER_FREE)
    # DARTS_V2: normal has 2 skips among 8 ops; reduce is all pools and skips -> (2 + 8) / 16
    assert out["parameter_free_share"] == pytest.approx(10 / 16)
    assert out["entropy_normal_norm"] == pytest.approx(1.0) and out["entropy_reduce"] == 0.0


def test_aux_skip_adds_beta_times_the_input_on_stride_one_edges():
    import torch

    from ssnas.nas.space import SpaceConfig
    from ssnas.search_spaces import nb201

    torch.manual_seed(0)
    net = nb201.build_supernet(SpaceConfig(layers=1, init_channels=4), 1).eval()
    cell = net.macro.blocks[0]
    x = torch.randn(2, 4, 8, 8)
    w = torch.softmax(net.alphas_cell, -1)
    plain, skipped = cell(x, w), cell(x, w, aux_skip=0.5)
    assert not torch.allclose(plain, skipped)
    # the identity part alone: with every edge `none`, node 3 = 0.5 * (x + n1 + n2), n1 = 0.5 x, n2 = 0.5 (x + n1)
    only_none = torch.zeros_like(w)
    only_none[:, nb201.PRIMITIVES.index("none")] = 1.0
    n1 = 0.5 * x
    n2 = 0.5 * (x + n1)
    torch.testing.assert_close(cell(x, only_none, aux_skip=0.5), 0.5 * (x + n1 + n2))
