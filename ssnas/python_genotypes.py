"""Genotypes written as Python, in the style of DARTS's cnn/genotypes.py, read with `ast` and never executed.

`read_python` returns the literal of one assignment: the fields of `NAME = Genotype(...)` as a dict, or the string
of `NAME = '|op~0|+...'` (a space's own format); `ssnas.arch.from_python` turns that into a genotype through the
registered spaces, and `ssnas.export.python.to_python` writes such files.
"""
from __future__ import annotations

import ast
from typing import Any

from ssnas.errors import UserError

# cnn/genotypes.py's field order, for positional `Genotype(...)` calls in files that do not define the namedtuple
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
# the longest list a `range(...)` may make: a concat list names a cell's nodes (DARTS: 4)
MAX_RANGE = 1024


def _literal(node: ast.AST, where: str) -> Any:
    """A literal, or `range(a, b)` as DARTS writes concat lists; never executes anything, and a range is measured
    before it is made."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("range", "list"):
        args = [_literal(a, where) for a in node.args]
        try:
            if node.func.id == "list":
                return list(*args)
            span = range(*args)
        except (TypeError, ValueError, OverflowError) as e:
            raise UserError(f"{where}: {node.func.id}(...) of {args!r} is not valid ({e})") from None
        if len(span) > MAX_RANGE:
            raise UserError(f"{where}: {span!r} would list {len(span):,} nodes; a cell has a handful")
        return list(span)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
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


def read_python(text: str, source: str = "genotypes.py", name: str | None = None) -> tuple[str, Any]:
    """(name, literal) of a genotype assigned as `NAME = Genotype(normal=..., normal_concat=..., reduce=...,
    reduce_concat=...)` (keywords or positions; the literal is a dict of the fields) or as `NAME = '|op~0|+...'`
    (a space's own string; the literal is the string), read with `ast`, not executed; `name` picks one when the
    file holds several."""
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as e:
        raise UserError(f"{source} is not valid Python (line {e.lineno}: {e.msg})") from None
    except (ValueError, RecursionError, MemoryError) as e:  # NUL bytes; nesting deeper than the parser takes
        raise UserError(f"{source} is not a genotypes file Python can parse ({type(e).__name__})") from None
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
        return key, call.value
    fields = _namedtuple_fields(tree) or _FIELDS
    if len(call.args) > len(fields):
        raise UserError(f"{source}: {key} = Genotype(...) takes at most {len(fields)} fields, got {len(call.args)}")
    values = {f: _literal(a, f"{source}: {key}.{f}") for f, a in zip(fields, call.args)}
    for kw in call.keywords:
        if kw.arg not in fields:
            raise UserError(f"{source}: {key} = Genotype(...) has unknown field {kw.arg!r}; fields are {', '.join(fields)}")
        values[kw.arg] = _literal(kw.value, f"{source}: {key}.{kw.arg}")
    return key, values
