"""One view of every space's genotypes: each cell as a DAG of `Edge(source, target, op)`.

Pictures, graph export, `ssnas show` and the diagnostics read genotypes only through `Genotype.cells()`, so
they work for any space without knowing its format.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Edge:
    """`op` applied to state `source`, summed into state `target` (states count the cell's inputs first)."""

    source: int
    target: int
    op: str


@dataclass(frozen=True)
class Cell:
    """A discrete cell. States 0 .. inputs-1 are its inputs, the others its nodes; each node is the sum of its
    incoming edges. The output is the channel concatenation of the states in `output` (`concat`, e.g. DARTS),
    or the single state `output[0]` itself (e.g. NAS-Bench-201)."""

    edges: tuple[Edge, ...]  # in the genotype's order
    names: tuple[str, ...]  # a label per state, for pictures and text
    inputs: int
    output: tuple[int, ...]
    concat: bool
    reduction: bool = False
    title: str = ""  # how pictures head the cell (default "<kind> cell")

    @property
    def nodes(self) -> range:
        """The states computed inside the cell."""
        return range(self.inputs, len(self.names))

    def stride(self, edge: Edge) -> int:
        """2 on the edges a reduction cell reads from its inputs (they halve the resolution, DARTS Sec. 2.1), else 1."""
        return 2 if self.reduction and edge.source < self.inputs else 1


def genotype_ops(genotype: Any) -> list[str]:
    """Every op of every cell, for statistics such as the share of parameter-free ops."""
    return [e.op for cell in genotype.cells().values() for e in cell.edges]
