import json
import re

import pytest
import torch

from ssnas.errors import UserError
from ssnas.nas.space import SpaceConfig
from ssnas.search import run_search
from ssnas.search_spaces import nb201
from ssnas.search_spaces.nb201 import NB201Genotype, NB201Network
from tests.conftest import tiny_search_config

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_every_one_of_the_15625_strings_round_trips():
    seen = set()
    for genotype in nb201.all_genotypes():
        text = genotype.to_string()
        assert NB201Genotype.from_string(text) == genotype
        assert NB201Genotype.from_json(json.loads(json.dumps(genotype.to_json()))) == genotype
        seen.add(text)
    assert len(seen) == 5 ** 6 == 15625


def test_the_benchmark_example_parses_edge_by_edge():
    g = NB201Genotype.from_string(EXAMPLE)
    assert g.edges == ("nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect")
    assert g.to_string() == EXAMPLE


def _params(genotype: str) -> int:
    net = NB201Network(NB201Genotype.from_string(genotype), cells_per_stage=5, channels=16, num_classes=10)
    return sum(p.numel() for p in net.parameters())


def test_parameter_counts_match_the_benchmark():
    # NAS-Bench-201's CIFAR-10 API data: parameters range from 0.073306 M to 1.531546 M (C=16, N=5,
    # 10 classes), the largest being the all-nor_conv_3x3 cell and the smallest any cell without convs.
    # (Second-hand: the min/max table of the benchmark's records quoted by EvoXBench's nb201 wrapper.)
    assert _params("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|") == 1_531_546
    assert _params("|skip_connect~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|avg_pool_3x3~2|") == 73_306
    # one 1x1 conv edge per cell adds 15 cells' worth of C^2 + 2C weights: 5 * (256+32 + 1024+64 + 4096+128)
    one_1x1 = "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert _params(one_1x1) == 73_306 + 5 * (288 + 1088 + 4224)


@pytest.mark.parametrize("bad,needle", [
    ("|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "not a NAS-Bench-201 op"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "input must be ~0"),
    ("|none~0|+|none~0|none~1|", "3 '+'-separated nodes"),
])
def test_malformed_strings_name_the_problem(bad, needle):
    with pytest.raises(UserError, match=re.escape(needle)):
        NB201Genotype.from_string(bad)


def test_darts_genotype_is_refused_with_the_fix():
    with pytest.raises(UserError, match="--space darts"):
        NB201Genotype.from_json({"space": "darts", "arch": EXAMPLE})


def test_supernet_shapes_and_argmax_derivation():
    net = nb201.build_supernet(SpaceConfig(layers=1, init_channels=4), 1)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 16)
    with torch.no_grad():
        net.alphas_cell.zero_()
        net.alphas_cell[:, nb201.PRIMITIVES.index("nor_conv_1x1")] = 1.0
        net.alphas_cell[5, nb201.PRIMITIVES.index("none")] = 2.0  # `none` is kept when it wins: no top-2 rule
    assert net.derive().edges == ("nor_conv_1x1",) * 5 + ("none",)


def test_nb201_search_on_real_images_gives_a_valid_string(tmp_path, fashion_train):
    # with an anti-collapse strategy on, to exercise its wiring through the real loop
    cfg = tiny_search_config(tmp_path, **{"space": "nb201", "supernet.layers": 1, "optim.epochs": 1,
                                          "strategy.name": "darts-minus"})
    result = run_search(cfg, fashion_train)
    text = json.loads((tmp_path / "genotype.json").read_text())["arch"]
    assert NB201Genotype.from_string(text) == result.genotype
    assert set(json.loads((tmp_path / "alphas.json").read_text())) == {"cell"}
