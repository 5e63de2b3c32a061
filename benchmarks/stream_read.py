"""Reading training batches of an image folder: the in-memory cache against streaming (`--stream on`) with 1 and 2
decoding processes, on the same index lists (random order), in alternating rounds. Round 0 reads files the page
cache may not hold yet (cold); later rounds read them warm. Checks that both paths give the same batches.

    python benchmarks/stream_read.py --data-root ../shared/data --batches 20 --rounds 4
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from ssnas.data.datasets import DataConfig, load_dataset
    from ssnas.data.stream import FolderImages, batches

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=os.environ.get("SSNAS_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    memory = load_dataset(DataConfig(dataset=args.dataset, data_root=args.data_root, stream="off"), "train")
    streamed = load_dataset(DataConfig(dataset=args.dataset, data_root=args.data_root, stream="on"), "train")
    order = torch.randperm(len(memory), generator=torch.Generator().manual_seed(0))
    index = [order[i * args.batch_size:(i + 1) * args.batch_size] for i in range(args.batches)]
    paths = {"memory": memory.images,
             **{f"stream_{w}_workers": FolderImages(streamed.images.files, streamed.images.size, w) for w in (1, 2)}}
    rows = []
    for r in range(args.rounds):
        for name, images in paths.items():
            t0 = time.perf_counter()
            n = sum(len(b) for b in batches(images, index, cpu))
            rows.append({"round": r, "path": name, "images_per_s": round(n / (time.perf_counter() - t0), 1)})
    same = all(torch.equal(a, b) for a, b in zip(batches(memory.images, index, cpu), batches(streamed.images, index, cpu)))
    print(json.dumps({"dataset": args.dataset, "batch_size": args.batch_size, "batches": args.batches,
                      "rows": rows, "same_batches": same, "load": os.getloadavg()}))


if __name__ == "__main__":
    main()
