"""`ssnas` command line. `main(argv)` returns the exit code, so tests call it in-process.

Subcommands live in `ssnas/commands/`, one module each (every module there with a `register` is a verb;
`flags.py` makes flags from the config dataclasses). User mistakes (UserError) print one line and exit
2; nothing here imports nni, optuna or tensorboard at module level, so `ssnas --help` stays quick.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from ssnas import __version__, commands
from ssnas.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ssnas", description="Self-supervised DARTS-style architecture search.")
    parser.add_argument("--version", action="version", version=f"ssnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [importlib.import_module(f"ssnas.commands.{m.name}") for m in pkgutil.iter_modules(commands.__path__)]
    for module in sorted((m for m in modules if hasattr(m, "register")), key=lambda m: m.ORDER):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except UserError as e:
        print(f"ssnas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ssnas: interrupted; the last finished epoch is checkpointed, continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
