"""Where a genotype comes from: a JSON file, a run folder, the name of a published cell, or a space's own
string (NAS-Bench-201's), given directly or in a text file.

    load_genotype("runs/darts-simclr/genotype.json")   # a file written by `ssnas search`
    load_genotype("runs/darts-simclr")                 # a run folder: its genotype.json
    load_genotype("darts_v2")                          # a published cell, any case
    load_genotype("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    load_genotype("cell.txt")                          # a file holding that string

A space module reads its strings with `genotype_from_string(text, source)`, which returns None for text in
another format; nb201 does.

`resnet18` is no genotype: `ssnas.network.build_encoder` builds that backbone itself. Every failure is a
one-line UserError naming the problem and the fix.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Callable

from ssnas.errors import UserError

# Extra JSON formats (e.g. NNI's flat architecture dicts). A parser gets (data, source, space) and returns a
# genotype, or None when the data is not in its format. ---- HOOK: other formats plug in here ----
# A module listed in PARSER_MODULES that exists and defines `parse_genotype(data, source, space)` is asked
# first, before the native {"space": ..., "normal": ...} format; `register_parser` adds one at run time.
PARSER_MODULES = ("ssnas.export",)
_PARSERS: list[Callable[[Any, str, str | None], Any]] = []


def register_parser(parser: Callable[[Any, str, str | None], Any]) -> None:
    if parser not in _PARSERS:
        _PARSERS.append(parser)


def _parsers() -> list[Callable[[Any, str, str | None], Any]]:
    found = list(_PARSERS)
    for name in PARSER_MODULES:
        if importlib.util.find_spec(name) is not None:
            parse = getattr(importlib.import_module(name), "parse_genotype", None)
            if callable(parse) and parse not in found:
                found.append(parse)
    return found


def _normalise(name: str) -> str:
    return name.strip().upper().replace("-", "_")


def published(space: str | None = None) -> dict[str, Any]:
    """Published genotypes by upper-case name, from every space (or only `space`)."""
    from ssnas import registry

    names = [space] if space else registry.available_spaces()
    out: dict[str, Any] = {}
    for name in names:
        for key, genotype in getattr(registry.space(name), "PUBLISHED", {}).items():
            out.setdefault(_normalise(key), genotype)
    return out


def _same_space(found: str, wanted: str | None, source: str) -> None:
    if wanted and _normalise(found) != _normalise(wanted):
        raise UserError(f"{source}: this genotype belongs to the {found!r} space, not {wanted!r}; "
                        f"pass a {wanted} genotype or drop --space")


def from_text(text: str, source: str, space: str | None = None) -> Any | None:
    """A genotype written as a space's own string (NAS-Bench-201's `|op~0|+...`), or None when no space
    reads `text`; a string in a space's format but malformed is that space's UserError."""
    from ssnas import registry

    for name in registry.available_spaces():
        parse = getattr(registry.space(name), "genotype_from_string", None)
        genotype = parse(text, source) if parse is not None else None
        if genotype is not None:
            _same_space(genotype.space, space, source)
            return genotype
    return None


def from_data(data: Any, source: str, space: str | None = None) -> Any:
    """A genotype from parsed JSON: any registered format first, then a space's string, then the space's own
    format."""
    from ssnas import registry

    for parse in _parsers():
        genotype = parse(data, source, space)
        if genotype is not None:
            return genotype
    if isinstance(data, str):
        genotype = from_text(data, source, space)
        if genotype is not None:
            return genotype
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a JSON object holding a genotype, got {type(data).__name__}")
    name = data.get("space") or space or "darts"
    _same_space(name, space, source)
    module = registry.space(name)
    return module.genotype_from_json(data, source)


def _read_file(path: Path, space: str | None) -> Any:
    """A genotype file: JSON (ours, or a registered format such as NNI's dict), or a space's string as text."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        genotype = from_text(text, str(path), space)
        if genotype is not None:
            return genotype
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}) nor a NAS-Bench-201 string; pass "
                        f"a genotype.json written by `ssnas search` or a published name such as DARTS_V2") from None
    return from_data(data, str(path), space)


def load_genotype(spec: str, space: str | None = None) -> Any:
    """The genotype named by `spec`: a .json file, a run folder holding genotype.json, a published name
    (DARTS_V1, DARTS_V2, DARTS; case-insensitive), or a NAS-Bench-201 string (given directly or as the text
    of a file). `space` (e.g. from --space) refuses a genotype of another space."""
    from ssnas.nas.network import BACKBONES

    if not isinstance(spec, str) or not spec.strip():
        raise UserError("--arch is empty; pass a genotype.json, a search run folder, a published genotype "
                        "(DARTS_V1, DARTS_V2), a NAS-Bench-201 string (|op~0|+...) or resnet18")
    if spec.strip().lower() in BACKBONES:
        raise UserError(f"{spec!r} is a fixed backbone, not a genotype; build it with "
                        f"ssnas.nas.network.build_encoder({spec!r}, ...) or pass it to `ssnas retrain --arch`")
    path = Path(spec).expanduser()
    if path.is_dir():
        file = path / "genotype.json"
        if not file.is_file():
            raise UserError(f"{path} holds no genotype.json; point --arch at a search run folder, "
                            f"a genotype .json file, or a published genotype such as DARTS_V2")
        return _read_file(file, space)
    if path.is_file():
        return _read_file(path, space)
    genotype = from_text(spec, "NAS-Bench-201 string", space)
    if genotype is not None:
        return genotype
    table = published(space)
    if _normalise(spec) in table:
        return table[_normalise(spec)]
    elsewhere = published().get(_normalise(spec))
    if elsewhere is not None:
        _same_space(elsewhere.space, space, spec)
    if path.suffix.lower() in (".json", ".txt") or "/" in spec:
        raise UserError(f"no file or folder at {spec}; pass an existing genotype.json or run folder")
    names = ", ".join(sorted(table) or ["none"])
    raise UserError(f"unknown architecture {spec!r}: not a file, a run folder, a published genotype "
                    f"({names}) or a NAS-Bench-201 string (|op~0|+|op~0|op~1|+|op~0|op~1|op~2|); resnet18 is also "
                    f"accepted by retrain")
