"""Command-line flags made from the config dataclasses: one flag per leaf field, help from its metadata, defaults
None so only the flags given override the config (`ssnas.config.resolve`). Argparse lives here and in ssnas.cli only.
"""
from __future__ import annotations

import argparse
import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from ssnas.config import leaf_fields, resolve, to_dict
from ssnas.errors import UserError


def flag_name(key: str, f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + key.rsplit(".", 1)[-1].replace("_", "-")


RESUME_NOTE = "; may change on --resume"


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per leaf field (help from metadata); defaults are None so only given flags override."""
    seen: dict[str, str] = {}
    defaults = to_dict(cls())
    for key, f, tp in leaf_fields(cls):
        if f.metadata.get("cli") is False:
            continue
        flag = flag_name(key, f)
        if flag in seen:
            raise AssertionError(f"flag {flag} is claimed by both {seen[flag]} and {key}")
        seen[flag] = key
        default = defaults
        for part in key.split("."):
            default = default[part]
        note = RESUME_NOTE if f.metadata.get("resume_safe") else ""
        shown = "unset (see above)" if default is None else default  # None: derived or taken from a recipe
        text = f"{f.metadata.get('help', '')} [{key}; default: {shown}{note}]"
        if tp is bool:
            parser.add_argument(flag, dest=key, default=None, action=argparse.BooleanOptionalAction, help=text)
        else:
            parser.add_argument(flag, dest=key, default=None, metavar=key.rsplit(".", 1)[-1].upper(), help=text)


def flag_overrides(ns: argparse.Namespace, cls: type) -> dict[str, Any]:
    values = vars(ns)
    return {key: values[key] for key, _, _ in leaf_fields(cls) if values.get(key) is not None}


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`--set a.b=v` pairs; values are parsed as TOML scalars when they look like one."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--set expects key=value (e.g. --set objective.temperature=0.2), got {item!r}")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = raw
    return out


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """--config, --set and one flag per config field: the shared front of every command with a config."""
    parser.add_argument("--config", metavar="FILE", help="load settings from a TOML file or a run's config.json "
                                                         "(flags override it)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override any config key, e.g. --set objective.queue_size=4096 (repeatable)")
    add_flags(parser, cls)


def config_from_args(ns: argparse.Namespace, cls: type) -> Any:
    """defaults < --config < flags and --set; `--resume --out DIR` without --config takes DIR/config.json as the
    --config (the run's own settings), so the flags given beside it are the only differences, and the loop checks
    that those may change on a resume."""
    overrides = {**flag_overrides(ns, cls), **parse_set(ns.set)}
    base = None if ns.config else resume_base(cls, overrides)
    cfg = resolve(cls, ns.config or base, overrides)
    if base and "run.stop_after" not in overrides:
        cfg.run.stop_after = 0  # an earlier invocation's --stop-after is not the resumed one's
    return cfg


def resume_base(cls: type, overrides: dict[str, Any]) -> str | None:
    """DIR/config.json for `--resume --out DIR` without --config; None when not resuming. A resume of a folder that
    holds no run, with no settings given either, is refused: it would silently start a run with the defaults."""
    if not overrides.get("run.resume"):
        return None
    out = Path(str(overrides.get("run.out") or cls().run.out))
    saved = out / "config.json"
    if saved.is_file():
        return str(saved)
    if not any(not key.startswith("run.") for key in overrides):
        raise UserError(f"--resume: {out} holds no run to resume (no config.json); check --out, or give the run's "
                        f"settings (--config FILE or flags) to start it there")
    return None


def add_launch_args(parser: argparse.ArgumentParser, what: str) -> Any:
    """--nni, --host, --port, --keep-ui: how a command runs as an NNI experiment (launch options, not settings
    of the run: they are not in its config, so `--resume` never compares them)."""
    group = parser.add_argument_group("NNI web UI (needs ssnas's nni extra: pip install '.[nni]' in the ssnas "
                                      "checkout, or pip install 'ssnas[nni] @ file:///path/to/ssnas')")
    group.add_argument("--nni", action="store_true",
                       help=f"run {what} as an NNI experiment (local training service), watched in NNI's web UI")
    group.add_argument("--host", default="127.0.0.1",
                       help="address the web UI listens on; it has no login (default: 127.0.0.1; 0.0.0.0 = all)")
    group.add_argument("--port", type=int, default=8080, help="port of the web UI (default: 8080)")
    group.add_argument("--keep-ui", action="store_true",
                       help="keep the web UI up after the work is done, until Ctrl-C or ssnas tune --nni --stop")
    group.add_argument("--tuner-wait", type=float, default=120.0, metavar="SECONDS",
                       help="how long NNI waits for its tuner process to connect (NNI's own: 10 s, too short on a "
                            "busy machine; default: 120)")
    return group
