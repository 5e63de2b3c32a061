"""The fan-out on and off, alternating step by step in one process (robust to load changes on a shared machine).

One first-order search step = an arch step (loss backward to the alphas only) plus a weight step, on random
32x32 images, supervised head, DARTS supernet. "off" runs one mixed op per edge (the code before the fan-out);
both are exact DARTS. Prints each step's wall time and the median ratio as JSON.

    .venv/bin/python benchmarks/fanout_ab.py --threads 2 --steps 6
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from ssnas.nas.space import SpaceConfig
import ssnas.search_spaces.darts as darts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--init-channels", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cl = torch.channels_last
    net = darts.DartsSupernet(SpaceConfig(layers=args.layers, init_channels=args.init_channels), 3).to(memory_format=cl)
    head = torch.nn.Linear(net.feature_dim, 10)
    x = torch.randn(args.batch_size, 3, 32, 32).contiguous(memory_format=cl)
    y = torch.randint(0, 10, (args.batch_size,))
    alphas, weights = net.arch_parameters(), net.weight_parameters() + list(head.parameters())
    fan_out_on = darts.can_fan_out

    def step() -> float:
        t0 = time.perf_counter()
        F.cross_entropy(head(net(x)), y).backward(inputs=alphas)
        F.cross_entropy(head(net(x)), y).backward(inputs=weights)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(args.steps + 1):  # the first pair warms up
        for mode in ("on", "off"):
            darts.can_fan_out = fan_out_on if mode == "on" else (lambda edges: False)
            t = step()
            if i:
                times[mode].append(round(t, 3))
    darts.can_fan_out = fan_out_on
    on, off = statistics.median(times["on"]), statistics.median(times["off"])
    print(json.dumps({"threads": args.threads, "s_per_step": times, "median_on": on, "median_off": off,
                      "speedup": round(off / on, 2)}))


if __name__ == "__main__":
    main()
