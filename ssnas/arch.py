"""An architecture from what a user types (`--arch`, an export source, `ssnas.load_genotype`), and its network.

    load_genotype("runs/darts-simclr/genotype.json")   # a file written by `ssnas search`
    load_genotype("runs/darts-simclr")                 # a run folder: its genotype.json
    load_genotype("darts_v2")                          # a published cell, any case
    load_genotype("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    load_genotype("cell.txt")                          # a file holding a space's own string
    load_genotype("arch.json")                         # an NNI 3.0 architecture dict of a registered space
    load_genotype("genotypes.py:DARTS_V2")             # a DARTS-style genotypes.py (read with ast, never run)

Every registered space is asked through its contract (`parse_text`, `from_nni`, `genotype_from_json`,
`PUBLISHED`), so a new space's formats work here without an edit. `build_encoder` turns a genotype (or the
`resnet18` baseline) into a network at the space's own sizes, on the exact speed route (ssnas.kernels);
`load_run` reads the architecture and weights of a retrain run folder. Every failure is a one-line UserError
naming the problem and the fix.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from torch import nn

from ssnas import registry
from ssnas.config import load_file
from ssnas.errors import UserError
from ssnas.kernels import use_fast_kernels
from ssnas.files import MAX_GENOTYPE_BYTES, loads_json, read_bounded
from ssnas.nas.network import BACKBONES, SIZES, NetworkConfig, ResNet18Cifar, SpaceDefault
from ssnas.nas.space import SpaceConfig
from ssnas.nas.supernet import Supernet
from ssnas.python_genotypes import read_python
from ssnas.runs import checkpoint
from ssnas.runs.guard import first_nonfinite

# Extra formats: a parser gets (data, source, space) and returns a genotype, or None when the data is not in
# its format; it is asked before the spaces' own formats. ---- HOOK: other formats plug in here ----
_PARSERS: list[Callable[[Any, str, str | None], Any]] = []


def register_parser(parser: Callable[[Any, str, str | None], Any]) -> None:
    if parser not in _PARSERS:
        _PARSERS.append(parser)


def unregister_parser(parser: Callable[[Any, str, str | None], Any]) -> None:
    if parser in _PARSERS:
        _PARSERS.remove(parser)


def _normalise(name: str) -> str:
    return name.strip().upper().replace("-", "_")


def published(space: str | None = None) -> dict[str, Any]:
    """Published genotypes by upper-case name, from every space (or only `space`)."""
    out: dict[str, Any] = {}
    for name in [space] if space else registry.available_spaces():
        for key, genotype in registry.space(name).PUBLISHED.items():
            out.setdefault(_normalise(key), genotype)
    return out


def _same_space(found: str, wanted: str | None, source: str) -> None:
    if wanted and _normalise(found) != _normalise(wanted):
        raise UserError(f"{source}: this genotype belongs to the {found!r} space, not {wanted!r}; "
                        f"pass a {wanted} genotype or drop --space")


def from_text(text: str, source: str, space: str | None = None) -> Any | None:
    """A genotype written as a space's own string (NAS-Bench-201's `|op~0|+...`), or None when no space
    reads `text`; a string in a space's format but malformed is that space's UserError."""
    for name in registry.available_spaces():
        genotype = registry.space(name).parse_text(text, source)
        if genotype is not None:
            _same_space(genotype.space, space, source)
            return genotype
    return None


def is_nni_dict(data: Any) -> bool:
    """True for a flat NNI 3.0 architecture dict ('<cell>/<choice>' keys, from any NNI space); False for our own
    genotype JSON. Which space reads it is up to the spaces' `from_nni`."""
    if not isinstance(data, dict) or not data or "space" in data:
        return False
    keys = [k for k in data if k not in ("width", "depth")]  # NNI's choices of the whole space, not of a cell
    return bool(keys) and all(isinstance(k, str) and "/" in k for k in keys)


def from_nni(data: Mapping[str, Any], source: str, space: str | None = None) -> Any:
    """A genotype from an NNI architecture dict: the first space (only `space`, when given) whose `from_nni`
    reads it."""
    names = [space] if space else registry.available_spaces()
    for name in names:
        genotype = registry.space(name).from_nni(data, source)
        if genotype is not None:
            return genotype
    first = next(iter(data))
    raise UserError(f"{source}: key {first!r} is not a label of NNI's {' or '.join(names)} space; is this dict "
                    f"from another NNI space?")


def from_data(data: Any, source: str, space: str | None = None) -> Any:
    """A genotype from parsed JSON: a registered parser first, then an NNI dict, a space's string, and the
    space's own format (`{"space": ..., ...}`; without a "space" field, --space or the default space)."""
    for parse in _PARSERS:
        genotype = parse(data, source, space)
        if genotype is not None:
            return genotype
    if is_nni_dict(data):
        return from_nni(data, source, space)
    if isinstance(data, str):
        genotype = from_text(data, source, space)
        if genotype is not None:
            return genotype
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a JSON object holding a genotype, got {type(data).__name__}")
    name = data.get("space") or space or registry.DEFAULT_SPACE
    if not isinstance(name, str):
        raise UserError(f"{source}: field 'space' must name a space ({', '.join(registry.available_spaces())}), "
                        f"got {json.dumps(name)[:40]}")
    _same_space(name, space, source)
    return registry.space(name).genotype_from_json(data, source)


def from_python(text: str, source: str = "genotypes.py", name: str | None = None) -> Any:
    """The genotype assigned in a DARTS-style genotypes.py (`NAME = Genotype(...)`) or as a space's string
    (`NAME = '|op~0|+...'`), read with `ast`, never executed; `name` picks one when the file holds several."""
    key, value = read_python(text, source, name)
    genotype = from_text(value, f"{source}: {key}") if isinstance(value, str) else from_data(value, f"{source}: {key}")
    if genotype is None:
        raise UserError(f"{source}: {key} is a string in no registered space's format")
    genotype.meta.update({"name": key})
    return genotype


def _python_file(spec: str) -> tuple[Path, str | None] | None:
    """(file, name) for `cells.py` or `cells.py:NAME`; None for anything else."""
    path, sep, name = spec.partition(".py:")
    if sep:
        return Path(path + ".py").expanduser(), name
    return (Path(spec).expanduser(), None) if spec.endswith(".py") else None


def _read_file(path: Path, space: str | None) -> Any:
    """A genotype file: JSON (ours, or an NNI dict), or a space's string as text."""
    text = read_bounded(path, MAX_GENOTYPE_BYTES, "genotype file")
    try:
        data = loads_json(text, str(path))
    except json.JSONDecodeError as e:
        genotype = from_text(text, str(path), space)
        if genotype is not None:
            return genotype
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}) nor a NAS-Bench-201 string; pass "
                        f"a genotype.json written by `ssnas search` or a published name such as DARTS_V2") from None
    return from_data(data, str(path), space)


def load_genotype(spec: str, space: str | None = None) -> Any:
    """The genotype named by `spec`: a .json file, a run folder holding genotype.json, a published name
    (DARTS_V1, DARTS_V2, DARTS; case-insensitive), a space's own string (given directly or as the text of a
    file), or a genotypes .py file (`cells.py`, `cells.py:NAME`). `space` (e.g. from --space) refuses a genotype
    of another space. Every form `ssnas export`, `show`, `retrain --arch` and `eval --arch` accept."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError("--arch is empty; pass a genotype.json, a search run folder, a published genotype "
                        "(DARTS_V1, DARTS_V2), a NAS-Bench-201 string (|op~0|+...) or resnet18")
    if is_backbone(spec):
        raise UserError(f"{spec!r} is a fixed backbone, not a genotype; build it with "
                        f"ssnas.arch.build_encoder({spec!r}, ...) or pass it to `ssnas retrain --arch`")
    python = _python_file(spec.strip())
    if python is not None:
        file, name = python
        if not file.is_file():
            raise UserError(f"no file at {file}; pass an existing genotypes .py file")
        genotype = from_python(read_bounded(file, MAX_GENOTYPE_BYTES, "genotypes file"), str(file), name or None)
        _same_space(genotype.space, space, str(file))
        return genotype
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


# ---- networks --------------------------------------------------------------------------------------------------

def is_backbone(arch: Any) -> bool:
    return isinstance(arch, str) and arch.strip().lower() in BACKBONES


def resolved_network(cfg: NetworkConfig, genotype: Any) -> NetworkConfig:
    """A copy of `cfg` whose unset sizes are the genotype's space's `NETWORK_DEFAULTS` (sizes given are kept),
    checked by that space's `check_network`."""
    space = registry.space(genotype.space)
    sizes = {k: int(space.NETWORK_DEFAULTS[k] if isinstance(getattr(cfg, k), SpaceDefault) else getattr(cfg, k))
             for k in SIZES}
    resolved = dataclasses.replace(cfg, **sizes)
    space.check_network(resolved)
    return resolved


def size_words(arch: Any, cfg: NetworkConfig) -> str:
    """'20 cells, 36 channels' (DARTS) or '5 cells per stage, 16 channels' (NAS-Bench-201), for printing."""
    unit = "cells" if is_backbone(arch) else registry.space(arch.space).LAYERS_UNIT
    return f"{cfg.layers} {unit}, {cfg.init_channels} channels"


def build_encoder(arch: Any, cfg: NetworkConfig, in_channels: int, num_classes: int = 0) -> nn.Module:
    """The network of `arch` (a genotype, a genotype spec (`load_genotype`) or `resnet18`) on the exact speed
    route: `forward_features` gives `feature_dim` features, `forward` the same features, or the logits of its
    `classifier` when `num_classes` > 0. Sizes left unset in `cfg` are the genotype's space's own."""
    if is_backbone(arch):
        if cfg.auxiliary or cfg.drop_path:
            raise UserError("--auxiliary and --drop-path apply to DARTS cells only; turn them off for --arch resnet18")
        return ResNet18Cifar(in_channels, num_classes)
    genotype = load_genotype(arch) if isinstance(arch, str) else arch
    space = registry.space(genotype.space)
    net = space.build_network(genotype, resolved_network(cfg, genotype), in_channels, num_classes=num_classes)
    return use_fast_kernels(net)


def build_network(arch: Any, *, layers: int = 0, init_channels: int = 0, in_channels: int = 3,
                  auxiliary: bool = False, drop_path: float = 0.0, num_classes: int = 0) -> nn.Module:
    """Convenience for scripts and notebooks: `build_network("DARTS_V2", layers=8, init_channels=16)`, or
    `build_network("|nor_conv_3x3~0|+...|")`. A size of 0 is the space's own (DARTS 20 cells, 36 channels;
    NAS-Bench-201 5 cells per stage, 16 channels)."""
    cfg = NetworkConfig(auxiliary=auxiliary, drop_path=drop_path)
    if layers:
        cfg.layers = layers
    if init_channels:
        cfg.init_channels = init_channels
    return build_encoder(arch, cfg, in_channels, num_classes)


def build_supernet(space: str, cfg: SpaceConfig, in_channels: int) -> Supernet:
    """The supernet of a space on the exact speed route (with `cfg.recompute_cells`, cells are recomputed in
    the backward pass instead of stored)."""
    supernet = registry.space(space).build_supernet(cfg, in_channels)
    return use_fast_kernels(supernet, recompute_cells=cfg.recompute_cells)


# ---- a retrain run folder ----------------------------------------------------------------------------------------

@dataclass
class RunInfo:
    """What an evaluation or an export needs from a run folder: the config and weights if there are any."""

    folder: Path
    config: dict[str, Any] | None  # config.json of the run (retrain or search), if any
    state: dict[str, Any] | None  # checkpoint.pt of a retrain run
    arch: Any  # a genotype, or a backbone name

    @property
    def pretrained(self) -> bool:
        return self.state is not None and "encoder" in self.state


def load_run(folder: Path, arch_override: str = "") -> RunInfo:
    """Read a retrain run (config.json + checkpoint.pt), or a folder with only a genotype.json (a search run)."""
    folder = Path(folder)
    config = None
    if (folder / "config.json").is_file():
        config = load_file(folder / "config.json")
    state = None
    if (folder / "checkpoint.pt").is_file():
        state = checkpoint.load(folder / "checkpoint.pt")
        if "encoder" not in state:
            state = None  # a search checkpoint: no evaluation network in it
        else:
            bad = first_nonfinite(state["encoder"].items())
            if bad is not None:
                raise UserError(f"{folder / 'checkpoint.pt'} holds a network whose {bad[0]} is {bad[1]}: the retrain "
                                f"diverged, and its accuracy would mean nothing; retrain with a lower --lr")
    if arch_override:
        arch = arch_override if is_backbone(arch_override) else load_genotype(arch_override)
    elif state is not None:
        saved = state["arch"]
        arch = saved["name"] if saved["genotype"] is None else from_data(saved["genotype"], str(folder / "checkpoint.pt"))
    elif (folder / "genotype.json").is_file():
        arch = load_genotype(str(folder))
    else:
        raise UserError(f"{folder} holds no retrain run (checkpoint.pt) and no genotype.json; run `ssnas retrain "
                        f"--out {folder}` first, or pass --arch")
    return RunInfo(folder, config, state, arch)
