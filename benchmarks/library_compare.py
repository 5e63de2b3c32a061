"""ssnas's own pieces against well-kept libraries that do the same job: speed, exactness, lines.

- augmentation: ssnas.data.augment.ViewMaker against kornia.augmentation (SimCLR's CIFAR views, batched, per-sample
  randomness), speed at batch 256 of 32x32 images; and each colour op against torchvision's per-image maths
  (transforms.v2.functional), the reference SimCLR's numbers were made with;
- loss: objectives/simclr.py's nt_xent against lightly.loss.NTXentLoss, on the same random projections;
- optimiser: ssnas.training.optim.LARS against timm.optim.Lars, after many steps on the same gradients;
- schedule: ssnas.training.optim.warmup_cosine against timm's CosineLRScheduler and torch's
  SequentialLR(LinearLR, CosineAnnealingLR), value by value and across a save/load in the middle.

Speed rows alternate A B A B ... within one process, so load changes on a shared machine hit both alike; the
summary gives medians and same-round ratios. Needs kornia, lightly and timm (not ssnas dependencies):

    pip install kornia lightly timm
    python benchmarks/library_compare.py --threads 2 --rounds 7
"""
from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def _alternate(contenders: dict, rounds: int, repeats: int) -> dict:
    seconds = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            seconds[name].append(_timed(fn, repeats))
    names = list(contenders)
    first = names[0]
    return {"median_s": {n: round(statistics.median(s), 6) for n, s in seconds.items()},
            **{f"{first}_speedup_over_{n}": {"median": round(statistics.median(b / a for a, b in zip(seconds[first], s)), 3),
                                             "min": round(min(b / a for a, b in zip(seconds[first], s)), 3),
                                             "max": round(max(b / a for a, b in zip(seconds[first], s)), 3)}
               for n, s in seconds.items() if n != first}}


def _lines(obj) -> int:
    """Non-blank, non-comment source lines of a function or class (docstring included)."""
    return sum(1 for line in inspect.getsource(obj).splitlines() if line.strip() and not line.strip().startswith("#"))


# ---- augmentation ----------------------------------------------------------------------------------------------

def augmentation(rounds: int, batch: int) -> dict:
    import kornia.augmentation as K
    import kornia.enhance as KE
    from torchvision.transforms.v2 import functional as TF

    from ssnas.data import augment as A

    cfg = A.AugmentConfig()
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 32, 32, 3), dtype=torch.uint8, generator=g)
    maker = A.ViewMaker(cfg, mean, std)
    s = cfg.jitter_strength
    kornia_views = K.AugmentationSequential(
        K.RandomResizedCrop((32, 32), scale=(cfg.crop_scale_min, cfg.crop_scale_max),
                            ratio=(cfg.crop_ratio_min, cfg.crop_ratio_max)),
        K.RandomHorizontalFlip(p=cfg.flip_p),
        K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=cfg.jitter_p),
        K.RandomGrayscale(p=cfg.grayscale_p),
        K.Normalize(torch.tensor(mean), torch.tensor(std)))

    def ours():
        return maker(images, g)

    def theirs():  # the same uint8 NHWC batch in, normalised float NCHW views out
        return kornia_views(images.permute(0, 3, 1, 2).float().div(255))

    speed = _alternate({"ssnas": ours, "kornia": theirs}, rounds, repeats=5)
    speed["images_per_s"] = {n: round(batch / t, 1) for n, t in speed["median_s"].items()}

    # exactness of each colour op against torchvision's per-image functional maths, on the same factors
    x = torch.rand(64, 3, 32, 32, generator=g, dtype=torch.float64).float()
    u = torch.rand(64, generator=g)
    factor, hue = 0.6 + 0.8 * u, (u - 0.5) * 0.2
    per_image = {
        "brightness": lambda i: TF.adjust_brightness(x[i], float(factor[i])),
        "contrast": lambda i: TF.adjust_contrast(x[i], float(factor[i])),
        "saturation": lambda i: TF.adjust_saturation(x[i], float(factor[i])),
        "hue": lambda i: TF.adjust_hue(x[i], float(hue[i])),
        "grayscale": lambda i: TF.rgb_to_grayscale(x[i], num_output_channels=3),
    }
    ssnas_ops = {"brightness": lambda: A.adjust_brightness(x, factor), "contrast": lambda: A.adjust_contrast(x, factor),
                 "saturation": lambda: A.adjust_saturation(x, factor), "hue": lambda: A.adjust_hue(x, hue),
                 "grayscale": lambda: A.rgb_to_gray(x).expand_as(x)}
    kornia_ops = {  # the functions kornia's ColorJitter and RandomGrayscale apply
        "brightness": lambda: KE.adjust_brightness_accumulative(x, factor).clamp(0, 1),
        "contrast": lambda: KE.adjust_contrast_with_mean_subtraction(x, factor).clamp(0, 1),
        "saturation": lambda: KE.adjust_saturation_with_gray_subtraction(x, factor).clamp(0, 1),
        "hue": lambda: KE.adjust_hue(x, hue * 2 * math.pi).clamp(0, 1),
        "grayscale": lambda: __import__("kornia").color.rgb_to_grayscale(x).expand_as(x)}
    exact = {}
    for op, ref_fn in per_image.items():
        ref = torch.stack([ref_fn(i) for i in range(len(x))])
        exact[op] = {"ssnas_max_abs": float((ssnas_ops[op]() - ref).abs().max()),
                     "kornia_max_abs": float((kornia_ops[op]() - ref).abs().max())}
    lines = {"ssnas_colour_ops_and_viewmaker": sum(_lines(f) for f in (
        A.rgb_to_gray, A.adjust_brightness, A.adjust_contrast, A.adjust_saturation, A.adjust_hue, A.sample_crop_boxes,
        A.crop_flip_theta, A.resample, A.gaussian_blur, A.ViewMaker))}
    return {"batch": batch, "image": "32x32x3 uint8", "speed": speed, "exactness_vs_torchvision": exact,
            "lines": lines}


# ---- NT-Xent ---------------------------------------------------------------------------------------------------

def nt_xent_compare(rounds: int, n: int, dim: int) -> dict:
    from lightly.loss import NTXentLoss

    from ssnas.objectives.simclr import nt_xent

    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
    theirs = NTXentLoss(temperature=0.5)
    ours32, lightly32 = nt_xent(z1, z2, 0.5), theirs(z1, z2)
    # float64 reference: Eq. 1 of SimCLR written out, view by view
    z = torch.nn.functional.normalize(torch.cat([z1, z2]).double(), dim=1)
    sim = z @ z.t() / 0.5
    terms = [-(sim[k, (k + n) % (2 * n)] - torch.logsumexp(torch.cat([sim[k, :k], sim[k, k + 1:]]), 0))
             for k in range(2 * n)]
    ref = torch.stack(terms).mean()
    a1, a2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    b1, b2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    nt_xent(a1, a2, 0.5).backward()
    theirs(b1, b2).backward()
    grad_diff = max(float((a1.grad - b1.grad).abs().max()), float((a2.grad - b2.grad).abs().max()))

    def fwd_bwd(fn):
        def run():
            p1, p2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
            fn(p1, p2).backward()
        return run

    speed = _alternate({"ssnas": fwd_bwd(lambda a, b: nt_xent(a, b, 0.5)), "lightly": fwd_bwd(theirs)}, rounds, 20)
    return {"views": 2 * n, "dim": dim, "loss_ssnas": float(ours32), "loss_lightly": float(lightly32),
            "loss_float64_reference": float(ref), "abs_diff_ssnas_lightly": abs(float(ours32) - float(lightly32)),
            "abs_err_ssnas_vs_float64": abs(float(ours32) - float(ref)),
            "abs_err_lightly_vs_float64": abs(float(lightly32) - float(ref)), "max_grad_diff": grad_diff,
            "speed_fwd_bwd": speed, "lines_ssnas_nt_xent": _lines(nt_xent)}


# ---- LARS ------------------------------------------------------------------------------------------------------

def lars_compare(rounds: int, steps: int) -> dict:
    from timm.optim import Lars

    from ssnas.arch import build_network
    from ssnas.training.optim import LARS, exclude_bias_and_norm, warmup_cosine

    def params_of(seed: int):
        torch.manual_seed(seed)
        net = build_network("DARTS_V2", layers=8, init_channels=16)
        return net, exclude_bias_and_norm([net])

    def trajectories(schedule: bool) -> dict:
        grads_g = torch.Generator().manual_seed(2)
        nets, opts = {}, {}
        for name in ("ssnas", "timm"):
            net, (regular, excluded) = params_of(0)
            if name == "ssnas":
                opt = LARS([{"params": regular}, {"params": excluded, "weight_decay": 0.0, "lars": False}],
                           lr=1.0, momentum=0.9, weight_decay=1e-6)
            else:  # timm adapts only groups with weight decay: the same exclusion as SimCLR's
                opt = Lars([{"params": regular}, {"params": excluded, "weight_decay": 0.0}], lr=1.0, momentum=0.9,
                           weight_decay=1e-6, trust_coeff=0.001, eps=0.0)
            nets[name], opts[name] = net, opt
        plist = {n: [p for p in nets[n].parameters()] for n in nets}
        for step in range(steps):
            grads = [torch.randn(p.shape, generator=grads_g) * 0.01 for p in plist["ssnas"]]
            lr = warmup_cosine(step, steps, steps // 10, 1.0) if schedule else 1.0
            for n in nets:
                for group in opts[n].param_groups:
                    group["lr"] = lr
                for p, gr in zip(plist[n], grads):
                    p.grad = gr.clone()
                opts[n].step()
        diff = max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                   for a, b in zip(plist["ssnas"], plist["timm"]))
        return {"max_relative_param_diff": diff}

    net, (regular, excluded) = params_of(0)
    grads = [torch.randn_like(p) * 0.01 for p in net.parameters()]
    for p, gr in zip(net.parameters(), grads):
        p.grad = gr
    ours = LARS([{"params": regular}, {"params": excluded, "weight_decay": 0.0, "lars": False}], lr=1e-9,
                momentum=0.9, weight_decay=1e-6)
    theirs = Lars([{"params": regular}, {"params": excluded, "weight_decay": 0.0}], lr=1e-9, momentum=0.9,
                  weight_decay=1e-6)
    speed = _alternate({"ssnas": ours.step, "timm": theirs.step}, rounds, 10)
    return {"params": sum(p.numel() for p in net.parameters()), "tensors": len(list(net.parameters())),
            "steps": steps, "constant_lr": trajectories(False), "warmup_cosine_lr": trajectories(True),
            "speed_step": speed, "lines_ssnas_lars": _lines(LARS)}


# ---- schedules ---------------------------------------------------------------------------------------------------

def schedule_compare(epochs: int = 20, steps_per_epoch: int = 50, warmup_epochs: int = 2) -> dict:
    from timm.scheduler import CosineLRScheduler

    from ssnas.training.optim import warmup_cosine

    total, warm = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch
    ours = [warmup_cosine(s, total, warm, 1.0) for s in range(total)]

    def torch_lrs(resume_at: int | None) -> list[float]:
        def make():
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
            sched = torch.optim.lr_scheduler.SequentialLR(opt, [
                torch.optim.lr_scheduler.LinearLR(opt, 1.0 / warm, 1.0, total_iters=warm - 1),
                torch.optim.lr_scheduler.CosineAnnealingLR(opt, total - warm, eta_min=0.0)], milestones=[warm])
            return opt, sched
        opt, sched = make()
        out = []
        for s in range(total):
            if resume_at is not None and s == resume_at:
                state = {"opt": opt.state_dict(), "sched": sched.state_dict()}
                opt, sched = make()
                opt.load_state_dict(state["opt"])
                sched.load_state_dict(state["sched"])
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    timm_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    timm_sched = CosineLRScheduler(timm_opt, t_initial=total - warm, warmup_t=warm, warmup_lr_init=1.0 / warm,
                                   warmup_prefix=True, lr_min=0.0, t_in_epochs=False)
    timm_lrs = []
    for s in range(total):
        timm_sched.step_update(s)
        timm_lrs.append(timm_opt.param_groups[0]["lr"])
    plain, resumed = torch_lrs(None), torch_lrs(total // 3)
    return {"steps": total, "warmup_steps": warm,
            "max_abs_diff_torch_sequential": max(abs(a - b) for a, b in zip(ours, plain)),
            "max_abs_diff_torch_after_resume": max(abs(a - b) for a, b in zip(plain, resumed)),
            "max_abs_diff_timm_cosine": max(abs(a - b) for a, b in zip(ours, timm_lrs)),
            "timm_first_lrs": timm_lrs[:3], "ssnas_first_lrs": ours[:3],
            "lines_ssnas_warmup_cosine": _lines(warmup_cosine)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lars-steps", type=int, default=200)
    p.add_argument("--only", default="augment,ntxent,lars,schedule")
    args = p.parse_args()
    missing = [m for m in ("kornia", "lightly", "timm") if importlib.util.find_spec(m) is None]
    if missing:
        raise SystemExit(f"needs {', '.join(missing)}: pip install kornia lightly timm")
    torch.set_num_threads(args.threads)
    import kornia
    import lightly
    import timm

    out = {"threads": args.threads, "torch": torch.__version__, "kornia": kornia.__version__,
           "lightly": lightly.__version__, "timm": timm.__version__, "cpu": platform.processor() or platform.machine(),
           "load_before": os.getloadavg()}
    only = args.only.split(",")
    if "augment" in only:
        out["augmentation"] = augmentation(args.rounds, args.batch)
    if "ntxent" in only:
        out["nt_xent"] = nt_xent_compare(args.rounds, 256, 128)
    if "lars" in only:
        out["lars"] = lars_compare(args.rounds, args.lars_steps)
    if "schedule" in only:
        out["schedule"] = schedule_compare()
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
