"""Typed configuration: dataclasses in, TOML files and dotted overrides on top, JSON out.

One function, `apply_overrides`, turns `{"optim.lr": "0.1"}` into typed values and rejects unknown keys. The
CLI, `--config FILE.toml`, Optuna trials and NNI parameters all go through it, so a setting has one name
everywhere (e.g. `objective.temperature`). The command-line flags made from these dataclasses live with the CLI
(ssnas.commands.flags).
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ssnas.errors import UserError

# Dataclass fields whose value is a free-form table (objective-specific options): unknown keys go there.
OPEN_TABLE = "options"


@dataclass(frozen=True)
class Tunable:
    """A setting a study may tune: its dotted config key, its range and where the range comes from. Declared by
    whoever owns the setting (an objective, the augmentation); `ssnas tune` collects them."""

    key: str  # dotted config key, e.g. "augment.jitter_strength"
    kind: str  # "float" or "int"
    low: float
    high: float
    log: bool = False
    why: str = ""

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high and (
            self.kind != "int" or float(value).is_integer())

    def end(self, which: str) -> int | float:
        """The low or high end, typed as the setting is."""
        value = getattr(self, which)
        return int(value) if self.kind == "int" else float(value)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass tree as plain JSON-able data."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a TOML/JSON/CLI value to the field's declared type, or explain why not."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], key)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise UserError(f"config key '{key}' must be true or false, got {value!r}")
    if tp in (int, float, str):
        if tp is not str and isinstance(value, bool):
            raise UserError(f"config key '{key}' must be a {tp.__name__}, got {value!r}")
        try:
            converted = tp(value)
        except (TypeError, ValueError):
            raise UserError(f"config key '{key}' must be a {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != converted:
            raise UserError(f"config key '{key}' must be a whole number, got {value!r}")
        return converted
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            raise UserError(f"config key '{key}' must be a list, got {value!r}")
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
        converted = [_coerce(v.strip() if isinstance(v, str) else v, inner, key) for v in items]
        return tuple(converted) if origin is tuple else converted
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}' must be a table, got {value!r}")
        return dict(value)
    return value


def _set(cfg: Any, path: list[str], value: Any, full_key: str) -> None:
    name = path[0]
    types_ = _field_types(type(cfg))
    if name not in types_:
        if OPEN_TABLE in types_:  # objective-specific knobs, validated by the objective itself
            table = getattr(cfg, OPEN_TABLE)
            table[".".join(path)] = value
            return
        valid = ", ".join(sorted(f.name for f in dataclasses.fields(cfg)))
        raise UserError(f"unknown config key '{full_key}'; valid keys here: {valid}")
    tp = types_[name]
    if len(path) > 1:
        if not _is_dataclass_type(tp):
            raise UserError(f"unknown config key '{full_key}': '{name}' is a value, not a section")
        _set(getattr(cfg, name), path[1:], value, full_key)
        return
    if _is_dataclass_type(tp):
        if not isinstance(value, Mapping):
            raise UserError(f"config key '{full_key}' is a section; give it a table, not {value!r}")
        for k, v in value.items():
            _set(getattr(cfg, name), [k], v, f"{full_key}.{k}")
        return
    setattr(cfg, name, _coerce(value, tp, full_key))


def apply_overrides(cfg: Any, overrides: Mapping[str, Any]) -> Any:
    """Set dotted keys (``"optim.lr"``) in place, with type checks; returns cfg for chaining."""
    for key, value in overrides.items():
        _set(cfg, key.split("."), value, key)
    return cfg


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 0.1}} -> {"optim.lr": 0.1}; objective option tables stay nested under their key."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and k != OPEN_TABLE:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    """A TOML config, or the config.json a run wrote (so any run can be repeated from its folder)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; pass --config with a TOML file such as "
                        f"experiments/darts_cifar10_simclr.toml, or a run's config.json")
    if path.suffix == ".json":
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"config file {path} is not valid JSON: {e}") from None
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path} is not valid TOML: {e}") from None


def save_json(cfg: Any, path: Path) -> None:
    path.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")


def from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a config from `to_dict` output (e.g. config.json of an earlier run)."""
    return apply_overrides(cls(), flatten(data))


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, dataclasses.Field, Any]]:
    """(dotted key, field, type) for every leaf of a config tree."""
    out = []
    hints = _field_types(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_dataclass_type(tp):
            out.extend(leaf_fields(tp, f"{prefix}{f.name}."))
        elif f.name != OPEN_TABLE:
            out.append((f"{prefix}{f.name}", f, tp))
    return out


def resolve(cls: type, config_file: str | None, overrides: Mapping[str, Any]) -> Any:
    """defaults < --config file < flags and --set."""
    cfg = cls()
    if config_file:
        apply_overrides(cfg, flatten(load_file(config_file)))
    return apply_overrides(cfg, overrides)
