"""The genotype as a graph, the cell pictures, the alpha heat map and the TensorBoard pictures."""
from __future__ import annotations

import io

import networkx as nx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ssnas.errors import UserError
from ssnas.export import graph
from ssnas.nas.space import SpaceConfig
from ssnas.search_spaces.darts import PRIMITIVES, PUBLISHED, DartsGenotype, build_supernet

OPS = PRIMITIVES[1:]


@st.composite
def genotypes(draw, max_nodes: int = 5) -> DartsGenotype:
    """Any valid DARTS genotype: 1..max_nodes nodes, each with two (op, earlier state) pairs, repeats allowed."""
    nodes = draw(st.integers(1, max_nodes))

    def cell():
        return tuple((draw(st.sampled_from(OPS)), draw(st.integers(0, i + 1))) for i in range(nodes) for _ in (0, 1))

    def concat():
        return tuple(sorted(draw(st.sets(st.integers(2, nodes + 1), min_size=1))))

    return DartsGenotype(cell(), concat(), cell(), concat())


def test_darts_v2_normal_cell_graph_is_the_paper_cell():
    g = graph.cell_graph(PUBLISHED["DARTS_V2"], "normal")
    assert isinstance(g, nx.DiGraph)  # a MultiDiGraph is a DiGraph that keeps parallel edges
    # nodes are numbered 2..5, as in genotype.json's input indices and concat (one numbering everywhere)
    assert set(g.nodes) == {"c_{k-2}", "c_{k-1}", "2", "3", "4", "5", "output"}
    ops = sorted((u, v, d["op"]) for u, v, d in g.edges(data=True) if d["op"] != "concat")
    # DARTS Fig. 4(a): the last node (state 5) = skip_connect(c_{k-2}) + dil_conv_3x3(state 2)
    assert ("c_{k-2}", "5", "skip_connect") in ops and ("2", "5", "dil_conv_3x3") in ops
    assert len(ops) == 8 and g.in_degree("output") == 4
    assert all(g.in_degree(str(i)) == 2 for i in range(2, 6))


def test_parallel_edges_from_one_state_survive():
    g = DartsGenotype((("sep_conv_3x3", 0), ("skip_connect", 0)), (2,), (("max_pool_3x3", 1), ("avg_pool_3x3", 1)), (2,))
    cell = graph.cell_graph(g, "normal")
    assert cell.number_of_edges("c_{k-2}", "2") == 2
    assert {d["op"] for _, _, d in cell.in_edges("2", data=True)} == {"sep_conv_3x3", "skip_connect"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(genotypes())
def test_graph_holds_the_whole_genotype(g):
    for kind in ("normal", "reduce"):
        cell = g.cells()[kind]
        assert graph.edges_from_graph(graph.cell_graph(g, kind)) == (cell.edges, cell.output)


@settings(max_examples=15, deadline=None)
@given(genotypes())
def test_graphml_round_trip_is_lossless(g):
    buffer = io.BytesIO()
    nx.write_graphml(graph.genotype_graph(g), buffer)
    back = nx.read_graphml(io.BytesIO(buffer.getvalue()), force_multigraph=True)
    for kind in ("normal", "reduce"):
        sub = back.subgraph([n for n, d in back.nodes(data=True) if d["cell"] == kind])
        sub = nx.relabel_nodes(sub, lambda n: n.split("/", 1)[1])
        assert graph.edges_from_graph(sub) == (g.cells()[kind].edges, g.cells()[kind].output)


def test_layout_ranks_nodes_by_longest_path_from_the_inputs():
    pos = graph.layout(graph.cell_graph(PUBLISHED["DARTS_V2"], "normal"))
    columns = {n: round(x / graph.X_STEP) for n, (x, _) in pos.items()}
    # nodes 2-4 read only the cell inputs; node 5 reads node 2; the output reads node 5
    assert columns == {"c_{k-2}": 0, "c_{k-1}": 0, "2": 1, "3": 1, "4": 1, "5": 2, "output": 3}


def test_label_point_lies_on_matplotlibs_own_arc():
    from matplotlib.patches import ConnectionStyle

    # hand-computed: chord (0,0)-(2,0), rad 0.5 -> control (1, -1); Bezier at t=1/2 -> (1, -0.5)
    assert graph._on_arc((0.0, 0.0), (2.0, 0.0), 0.5, 0.5) == pytest.approx((1.0, -0.5))
    path = ConnectionStyle.Arc3(rad=0.3).connect((0.5, 1.0), (3.0, -2.0))  # the unclipped curve
    (x0, y0), (cx, cy), (x2, y2) = path.vertices[:3]
    t = 0.7
    expected = ((1 - t) ** 2 * x0 + 2 * (1 - t) * t * cx + t * t * x2, (1 - t) ** 2 * y0 + 2 * (1 - t) * t * cy + t * t * y2)
    assert graph._on_arc((0.5, 1.0), (3.0, -2.0), 0.3, t) == pytest.approx(expected)


def _png_ok(data: bytes, min_width: int, min_height: int) -> None:
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.verify()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.width >= min_width and image.height >= min_height
    assert image.width <= 4000 and image.height <= 4000
    assert len(image.getcolors(maxcolors=1 << 20)) > 20  # drawn, not blank


def test_cells_picture_is_a_png_of_both_cells(tmp_path):
    fig = graph.cells_figure(PUBLISHED["DARTS_V1"], "DARTS_V1")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    # every op labelled; DARTS_V1's reduction cell reads its inputs through 4 max pools (stride 2, marked)
    assert texts.count("sep_conv_3x3") == 5 and texts.count(f"max_pool_3x3{graph.STRIDE_MARK}") == 4
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["normal", "reduce"]
    path = graph.save_figure(fig, tmp_path / "cells.png")
    _png_ok(path.read_bytes(), 1000, 400)


def test_pictures_refuse_genotypes_without_cells():
    class Flat:
        space = "nb201"

    with pytest.raises(UserError, match="nb201"):
        graph.cells_figure(Flat())


def _inside_figure(fig) -> None:
    """Nothing drawn reaches past the figure's edge (a clipped label would)."""
    renderer = graph._renderer(fig)
    tight, full = fig.get_tightbbox(renderer), fig.bbox_inches
    assert tight.x0 >= full.x0 - 0.01 and tight.y0 >= full.y0 - 0.01, (tight, full)
    assert tight.x1 <= full.x1 + 0.01 and tight.y1 <= full.y1 + 0.01, (tight, full)


def _search_history(epochs=3, nodes=4):
    torch.manual_seed(0)
    supernet = build_supernet(SpaceConfig(layers=3, init_channels=4, nodes=nodes), 3)
    history = []
    for epoch in range(1, epochs + 1):
        with torch.no_grad():
            supernet.alphas_normal.add_(1e-3 * torch.randn_like(supernet.alphas_normal))
            supernet.alphas_reduce.add_(1e-3 * torch.randn_like(supernet.alphas_reduce))
        history.append({"epoch": epoch, "probs": supernet.probs()})
    return supernet, history


def test_alpha_heat_map_frames_the_derived_edges_on_a_relative_scale(tmp_path):
    supernet, history = _search_history(epochs=1)
    genotype = supernet.derive()
    probs = history[-1]["probs"]
    fig = graph.alpha_figure(probs, genotype)
    heat_axes = [ax for ax in fig.axes if ax.images]
    assert len(heat_axes) == 2
    uniform = 1 / len(PRIMITIVES)
    for ax, kind in zip(heat_axes, ("normal", "reduce")):
        frames = [p for p in ax.patches if p.get_edgecolor()[:3] == (0.0, 0.0, 0.0)]
        assert len(frames) == 8  # the 8 kept (edge, op) pairs of this cell
        assert len(ax.texts) == 14 * len(PRIMITIVES)  # one probability printed per square
        spread = max(abs(p - uniform) for row in probs[kind].values() for p in row.values())
        assert spread < 1e-2  # a search this young is nearly uniform...
        norm = ax.images[0].norm
        # ... yet its largest deviation takes the full colour range: the scale is relative to the cell
        assert norm(uniform) == pytest.approx(0.5) and norm(uniform + spread) == pytest.approx(1.0)
        values = {t.get_text() for t in ax.texts}
        assert len(values) > 20  # enough digits printed to tell the squares apart
        rows = [t.get_text() for t in ax.get_yticklabels()]
        assert rows[0] == "$c_{k-2}$ \u2192 2" and rows[-1] == "4 \u2192 5"  # the cell pictures' names
    _inside_figure(fig)
    _png_ok(graph.save_figure(fig, tmp_path / "alphas.png").read_bytes(), 600, 300)


def test_alpha_trajectories_plot_every_edge_and_op_over_the_epochs(tmp_path):
    supernet, history = _search_history(epochs=3)
    genotype = supernet.derive()
    fig = graph.trajectory_figure(history, "normal", genotype)
    plots = [ax for ax in fig.axes if ax.lines]
    assert len(plots) == 14  # one per edge
    assert all(len(ax.lines) == len(PRIMITIVES) and list(ax.lines[0].get_xdata()) == [1, 2, 3] for ax in plots)
    bold = [ax for ax in plots if ax.title.get_fontweight() == "bold"]
    assert len(bold) == len({(e.source, e.target) for e in genotype.cells()["normal"].edges})  # the kept edges
    _inside_figure(fig)
    _png_ok(graph.save_figure(fig, tmp_path / "trajectories.png").read_bytes(), 600, 400)


def _label_boxes(fig):
    renderer = graph._renderer(fig)
    ops = set(PRIMITIVES)
    return [t.get_window_extent(renderer) for ax in fig.axes for t in ax.texts
            if t.get_text().replace(graph.STRIDE_MARK, "") in ops]


def _no_overlaps(fig) -> None:
    boxes = _label_boxes(fig)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert graph._overlap(a, b) == 0.0, (a, b)
    _inside_figure(fig)


@pytest.mark.parametrize("name", ["DARTS_V1", "DARTS_V2"])
def test_cell_pictures_have_no_overlapping_labels_and_mark_stride_two(name):
    genotype = PUBLISHED[name]
    fig = graph.cells_figure(genotype, name)
    _no_overlaps(fig)
    normal, reduce = (ax for ax in fig.axes if ax.get_title())
    marked = [t.get_text() for t in reduce.texts if t.get_text().endswith(graph.STRIDE_MARK)]
    reads_inputs = [e for e in genotype.cells()["reduce"].edges if e.source < 2]
    assert len(marked) == len(reads_inputs) > 0  # every edge the reduction cell reads from its inputs
    assert not any(t.get_text().endswith(graph.STRIDE_MARK) for t in normal.texts)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(genotypes(max_nodes=4))
def test_cell_pictures_of_any_genotype_keep_labels_apart(g):
    _no_overlaps(graph.cells_figure(g, "random"))


@pytest.mark.slow
def test_search_pictures_land_in_tensorboard_every_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    supernet, history = _search_history(epochs=2, nodes=2)
    writer = SummaryWriter(str(tmp_path))
    assert graph.log_epoch_pictures(writer, history[:1], supernet.derive(), step=3)
    assert graph.log_epoch_pictures(writer, history, supernet.derive(), step=7)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    assert set(events.Tags()["images"]) == {"genotype/cells", "alphas/normal", "alphas/reduce",
                                             "alpha_trajectories/normal", "alpha_trajectories/reduce"}
    assert [i.step for i in events.Images("alphas/normal")] == [3, 7]
    image = events.Images("genotype/cells")[-1]
    assert image.step == 7 and image.width > 500
    assert not graph.log_epoch_pictures(None, history, supernet.derive(), step=7)


def test_dot_text_names_every_edge():
    dot = graph.to_dot(PUBLISHED["DARTS_V2"])
    assert dot.startswith("digraph genotype {") and dot.rstrip().endswith("}")
    assert dot.count("subgraph cluster_") == 2
    # DARTS_V2's reduction cell reads its inputs through 5 max pools: stride 2, marked in the label
    assert dot.count('label="sep_conv_3x3"') == 5 and dot.count(f'label="max_pool_3x3{graph.STRIDE_MARK}"') == 5
    assert dot.count("->") == 2 * (8 + 4)  # 8 op edges and 4 concat edges per cell
    assert '"normal/c_{k-2}" -> "normal/5" [color="#7f7f7f", label="skip_connect"]' in dot
