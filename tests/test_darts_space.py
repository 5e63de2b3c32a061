import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from ssnas.errors import UserError
from ssnas.kernels import use_fast_kernels
from ssnas.nas.mixed import MixedOp
from ssnas.nas.ops import DARTS_OPS
from ssnas.nas.space import SpaceConfig
from ssnas.search_spaces import darts
from ssnas.search_spaces.darts import PRIMITIVES, DartsGenotype, derive_cell

TINY = SpaceConfig(layers=3, init_channels=4, nodes=4)


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 32), (3, 28)])
def test_supernet_handles_gray_and_rgb_of_28_and_32_pixels(channels, size):
    net = darts.build_supernet(TINY, channels)
    features = net(torch.randn(2, channels, size, size))
    # 3 cells: reductions at 1 and 2, so the last cell has 4 nodes * (4 * 2 * 2) channels
    assert features.shape == (2, net.feature_dim) == (2, 4 * 16)
    assert torch.isfinite(features).all()


def test_reductions_sit_at_one_and_two_thirds():
    assert darts.reduction_layers(8) == {2, 5}
    assert darts.reduction_layers(20) == {6, 13}
    net = darts.build_supernet(SpaceConfig(layers=8, init_channels=4), 3)
    assert [c.reduction for c in net.cells] == [False, False, True, False, False, True, False, False]


def test_alphas_are_registered_parameters_apart_from_the_weights():
    net = darts.build_supernet(TINY, 3)
    alphas = net.arch_parameters()
    assert [a.shape for a in alphas] == [(14, 8), (14, 8)]
    state = net.state_dict()
    assert "alphas_normal" in state and "alphas_reduce" in state  # checkpoints keep the architecture
    weight_ids = {id(p) for p in net.weight_parameters()}
    assert not weight_ids & {id(a) for a in alphas}
    assert len(weight_ids) + 2 == len(list(net.parameters()))


@pytest.mark.parametrize("stride", [1, 2])
def test_fast_mixed_op_matches_the_textbook_sum_in_value_and_gradient(stride):
    torch.manual_seed(0)
    op = MixedOp(PRIMITIVES, DARTS_OPS, 4, stride)  # the textbook sum over every candidate, `none` included
    fast_op = use_fast_kernels(copy.deepcopy(op))
    assert type(fast_op) is not MixedOp and isinstance(fast_op, MixedOp)
    x = torch.randn(3, 4, 8, 8, requires_grad=True)
    alpha = torch.randn(len(PRIMITIVES), requires_grad=True)
    fast = fast_op(x, F.softmax(alpha, -1))
    grads_fast = torch.autograd.grad(fast.square().sum(), [x, alpha, *fast_op.parameters()], allow_unused=True)
    slow = op(x, F.softmax(alpha, -1))
    grads_slow = torch.autograd.grad(slow.square().sum(), [x, alpha, *op.parameters()], allow_unused=True)
    # tolerance: float32 summation order differs between the two paths
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads_fast, grads_slow):
        if a is None or b is None:
            assert a is None and b is None or (a if a is not None else b).abs().max() == 0
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_derivation_keeps_top2_edges_by_strongest_non_none_op():
    # Hand-built weights for 2 nodes (5 edges). `none` dominates edge 0->2 but must be ignored.
    w = torch.full((5, 8), 0.01)
    op = PRIMITIVES.index
    w[0, op("none")] = 0.9; w[0, op("max_pool_3x3")] = 0.05      # node 2, from 0: best non-none 0.05
    w[1, op("sep_conv_3x3")] = 0.6                               # node 2, from 1: 0.6
    w[2, op("dil_conv_5x5")] = 0.3                               # node 3, from 0: 0.3
    w[3, op("skip_connect")] = 0.2                               # node 3, from 1: 0.2
    w[4, op("avg_pool_3x3")] = 0.7                               # node 3, from 2: 0.7
    pairs = derive_cell(w, nodes=2)
    assert pairs == (("sep_conv_3x3", 1), ("max_pool_3x3", 0), ("avg_pool_3x3", 2), ("dil_conv_5x5", 0))


def test_derived_genotype_is_valid_and_round_trips_through_json():
    net = darts.build_supernet(TINY, 3)
    with torch.no_grad():
        net.alphas_normal.normal_()
        net.alphas_reduce.normal_()
    g = net.derive()
    assert len(g.normal) == len(g.reduce) == 8
    assert all(op != "none" for op, _ in g.normal + g.reduce)
    text = json.dumps(g.to_json())
    assert DartsGenotype.from_json(json.loads(text)) == g


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2"])
def test_published_genotypes_round_trip(name):
    g = darts.PUBLISHED[name]
    assert DartsGenotype.from_json(json.loads(json.dumps(g.to_json()))) == g


def test_darts_v2_matches_the_paper():
    g = darts.PUBLISHED["DARTS_V2"]
    assert g.normal[7] == ("dil_conv_3x3", 2) and g.reduce[0] == ("max_pool_3x3", 0)
    assert sum(op == "sep_conv_3x3" for op, _ in g.normal) == 5


def _valid():
    return darts.PUBLISHED["DARTS_V2"].to_json()


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["normal"].__setitem__(3, ["sep_conv_7x7", 1]), "normal[3]"),
    (lambda d: d["reduce"].__setitem__(2, ["skip_connect", 3]), "reduce[2]"),
    (lambda d: d.__setitem__("normal", d["normal"][:7]), "'normal' has 7 pairs"),
    (lambda d: d.pop("reduce"), "'reduce' is missing"),
    (lambda d: d.__setitem__("space", "nb201"), "'space'"),
    (lambda d: d.__setitem__("normal_concat", [2, 9]), "normal_concat"),
    (lambda d: d.__setitem__("extra", 1), "unknown field"),
    (lambda d: d["normal"].__setitem__(0, ["none", 0]), "normal[0]"),
])
def test_malformed_genotypes_give_one_line_errors_naming_the_field(mutate, needle):
    data = _valid()
    mutate(data)
    with pytest.raises(UserError) as e:
        DartsGenotype.from_json(data, "arch.json")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_probs_are_softmax_rows_named_by_edge():
    net = darts.build_supernet(TINY, 1)
    probs = net.probs()
    assert set(probs) == {"normal", "reduce"}
    assert list(probs["normal"])[:3] == ["0->2", "1->2", "0->3"]
    for row in probs["reduce"].values():
        assert math.isclose(sum(row.values()), 1.0, rel_tol=1e-6)
        assert set(row) == set(PRIMITIVES)
