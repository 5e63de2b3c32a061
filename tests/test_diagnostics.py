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


def test_margins_follow_what_the_derivation_can_choose():
    import torch

    from ssnas.nas.diagnostics import derivation_margins, eligible_ops
    from ssnas.search_spaces import darts, nb201

    names = darts.edge_names(1)  # one node: edges 0->2, 1->2, both kept
    shapes = {"normal": (2, len(darts.PRIMITIVES)), "reduce": (2, len(darts.PRIMITIVES))}
    assert eligible_ops(darts.genotype_from_scores, shapes, darts.PRIMITIVES) == set(darts.PRIMITIVES) - {"none"}
    assert "none" in eligible_ops(nb201.genotype_from_scores, {"cell": (6, 5)}, nb201.PRIMITIVES)
    scores = {kind: torch.full((2, len(darts.PRIMITIVES)), 0.1) for kind in darts.CELL_KINDS}
    op = darts.PRIMITIVES.index
    scores["normal"][0, op("sep_conv_3x3")] = 0.3
    scores["normal"][0, op("none")] = 0.5  # `none` is never chosen in DARTS, so it is no rival
    scores["normal"][1, op("skip_connect")] = 0.2
    scores["normal"][1, op("max_pool_3x3")] = 0.19
    scores["reduce"][:, op("dil_conv_3x3")] = 0.4
    genotype = darts.genotype_from_scores(scores)
    out = derivation_margins(scores, genotype, darts.genotype_from_scores, darts.PRIMITIVES, names)
    assert out["op_margin_min"] == pytest.approx(0.01)  # skip 0.2 against max pool 0.19
    assert out["op_margin_median"] == pytest.approx(0.25)  # margins 0.2, 0.01, 0.3, 0.3
    assert "edge_margin_min" not in out  # with one node, every edge is kept: no edge choice
    two = darts.edge_names(2)  # node 3 keeps 2 of its 3 edges
    scores = {kind: torch.full((5, len(darts.PRIMITIVES)), 0.1) for kind in darts.CELL_KINDS}
    scores["normal"][2:5, op("sep_conv_5x5")] = torch.tensor([0.5, 0.4, 0.38])
    scores["reduce"] = scores["normal"].clone()  # (a tied cell's edge margin would be 0)
    genotype = darts.genotype_from_scores(scores)
    out = derivation_margins(scores, genotype, darts.genotype_from_scores, darts.PRIMITIVES, two)
    assert out["edge_margin_min"] == pytest.approx(0.02)  # the weaker kept edge (0.4) against the dropped 0.38


def test_an_undecided_cell_is_warned_about_and_a_decided_one_is_not():
    from ssnas.nas.diagnostics import changed_edges, undecided_warning

    undecided = {"entropy_normal_norm": 0.9999, "entropy_reduce_norm": 0.9998, "op_margin_median": 3e-5,
                 "op_margin_min": 1e-7, "edge_margin_min": 2e-5}
    text = undecided_warning(undecided)
    assert "barely decided" in text and "3e-05" in text and "--epochs" in text and "\n" not in text
    assert undecided_warning({"entropy_normal_norm": 0.7, "op_margin_median": 0.05, "op_margin_min": 1e-4}) is None
    assert undecided_warning({"entropy_normal_norm": 0.995, "op_margin_median": 0.05, "op_margin_min": 0.01})
    v1, v2 = PUBLISHED["DARTS_V1"], PUBLISHED["DARTS_V2"]
    assert changed_edges(v2, v2) == (0, 16) and changed_edges(None, v2) == (16, 16)
    assert 0 < changed_edges(v1, v2)[0] < 16
