"""Typed configuration: dataclasses in, TOML files and dotted overrides on top, JSON out.

One function, `apply_overrides`, turns `{"optim.lr": "0.1"}` into typed values and rejects unknown keys. The
CLI, `--config FILE.toml`, Optuna trials and NNI parameters all go through it, so a setting has one name
everywhere (e.g. `objective.temperature`). The command-line flags made from these dataclasses live with the CLI
(ssnas.commands.flags).

Every field declares what it accepts next to its help, in its metadata, and one validator (`check_tree`) walks a
whole config before any data is loaded:

- `"range": "[1, 64]"`: numbers (every item, for a list or tuple); `(` and `)` mark open ends, `inf` no bound;
- `"choices": (...)`: the values allowed;
- every float must be finite (NaN and infinity are never a setting), a fixed-length tuple has its length;
- a config class may define `check(self)` for rules across its fields: it runs once its fields passed;
- `"resume_safe": True`: `--resume` may change the field (ssnas.runs.settings.resume_changes).

Errors name the key, its flag, the value and what is allowed, on one line (`UserError`, exit code 2).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ssnas.errors import UserError
from ssnas.files import MAX_CONFIG_BYTES, read_bounded

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
        what = {int: "an integer", float: "a number", str: "a string"}[tp]
        if (tp is not str and isinstance(value, bool)) or isinstance(value, (list, tuple, dict)):
            raise UserError(f"config key '{key}' must be {what}, got {_shown(value)}")
        try:
            converted = tp(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
            raise UserError(f"config key '{key}' must be {what}, got {_shown(value)}") from None
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


def _shown(value: Any, limit: int = 60) -> str:
    """A value for a one-line message, cut to `limit` characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _set(cfg: Any, path: list[str], value: Any, full_key: str) -> None:
    name = path[0]
    types_ = _field_types(type(cfg))
    retired = getattr(type(cfg), "retired", {})
    if name not in types_ and name in retired and len(path) == 1:
        # a setting that became something else: old config files (their default, off) still load; a value that
        # asks for the old behaviour is told where it went
        if value in (0, False, None, "0", "false"):
            return
        strategy, option = retired[name]
        raise UserError(f"config key '{full_key}' is now a search strategy: use --strategy {strategy} "
                        f"--set strategy.{option}={value}")
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
            raise UserError(f"config key '{full_key}' is a section; give it a table, not {_shown(value)}")
        for k, v in value.items():
            _set(getattr(cfg, name), [k], v, f"{full_key}.{k}")
        return
    setattr(cfg, name, _coerce(value, tp, full_key))


def apply_overrides(cfg: Any, overrides: Mapping[str, Any], prefix: str = "") -> Any:
    """Set dotted keys (``"optim.lr"``) in place, with type checks; returns cfg for chaining. `prefix` is where
    cfg sits in a larger config (``"objective."`` for an objective's options), for the messages."""
    for key, value in overrides.items():
        _set(cfg, key.split("."), value, prefix + key)
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
    text = read_bounded(path, MAX_CONFIG_BYTES, "config file")
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"config file {path} is not valid JSON: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path} is not valid TOML: {e}") from None
    except RecursionError:
        raise UserError(f"config file {path} nests its tables or lists too deeply to be a config") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a table of settings, got {type(data).__name__}")
    return data


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


# ---- declared rules -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Range:
    """An interval written as in maths: "[0, 1)", "(0, inf)"."""

    low: float
    high: float
    low_open: bool
    high_open: bool
    text: str

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below


_RANGE = re.compile(r"^\s*([\[(])\s*([-+]?(?:inf|[0-9.e+-]+))\s*,\s*([-+]?(?:inf|[0-9.e+-]+))\s*([\])])\s*$")


@functools.lru_cache(maxsize=None)
def parse_range(text: str) -> Range:
    match = _RANGE.match(text)
    if not match:
        raise ValueError(f"bad range {text!r}; write it like '[0, 1)' or '(0, inf)'")
    opening, low, high, closing = match.groups()
    return Range(float(low), float(high), opening == "(", closing == ")", text)


def flag_name(key: str, f: dataclasses.Field) -> str:
    """The command-line flag of a config field (its metadata's "flag", else --<name>)."""
    return f.metadata.get("flag") or "--" + key.rsplit(".", 1)[-1].replace("_", "-")


def _label(key: str, f: dataclasses.Field, flags: bool) -> str:
    if not flags or f.metadata.get("cli") is False:
        return f"{key} (--set {key}=...)"
    return f"{key} ({flag_name(key, f)})"


def _check_item(value: Any, tp: Any, label: str, meta: Mapping[str, Any]) -> None:
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{label} must be true or false, got {_shown(value)}")
        return
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (tp is int and not isinstance(value, int)):
            raise UserError(f"{label} must be {'an integer' if tp is int else 'a number'}, got {_shown(value)}")
        if not math.isfinite(value):
            rule = f" in {meta['range']}" if "range" in meta else ""
            raise UserError(f"{label} must be a finite number{rule}, got {value}")
        if "range" in meta and value not in parse_range(meta["range"]):
            raise UserError(f"{label} must be in {meta['range']}, got {_shown(value)}")
    elif tp is str and not isinstance(value, str):
        raise UserError(f"{label} must be a string, got {_shown(value)}")
    if "choices" in meta and value not in meta["choices"]:
        raise UserError(f"{label} must be one of {', '.join(map(str, meta['choices']))}, got {_shown(value)}")


def check_value(key: str, f: dataclasses.Field, tp: Any, value: Any, flags: bool = True) -> None:
    """One field against its type and its declared rules (module docstring)."""
    label = _label(key, f, flags)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
        origin = typing.get_origin(tp)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if not isinstance(value, (tuple, list)):
            raise UserError(f"{label} must be a list, got {_shown(value)}")
        fixed = origin is tuple and Ellipsis not in typing.get_args(tp) and len(args) > 1
        if fixed and len(value) != len(args):
            raise UserError(f"{label} must hold {len(args)} values, got {len(value)}: {_shown(value)}")
        for item, item_tp in zip(value, args if fixed else [args[0] if args else str] * len(value)):
            _check_item(item, item_tp, label, f.metadata)
        return
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"{label} must be a table, got {_shown(value)}")
        return
    _check_item(value, tp, label, f.metadata)


def check_tree(cfg: Any, prefix: str = "", flags: bool = True) -> Any:
    """Check every field of a config tree against its type and declared rules, then each section's own `check()`
    (rules across fields), children first; returns cfg. Free-form option tables are left to their owner (an
    objective checks its options: ssnas.training.objective.Objective.check)."""
    hints = _field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        tp, value, key = hints[f.name], getattr(cfg, f.name), f"{prefix}{f.name}"
        if _is_dataclass_type(tp):
            if not isinstance(value, tp):
                raise UserError(f"config key '{key}' is a section; give it a table, not {_shown(value)}")
            check_tree(value, key + ".", flags)
        elif f.name != OPEN_TABLE:
            check_value(key, f, tp, value, flags)
    check = getattr(cfg, "check", None)
    if callable(check):
        check()
    return cfg


def resume_safe_keys(cls: type) -> frozenset[str]:
    """Dotted keys whose fields declare `resume_safe`: a resumed run may change them."""
    return frozenset(key for key, f, _ in leaf_fields(cls) if f.metadata.get("resume_safe"))
