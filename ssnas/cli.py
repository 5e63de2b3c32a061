"""`ssnas` command line. `main(argv)` returns the exit code, so tests call it in-process.

Subcommands live in `ssnas/commands/`, one module each (every module there with a `register` is a verb;
`flags.py` makes flags from the config dataclasses). User mistakes (UserError, argparse's usage errors) and
what the machine refuses (a full disk, a read-only folder) print one line and exit 2; nothing here imports
nni, optuna or tensorboard at module level, so `ssnas --help` stays quick.

`main` sets OpenMP's wait policy (ssnas.runs.threads) before the commands, and with them torch, are imported, and
turns SIGTERM (what batch schedulers send before they kill) into the same clean stop as Ctrl-C: each loop then
says what it saved and how to continue.
"""
from __future__ import annotations

import argparse
import errno
import functools
import importlib
import pkgutil
import signal
import sys
import threading
from typing import Any, NoReturn, Sequence

from ssnas import __version__, commands
from ssnas.errors import Interrupted, UserError
from ssnas.runs.threads import prepare_environment

# OSErrors that describe the machine rather than a bug: printed on one line, exit code 2.
ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                                errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE, errno.EIO, errno.EISDIR,
                                errno.ENOTDIR, errno.ELOOP, errno.EFBIG, errno.EEXIST})


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as ssnas's other errors: one line, exit code 2 (`main` prints them)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}; see {self.prog} --help")


@functools.cache  # parsing never changes a parser; building one costs ~20 ms
def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ssnas", description="Self-supervised DARTS-style architecture search.")
    parser.add_argument("--version", action="version", version=f"ssnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [importlib.import_module(f"ssnas.commands.{m.name}") for m in pkgutil.iter_modules(commands.__path__)]
    for module in sorted((m for m in modules if hasattr(m, "register")), key=lambda m: m.ORDER):
        module.register(sub)
    return parser


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _terminated(signum: int, frame: Any) -> None:
    raise Interrupted("", 143, "SIGTERM")


def main(argv: Sequence[str] | None = None) -> int:
    prepare_environment()  # before torch loads OpenMP: only the first call in a process has an effect
    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _terminated) if in_main_thread else None
    try:
        ns = build_parser().parse_args(argv)
        return ns.func(ns)
    except UserError as e:
        print(f"ssnas: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # the machine, not the code: a full disk, a folder we may not write, a missing device
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise
        where = f" ({e.filename})" if e.filename else ""
        hint = ("; free some space, then continue with --resume (the last checkpoint written is kept)"
                if e.errno in (errno.ENOSPC, errno.EDQUOT) else "")
        print(f"ssnas: error: {_one_line((e.strerror or str(e)) + where)}{hint}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"ssnas: {e.message or 'interrupted' + (' by ' + e.signal if e.signal else '')}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print("ssnas: interrupted", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
