"""A genotype as a graph, and pictures of it, for any space: both read only `Genotype.cells()`, the uniform view of
a genotype's cells (ssnas.nas.genotype.Cell).

`cell_graph(genotype, kind)` is a networkx MultiDiGraph (a DiGraph subclass: a node may take two edges from the
same state, so parallel edges must survive). Its nodes are the cell's states, named as the view names them (DARTS:
`c_{k-2}`, `c_{k-1}`, then `2`..`n+1`; NAS-Bench-201: `0`..`3`), with role `input`, `node` or `output`; a cell whose
output is a concatenation gets an `output` node fed by `concat` edges. Edges carry their op and their slot among
the node's inputs. Pictures are drawn with matplotlib (Agg) alone, so a PNG never needs Graphviz; `to_dot` writes
Graphviz text for those who have it; `none` edges (NAS-Bench-201 keeps them) are drawn dashed, stride-2 edges wide
and marked " ↓2". `alpha_figure` is the per-cell heat map of the softmaxed architecture weights,
`trajectory_figure` each edge's weights over the epochs, and `log_epoch_pictures` puts them into TensorBoard after
every search epoch. Every picture names states as the genotype's cells() view does (DARTS: c_{k-2}, c_{k-1}, then
nodes 2, 3, ..., the numbers of genotype.json and alphas.json).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

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
        g.add_edge(cell.names[e.source], cell.names[e.target], key=slot, op=e.op, slot=slot, stride=cell.stride(e))
    if cell.concat:
        for state in cell.output:
            g.add_edge(cell.names[state], OUTPUT, key=0, op="concat", slot=0, stride=1)
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
    for n in g.nodes:  # insertion order: inputs, nodes, output
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


STRIDE_MARK = " \u21932"  # appended to the label of a stride-2 edge: "max_pool_3x3 ↓2"


def edge_label(op: str, stride: int) -> str:
    return op + (STRIDE_MARK if stride == 2 else "")


@dataclass
class DrawnCell:
    """What `draw_cell` drew: the extent (x0, x1, y0, y1), curves included, and each op label with the arc it
    sits on, so `place_labels` can slide it along the arc once the figure's scale is final."""
    extent: tuple[float, float, float, float]
    labels: list[tuple[Any, tuple[float, float], tuple[float, float], float, float]]  # text, a, b, rad, t0
    nodes: list[Any]  # the node circles, which labels must not cover


def draw_cell(genotype: Any, kind: str, ax) -> DrawnCell:
    """Draw one cell on a matplotlib axis: coloured edges labelled with their op (stride-2 edges marked
    " ↓2" and drawn wider), round nodes. Labels start at `_label_at`; `place_labels` moves them apart."""
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
        ax.text(*pos[n], f"${label}$" if as_math else label, ha="center", va="center", fontsize=10, zorder=4)
    labels = []
    for u, v, k, d in g.edges(keys=True, data=True):
        (x1, y1), (x2, y2) = pos[u], pos[v]
        rad = _bend(g, u, v, k, pos) if d["op"] != "concat" else 0.0
        colour = _edge_colour(d["op"])
        wide = d["stride"] == 2
        # patchA/patchB clip the arrow at the node circles, whatever the figure's scale
        ax.add_patch(FancyArrowPatch((x1, y1), (x2, y2), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                     mutation_scale=12, lw=1.2 if d["op"] == "concat" else 2.8 if wide else 1.8,
                                     color=colour, linestyle="--" if d["op"] == "none" else "-",
                                     patchA=circles[u], patchB=circles[v], shrinkA=0, shrinkB=1, zorder=1))
        points += [_on_arc((x1, y1), (x2, y2), rad, t / 8) for t in range(1, 8)]
        if d["op"] != "concat":
            t0 = _label_at((x1, y1), (x2, y2))
            text = ax.text(*_on_arc((x1, y1), (x2, y2), rad, t0), edge_label(d["op"], d["stride"]), fontsize=8,
                           ha="center", va="center", color=colour, zorder=3,
                           bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})
            labels.append((text, (x1, y1), (x2, y2), rad, t0))
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(cell_title(cell, kind), fontsize=10 if cell.concat else 9)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    extent = (min(xs) - 0.5, max(xs) + 0.5, min(ys) - 0.5, max(ys) + 0.5)
    ax.set_xlim(*extent[:2])
    ax.set_ylim(*extent[2:])
    return DrawnCell(extent, labels, list(circles.values()))


def _renderer(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def _overlap(a, b) -> float:
    """Area shared by two display-space boxes (0 when apart)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(fig, drawn: list[DrawnCell]) -> None:
    """Slide each op label along its own edge until it covers no other label and no node (greedy, in drawing
    order: the first free spot nearest its default, else the least covered one). Runs once the axes' limits are
    final, since a label's size in data units depends on them."""
    renderer = _renderer(fig)
    for cell in drawn:
        taken = [c.get_window_extent(renderer) for c in cell.nodes]
        for text, a, b, rad, t0 in cell.labels:
            best, best_cost = t0, math.inf
            candidates = sorted({round(min(max(t0 + d, 0.25), 0.85), 3) for d in
                                 (0, -0.08, 0.08, -0.16, 0.16, -0.24, 0.24, -0.32, -0.4, -0.48)},
                                key=lambda t: abs(t - t0))
            for t in candidates:
                text.set_position(_on_arc(a, b, rad, t))
                box = text.get_window_extent(renderer).expanded(1.04, 1.35)
                cost = sum(_overlap(box, other) for other in taken)
                if cost < best_cost:
                    best, best_cost = t, cost
                if cost == 0:
                    break
            text.set_position(_on_arc(a, b, rad, best))
            taken.append(text.get_window_extent(renderer).expanded(1.04, 1.35))


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
    drawn = [draw_cell(genotype, kind, ax) for ax, kind in zip(axes, kinds)]
    # one scale for all cells: same-sized nodes and aligned titles
    x0, x1 = min(d.extent[0] for d in drawn), max(d.extent[1] for d in drawn)
    y0, y1 = min(d.extent[2] for d in drawn), max(d.extent[3] for d in drawn)
    for ax in axes:
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    used = sorted({e.op for cell in cells.values() for e in cell.edges})
    handles = [Line2D([], [], color=_edge_colour(op), lw=2, ls="--" if op == "none" else "-") for op in used]
    names = list(used)
    if any(cell.stride(e) == 2 for cell in cells.values() for e in cell.edges):
        handles.append(Line2D([], [], color="#555555", lw=2.8))
        names.append(f"wide,{STRIDE_MARK}: stride 2")
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 7), fontsize=9, frameon=False)
    heading = title if title is not None else title_for(genotype)
    if heading:
        fig.suptitle(heading, fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.86 if heading else 0.92, bottom=0.1, wspace=0.05)
    place_labels(fig, drawn)
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


def _state_names(probs: Mapping[str, Mapping[str, Any]], genotype: Any | None) -> dict[str, Sequence[str]]:
    """Per cell, the name of each state number, from the genotype's cells() view (DARTS: c_{k-2}, c_{k-1}, 2, 3, ...)
    so the heat map and the trajectories number nodes as the cell pictures, `ssnas show` and alphas.json do."""
    cells = cells_of(genotype) if genotype is not None else {}
    return {kind: cells[kind].names if kind in cells else () for kind in probs}


def edge_title(edge: str, names: Sequence[str]) -> str:
    """'0->2' as '$c_{k-2}$ → 2' (state numbers as the cell view names them; math text for the c_{...} names)."""
    def name(i: str) -> str:
        label = names[int(i)] if i.isdigit() and int(i) < len(names) else i
        return f"${label}$" if "_{" in label else label

    source, _, target = edge.partition("->")
    return f"{name(source)} \u2192 {name(target)}"


def alpha_figure(probs: Mapping[str, Mapping[str, Mapping[str, float]]], genotype: Any | None = None):
    """Heat map per cell of the softmaxed alphas, `{cell: {edge: {op: prob}}}` as `supernet.probs()` returns
    (and `alphas.json` holds): one row per edge, one column per op, each square printed with its probability.

    Colours are relative: they diverge from the uniform mixture 1/#ops (white), red above it and blue below, and
    each cell's scale ends at its own largest deviation, so an early or undecided search still shows its pattern
    (the colour bar and the title give the scale; the printed values carry as many digits as the spread needs).
    The edges and ops the genotype kept are framed in black."""
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    kinds = list(probs)
    names = _state_names(probs, genotype)
    rows = max(len(probs[k]) for k in kinds)
    n_ops = len(next(iter(probs[kinds[0]].values())))
    fig = Figure(figsize=(max(5.5, 0.85 * n_ops + 2.4) * len(kinds), 0.36 * rows + 2.6), dpi=110,
                 layout="constrained")
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds):
        edges = list(probs[kind])
        ops = list(next(iter(probs[kind].values())))
        uniform = 1.0 / len(ops)
        grid = [[probs[kind][e][op] for op in ops] for e in edges]
        spread = max(max(abs(p - uniform) for row in grid for p in row), 1e-12)
        norm = TwoSlopeNorm(vmin=uniform - spread, vcenter=uniform, vmax=uniform + spread)
        digits = min(max(2, 1 - math.floor(math.log10(spread))), 6)
        image = ax.imshow(grid, cmap="RdBu_r", norm=norm, aspect="auto")
        for r, row in enumerate(grid):
            for c, p in enumerate(row):
                ax.text(c, r, f"{p:.{digits}f}", ha="center", va="center", fontsize=7 if digits <= 3 else 6,
                        color="white" if abs(norm(p) - 0.5) > 0.35 else "black")
        ax.set_xticks(range(len(ops)), ops, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(edges)), [edge_title(e, names[kind]) for e in edges], fontsize=8)
        ax.set_title(f"{kind} cell: softmax(alpha) per edge\ncolour: relative to uniform {uniform:.3g}, "
                     f"\u00b1{spread:.2g}", fontsize=9)
        kept = cells_of(genotype)[kind].edges if genotype is not None else ()
        for e in kept:
            name = f"{e.source}->{e.target}"
            if name in edges and e.op in ops:
                ax.add_patch(Rectangle((ops.index(e.op) - 0.5, edges.index(name) - 0.5), 1, 1, fill=False,
                                       ec="black", lw=1.6))
        bar = fig.colorbar(image, ax=ax, shrink=0.8, pad=0.02)
        bar.ax.tick_params(labelsize=7)
    return fig


def trajectory_figure(history: Sequence[Mapping[str, Any]], kind: str, genotype: Any | None = None):
    """Each edge's op weights over the epochs, one small plot per edge (rows: the node the edge feeds), from the
    search's history (`{"epoch": e, "probs": {cell: {edge: {op: p}}}}` per epoch, epochs from 1). Every plot
    has its own y range, so small movements show; an edge the genotype keeps has its title in bold."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    probs = history[-1]["probs"][kind]
    edges = list(probs)
    ops = list(next(iter(probs.values())))
    names = _state_names({kind: probs}, genotype)[kind]
    by_target: dict[str, list[str]] = {}
    for e in edges:
        by_target.setdefault(e.partition("->")[2], []).append(e)
    rows, cols = len(by_target), max(len(v) for v in by_target.values())
    kept = {f"{e.source}->{e.target}": e.op for e in cells_of(genotype)[kind].edges} if genotype is not None else {}
    width, height = 2.4 * cols + 0.7, 1.75 * rows + 1.1
    fig = Figure(figsize=(width, height), dpi=90)
    # fixed margins in inches (a constrained layout costs more than the drawing itself, every epoch)
    fig.subplots_adjust(left=0.65 / width, right=1 - 0.15 / width, bottom=1.0 / height, top=1 - 0.45 / height,
                        wspace=0.45, hspace=0.55)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, incoming in enumerate(by_target.values()):
        for c in range(cols):
            ax = axes[r][c]
            if c >= len(incoming):
                ax.axis("off")
                continue
            e = incoming[c]
            for op in ops:
                ax.plot(epochs, [h["probs"][kind][e][op] for h in history], color=_edge_colour(op),
                        ls="--" if op == "none" else "-", lw=2.2 if kept.get(e) == op else 1.2,
                        marker="o" if len(epochs) < 4 else None, ms=3)
            title = edge_title(e, names) + (f": {kept[e]}" if e in kept else "")
            ax.set_title(title, fontsize=8, fontweight="bold" if e in kept else "normal")
            ax.tick_params(labelsize=7)
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if r == rows - 1:
                ax.set_xlabel("epoch", fontsize=7)
    fig.suptitle(f"{kind} cell: softmax(alpha) of each op over the epochs (thick: the op the genotype keeps)",
                 fontsize=9)
    fig.legend([Line2D([], [], color=_edge_colour(op), ls="--" if op == "none" else "-") for op in ops], ops,
               loc="lower center", ncol=min(len(ops), 4), fontsize=8, frameon=False)
    return fig


def log_epoch_pictures(writer: Any, history: Sequence[Mapping[str, Any]], genotype: Any, step: int) -> bool:
    """After every search epoch: the cells of the derived genotype, a heat map of each cell's alphas and each
    edge's alpha trajectory so far, as TensorBoard figures ('genotype/cells', 'alphas/<cell>',
    'alpha_trajectories/<cell>'). Returns False (and logs nothing) when there is no writer or matplotlib is
    missing: pictures must never fail a search."""
    if writer is None or not history:
        return False
    try:
        import matplotlib  # noqa: F401  (optional dependency)
    except ImportError:
        return False
    writer.add_figure("genotype/cells", cells_figure(genotype), step)
    probs = history[-1]["probs"]
    for kind in probs:
        writer.add_figure(f"alphas/{kind}", alpha_figure({kind: probs[kind]}, genotype), step)
        writer.add_figure(f"alpha_trajectories/{kind}", trajectory_figure(history, kind, genotype), step)
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
                attrs += f", label={_quote(edge_label(d['op'], d['stride']))}"
            if d["stride"] == 2:
                attrs += ", penwidth=2.5"
            if d["op"] == "none":
                attrs += ", style=dashed"
            lines.append(f"    {_quote(f'{kind}/{u}')} -> {_quote(f'{kind}/{v}')} [{attrs}];")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"
