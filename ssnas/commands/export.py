"""`ssnas export SOURCE --to TARGET --out FILE`: a genotype or a retrained network in other tools' formats."""
from __future__ import annotations

import argparse
import sys

from ssnas.commands.flags import add_flags, flag_overrides
from ssnas.config import apply_overrides
from ssnas.errors import UserError
from ssnas.export import ExportConfig, TARGETS, export

ORDER = 40


def run(ns: argparse.Namespace) -> int:
    if bool(ns.source) == bool(ns.arch):
        raise UserError("pass the source once: a genotype file, run folder, NNI dict file, published name or "
                        "NAS-Bench-201 string (e.g. `ssnas export DARTS_V2 --to png --out cells.png`), or --arch SPEC")
    cfg = apply_overrides(ExportConfig(), flag_overrides(ns, ExportConfig))
    result = export(ns.source or ns.arch, cfg)
    if result["out"] is None:
        text = result["text"]
        sys.stdout.write(text if isinstance(text, str) else text.decode())
        return 0
    if "max_error" in result:
        weights = "trained weights" if result["trained"] else "fresh weights (no retrain run given)"
        print(f"{result['network']}, {weights}")
        print(f"checked with {result['runtime']} on batches of {result['batches']}: largest difference from "
              f"PyTorch {result['max_error']:.1e} (relative)")
    print(f"written: {result['out']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a genotype (json, nni, python, png, svg, dot, graphml) or a network (onnx, torchscript)",
        description="SOURCE is a genotype .json, a search or retrain run folder, an NNI DARTS or NasBench201 dict "
                    "file, a genotypes .py file, a published name (DARTS_V1, DARTS_V2), or a NAS-Bench-201 string "
                    "('|nor_conv_3x3~0|+...|', quoted for the shell) or a file holding one. onnx/torchscript export "
                    "the network of a retrain run folder with its weights, or of a genotype at --layers/"
                    "--init-channels (default: the space's own network) with fresh weights, and check the export "
                    "against PyTorch on a batch. The exported graph takes raw float32 images in [0, 1] [batch, C, "
                    "H, W] at the trained view size and normalises them itself (--no-raw-input: the bare "
                    "network, normalised inputs); mean, std and input size are stored in the file. "
                    f"Targets: {', '.join(TARGETS)}.")
    p.add_argument("source", nargs="?", default="",
                   help="genotype file, run folder, NNI dict file, published name or NAS-Bench-201 string")
    p.add_argument("--arch", default="", help="the source, as a flag (as retrain and eval spell it)")
    add_flags(p, ExportConfig)
    p.set_defaults(func=run)
