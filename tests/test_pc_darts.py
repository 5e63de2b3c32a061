"""PC-DARTS's opt-in mode (Xu et al., ICLR 2020): partial channel connections and edge normalisation."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from ssnas.errors import UserError
from ssnas.kernels import use_fast_kernels
from ssnas.nas.mixed import PartialMixedOp, channel_shuffle
from ssnas.nas.ops import DARTS_OPS
from ssnas.nas.space import SpaceConfig
from ssnas.search import run_search
from ssnas.search_spaces.darts import PRIMITIVES, DartsSupernet
from ssnas.runs import checkpoint
from tests.conftest import tiny_search_config

CL = torch.channels_last


def test_channel_shuffle_interleaves_the_groups_by_hand():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_edge_is_the_mixed_op_on_one_kth_of_the_channels_plus_the_bypass(stride):
    torch.manual_seed(0)
    edge = use_fast_kernels(PartialMixedOp(PRIMITIVES, DARTS_OPS, channels=8, stride=stride, k=4).double())
    x = torch.randn(3, 8, 8, 8, dtype=torch.float64).contiguous(memory_format=CL)
    w = F.softmax(torch.randn(8, dtype=torch.float64), -1)
    out = edge(x, w)
    textbook = use_fast_kernels(copy.deepcopy(edge.mixed), False)
    searched = textbook(x[:, :2], w)  # the textbook sum on channels 0..1
    rest = x[:, 2:] if stride == 1 else F.max_pool2d(x[:, 2:], 2, 2)
    expected = channel_shuffle(torch.cat([searched, rest], 1), 4)
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)
    # bypassed channels carry the input unchanged (stride 1): channel 2 of the input lands at position 1
    if stride == 1:
        torch.testing.assert_close(out[:, 1], x[:, 2])


def test_edge_norm_weights_sum_to_one_per_node_and_steer_the_derivation():
    net = DartsSupernet(SpaceConfig(layers=3, init_channels=8, edge_norm=True), 3)
    assert len(net.arch_parameters()) == 4
    weights = net.edge_norm_weights("normal")
    starts = [0, 2, 5, 9]
    for i, start in enumerate(starts):
        assert weights[start:start + i + 2].sum().item() == pytest.approx(1.0)
    with torch.no_grad():
        net.alphas_normal.zero_()
        # node 3 (edges 2, 3, 4 from states 0, 1, 2): edge 2 has the strongest op by alpha alone
        net.alphas_normal[2, 4] = 3.0
        net.alphas_normal[3, 5] = 2.0
        net.alphas_normal[4, 6] = 2.0
        net.betas_normal.zero_()
    pairs = net.derive().normal
    assert ("sep_conv_3x3", 0) in pairs[2:4]
    with torch.no_grad():
        net.betas_normal[2] = -5.0  # ... but its edge weight is tiny: PC-DARTS ranks by the product
    pairs = net.derive().normal
    assert set(pairs[2:4]) == {("sep_conv_5x5", 1), ("dil_conv_3x3", 2)}


def test_exact_darts_is_the_default():
    net = DartsSupernet(SpaceConfig(layers=3, init_channels=8), 3)
    assert len(net.arch_parameters()) == 2 and net.edge_norm_weights("normal") is None
    assert not any(isinstance(m, PartialMixedOp) for m in net.modules())


def test_bad_settings_are_one_line_errors():
    with pytest.raises(UserError, match="divide --init-channels"):
        DartsSupernet(SpaceConfig(layers=3, init_channels=6, partial_channels=4), 3)
    from ssnas.search_spaces.nb201 import NB201Supernet

    with pytest.raises(UserError, match="darts space only"):
        NB201Supernet(SpaceConfig(layers=1, init_channels=8, partial_channels=2), 3)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["darts", "beta-darts"])  # beta-DARTS's penalty covers the alphas, not the betas
def test_pc_darts_search_runs_and_learns_the_betas(tmp_path, fashion_train, strategy):
    cfg = tiny_search_config(tmp_path, **{"supernet.init_channels": 8, "supernet.partial_channels": 4,
                                          "supernet.edge_norm": True, "strategy.name": strategy})
    result = run_search(cfg, fashion_train)
    assert result.finished and len(result.genotype.normal) == 4
    state = checkpoint.load(tmp_path / "checkpoint.pt")["searcher"]
    betas = {k: v for k, v in state["supernet"].items() if k.startswith("betas_")}
    assert set(betas) == {"betas_normal", "betas_reduce"}
    # the architecture optimiser updated all four tensors (alphas and betas), each with a non-zero gradient
    adam = state["opt_a"]["state"]
    assert len(adam) == 4 and all(s["exp_avg"].abs().max() > 0 for s in adam.values())


def test_the_pc_darts_experiment_holds_the_papers_settings():
    from ssnas.config import resolve
    from tests.conftest import ROOT

    from ssnas.search import SearchConfig

    cfg = resolve(SearchConfig, str(ROOT / "experiments" / "pcdarts_cifar10_simclr.toml"), {})
    assert (cfg.supernet.partial_channels, cfg.supernet.edge_norm) == (4, True)
    assert (cfg.optim.batch_size, cfg.optim.lr, cfg.optim.arch_lr) == (256, 0.1, 6e-4)  # train_search.py defaults
    net = DartsSupernet(cfg.supernet, 3)
    assert sum(isinstance(m, PartialMixedOp) for m in net.modules()) == 8 * 14
