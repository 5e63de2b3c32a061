"""A genotype as a graph, and pictures of it: DARTS's two cells, or NAS-Bench-201's one.

`cell_graph(genotype, "normal")` is a networkx MultiDiGraph (a DiGraph subclass: a node may take both of its
edges from the same state, so parallel edges must survive) with nodes `c_{k-2}`, `c_{k-1}` (the cell inputs),
`0`..`n-1` (the intermediate nodes; genotype state index j >= 2 is node `j-2`) and `output` (the concat),
and edges labelled with their op. Pictures are drawn with matplotlib (Agg) alone, so a PNG never needs
Graphviz; `to_dot` writes Graphviz text for those who have it. `alpha_figure` is the per-cell heat map of the
softmaxed architecture weights, and `log_search_pictures` puts both into TensorBoard at the end of a search.

A NAS-Bench-201 genotype is one cell ('cell'): nodes `0` (the cell's input), `1`, `2` and `3` (its output),
and an edge i -> j for every i < j, labelled with its op; `none` edges stay in the graph (so it holds the
whole genotype) and are drawn dashed.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from ssnas.errors import UserError

INPUTS = ("c_{k-2}", "c_{k-1}")
OUTPUT = "output"
# one colour per DARTS op (Okabe-Ito-like, readable in grey too); unknown ops fall back to grey
OP_COLOURS = {
    "max_pool_3x3": "#0072B2", "avg_pool_3x3": "#56B4E9", "skip_connect": "#7f7f7f", "sep_conv_3x3": "#D55E00",
    "sep_conv_5x5": "#E69F00", "dil_conv_3x3": "#009E73", "dil_conv_5x5": "#CC79A7", "none": "#000000",
    "concat": "#bbbbbb", "nor_conv_3x3": "#D55E00", "nor_conv_1x1": "#009E73",
}
NONE_COLOUR = "#999999"  # a `none` edge of a NAS-Bench-201 cell: drawn dashed and grey, it carries nothing
NODE_COLOURS = {"input": "#a6dba0", "node": "#8fb8de", "output": "#f4d35e"}
X_STEP, Y_STEP = 2.4, 1.7  # column and row spacing of the drawing, in data units (a node is 0.54 across)


def is_dag_cell(genotype: Any) -> bool:
    """A NAS-Bench-201-style genotype: one cell, one op per edge of a complete DAG (`edges`)."""
    return hasattr(genotype, "edges") and not hasattr(genotype, "normal")


def cell_kinds(genotype: Any) -> tuple[str, ...]:
    """The cells a genotype holds ('normal', 'reduce'; NAS-Bench-201: 'cell'); a UserError for genotypes with
    no cells to draw."""
    if is_dag_cell(genotype):
        return ("cell",)
    kinds = tuple(k for k in ("normal", "reduce") if hasattr(genotype, k))
    if not kinds:
        raise UserError(f"cell pictures and graphs are drawn for DARTS and NAS-Bench-201 genotypes; a "
                        f"{getattr(genotype, 'space', type(genotype).__name__)!r} genotype has no cells to draw")
    return kinds


def cell_ops(genotype: Any, kind: str) -> list[str]:
    """The ops of one cell, in the genotype's order."""
    return list(genotype.edges) if is_dag_cell(genotype) else [op for op, _ in getattr(genotype, kind)]


def state_name(j: int) -> str:
    """Genotype input index -> graph node name: 0, 1 are the cell inputs, j >= 2 is intermediate node j-2."""
    return INPUTS[j] if j < 2 else str(j - 2)


def dag_cell_graph(genotype: Any):
    """A NAS-Bench-201 cell as a MultiDiGraph: nodes '0' (input), '1', '2', '3' (output), one edge per op."""
    import networkx as nx

    from ssnas.search_spaces.nb201 import EDGES, NODES

    g = nx.MultiDiGraph(cell="cell", space=getattr(genotype, "space", "nb201"))
    for n in range(NODES):
        g.add_node(str(n), role="input" if n == 0 else "output" if n == NODES - 1 else "node")
    for (i, j), op in zip(EDGES, genotype.edges):
        g.add_edge(str(i), str(j), key=0, op=op, slot=0)
    return g


def ops_from_graph(g) -> tuple[str, ...]:
    """The inverse of `dag_cell_graph`: the ops of a NAS-Bench-201 cell, in the benchmark's edge order."""
    from ssnas.search_spaces.nb201 import EDGES

    return tuple(g.edges[str(i), str(j), 0]["op"] for i, j in EDGES)


def cell_graph(genotype: Any, kind: str = "normal"):
    """One cell as a MultiDiGraph; edge key k is the slot (0/1) of the pair inside its node. A NAS-Bench-201
    genotype gives its one cell whatever `kind` says (`dag_cell_graph`)."""
    import networkx as nx

    if cell_kinds(genotype) == ("cell",):
        return dag_cell_graph(genotype)
    pairs = getattr(genotype, kind)
    concat = getattr(genotype, f"{kind}_concat")
    g = nx.MultiDiGraph(cell=kind, space=getattr(genotype, "space", "darts"))
    for name in INPUTS:
        g.add_node(name, role="input")
    for i in range(len(pairs) // 2):
        g.add_node(str(i), role="node")
    g.add_node(OUTPUT, role="output")
    for p, (op, j) in enumerate(pairs):
        g.add_edge(state_name(j), str(p // 2), key=p % 2, op=op, slot=p % 2)
    for c in concat:
        g.add_edge(str(c - 2), OUTPUT, key=0, op="concat", slot=0)
    return g


def pairs_from_graph(g) -> tuple[tuple[tuple[str, int], ...], tuple[int, ...]]:
    """The inverse of `cell_graph`: (pairs, concat) read back from a cell's graph."""
    index = {INPUTS[0]: 0, INPUTS[1]: 1}
    nodes = sorted((n for n, d in g.nodes(data=True) if d.get("role") == "node"), key=int)
    index.update({n: int(n) + 2 for n in nodes})
    pairs = []
    for n in nodes:
        edges = sorted(g.in_edges(n, data=True), key=lambda e: e[2]["slot"])
        pairs.extend((d["op"], index[u]) for u, _, d in edges)
    concat = tuple(sorted(index[u] for u, _ in g.in_edges(OUTPUT)))
    return tuple(pairs), concat


def genotype_graph(genotype: Any):
    """Both cells in one graph, nodes prefixed '<cell>/' (what --to graphml writes)."""
    import networkx as nx

    g = nx.MultiDiGraph(space=getattr(genotype, "space", "darts"))
    for kind in cell_kinds(genotype):
        sub = cell_graph(genotype, kind)
        g.add_nodes_from((f"{kind}/{n}", {**d, "cell": kind}) for n, d in sub.nodes(data=True))
        g.add_edges_from((f"{kind}/{u}", f"{kind}/{v}", k, {**d, "cell": kind})
                         for u, v, k, d in sub.edges(keys=True, data=True))
    return g


def layout(g) -> dict[str, tuple[float, float]]:
    """Left-to-right layered positions, as Graphviz's `dot` ranks them: a node's column is its longest path
    from the inputs; nodes sharing a column are spread vertically in index order. A NAS-Bench-201 cell, a
    chain 0-1-2-3 with every skip, zig-zags (1 up, 2 down), so no edge runs through a node."""
    import networkx as nx

    if g.graph.get("cell") == "cell":
        return {"0": (0.0, 0.0), "1": (X_STEP, Y_STEP), "2": (2 * X_STEP, -Y_STEP), "3": (3 * X_STEP, 0.0)}
    rank: dict[str, int] = {}
    for n in nx.topological_sort(g):
        preds = list(g.predecessors(n))
        rank[n] = 1 + max(rank[p] for p in preds) if preds else 0
    columns: dict[int, list[str]] = {}
    for n in g.nodes:  # insertion order: inputs, 0..n-1, output
        columns.setdefault(rank[n], []).append(n)
    pos = {}
    for x, members in columns.items():
        for y, n in enumerate(members):
            pos[n] = (X_STEP * x, Y_STEP * ((len(members) - 1) / 2 - y))
    return pos


def draw_cell(genotype: Any, kind: str, ax) -> tuple[float, float, float, float]:
    """Draw one cell on a matplotlib axis: coloured edges labelled with their op, round nodes. Returns the
    drawing's extent (x0, x1, y0, y1), curves included, so several cells can share one scale."""
    from matplotlib.patches import Circle, FancyArrowPatch

    g = cell_graph(genotype, kind)
    dag = g.graph.get("cell") == "cell"  # NAS-Bench-201: plain node numbers, `none` edges dashed
    pos = layout(g)
    radius = 0.27
    circles = {}
    points = list(pos.values())
    for n, d in g.nodes(data=True):
        circles[n] = Circle(pos[n], radius, fc=NODE_COLOURS[d["role"]], ec="#333333", lw=1.0, zorder=2)
        ax.add_patch(circles[n])
        label = {"output": "c_{k}"}.get(n, n)
        as_math = d["role"] != "node" and not dag
        ax.text(*pos[n], f"${label}$" if as_math else label, ha="center", va="center", fontsize=9, zorder=4)
    for u, v, k, d in g.edges(keys=True, data=True):
        (x1, y1), (x2, y2) = pos[u], pos[v]
        rad = _bend(g, u, v, k, pos) if d["op"] != "concat" else 0.0
        colour = _edge_colour(d["op"], dag)
        # patchA/patchB clip the arrow at the node circles, whatever the figure's scale
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                     mutation_scale=12, lw=1.2 if d["op"] == "concat" else 1.8, color=colour,
                                     linestyle="--" if dag and d["op"] == "none" else "-",
                                     patchA=circles[u], patchB=circles[v], shrinkA=0, shrinkB=1, zorder=1))
        points += [_on_arc((x1, y1), (x2, y2), rad, t / 8) for t in range(1, 8)]
        if d["op"] != "concat":
            mx, my = _on_arc((x1, y1), (x2, y2), rad, _label_at((x1, y1), (x2, y2)))
            ax.text(mx, my, d["op"], fontsize=7, ha="center", va="center", color=colour, zorder=3,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_aspect("equal")
    ax.axis("off")
    if dag:
        ax.set_title(f"{genotype.to_string()}\nnode 0 = input, node 3 = output; dashed = none", fontsize=9)
    else:
        concat = ", ".join(str(c - 2) for c in getattr(genotype, f"{kind}_concat"))
        ax.set_title(f"{kind} cell  (output = concat of {concat})", fontsize=10)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    extent = (min(xs) - 0.5, max(xs) + 0.5, min(ys) - 0.5, max(ys) + 0.5)
    ax.set_xlim(*extent[:2])
    ax.set_ylim(*extent[2:])
    return extent


def _edge_colour(op: str, dag: bool = False) -> str:
    return NONE_COLOUR if dag and op == "none" else OP_COLOURS.get(op, "#555555")


def _on_arc(a: tuple[float, float], b: tuple[float, float], rad: float, t: float) -> tuple[float, float]:
    """The point at parameter t of matplotlib's arc3 curve from a to b: a quadratic Bezier whose control point
    is the chord midpoint + rad * (dy, -dx) (matplotlib.patches.ConnectionStyle.Arc3; needs equal aspect)."""
    (x1, y1), (x2, y2) = a, b
    cx, cy = (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)
    s = 1 - t
    return s * s * x1 + 2 * s * t * cx + t * t * x2, s * s * y1 + 2 * s * t * cy + t * t * y2


def _bend(g, u: str, v: str, k: int, pos: dict[str, tuple[float, float]]) -> float:
    """Curvature (matplotlib arc3 `rad`) of an edge: parallel edges bend apart; otherwise the smallest bend
    whose curve keeps clear of every other node (or, failing that, the clearest one)."""
    if g.number_of_edges(u, v) > 1:
        return 0.3 if k == 0 else -0.3
    others = [p for n, p in pos.items() if n not in (u, v)]

    def clearance(rad: float) -> float:
        points = [_on_arc(pos[u], pos[v], rad, t / 10) for t in range(1, 10)]
        return min((math.dist(p, q) for p in points for q in others), default=math.inf)

    candidates = [0.08, -0.08, 0.2, -0.2, 0.32, -0.32, 0.45, -0.45]
    for rad in candidates:
        if clearance(rad) >= 0.55:
            return rad
    return max(candidates, key=clearance)


def _label_at(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Where an op label sits on its edge (Bezier parameter): a fixed distance before the target node, so the
    two labels of a node's inputs stack beside it, where crossing edges are far apart (they meet mid-way)."""
    return min(max(1 - 1.1 / max(math.dist(a, b), 1e-6), 0.5), 0.8)


def title_for(genotype: Any, name: str = "") -> str:
    """'DARTS_V2 (DARTS paper)', 'DARTS_SIMCLR (epoch 50/50, objective simclr, cifar10)', from the meta block."""
    meta = getattr(genotype, "meta", None) or {}
    details = []
    if meta.get("epoch"):
        details.append(f"epoch {meta['epoch']}" + (f"/{meta['epochs']}" if meta.get("epochs") else ""))
    details += [f"objective {meta['objective']}"] if meta.get("objective") else []
    details += [str(meta[k]) for k in ("dataset", "source") if meta.get(k)]
    name = name or str(meta.get("name") or meta.get("run") or "")
    if not details:
        return name
    return f"{name} ({', '.join(details)})" if name else ", ".join(details)


def cells_figure(genotype: Any, title: str | None = None):
    """Both cells side by side (a matplotlib Figure; Agg, so it works on a headless machine)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    kinds = cell_kinds(genotype)
    fig = Figure(figsize=(7.0 * len(kinds), 5.0), dpi=110)
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    extents = [draw_cell(genotype, kind, ax) for ax, kind in zip(axes, kinds)]
    # one scale for all cells: same-sized nodes and aligned titles
    x0, x1 = min(e[0] for e in extents), max(e[1] for e in extents)
    y0, y1 = min(e[2] for e in extents), max(e[3] for e in extents)
    for ax in axes:
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    dag = is_dag_cell(genotype)
    used = sorted({op for kind in kinds for op in cell_ops(genotype, kind)})
    fig.legend([Line2D([], [], color=_edge_colour(op, dag), lw=2, ls="--" if dag and op == "none" else "-")
                for op in used], used, loc="lower center", ncol=min(len(used), 7), fontsize=8, frameon=False)
    heading = title if title is not None else title_for(genotype)
    if heading:
        fig.suptitle(heading, fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.86 if heading else 0.92, bottom=0.1, wspace=0.05)
    return fig


def save_figure(fig, path: str | Path, fmt: str | None = None) -> Path:
    """Write a figure (PNG, SVG, PDF from the suffix or `fmt`) through Agg, no display needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(figure_bytes(fig, fmt or path.suffix.lstrip(".") or "png"))
    return path


def figure_bytes(fig, fmt: str = "png") -> bytes:
    """A figure rendered by matplotlib's Agg canvas (never a GUI backend, never Graphviz)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, facecolor="white")
    return buffer.getvalue()


def alpha_figure(probs: Mapping[str, Mapping[str, Mapping[str, float]]], genotype: Any | None = None):
    """Heat map per cell of the softmaxed alphas, `{cell: {edge: {op: prob}}}` as `supernet.probs()` returns
    (and `alphas.json` holds): one row per edge 'j->i', one column per op, each square printed with its
    probability. Colours diverge from the uniform mixture 1/#ops (white): red above it, blue below, on one
    scale for all cells, so an undecided cell reads as pale rather than as a pattern of noise. The edges and
    ops the genotype kept are framed in black."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    kinds = list(probs)
    rows = max(len(probs[k]) for k in kinds)
    top = max(p for k in kinds for row in probs[k].values() for p in row.values())
    uniform = 1.0 / len(next(iter(probs[kinds[0]].values())))
    norm = TwoSlopeNorm(vmin=0.0, vcenter=uniform, vmax=max(top, 2 * uniform))
    fig = Figure(figsize=(4.8 * len(kinds) + 0.8, 0.3 * rows + 1.9), dpi=110)
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    image = None
    for ax, kind in zip(axes, kinds):
        edges = list(probs[kind])
        ops = list(next(iter(probs[kind].values())))
        grid = [[probs[kind][e][op] for op in ops] for e in edges]
        image = ax.imshow(grid, cmap="RdBu_r", norm=norm, aspect="auto")
        for r, row in enumerate(grid):
            for c, p in enumerate(row):
                ax.text(c, r, f"{p:.2f}", ha="center", va="center", fontsize=5.5,
                        color="white" if abs(norm(p) - 0.5) > 0.35 else "black")
        ax.set_xticks(range(len(ops)), ops, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(edges)), edges, fontsize=7)
        ax.set_title(f"{kind} cell: softmax(alpha) per edge", fontsize=9)
        for p, (op, j) in enumerate(getattr(genotype, kind, ()) if genotype is not None else ()):
            name = f"{j}->{p // 2 + 2}"
            if name in edges and op in ops:
                ax.add_patch(Rectangle((ops.index(op) - 0.5, edges.index(name) - 0.5), 1, 1, fill=False,
                                       ec="black", lw=1.6))
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    fig.colorbar(image, cax=fig.add_axes((0.93, 0.2, 0.015, 0.7)))
    return fig


def log_search_pictures(writer: Any, supernet: Any, genotype: Any, step: int) -> bool:
    """At the end of a search: the cells of the derived genotype and a heat map of each cell's alphas, as
    TensorBoard figures ('genotype/cells', 'alphas/<cell>'). Returns False (and logs nothing) when there is no
    writer, matplotlib is missing or the genotype has no DARTS cells: pictures must never fail a search."""
    if writer is None:
        return False
    try:
        import matplotlib  # noqa: F401  (optional dependency)
    except ImportError:
        return False
    if not all(hasattr(genotype, k) for k in ("normal", "reduce")):
        return False
    writer.add_figure("genotype/cells", cells_figure(genotype), step)
    probs = supernet.probs()
    for kind in probs:
        writer.add_figure(f"alphas/{kind}", alpha_figure({kind: probs[kind]}, genotype), step)
    writer.add_text("genotype/json", f"`{genotype.to_json()}`", step)
    writer.flush()
    return True


# ---- Graphviz text (no Graphviz needed to write it) ------------------------------------------------------------

def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(genotype: Any) -> str:
    """Both cells as a Graphviz digraph, one cluster per cell, in the style of DARTS's visualize.py (a
    NAS-Bench-201 genotype: its one cell, `none` edges dashed)."""
    lines = ["digraph genotype {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for kind in cell_kinds(genotype):
        g = cell_graph(genotype, kind)
        dag = g.graph.get("cell") == "cell"
        lines += [f"  subgraph cluster_{kind} {{", f"    label={_quote('NAS-Bench-201 cell' if dag else kind + ' cell')};"]
        for n, d in g.nodes(data=True):
            label = n if dag else {"output": "c_{k}"}.get(n, n)
            lines.append(f"    {_quote(f'{kind}/{n}')} [label={_quote(label)}, fillcolor={_quote(NODE_COLOURS[d['role']])}];")
        for u, v, d in g.edges(data=True):
            attrs = f"color={_quote(_edge_colour(d['op'], dag))}"
            if d["op"] != "concat":
                attrs += f", label={_quote(d['op'])}"
            if dag and d["op"] == "none":
                attrs += ", style=dashed"
            lines.append(f"    {_quote(f'{kind}/{u}')} -> {_quote(f'{kind}/{v}')} [{attrs}];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
