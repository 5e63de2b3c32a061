"""Genotypes as Python, and where an exported genotype comes from.

`to_python` writes a self-contained module in the style of DARTS's cnn/genotypes.py (or, for a space with a string
format of its own, one string constant); `from_python` reads such files with `ast`, never executing them, and
`resolve_genotype` takes them beside everything `ssnas.arch.load_genotype` takes.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from ssnas import registry
from ssnas.arch import from_data, from_text, load_genotype
from ssnas.errors import UserError


# ---- where a genotype comes from ---------------------------------------------------------------------------------

def resolve_genotype(spec: str, space: str | None = None) -> Any:
    """`load_genotype` (a genotype .json, a run folder, an NNI dict file, a published name) plus Python files
    written by `--to python` (`cells.py`, or `cells.py:NAME` when the file holds several)."""
    path, _, name = str(spec).partition(".py:")
    file = Path(path + ".py") if name else Path(spec)
    if file.suffix == ".py":
        if not file.is_file():
            raise UserError(f"no file at {file}; pass an existing genotypes .py file")
        return from_python(file.read_text(), str(file), name or None)
    return load_genotype(spec, space or None)


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


# cnn/genotypes.py's field order, for positional `Genotype(...)` calls in files that do not define the namedtuple
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")


def _literal(node: ast.AST, where: str) -> Any:
    """A literal, or `range(a, b)` as DARTS writes concat lists; never executes anything."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("range", "list"):
        args = [_literal(a, where) for a in node.args]
        return list(range(*args)) if node.func.id == "range" else list(*args)
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise UserError(f"{where} must be a literal (lists of ('op', input) pairs, concat lists or range(a, b))") from None


def _namedtuple_fields(tree: ast.AST) -> tuple[str, ...] | None:
    """The fields of `Genotype = namedtuple('Genotype', 'a b c')` in the file, if it defines it."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "namedtuple"
                and len(node.args) == 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            return tuple(node.args[1].value.replace(",", " ").split())
    return None


def _is_space_string(node: ast.AST) -> bool:
    """A string constant in a space's own format (NAS-Bench-201's '|op~0|+...')."""
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.strip().startswith("|")


def from_python(text: str, source: str = "genotypes.py", name: str | None = None) -> Any:
    """Genotypes assigned as `NAME = Genotype(normal=..., normal_concat=..., reduce=..., reduce_concat=...)`
    (keywords or positions), or as `NAME = '|op~0|+...'` (a space's own string), read with `ast`, not executed;
    `name` picks one when the file holds several."""
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as e:
        raise UserError(f"{source} is not valid Python (line {e.lineno}: {e.msg})") from None
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and ((isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                      and node.value.func.id == "Genotype") or _is_space_string(node.value))):
            found[node.targets[0].id] = node.value
    if not found:
        raise UserError(f"{source} assigns no `NAME = Genotype(...)` nor `NAME = '|op~0|+...'`; write one with "
                        f"`ssnas export --to python`")
    if name is None and len(found) > 1:
        raise UserError(f"{source} holds {len(found)} genotypes ({', '.join(found)}); pick one as {source}:NAME")
    key = name or next(iter(found))
    if key not in found:
        raise UserError(f"{source} has no genotype {key!r}; it holds {', '.join(found)}")
    call = found[key]
    if isinstance(call, ast.Constant):
        genotype = from_text(call.value, f"{source}: {key}")
        genotype.meta.update({"name": key})
        return genotype
    fields = _namedtuple_fields(tree) or _FIELDS
    if len(call.args) > len(fields):
        raise UserError(f"{source}: {key} = Genotype(...) takes at most {len(fields)} fields, got {len(call.args)}")
    values = {f: _literal(a, f"{source}: {key}.{f}") for f, a in zip(fields, call.args)}
    for kw in call.keywords:
        if kw.arg not in fields:
            raise UserError(f"{source}: {key} = Genotype(...) has unknown field {kw.arg!r}; fields are {', '.join(fields)}")
        values[kw.arg] = _literal(kw.value, f"{source}: {key}.{kw.arg}")
    genotype = from_data(values, f"{source}: {key}")
    genotype.meta.update({"name": key})
    return genotype
