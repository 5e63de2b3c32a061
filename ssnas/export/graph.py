"""A genotype as a graph, and pictures of it, for any space: both read only `Genotype.cells()`, the uniform view of
a genotype's cells (ssnas.nas.genotype.Cell).

`cell_graph(genotype, kind)` is a networkx MultiDiGraph (a DiGraph subclass: a node may take two edges from the
same state, so parallel edges must survive). Its nodes are the cell's states, named as the view names them (DARTS:
`c_{k-2}`, `c_{k-1}`, then `0`..`n-1`; NAS-Bench-201: `0`..`3`), with role `input`, `node` or `output`; a cell whose
output is a concatenation gets an `output` node fed by `concat` edges. Edges carry their op and their slot among
the node's inputs. Pictures are drawn with matplotlib (Agg) alone, so a PNG never needs Graphviz; `to_dot` writes
Graphviz text for those who have it; `none` edges (NAS-Bench-201 keeps them) are drawn dashed. `alpha_figure` is
the per-cell heat map of the softmaxed architecture weights, and `log_search_pictures` puts both into
TensorBoard at the end of a search.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from ssnas.errors import UserError
from ssnas.nas.genotype import Cell, Edge

OUTPUT = "output"
# one colour per op (Okabe-Ito-like, readable in grey too); unknown ops fall back to grey
OP_COLOURS = {
    "max_pool_3x3": "#0072B2", "avg_pool_3x3": "#56B4E9", "skip_connect": "#7f7f7f", "sep_conv_3x3": "#D55E00",
    "sep_conv_5x5": "#E69F00", "dil_conv_3x3": "#009E73", "dil_conv_5x5": "#CC79A7",
    "concat": "#bbbbbb", "nor_conv_3x3": "#D55E00", "nor_conv_1x1": "#009E73",
}
NONE_COLOUR = "#999999"  # a `none` edge: drawn dashed and grey, it carries nothing
NODE_COLOURS = {"input": "#a6dba0", "node": "#8fb8de", "output": "#f4d35e"}
X_STEP, Y_STEP = 2.4, 1.7  # column and row spacing of the drawing, in data units (a node is 0.54 across)


def cells_of(genotype: Any) -> dict[str, Cell]:
    """The genotype's cells; a UserError for anything without cells to draw."""
    cells = getattr(genotype, "cells", None)
    if not callable(cells):
        raise UserError(f"cell pictures and graphs are drawn from a genotype's cells; a "
                        f"{getattr(genotype, 'space', type(genotype).__name__)!r} genotype has no cells to draw")
    return cells()


def _role(cell: Cell, state: int) -> str:
    if state < cell.inputs:
        return "input"
    return "output" if not cell.concat and state in cell.output else "node"


def cell_graph(genotype: Any, kind: str):
    """One cell as a MultiDiGraph (see the module docstring); edge key = slot among the target's inputs."""
    import networkx as nx

    cell = cells_of(genotype)[kind]
    g = nx.MultiDiGraph(cell=kind, space=getattr(genotype, "space", ""), title=cell.title)
    for state, name in enumerate(cell.names):
        g.add_node(name, role=_role(cell, state), state=state)
    if cell.concat:
        g.add_node(OUTPUT, role="output", state=-1)
    slots: dict[int, int] = {}
    for e in cell.edges:
        slot = slots[e.target] = slots.get(e.target, -1) + 1
        g.add_edge(cell.names[e.source], cell.names[e.target], key=slot, op=e.op, slot=slot)
    if cell.concat:
        for state in cell.output:
            g.add_edge(cell.names[state], OUTPUT, key=0, op="concat", slot=0)
    return g


def edges_from_graph(g) -> tuple[tuple[Edge, ...], tuple[int, ...]]:
    """The inverse of `cell_graph`: the cell's edges (in the genotype's order) and its output states."""
    state = {n: int(d["state"]) for n, d in g.nodes(data=True)}
    edges, output = [], []
    for n in sorted((n for n in g if state[n] >= 0), key=state.get):
        incoming = sorted((e for e in g.in_edges(n, data=True)), key=lambda e: e[2]["slot"])
        edges.extend(Edge(state[u], state[n], d["op"]) for u, _, d in incoming)
        if g.nodes[n]["role"] == "output":
            output.append(state[n])
    if OUTPUT in g:
        output = sorted(state[u] for u, _ in g.in_edges(OUTPUT))
    return tuple(edges), tuple(output)


def genotype_graph(genotype: Any):
    """Every cell in one graph, nodes prefixed '<cell>/' (what --to graphml writes)."""
    import networkx as nx

    g = nx.MultiDiGraph(space=getattr(genotype, "space", ""))
    for kind in cells_of(genotype):
        sub = cell_graph(genotype, kind)
        g.add_nodes_from((f"{kind}/{n}", {**d, "cell": kind}) for n, d in sub.nodes(data=True))
        g.add_edges_from((f"{kind}/{u}", f"{kind}/{v}", k, {**d, "cell": kind})
                         for u, v, k, d in sub.edges(keys=True, data=True))
    return g


def layout(g) -> dict[str, tuple[float, float]]:
    """Left-to-right layered positions, as Graphviz's `dot` ranks them: a node's column is its longest path
    from the inputs; nodes sharing a column are spread vertically in index order. A cell that is one chain with
    every skip (NAS-Bench-201's 0-1-2-3) zig-zags (1 up, 2 down), so no edge runs through a node."""
    import networkx as nx

    rank: dict[str, int] = {}
    for n in nx.topological_sort(g):
        preds = list(g.predecessors(n))
        rank[n] = 1 + max(rank[p] for p in preds) if preds else 0
    columns: dict[int, list[str]] = {}
    for n in g.nodes:  # insertion order: inputs, 0..n-1, output
        columns.setdefault(rank[n], []).append(n)
    pos = {}
    chain = all(len(members) == 1 for members in columns.values())
    for x, members in columns.items():
        for y, n in enumerate(members):
            if chain:  # zig-zag the inner nodes of a chain
                pos[n] = (X_STEP * x, 0.0 if x in (0, len(columns) - 1) else Y_STEP * (1 if x % 2 else -1))
            else:
                pos[n] = (X_STEP * x, Y_STEP * ((len(members) - 1) / 2 - y))
    return pos


def draw_cell(genotype: Any, kind: str, ax) -> tuple[float, float, float, float]:
    """Draw one cell on a matplotlib axis: coloured edges labelled with their op, round nodes. Returns the
    drawing's extent (x0, x1, y0, y1), curves included, so several cells can share one scale."""
    from matplotlib.patches import Circle, FancyArrowPatch

    cell = cells_of(genotype)[kind]
    g = cell_graph(genotype, kind)
    pos = layout(g)
    radius = 0.27
    circles = {}
    points = list(pos.values())
    for n, d in g.nodes(data=True):
        circles[n] = Circle(pos[n], radius, fc=NODE_COLOURS[d["role"]], ec="#333333", lw=1.0, zorder=2)
        ax.add_patch(circles[n])
        label = {OUTPUT: "c_{k}"}.get(n, n)
        as_math = "_{" in label  # c_{k-2}, c_{k-1}, c_{k}
        ax.text(*pos[n], f"${label}$" if as_math else label, ha="center", va="center", fontsize=9, zorder=4)
    for u, v, k, d in g.edges(keys=True, data=True):
        (x1, y1), (x2, y2) = pos[u], pos[v]
        rad = _bend(g, u, v, k, pos) if d["op"] != "concat" else 0.0
        colour = _edge_colour(d["op"])
        # patchA/patchB clip the arrow at the node circles, whatever the figure's scale
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                     mutation_scale=12, lw=1.2 if d["op"] == "concat" else 1.8, color=colour,
                                     linestyle="--" if d["op"] == "none" else "-",
                                     patchA=circles[u], patchB=circles[v], shrinkA=0, shrinkB=1, zorder=1))
        points += [_on_arc((x1, y1), (x2, y2), rad, t / 8) for t in range(1, 8)]
        if d["op"] != "concat":
            mx, my = _on_arc((x1, y1), (x2, y2), rad, _label_at((x1, y1), (x2, y2)))
            ax.text(mx, my, d["op"], fontsize=7, ha="center", va="center", color=colour, zorder=3,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85})
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(cell_title(cell, kind), fontsize=10 if cell.concat else 9)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    extent = (min(xs) - 0.5, max(xs) + 0.5, min(ys) - 0.5, max(ys) + 0.5)
    ax.set_xlim(*extent[:2])
    ax.set_ylim(*extent[2:])
    return extent


def cell_title(cell: Cell, kind: str) -> str:
    """'normal cell  (output = concat of 0, 1, 2, 3)', or for a cell whose output is one node its title and
    'node 0 = input, node 3 = output; dashed = none'."""
    heading = cell.title or f"{kind} cell"
    if cell.concat:
        return f"{heading}  (output = concat of {', '.join(cell.names[s] for s in cell.output)})"
    inputs = ", ".join(cell.names[s] for s in range(cell.inputs))
    return f"{heading}\nnode {inputs} = input, node {cell.names[cell.output[0]]} = output; dashed = none"


def _edge_colour(op: str) -> str:
    return NONE_COLOUR if op == "none" else OP_COLOURS.get(op, "#555555")


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

    cells = cells_of(genotype)
    kinds = list(cells)
    fig = Figure(figsize=(7.0 * len(kinds), 5.0), dpi=110)
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    extents = [draw_cell(genotype, kind, ax) for ax, kind in zip(axes, kinds)]
    # one scale for all cells: same-sized nodes and aligned titles
    x0, x1 = min(e[0] for e in extents), max(e[1] for e in extents)
    y0, y1 = min(e[2] for e in extents), max(e[3] for e in extents)
    for ax in axes:
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    used = sorted({e.op for cell in cells.values() for e in cell.edges})
    fig.legend([Line2D([], [], color=_edge_colour(op), lw=2, ls="--" if op == "none" else "-")
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
        kept = cells_of(genotype)[kind].edges if genotype is not None else ()
        for e in kept:
            name = f"{e.source}->{e.target}"
            if name in edges and e.op in ops:
                ax.add_patch(Rectangle((ops.index(e.op) - 0.5, edges.index(name) - 0.5), 1, 1, fill=False,
                                       ec="black", lw=1.6))
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    fig.colorbar(image, cax=fig.add_axes((0.93, 0.2, 0.015, 0.7)))
    return fig


def log_search_pictures(writer: Any, supernet: Any, genotype: Any, step: int) -> bool:
    """At the end of a search: the cells of the derived genotype and a heat map of each cell's alphas, as
    TensorBoard figures ('genotype/cells', 'alphas/<cell>'). Returns False (and logs nothing) when there is no
    writer or matplotlib is missing: pictures must never fail a search."""
    if writer is None:
        return False
    try:
        import matplotlib  # noqa: F401  (optional dependency)
    except ImportError:
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
    """Every cell as a Graphviz digraph, one cluster per cell, in the style of DARTS's visualize.py (`none` edges
    dashed)."""
    lines = ["digraph genotype {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
             '  edge [fontname="Helvetica", fontsize=10];']
    for kind, cell in cells_of(genotype).items():
        g = cell_graph(genotype, kind)
        lines += [f"  subgraph cluster_{kind} {{", f"    label={_quote(cell.title or kind + ' cell')};"]
        for n, d in g.nodes(data=True):
            label = {OUTPUT: "c_{k}"}.get(n, n)
            lines.append(f"    {_quote(f'{kind}/{n}')} [label={_quote(label)}, fillcolor={_quote(NODE_COLOURS[d['role']])}];")
        for u, v, d in g.edges(data=True):
            attrs = f"color={_quote(_edge_colour(d['op']))}"
            if d["op"] != "concat":
                attrs += f", label={_quote(d['op'])}"
            if d["op"] == "none":
                attrs += ", style=dashed"
            lines.append(f"    {_quote(f'{kind}/{u}')} -> {_quote(f'{kind}/{v}')} [{attrs}];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
