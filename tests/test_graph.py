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
    assert set(g.nodes) == {"c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "output"}
    ops = sorted((u, v, d["op"]) for u, v, d in g.edges(data=True) if d["op"] != "concat")
    # DARTS Fig. 4(a): node 3 (state 5) = skip_connect(c_{k-2}) + dil_conv_3x3(node 0)
    assert ("c_{k-2}", "3", "skip_connect") in ops and ("0", "3", "dil_conv_3x3") in ops
    assert len(ops) == 8 and g.in_degree("output") == 4
    assert all(g.in_degree(str(i)) == 2 for i in range(4))


def test_parallel_edges_from_one_state_survive():
    g = DartsGenotype((("sep_conv_3x3", 0), ("skip_connect", 0)), (2,), (("max_pool_3x3", 1), ("avg_pool_3x3", 1)), (2,))
    cell = graph.cell_graph(g, "normal")
    assert cell.number_of_edges("c_{k-2}", "0") == 2
    assert {d["op"] for _, _, d in cell.in_edges("0", data=True)} == {"sep_conv_3x3", "skip_connect"}


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
    # nodes 0-2 read only the cell inputs; node 3 reads node 0; the output reads node 3
    assert columns == {"c_{k-2}": 0, "c_{k-1}": 0, "0": 1, "1": 1, "2": 1, "3": 2, "output": 3}


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
    assert texts.count("sep_conv_3x3") == 5 and texts.count("max_pool_3x3") == 4  # every op labelled, per cell
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["normal", "reduce"]
    path = graph.save_figure(fig, tmp_path / "cells.png")
    _png_ok(path.read_bytes(), 1000, 400)


def test_pictures_refuse_genotypes_without_cells():
    class Flat:
        space = "nb201"

    with pytest.raises(UserError, match="nb201"):
        graph.cells_figure(Flat())


def test_alpha_heat_map_frames_the_derived_edges(tmp_path):
    torch.manual_seed(0)
    supernet = build_supernet(SpaceConfig(layers=3, init_channels=4), 3)
    with torch.no_grad():
        supernet.alphas_normal.normal_()
    genotype = supernet.derive()
    fig = graph.alpha_figure(supernet.probs(), genotype)
    heat_axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(heat_axes) == 2
    for ax, kind in zip(heat_axes, ("normal", "reduce")):
        frames = [p for p in ax.patches if p.get_edgecolor()[:3] == (0.0, 0.0, 0.0)]
        assert len(frames) == 8  # the 8 kept (edge, op) pairs of this cell
        assert len(ax.texts) == 14 * len(PRIMITIVES)  # one probability printed per square
        norm = ax.images[0].norm
        assert norm(1 / len(PRIMITIVES)) == pytest.approx(0.5) and norm(0.0) == pytest.approx(0.0)  # uniform is white
    _png_ok(graph.save_figure(fig, tmp_path / "alphas.png").read_bytes(), 600, 300)


def test_search_pictures_land_in_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    supernet = build_supernet(SpaceConfig(layers=3, init_channels=4, nodes=2), 3)
    writer = SummaryWriter(str(tmp_path))
    assert graph.log_search_pictures(writer, supernet, supernet.derive(), step=7)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0}).Reload()
    assert set(events.Tags()["images"]) == {"genotype/cells", "alphas/normal", "alphas/reduce"}
    image = events.Images("genotype/cells")[0]
    assert image.step == 7 and image.width > 500
    assert not graph.log_search_pictures(None, supernet, supernet.derive(), step=7)


def test_dot_text_names_every_edge():
    dot = graph.to_dot(PUBLISHED["DARTS_V2"])
    assert dot.startswith("digraph genotype {") and dot.rstrip().endswith("}")
    assert dot.count("subgraph cluster_") == 2
    assert dot.count('label="sep_conv_3x3"') == 5 and dot.count('label="max_pool_3x3"') == 5
    assert dot.count("->") == 2 * (8 + 4)  # 8 op edges and 4 concat edges per cell
    assert '"normal/c_{k-2}" -> "normal/3" [color="#7f7f7f", label="skip_connect"]' in dot
