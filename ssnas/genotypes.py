"""Where a genotype comes from: a JSON file, a run folder, or the name of a published cell.

    load_genotype("runs/darts-simclr/genotype.json")   # a file written by `ssnas search`
    load_genotype("runs/darts-simclr")                 # a run folder: its genotype.json
    load_genotype("darts_v2")                          # a published cell, any case

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


def from_data(data: Any, source: str, space: str | None = None) -> Any:
    """A genotype from parsed JSON: any registered format first, then the space's own format."""
    from ssnas import registry

    for parse in _parsers():
        genotype = parse(data, source, space)
        if genotype is not None:
            return genotype
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a JSON object holding a genotype, got {type(data).__name__}")
    name = data.get("space") or space or "darts"
    if space and name != space:
        raise UserError(f"{source}: this genotype belongs to the {name!r} space, not {space!r}; "
                        f"pass a {space} genotype or drop --space")
    module = registry.space(name)
    return module.genotype_from_json(data, source)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); pass a genotype.json "
                        f"written by `ssnas search` or a published name such as DARTS_V2") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from None


def load_genotype(spec: str, space: str | None = None) -> Any:
    """The genotype named by `spec`: a .json file, a run folder holding genotype.json, or a published name
    (DARTS_V1, DARTS_V2, DARTS; case-insensitive)."""
    from ssnas.network import BACKBONES

    if not isinstance(spec, str) or not spec.strip():
        raise UserError("--arch is empty; pass a genotype.json, a search run folder, a published genotype "
                        "(DARTS_V1, DARTS_V2) or resnet18")
    if spec.strip().lower() in BACKBONES:
        raise UserError(f"{spec!r} is a fixed backbone, not a genotype; build it with "
                        f"ssnas.network.build_encoder({spec!r}, ...) or pass it to `ssnas retrain --arch`")
    path = Path(spec).expanduser()
    if path.is_dir():
        file = path / "genotype.json"
        if not file.is_file():
            raise UserError(f"{path} holds no genotype.json; point --arch at a search run folder, "
                            f"a genotype .json file, or a published genotype such as DARTS_V2")
        return from_data(_read_json(file), str(file), space)
    if path.is_file():
        return from_data(_read_json(path), str(path), space)
    table = published(space)
    if _normalise(spec) in table:
        return table[_normalise(spec)]
    if path.suffix.lower() == ".json" or "/" in spec:
        raise UserError(f"no file or folder at {spec}; pass an existing genotype.json or run folder")
    names = ", ".join(sorted(table))
    raise UserError(f"unknown architecture {spec!r}: not a file, a run folder or a published genotype "
                    f"({names}); resnet18 is also accepted by retrain")
