"""Genotypes as Python, and the name an exported genotype gets from where it came from.

`to_python` writes a self-contained module in the style of DARTS's cnn/genotypes.py (or, for a space with a string
format of its own, one string constant); `ssnas.arch.load_genotype` reads such files back (`cells.py`, or
`cells.py:NAME`) with `ast`, never executing them.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ssnas import registry
from ssnas.errors import UserError


def default_name(spec: str) -> str:
    """A Python identifier for a genotype from where it came from: DARTS_V2, runs/darts-simclr -> DARTS_SIMCLR;
    a NAS-Bench-201 string given as it is -> NB201_CELL."""
    if str(spec).strip().startswith("|"):
        return "NB201_CELL"
    stem = Path(str(spec).rstrip("/")).name
    if stem == "genotype.json":
        stem = Path(str(spec)).parent.name
    stem = Path(stem).stem if stem.endswith(".json") else stem
    ident = re.sub(r"\W+", "_", stem).strip("_").upper() or "GENOTYPE"
    return ident if not ident[0].isdigit() else f"G_{ident}"


def to_python(genotype: Any, name: str = "GENOTYPE") -> str:
    """A self-contained module holding one constant: the space's own string when it has one (NAS-Bench-201's,
    what its API's queries take), else a `Genotype` namedtuple of the JSON fields, as DARTS's cnn/genotypes.py
    writes its cells."""
    if not name.isidentifier():
        raise UserError(f"--name {name!r} is not a Python identifier; use letters, digits and _")
    space = registry.space(genotype.space)
    meta = ", ".join(f"{k}={v}" for k, v in sorted((genotype.meta or {}).items()) if k != "name")
    text = space.to_text(genotype)
    if text is not None:
        lines = [f'"""A {space.NAME} genotype, written by `ssnas export --to python` (the space\'s own string)."""', ""]
        lines += [f"# {meta}"] if meta else []
        return "\n".join([*lines, f"{name} = {text!r}", ""])
    fields = {k: v for k, v in genotype.to_json().items() if k not in ("space", "meta")}

    def literal(value: Any) -> str:  # [op, input] pairs as tuples, the way cnn/genotypes.py writes them
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return "[" + ", ".join(repr(tuple(v)) for v in value) + "]"
        return repr(value)

    lines = [f'"""A {space.NAME} genotype, written by `ssnas export --to python` (format of quark0/darts '
             f'cnn/genotypes.py)."""', "from collections import namedtuple", "",
             f"Genotype = namedtuple('Genotype', {' '.join(fields)!r})", ""]
    if meta:
        lines.append(f"# {meta}")
    lines += [f"{name} = Genotype(", *(f"    {k}={literal(v)}," for k, v in fields.items()), ")", ""]
    return "\n".join(lines)


