"""Search strategies: the contract for every registered strategy in both spaces, each mechanism's formula on a
hand-computed case, and the ground-truth table (lookups, errors, and that the search never reads it)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ssnas import registry
from ssnas.cli import main
from ssnas.errors import UserError
from ssnas.runs.ground_truth import BenchmarkTable, epoch_truth
from ssnas.search import run_search
from ssnas.search_spaces import nb201
from ssnas.strategies.base import StrategyConfig, masked_softmax, uniform_weights
from tests.conftest import requires_fashion, same_supernet_weights, tiny_search_config

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
OTHER = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


# ---- the contract --------------------------------------------------------------------------------------------

# the cheapest settings of each strategy's own scoring, so the contract runs in seconds (all else default)
TINY_OPTIONS = {"pt": {"score_batches": 1}, "tenas": {"batch": 4, "repeats": 1, "patches": 8}}

@pytest.mark.slow
@pytest.mark.timeout(900)  # TE-NAS scores hundreds of pruned networks in the DARTS space
@requires_fashion
@pytest.mark.parametrize("space", ["darts", "nb201"])
@pytest.mark.parametrize("name", registry.available_strategies())
def test_every_strategy_derives_a_valid_genotype_in_every_space(tmp_path, fashion_train, name, space, capsys):
    strategy = registry.strategy(name)
    options = TINY_OPTIONS.get(name, {})
    epochs = max(2, strategy.min_epochs(strategy.check(StrategyConfig(name, dict(options)))))
    extra = {"supernet.layers": 1} if space == "nb201" else {}
    extra.update({f"strategy.{k}": v for k, v in options.items()})
    cfg = tiny_search_config(tmp_path, **{"space": space, "strategy.name": name, "optim.epochs": epochs, **extra})
    result = run_search(cfg, fashion_train)
    saved = json.loads((tmp_path / "genotype.json").read_text())
    assert registry.space(space).genotype_from_json(saved, "genotype.json") == result.genotype
    rows = [json.loads(line) for line in (tmp_path / "genotypes.jsonl").read_text().splitlines()]
    # a training-free strategy decides before the first step and writes one record; the others one per epoch
    assert result.finished and len(rows) == result.epochs_run == (1 if name == "tenas" else epochs)
    assert saved["meta"]["finished"] is True  # what the quality driver reads to skip a decided run
    # work between epochs that takes minutes says what it is doing, round by round
    printed = capsys.readouterr().out
    if name == "tenas":
        assert "TE-NAS round 1: scoring" in printed and "TE-NAS round 1 (" in printed
    if name == "pt":
        assert "DARTS-PT projection 1: " in printed


def test_every_strategy_has_a_summary_and_refuses_unknown_options():
    for name in registry.available_strategies():
        cls = registry.strategy(name)
        assert cls.name == name and cls.summary
        with pytest.raises(UserError, match=f"strategy {name!r} has no option 'nonsense'"):
            cls.check(StrategyConfig(name, {"nonsense": 1}))


def test_unknown_strategy_names_the_available_ones():
    with pytest.raises(UserError, match="unknown strategy 'dartz'; available: .*beta-darts"):
        registry.strategy("dartz")


def test_retired_anti_collapse_keys_say_where_they_went(tmp_path):
    tiny_search_config(tmp_path, **{"optim.aux_skip": 0.0, "optim.beta_decay": 0})  # old config files still load
    with pytest.raises(UserError, match="--strategy beta-darts --set strategy.weight=2.0"):
        tiny_search_config(tmp_path, **{"optim.beta_decay": 2.0})
    with pytest.raises(UserError, match="--strategy darts-minus --set strategy.beta0=1.0"):
        tiny_search_config(tmp_path, **{"optim.aux_skip": 1.0})


# ---- the mechanisms, on hand-computed cases ------------------------------------------------------------------

def test_masked_softmax_and_uniform_weights_give_removed_ops_exactly_zero():
    alpha = torch.tensor([[0.0, math.log(3.0), 5.0]])
    alive = torch.tensor([[True, True, False]])
    torch.testing.assert_close(masked_softmax(alpha, alive), torch.tensor([[0.25, 0.75, 0.0]]))
    torch.testing.assert_close(uniform_weights(alive, alpha), torch.tensor([[0.5, 0.5, 0.0]]))


def test_beta_decay_loss_is_the_mean_logsumexp_ramped_linearly():
    from ssnas.strategies.beta_darts import BetaDarts, beta_decay_loss

    a = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # logsumexp: log 2 and log 4
    b = torch.tensor([[0.0, math.log(7.0)]])  # log 8
    assert float(beta_decay_loss([a, b])) == pytest.approx((math.log(2) + math.log(4) + math.log(8)) / 3)
    strategy = _strategy("beta-darts", {"weight": 2.0}, [a, b])
    assert float(strategy.penalty([a, b], 0.25)) == pytest.approx(0.5 * math.log(4))  # lambda = 2 * 0.25
    assert strategy.penalty([a, b], 0.0) is None
    assert BetaDarts.check(StrategyConfig("beta-darts", {})).weight == 50.0  # the authors' code


def test_darts_minus_decays_the_auxiliary_skip_linearly_from_beta0():
    net = nb201.build_supernet(nb201_config(), 1)
    strategy = _strategy("darts-minus", {"beta0": 0.8}, list(net.alphas().values()), net)
    for progress, expected in [(0.0, 0.8), (0.25, 0.6), (1.0, 0.0)]:
        strategy.before_step(net, progress)
        assert net.aux_skip == pytest.approx(expected)


# ---- ground truth ------------------------------------------------------------------------------------------------

def _table(path: Path, rows: list[tuple[str, ...]], header: str = "arch,cifar10_test,cifar100_test") -> Path:
    path.write_text(header + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def test_a_small_table_gives_values_ranks_and_percentiles(tmp_path):
    all_skip = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
    cells = [CELL, OTHER, all_skip,
             "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|none~2|"]
    table = BenchmarkTable.load(_table(tmp_path / "t.csv", [(cells[0], "94.0", "70"), (cells[1], "10.0", "1"),
                                                            (cells[2], "54.3", "15"), (cells[3], "94.0", "72")]),
                                nb201.parse_text, "nb201")
    assert len(table) == 4 and table.columns == ["cifar10_test", "cifar100_test"]
    hit = table.lookup(CELL)
    # 94.0 ties for the best CIFAR-10 value: rank 1 of 4, top 25%; on CIFAR-100 one cell (72) is better: rank 2
    assert (hit["cifar10_test"].value, hit["cifar10_test"].rank, hit["cifar10_test"].percentile) == (94.0, 1, 25.0)
    assert hit["cifar100_test"].rank == 2
    assert table.lookup(OTHER)["cifar10_test"].rank == 4
    assert table.lookup("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|") is None
    assert epoch_truth(table, CELL) == {"true_cifar10_test": 94.0, "rank_cifar10_test": 1, "top_pct_cifar10_test": 25.0,
                                        "true_cifar100_test": 70.0, "rank_cifar100_test": 2,
                                        "top_pct_cifar100_test": 50.0}
    assert epoch_truth(table, "|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|") == {"true_missing": 1}


@pytest.mark.parametrize("content, message", [
    ("", "first line must be a CSV header"),
    ("name,acc\nx,1\n", "with an 'arch' column"),
    ("arch\n" + CELL + "\n", "no result column"),
    ("arch,acc\n", "no rows"),
    ("arch,acc\n" + CELL + ",high\n", "line 2: column 'acc' holds 'high', not a number"),
    ("arch,acc\n" + CELL + ",nan\n", "results must be finite numbers"),
    ("arch,acc\n" + CELL + ",1,2\n", "line 2: 3 fields where the header has 2"),
    ("arch,acc\n" + CELL + ",1\n" + CELL + ",2\n", "line 3: .* appears twice"),
    ("arch,acc\nsep_conv_3x3,1\n", "line 2: 'sep_conv_3x3' is not a nb201 genotype"),
    ("arch,acc\n|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|,1\n", "line 2: node 1, edge 0->1: 'bogus'"),
])
def test_malformed_or_foreign_tables_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as error:
        BenchmarkTable.load(path, nb201.parse_text, "nb201")
    assert "\n" not in str(error.value)


def test_missing_or_binary_tables_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        BenchmarkTable.load(tmp_path / "nope.csv", nb201.parse_text, "nb201")
    (tmp_path / "b.csv").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError, match="not a UTF-8 text file|not a valid CSV|CSV header"):
        BenchmarkTable.load(tmp_path / "b.csv", nb201.parse_text, "nb201")


@requires_fashion
def test_a_bad_benchmark_table_fails_before_any_data_loads(tmp_path, capsys):
    bad = tmp_path / "t.csv"
    bad.write_text("arch,acc\nsep_conv_3x3,1\n")
    code = main(["search", "--space", "nb201", "--benchmark", str(bad), "--dataset", "no-such-dataset",
                 "--out", str(tmp_path / "run")])
    assert code == 2 and "is not a nb201 genotype" in capsys.readouterr().err


@pytest.mark.slow
@requires_fashion
def test_the_search_never_reads_the_table(tmp_path, fashion_train, capsys):
    """Every one of the 15,625 cells in a table with made-up values: the trajectory of derived genotypes is
    identical with and without it, and the table's numbers land in metrics.jsonl and genotypes.jsonl."""
    generator = torch.Generator().manual_seed(0)
    values = torch.rand(15625, generator=generator) * 100
    table = _table(tmp_path / "table.csv", [(g.to_string(), f"{float(v):.4f}", "1")
                                            for g, v in zip(nb201.all_genotypes(), values)])
    runs = {}
    for name, extra in [("without", {}), ("with", {"run.benchmark": str(table)})]:
        cfg = tiny_search_config(tmp_path / name, **{"space": "nb201", "supernet.layers": 1, "optim.epochs": 3,
                                                     "strategy.name": "darts", **extra})
        run_search(cfg, fashion_train)
        runs[name] = [json.loads(line) for line in (tmp_path / name / "genotypes.jsonl").read_text().splitlines()]
    assert [r["genotype"] for r in runs["with"]] == [r["genotype"] for r in runs["without"]]
    loaded = BenchmarkTable.load(table, nb201.parse_text, "nb201")
    for row in runs["with"]:
        expected = loaded.lookup(row["genotype"]["arch"])["cifar10_test"]
        assert row["truth"]["true_cifar10_test"] == pytest.approx(expected.value)
        assert row["truth"]["rank_cifar10_test"] == expected.rank
    epochs = [json.loads(line) for line in (tmp_path / "with" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "epoch"]
    assert [e["true_cifar10_test"] for e in epochs] == [r["truth"]["true_cifar10_test"] for r in runs["with"]]
    assert "truth" not in runs["without"][0]
    printed = capsys.readouterr().out  # the epoch lines of both runs: the truth shows only in those with a table
    first = runs["with"][0]["truth"]
    assert "epoch 1/3  " in printed and (f"true cifar10_test {first['true_cifar10_test']:.2f}, rank "
                                          f"{first['rank_cifar10_test']} (top ") in printed
    assert printed.count("true cifar10_test") == 3
    assert main(["show", str(tmp_path / "with")]) == 0
    shown = capsys.readouterr().out
    last = runs["with"][-1]["truth"]
    final = f"cifar10_test {last['true_cifar10_test']:.2f} (rank {last['rank_cifar10_test']}"
    assert f"benchmark (final cell): {final}" in shown
    assert "benchmark cifar10_test per epoch: " in shown and "strategy darts" in shown


# ---- helpers -----------------------------------------------------------------------------------------------------

def nb201_config():
    from ssnas.nas.space import SpaceConfig

    return SpaceConfig(layers=1, init_channels=4)


def _strategy(name, options, alphas, supernet=None, epochs=10):
    cls = registry.strategy(name)
    net = supernet if supernet is not None else _AlphaHolder(alphas)
    primitives = list(nb201.PRIMITIVES) if alphas[0].shape[1] == 5 else ["a"] * alphas[0].shape[1]
    return cls(cls.check(StrategyConfig(name, options)), net, primitives, epochs)


class _AlphaHolder:
    def __init__(self, alphas):
        self._alphas = {f"k{i}": a for i, a in enumerate(alphas)}

    def alphas(self):
        return self._alphas


# ---- DrNAS, DARTS-PT and TE-NAS on hand-computed cases -----------------------------------------------------------

def test_drnas_samples_from_the_dirichlet_of_elu_plus_one_and_prunes_to_the_strongest():
    from ssnas.strategies.drnas import concentration, dirichlet_weights

    alpha = torch.tensor([[-1.0, 0.0, 2.0]])
    torch.testing.assert_close(concentration(alpha), torch.tensor([[math.exp(-1.0), 1.0, 3.0]]))
    torch.manual_seed(0)
    w = dirichlet_weights(alpha.repeat(2000, 1), torch.tensor([[True, True, True]]).repeat(2000, 1))
    assert torch.allclose(w.sum(dim=1), torch.ones(2000))
    # the sample mean approaches the Dirichlet mean beta / sum(beta)
    beta = concentration(alpha)[0]
    torch.testing.assert_close(w.mean(dim=0), beta / beta.sum(), atol=0.02, rtol=0)
    removed = dirichlet_weights(alpha, torch.tensor([[True, False, True]]))
    assert float(removed[0, 1]) == 0.0 and float(removed.sum()) == pytest.approx(1.0)

    net = nb201.build_supernet(nb201_config(), 1)
    with torch.no_grad():
        net.alphas_cell.copy_(torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]] * 6))
    strategy = _strategy("drnas", {"keep": 2, "warmup": 0.25}, list(net.alphas().values()), net)
    strategy.epochs, strategy.stage_epochs = 4, 2
    # stage 1 is progress (0, 0.5], stage 2 (0.5, 1]; the alphas are frozen in the first quarter of each
    assert [strategy.wants_arch_step(p) for p in (0.1, 0.2, 0.4, 0.55, 0.7)] == [False, True, True, False, True]
    assert strategy.after_epoch(0, None) == {}
    strategy.after_epoch(1, None)  # the end of stage 1: each edge keeps its 2 largest alphas
    assert strategy.alive_ops()["cell"] == [["nor_conv_3x3", "avg_pool_3x3"]] * 6
    scores = strategy.derive_scores(net.alphas())["cell"][0]
    torch.testing.assert_close(scores, torch.tensor([0.0, 0.0, 0.0, 4.0 / 9, 5.0 / 9]))


class _LossOfWeights:
    """A stand-in objective for the selection logic: its 'loss' is a fixed linear function of the op weights,
    so the cost of removing each op is known by hand."""

    def __init__(self, cost):
        self.cost = cost  # cost[e][o]: what removing op o of edge e adds to the loss at weight 1
        self.said = []  # the progress lines a strategy printed

    def objective_loss(self, op_weights, round_, batches):
        w = op_weights["cell"]
        return float(-(w * self.cost).sum())

    def say(self, text):
        self.said.append(text)


def test_pt_keeps_the_op_whose_removal_hurts_most_edge_by_edge_then_ranks_the_edges():
    net = nb201.build_supernet(nb201_config(), 1)
    cost = torch.zeros(6, 5)
    cost[:, nb201.PRIMITIVES.index("nor_conv_3x3")] = 1.0
    cost[3, nb201.PRIMITIVES.index("skip_connect")] = 3.0  # on edge 0->3 the skip matters most
    cost[2] *= 0.5
    strategy = _strategy("pt", {"tune": 0, "score_batches": 1}, list(net.alphas().values()), net)
    strategy.primitives = list(nb201.PRIMITIVES)
    strategy.project_after = {0: 0}
    strategy.per_round = 6
    tools = _LossOfWeights(cost)
    events = strategy.after_epoch(0, tools)
    genotype = nb201.genotype_from_scores(strategy.derive_scores(net.alphas()))
    assert genotype.edges == ("nor_conv_3x3",) * 3 + ("skip_connect",) + ("nor_conv_3x3",) * 2
    # one progress line per projection round, naming every edge it fixed (in the random order it fixed them)
    assert len(tools.said) == 1 and tools.said[0].startswith("  DARTS-PT projection 1: ")
    assert sorted(tools.said[0].split(": ", 1)[1].split(", ")) == sorted(
        [f"cell {e} -> nor_conv_3x3" for e in (0, 1, 2, 4, 5)] + ["cell 3 -> skip_connect"])
    # blank supernet: every op weighs 1/5, so removing conv 3x3 on edge 0 raises the loss by 1/5
    assert events["chosen"]["cell 0"]["costs"]["nor_conv_3x3"] == pytest.approx(0.2)
    # edge importance = the loss increase when the (decided) edge is removed: 3 on edge 3, 0.5 on edge 2
    importance = events["edge_importance"]["cell"]
    assert importance[3] == pytest.approx(3.0) and importance[2] == pytest.approx(0.5)


def test_pt_spreads_its_projections_over_the_last_epochs():
    net = nb201.build_supernet(nb201_config(), 1)
    alphas = list(net.alphas().values())
    strategy = _strategy("pt", {"tune": 2}, alphas, net, epochs=20)
    assert strategy.project_after == {9: 0, 11: 1, 13: 2, 15: 3, 17: 4, 19: 5} and strategy.per_round == 1
    short = _strategy("pt", {"tune": 2}, alphas, net, epochs=5)  # 3 rounds fit: 2 edges each
    assert short.project_after == {0: 0, 2: 1, 4: 2} and short.per_round == 2


def test_tenas_scores_on_hand_computed_cases():
    from ssnas.strategies.tenas import activation_patterns, dense_ranks, ntk_condition_number

    # f(x) = sum_c (W x)_c with W (2 x 2): the gradient of sample i over W is [x_i, x_i], so J J^T = 2 X X^T
    weight = torch.nn.Parameter(torch.randn(2, 2, dtype=torch.float64))
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    assert ntk_condition_number(lambda v: v @ weight.T, [weight], x) == pytest.approx(4.0)
    codes = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 0, 1], [1, 1, 1]], dtype=torch.uint8)
    assert activation_patterns(codes) == 3
    assert dense_ranks([0.5, 0.1, 0.5, 0.9], descending=True) == [1, 2, 1, 0]
    assert dense_ranks([0.5, 0.1, 0.5, 0.9], descending=False) == [1, 0, 1, 2]


@requires_fashion
def test_the_example_strategy_in_the_docs_is_one_file_that_runs(tmp_path, fashion_train, monkeypatch):
    """docs/strategies.md's Fair DARTS, dropped in as a file: the registry finds it and a tiny search runs it."""
    import re

    from ssnas import strategies

    text = (Path(__file__).resolve().parents[1] / "docs" / "strategies.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "fair_darts.py").write_text(code)
    monkeypatch.setattr(strategies, "__path__", [*strategies.__path__, str(folder)])
    assert "fair-darts" in registry.available_strategies()
    result = run_search(tiny_search_config(tmp_path / "run", **{"space": "nb201", "supernet.layers": 1,
                                                                "strategy.name": "fair-darts", "optim.epochs": 1}),
                        fashion_train)
    assert result.genotype.space == "nb201"
    cls = registry.strategy("fair-darts")
    strategy = cls(cls.check(StrategyConfig("fair-darts")), _AlphaHolder([torch.zeros(1, 2)]), ["a", "b"], 1)
    torch.testing.assert_close(strategy.op_weights({"k0": torch.zeros(1, 2)})["k0"], torch.full((1, 2), 0.5))


# ---- SGAS: Criterion 1 on a hand-computed case, the schedule, and the end of the search -------------------------

def test_sgas_criterion_1_on_a_hand_computed_case():
    from ssnas.strategies.sgas import decision_scores, edge_importance, normalise, selection_certainty

    none = nb201.PRIMITIVES.index("none")  # NB201 order: none, skip, 1x1 conv, 3x3 conv, pool
    weights = torch.tensor([[0.2, 0.2, 0.2, 0.2, 0.2],   # A: uniform over the 4 non-zero ops
                            [0.0, 1.0, 0.0, 0.0, 0.0],   # B: all on the skip
                            [0.5, 0.5, 0.0, 0.0, 0.0],   # C: half on `none`, the rest on the skip
                            [0.0, 0.5, 0.5, 0.0, 0.0]])  # D: split between two ops
    # EI (Eq. 4): the non-zero ops' total weight
    torch.testing.assert_close(edge_importance(weights, none), torch.tensor([0.8, 1.0, 0.5, 1.0]))
    # SC (Eq. 5): 1 - H / log 4 over the renormalised non-zero ops; D: 1 - log 2 / log 4 = 0.5
    torch.testing.assert_close(selection_certainty(weights, none), torch.tensor([0.0, 1.0, 1.0, 0.5]))
    # min-max: EI [0.8, 1, 0.5, 1] -> [0.6, 1, 0, 1]; S1 = EI' x SC' (Eq. 6)
    torch.testing.assert_close(normalise(torch.tensor([0.8, 1.0, 0.5, 1.0])), torch.tensor([0.6, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(decision_scores(weights, none), torch.tensor([0.0, 1.0, 0.0, 0.5]))
    assert normalise(torch.tensor([0.3, 0.3])).tolist() == [0.0, 0.0]  # SGAS: all equal -> zeros
    # without a zero op every op counts: EI is 1 everywhere
    torch.testing.assert_close(edge_importance(weights, None), torch.ones(4))


def test_sgas_decides_the_surest_edge_each_epoch_after_the_warm_up_then_ends_the_search():
    net = nb201.build_supernet(nb201_config(), 1)
    skip, conv3 = nb201.PRIMITIVES.index("skip_connect"), nb201.PRIMITIVES.index("nor_conv_3x3")
    alpha = torch.zeros(6, 5)
    alpha[:, conv3] = torch.tensor([0.1, 0.2, 0.3, 0.0, 0.5, 0.6])  # surest: edge 5, then 4, 2, 1, 0
    alpha[3, skip] = 0.05  # edge 3 leans, barely, to the skip
    alpha[0, 0] = 3.0  # edge 0 is mostly `none`: unimportant, and `none` is never chosen
    with torch.no_grad():
        net.alphas_cell.copy_(alpha)
    strategy = _strategy("sgas", {"warmup": 2}, list(net.alphas().values()), net, epochs=10)
    strategy.primitives = list(nb201.PRIMITIVES)
    assert strategy.per_round == 1  # 6 edges, decisions after epochs 2..10 fit one a round
    tools = _LossOfWeights(torch.zeros(6, 5))
    assert strategy.after_epoch(0, tools) == {} and not tools.said  # warm-up
    events = strategy.after_epoch(1, tools)  # the end of epoch 2: the first decision
    assert list(events["decided"]) == ["cell 2->3"] and events["decided"]["cell 2->3"]["op"] == "nor_conv_3x3"
    assert events["edges_left"] == 5 and tools.said == ["  SGAS decision after epoch 2: cell 2->3 -> nor_conv_3x3 "
                                                        "(5 edges left)"]
    assert strategy.alive_ops()["cell"][5] == ["nor_conv_3x3"]
    # a decided edge is one op in the forward pass, whatever its alpha
    assert strategy.op_weights(net.alphas())["cell"][5].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert strategy.stop_reason("settled") is None  # the DARTS+ rule cannot cut the decisions short
    order = [next(iter(strategy.after_epoch(epoch, tools)["decided"])) for epoch in range(2, 7)]
    # with 0->1 and 0->3 left, 0->3 leads on importance (1 against 0.17) and 0->1 on certainty, so min-max gives
    # both S1 = 0 and the tie goes to the first edge (SGAS's normalisation, as published)
    assert order == ["cell 1->3", "cell 1->2", "cell 0->2", "cell 0->1", "cell 0->3"]
    assert strategy.stop_reason(None) == "SGAS decided every edge"
    genotype = nb201.genotype_from_scores(strategy.derive_scores(net.alphas()))
    # edge 0 (0->1) goes to its strongest non-zero op although `none` leads it; edge 3 (0->3) to the skip
    assert genotype.edges == ("nor_conv_3x3",) * 3 + ("skip_connect",) + ("nor_conv_3x3",) * 2
    net.derivation = strategy.derive_scores  # as the search loop installs it
    probs = net.probs()["cell"]
    assert probs["0->3"]["skip_connect"] == 1.0 and probs["0->1"]["none"] == 0.0  # one-hot once decided
    assert strategy.after_epoch(7, tools) == {}


def test_sgas_rounds_take_several_edges_when_the_search_is_short():
    alphas = [torch.zeros(6, 5)]
    assert _strategy("sgas", {"warmup": 3}, alphas, epochs=16).per_round == 1
    assert _strategy("sgas", {"warmup": 3}, alphas, epochs=5).per_round == 2  # decisions after epochs 3, 4, 5
    assert _strategy("sgas", {"warmup": 3, "every": 2}, alphas, epochs=16).per_round == 1
    assert registry.strategy("sgas").min_epochs(registry.strategy("sgas").check(StrategyConfig("sgas"))) == 3
    with pytest.raises(UserError, match="strategy.warmup"):
        registry.strategy("sgas").check(StrategyConfig("sgas", {"warmup": 0}))


def test_strategies_rule_on_the_darts_plus_stop():
    alphas = [torch.zeros(6, 5)]
    assert _strategy("beta-darts", {}, alphas).stop_reason("settled") == "settled"
    assert _strategy("beta-darts", {}, alphas).stop_reason(None) is None
    # a blank DARTS-PT supernet derives the same cell every epoch: DARTS+ would stop it before any projection
    assert _strategy("pt", {}, alphas).stop_reason("settled") is None


@pytest.mark.slow
@requires_fashion
def test_an_sgas_search_runs_past_a_settled_cell_until_every_edge_is_decided_and_resumes_exactly(tmp_path,
                                                                                                fashion_train):
    still = {"space": "nb201", "supernet.layers": 1, "strategy.name": "sgas", "strategy.warmup": 1,
             "optim.epochs": 6, "optim.stop_when_stable": 1, "optim.arch_lr": 1e-12}
    full = run_search(tiny_search_config(tmp_path / "full", **still), fashion_train)
    # 6 edges in rounds after epochs 1..6: one each; the cell never changes (tiny arch lr) yet the search goes on
    assert full.epochs_run == 6 and full.finished
    assert all(len(ops) == 1 for ops in full.alive["cell"])
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["edges_left"] for r in rows if r["kind"] == "strategy"] == [5, 4, 3, 2, 1, 0]
    assert not [r for r in rows if r["kind"] == "early_stop"]
    last = [r for r in rows if r["kind"] == "epoch"][-1]
    assert last["entropy_cell_norm"] == 0.0  # every edge decided: no "barely decided" warning
    # killed after epoch 3 and resumed: the same decisions and weights
    run_search(tiny_search_config(tmp_path / "cut", **still, **{"run.stop_after": 3}), fashion_train)
    resumed = run_search(tiny_search_config(tmp_path / "cut", **still, **{"run.resume": True}), fashion_train)
    assert resumed.genotype == full.genotype and resumed.alive == full.alive
    assert same_supernet_weights(tmp_path / "full", tmp_path / "cut")


def test_sgas_can_freeze_the_alphas_while_the_weights_warm_up():
    alphas = [torch.zeros(6, 5)]
    strategy = _strategy("sgas", {"freeze": 2, "warmup": 4}, alphas, epochs=16)
    steps = 78  # progress counts steps done over the whole search: (epoch x steps + step + 1) / (epochs x steps)
    progress = [(epoch * steps + step + 1) / (16 * steps) for epoch, step in [(0, 0), (1, 77), (2, 0), (9, 3)]]
    assert [strategy.wants_arch_step(p) for p in progress] == [False, False, True, True]
    assert _strategy("sgas", {}, alphas).wants_arch_step(1 / 780)  # SGAS as published: from the first step
    with pytest.raises(UserError, match=r"strategy.freeze \(3\) must be below strategy.warmup \(3\)"):
        registry.strategy("sgas").check(StrategyConfig("sgas", {"freeze": 3, "warmup": 3}))


# ---- GDAS ----------------------------------------------------------------------------------------------------------

def test_gdas_draws_one_op_with_gumbel_max_and_differentiates_the_gumbel_softmax_of_that_op():
    from ssnas.strategies.gdas import gumbel_one_hot, temperature

    alpha = torch.tensor([[0.5, 1.0, -0.5, 0.0, 0.2]], requires_grad=True)
    gumbel = torch.tensor([[0.3, -0.2, 2.0, 0.1, 0.0]])  # alpha + g = [0.8, 0.8, 1.5, 0.1, 0.2]: op 2 is drawn
    alive = torch.ones(1, 5, dtype=torch.bool)
    tau = 2.0
    w = gumbel_one_hot(alpha, alive, tau, gumbel)
    assert w.tolist() == [[0.0, 0.0, 1.0, 0.0, 0.0]]  # exactly one-hot: the discrete cell's forward pass
    # dL/dalpha for L = sum(c * w): only the drawn op's h~ carries a gradient, c_2 * h~_2 (delta_2k - h~_k) / tau
    c = torch.tensor([[3.0, -1.0, 2.0, 5.0, 7.0]])
    (w * c).sum().backward()
    z = [0.8 / tau, 0.8 / tau, 1.5 / tau, 0.1 / tau, 0.2 / tau]
    soft = [math.exp(v) / sum(math.exp(u) for u in z) for v in z]
    expected = [2.0 * soft[2] * ((k == 2) - soft[k]) / tau for k in range(5)]
    torch.testing.assert_close(alpha.grad, torch.tensor([expected]))
    # every op's gradient (gradient = "all"): the same one-hot forward, sum_o c_o h~_o (delta_ok - h~_k) / tau
    alpha.grad = None
    w_all = gumbel_one_hot(alpha, alive, tau, gumbel, every_op=True)
    assert w_all.tolist() == [[0.0, 0.0, 1.0, 0.0, 0.0]]
    (w_all * c).sum().backward()
    cs = c[0].tolist()
    expected = [sum(cs[o] * soft[o] * ((o == k) - soft[k]) for o in range(5)) / tau for k in range(5)]
    torch.testing.assert_close(alpha.grad, torch.tensor([expected]))
    # a removed op is never drawn, whatever its noise
    removed = gumbel_one_hot(alpha.detach(), torch.tensor([[True, True, False, True, True]]), tau, gumbel)
    assert removed.tolist() == [[1.0, 0.0, 0.0, 0.0, 0.0]]
    # the draws follow softmax(alpha) (Gumbel-max): op frequencies over many edges
    torch.manual_seed(0)
    many = gumbel_one_hot(alpha.detach().repeat(20000, 1), alive.repeat(20000, 1), tau)
    torch.testing.assert_close(many.mean(dim=0), torch.softmax(alpha.detach()[0], -1), atol=0.01, rtol=0)
    # tau falls linearly from 10 to 0.1 (GDAS Sec. 4.1)
    assert [temperature(10.0, 0.1, p) for p in (0.0, 0.5, 1.0)] == pytest.approx([10.0, 5.05, 0.1])
    with pytest.raises(UserError, match=r"strategy.tau_min \(5.0\) must not exceed strategy.tau_max \(1.0\)"):
        registry.strategy("gdas").check(StrategyConfig("gdas", {"tau_min": 5.0, "tau_max": 1.0}))


@pytest.mark.parametrize("gradient", ["sampled", "all"])
def test_gdas_fast_kernels_agree_with_the_textbook_supernet(gradient):
    import copy

    from ssnas.kernels import use_fast_kernels

    torch.manual_seed(0)
    ref = nb201.build_supernet(nb201_config(), 1).double()
    fast = use_fast_kernels(copy.deepcopy(ref))
    x = torch.randn(4, 1, 16, 16, dtype=torch.float64)
    results = []
    for net in (fast, ref):
        strategy = _strategy("gdas", {"gradient": gradient}, list(net.alphas().values()), net)
        net.op_weighting = strategy.op_weights
        strategy.before_step(net, 0.5)
        torch.manual_seed(7)  # the same Gumbel draws for both
        loss = net(x).square().sum()
        results.append((loss, torch.autograd.grad(loss, [net.alphas_cell])[0]))
    (loss_f, grad_f), (loss_r, grad_r) = results
    torch.testing.assert_close(loss_f, loss_r, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(grad_f, grad_r, rtol=1e-10, atol=1e-10)
    assert (grad_f != 0).any()


def test_gdas_ignores_the_darts_plus_stop():
    assert _strategy("gdas", {}, [torch.zeros(6, 5)]).stop_reason("settled") is None


@pytest.mark.slow
@requires_fashion
def test_a_gdas_search_resumes_exactly_after_a_kill(tmp_path, fashion_train):
    """The Gumbel draws come from torch's global generator, which the checkpoint carries."""
    settings = {"space": "nb201", "supernet.layers": 1, "strategy.name": "gdas", "optim.epochs": 3}
    full = run_search(tiny_search_config(tmp_path / "full", **settings), fashion_train)
    run_search(tiny_search_config(tmp_path / "cut", **settings, **{"run.stop_after": 1}), fashion_train)
    resumed = run_search(tiny_search_config(tmp_path / "cut", **settings, **{"run.resume": True}), fashion_train)
    assert full.epochs_run == 3 and resumed.finished and resumed.genotype == full.genotype
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    # tau after each epoch's last step: 10 - 9.9 x epoch / 3
    assert [r["tau"] for r in rows if r["kind"] == "strategy"] == pytest.approx([6.7, 3.4, 0.1])
    assert same_supernet_weights(tmp_path / "full", tmp_path / "cut")
