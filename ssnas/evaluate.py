"""Evaluation protocols of the self-supervised literature, each writing `eval.json` into the run folder.

- linear: a linear classifier on frozen features of the full labelled training set, test top-1
  (SimCLR, Chen et al. 2020, Sec. 4 and App. B.6; CIFAR-10 settings from google-research/simclr's README:
  momentum SGD, lr 0.1 per 256 images, no weight decay, 100 epochs, batch 512, zero-initialised logits).
  Features are computed once, without augmentation, so the probe takes seconds.
- knn: weighted k-nearest neighbours on L2-normalised features (Wu et al. 2018, InstDisc, Sec. 3.4: each of
  the k neighbours votes exp(s / t) for its class); k = 200, t = 0.1 as in lightly's CIFAR-10 benchmark.
- finetune: the whole network plus a linear head trained on a class-balanced labels fraction (SimCLR App.
  B.5: Nesterov momentum, lr 0.05 per 256 images, no weight decay, crop and flip only, 60 epochs for 1% of
  the labels and 30 for 10%).
- supervised: training from scratch with labels, DARTS's evaluation protocol (Liu et al. 2019, App. A.2.1;
  cnn/train.py): 600 epochs, batch 96, SGD lr 0.025 with cosine decay, momentum 0.9, weight decay 3e-4,
  gradient clip 5, random crop with 4-pixel padding + flip, cutout 16, auxiliary head weight 0.4, drop-path
  0.2 ramped linearly over the epochs.

`accuracy` in eval.json is a fraction in [0, 1]; `top1` is the same number in percent.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.arch import RunInfo, build_encoder, is_backbone, load_run, resolved_network
from ssnas.model import load_encoder_weights
from ssnas.config import check_tree, to_dict
from ssnas.data.augment import AugmentConfig, ViewMaker
from ssnas.data.datasets import DataConfig, ImageSet, balanced_subset_indices, load_dataset
from ssnas.data.stream import batches, on_device
from ssnas.errors import UserError
from ssnas.nas.network import NetworkConfig, describe
from ssnas.runs import checkpoint
from ssnas.runs import threads as thread_settings
from ssnas.runs.guard import first_nonfinite, named_tensors
from ssnas.runs.log import RunLog
from ssnas.runs.settings import epoch_seed, epochs_done, resolve_device, seed_everything
from ssnas.training.knn import KnnConfig, accuracy, extract_features, knn_predict
from ssnas.training.optim import mixed_precision, set_lr, warmup_cosine

PROTOCOLS = ("linear", "knn", "finetune", "supervised")


# ---- settings ---------------------------------------------------------------------------------------------

@dataclass
class LinearConfig:
    """Defaults: google-research/simclr README, CIFAR-10 linear head."""

    epochs: int = field(default=100, metadata={"flag": "--linear-epochs", "range": "[1, 100000]", "help": "epochs of the linear probe (SimCLR README: 100)"})
    batch_size: int = field(default=512, metadata={"flag": "--linear-batch-size", "range": "[1, 65536]", "help": "probe batch size (SimCLR README: 512)"})
    lr: float = field(default=0.1, metadata={"flag": "--linear-lr", "range": "(0, inf)", "help": "probe learning rate per 256 images, scaled linearly with the batch (SimCLR: 0.1)"})
    momentum: float = field(default=0.9, metadata={"flag": "--linear-momentum", "range": "[0, 1)", "help": "probe SGD momentum"})
    weight_decay: float = field(default=0.0, metadata={"flag": "--linear-weight-decay", "range": "[0, 1]", "help": "probe weight decay (SimCLR README: 0)"})


@dataclass
class FinetuneConfig:
    """Defaults: SimCLR App. B.5 (semi-supervised fine-tuning)."""

    labels_fraction: float = field(default=0.1, metadata={
        "help": "class-balanced share of training labels to fine-tune on (SimCLR: 0.01 and 0.1)", "range": "(0, 1]"})
    epochs: int | None = field(default=None, metadata={"flag": "--finetune-epochs", "range": "[1, 100000]", "help": "fine-tuning epochs; default: SimCLR's 60 for <= 1%% of the labels, else 30"})
    batch_size: int = field(default=256, metadata={"flag": "--finetune-batch-size", "range": "[1, 65536]", "help": "fine-tuning batch size"})
    lr: float = field(default=0.05, metadata={"flag": "--finetune-lr", "range": "(0, inf)", "help": "Nesterov SGD lr per 256 images (SimCLR App. B.5: 0.05)"})
    momentum: float = field(default=0.9, metadata={"flag": "--finetune-momentum", "range": "[0, 1)", "help": "fine-tuning momentum"})
    weight_decay: float = field(default=0.0, metadata={"flag": "--finetune-weight-decay", "range": "[0, 1]", "help": "fine-tuning weight decay (SimCLR: none)"})

    def resolved_epochs(self) -> int:
        return self.epochs if self.epochs is not None else (60 if self.labels_fraction <= 0.01 else 30)


@dataclass
class SupervisedConfig:
    """Defaults: DARTS's CIFAR-10 evaluation (Liu et al. 2019, App. A.2.1; cnn/train.py)."""

    epochs: int = field(default=600, metadata={"flag": "--supervised-epochs", "range": "[1, 100000]", "help": "training epochs (DARTS: 600)"})
    batch_size: int = field(default=96, metadata={"flag": "--supervised-batch-size", "range": "[1, 65536]", "help": "batch size (DARTS: 96)"})
    lr: float = field(default=0.025, metadata={"flag": "--supervised-lr", "range": "(0, inf)", "help": "SGD learning rate, cosine-annealed to 0 (DARTS: 0.025)"})
    momentum: float = field(default=0.9, metadata={"flag": "--supervised-momentum", "range": "[0, 1)", "help": "SGD momentum (DARTS: 0.9)"})
    weight_decay: float = field(default=3e-4, metadata={"flag": "--supervised-weight-decay", "range": "[0, 1]", "help": "weight decay (DARTS: 3e-4)"})
    grad_clip: float = field(default=5.0, metadata={"flag": "--supervised-grad-clip", "range": "[0, inf)", "help": "gradient-norm clip (DARTS: 5)"})
    cutout: int = field(default=16, metadata={"help": "cutout side in pixels, 0 = off (DARTS: 16)", "range": "[0, 1024]"})
    auxiliary: bool = field(default=True, metadata={"help": "auxiliary head at 2/3 depth (DARTS: on; DARTS cells only)"})
    auxiliary_weight: float = field(default=0.4, metadata={"help": "weight of the auxiliary loss (DARTS: 0.4)",
                                                            "range": "[0, 100]"})
    drop_path: float = field(default=0.2, metadata={
        "help": "final drop-path probability, ramped linearly (DARTS: 0.2; DARTS cells only)", "range": "[0, 1)"})


@dataclass
class EvalConfig:
    protocol: str = field(default="linear", metadata={"help": "linear, knn, finetune or supervised",
                                                      "choices": PROTOCOLS})
    arch: str = field(default="", metadata={"help": "architecture for --random-init or supervised runs of a folder that "
                                                    "holds no retrain run (default: the run's)"})
    random_init: bool = field(default=False, metadata={
        "help": "evaluate the architecture with fresh random weights (seeded as the retrain was): the baseline "
                "that pretraining must beat"})
    layers: int | None = field(default=None, metadata={
        "help": "cells (default: the retrain run's, else the space's: DARTS 20, NAS-Bench-201 5 per stage)",
        "range": "[1, 200]"})
    init_channels: int | None = field(default=None, metadata={
        "help": "initial channels (default: the run's, else the space's: DARTS 36, NAS-Bench-201 16)",
        "range": "[1, 1024]"})
    test_subset: int = field(default=0, metadata={"help": "use only this many test images, class-balanced (0 = all)",
                                                  "range": "[0, 1e9]"})
    data: DataConfig = field(default_factory=DataConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    seed: int = field(default=0, metadata={"help": "random seed of the evaluation", "range": "[0, 4294967295]"})
    device: str = field(default="auto", metadata={"help": "auto (CUDA when available, else CPU), cpu, cuda, cuda:1, ..."})
    amp: bool = field(default=True, metadata={"help": "mixed precision when training on CUDA"})
    threads: int = field(default=0, metadata={
        "help": "CPU threads for torch; 0 = the CPUs this process may use (its affinity, the container's CPU quota "
                "OMP_NUM_THREADS, and those other processes leave free), whichever is fewest", "range": "[0, 4096]"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard event files"})


def protocol_tag(cfg: EvalConfig) -> str:
    """The name of this evaluation's files: eval-<tag>.json and the eval-<tag>/ log folder."""
    tag = cfg.protocol
    if cfg.protocol == "finetune":
        tag += f"-{cfg.finetune.labels_fraction:g}"
    if cfg.random_init and cfg.protocol != "supervised":
        tag += "-random"
    return tag


def validate(cfg: EvalConfig) -> None:
    """Every setting against its declared range (ssnas.config.check_tree), before any data is loaded."""
    check_tree(cfg)


# ---- features and the two frozen-feature protocols ----------------------------------------------------------

def train_linear_probe(features: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: LinearConfig,
                       seed: int, log: RunLog | None = None, progress: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """A linear classifier on frozen features; returns features -> logits.

    Features are standardised with the training set's mean and std first. That is an affine map, so the
    classifier stays linear in the features; it only makes one learning rate fit every encoder (raw
    feature scales differ by orders of magnitude between a DARTS cell and a ResNet)."""
    from tqdm.auto import tqdm

    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    x = (features - mean) / std
    y = labels.to(x.device)
    head = nn.Linear(x.shape[1], num_classes).to(x.device)
    nn.init.zeros_(head.weight)  # SimCLR's zero_init_logits_layer
    nn.init.zeros_(head.bias)
    batch = min(cfg.batch_size, len(x))
    lr = cfg.lr * batch / 256
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(x) / batch)
    generator = torch.Generator().manual_seed(seed)
    for epoch in tqdm(range(cfg.epochs), desc="linear probe", disable=not progress, leave=False):
        order = torch.randperm(len(x), generator=generator).to(x.device)
        total = 0.0
        for step in range(steps):
            set_lr(opt, warmup_cosine(epoch * steps + step, cfg.epochs * steps, 0, lr))
            index = order[step * batch:(step + 1) * batch]
            loss = F.cross_entropy(head(x[index]), y[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
        if log is not None:
            log.log("epoch", epoch + 1, epoch=epoch + 1, loss=total / steps, lr=opt.param_groups[0]["lr"])

    @torch.no_grad()
    def classify(f: torch.Tensor) -> torch.Tensor:
        return head((f.to(x.device) - mean) / std)

    return classify


def linear_probe(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                 test_labels: torch.Tensor, num_classes: int, cfg: LinearConfig, seed: int = 0,
                 log: RunLog | None = None, progress: bool = False) -> dict[str, float]:
    classify = train_linear_probe(train_features, train_labels, num_classes, cfg, seed, log, progress)
    return {"accuracy": accuracy(classify(test_features).argmax(1), test_labels),
            "train_accuracy": accuracy(classify(train_features).argmax(1), train_labels)}


# ---- DARTS's supervised augmentation, batched ----------------------------------------------------------------

def pad_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandomCrop(size, padding=pad) + RandomHorizontalFlip on a float batch [B, C, H, W],
    each sample with its own offset and flip; the padding is zeros (black), as RandomCrop's default fill."""
    b, _, h, w = x.shape
    dev = x.device
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=dev)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device=dev)
    flip = torch.rand(b, generator=generator, device=dev) < 0.5
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = oy[:, None] + torch.arange(h, device=dev)
    cols = ox[:, None] + torch.arange(w, device=dev)
    # advanced indices on dims 0, 2, 3 around a slice: the result is [B, H, W, C]
    out = padded[torch.arange(b, device=dev)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    out = out.permute(0, 3, 1, 2)
    return torch.where(flip.view(b, 1, 1, 1), out.flip(-1), out)


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """DARTS's Cutout (cnn/utils.py, after DeVries & Taylor 2017): zero one length x length square per image,
    centred anywhere in the image and clipped at its borders."""
    if length <= 0:
        return x
    b, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (b,), generator=generator, device=dev)
    cx = torch.randint(0, w, (b,), generator=generator, device=dev)
    rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
    in_y = (rows >= (cy - length // 2)[:, None]) & (rows < (cy + length // 2)[:, None])
    in_x = (cols >= (cx - length // 2)[:, None]) & (cols < (cx + length // 2)[:, None])
    hole = in_y[:, :, None] & in_x[:, None, :]
    return x * (~hole).unsqueeze(1).to(x.dtype)


class SupervisedViews:
    """uint8 NHWC batch -> pad-crop-flip, normalise, cutout (DARTS's train transform, in its order)."""

    def __init__(self, mean: list[float], std: list[float], cutout_length: int, pad: int = 4):
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.cutout_length, self.pad = cutout_length, pad

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float().div_(255)
        x = pad_crop_flip(x, self.pad, generator)
        x = (x - self.mean.to(x.device)) / self.std.to(x.device)
        x = cutout(x, self.cutout_length, generator)
        return x.contiguous(memory_format=torch.channels_last)


# ---- the run being evaluated --------------------------------------------------------------------------------

def _network_config(info: RunInfo, cfg: EvalConfig) -> NetworkConfig:
    """Sizes from the flags, else the retrain run's (config.json holds the sizes it built), else the space's own."""
    saved = (info.config or {}).get("network", {}) if info.state is not None else {}
    net = NetworkConfig()
    for key in ("layers", "init_channels"):
        value = getattr(cfg, key) or saved.get(key)
        if value:
            setattr(net, key, int(value))
    return net if is_backbone(info.arch) else resolved_network(net, info.arch)


def _view_size(info: RunInfo, image_size: int) -> int:
    if info.state is not None:
        return int(info.state["data"]["view_size"])
    return image_size


def _log(folder: Path, cfg: EvalConfig) -> RunLog:
    return RunLog(folder / f"eval-{protocol_tag(cfg)}", tensorboard=cfg.tensorboard)


# ---- protocols that train the network ------------------------------------------------------------------------

def _train_classifier(model: nn.Module, train: ImageSet, views: Callable, epochs: int, batch_size: int,
                      make_opt: Callable[[list[nn.Parameter]], torch.optim.Optimizer], lr: float, device: torch.device,
                      cfg: EvalConfig, log: RunLog, desc: str, aux_weight: float = 0.0, drop_path: float = 0.0,
                      grad_clip: float = 0.0, per_epoch_lr: bool = False) -> dict[str, float]:
    """Cross-entropy training of a network with its classifier (fine-tuning and supervised from scratch share it)."""
    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_opt(params)
    autocast, scaler = mixed_precision(device, cfg.amp)
    images, labels = on_device(train.images, device), train.labels.to(device)
    batch = min(batch_size, len(train))
    steps = max(1, len(train) // batch)
    model.train()
    loss_avg = acc_avg = 0.0
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, 0)))
        augment = torch.Generator(device=device).manual_seed(epoch_seed(cfg.seed, epoch, 1))
        torch.manual_seed(epoch_seed(cfg.seed, epoch, 2))  # drop-path draws
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = drop_path * epoch / epochs  # DARTS cnn/train.py: linear ramp per epoch
        if per_epoch_lr:  # DARTS steps its cosine schedule once per epoch
            set_lr(opt, warmup_cosine(epoch, epochs, 0, lr))
        totals = [0.0, 0.0]
        pixels = batches(images, [order[step * batch:(step + 1) * batch] for step in range(steps)], device)
        bar = tqdm(range(steps), desc=f"{desc} {epoch + 1}/{epochs}", disable=not cfg.progress, leave=False)
        for step in bar:
            if not per_epoch_lr:
                set_lr(opt, warmup_cosine(epoch * steps + step, epochs * steps, 0, lr))
            index = order[step * batch:(step + 1) * batch].to(device)
            x, y = views(next(pixels), augment), labels[index]
            with autocast():
                logits, aux = model.forward_with_aux(x) if aux_weight else (model(x), None)
                loss = F.cross_entropy(logits, y)
                if aux is not None:
                    loss = loss + aux_weight * F.cross_entropy(aux, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip > 0:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(params, grad_clip)
            scaler.step(opt)
            scaler.update()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise UserError(f"the {desc} loss became {value} at epoch {epoch + 1}; lower --{desc}-lr")
            totals[0] += value
            totals[1] += float((logits.argmax(1) == y).float().mean())
        loss_avg, acc_avg = totals[0] / steps, totals[1] / steps
        bad = first_nonfinite(named_tensors({desc: model}))
        if bad is not None:  # a finite loss does not prove finite weights (BatchNorm statistics overflow first)
            raise UserError(f"the {desc} network diverged at epoch {epoch + 1}: {bad[0]} holds {bad[1]}; lower "
                            f"--{desc}-lr")
        log.log("epoch", epoch + 1, epoch=epoch + 1, loss=loss_avg, train_accuracy=acc_avg, lr=opt.param_groups[0]["lr"])
    return {"train_loss": loss_avg, "train_accuracy": acc_avg}


@torch.no_grad()
def _test_accuracy(model: nn.Module, test: ImageSet, plain: Callable, device: torch.device) -> float:
    logits = extract_features(model, test.images, plain, device)  # the classifier's outputs: model(x) is logits
    return accuracy(logits.argmax(1), test.labels)


# ---- entry point ----------------------------------------------------------------------------------------------

def _labelled(data: ImageSet, split: str, dataset: str) -> ImageSet:
    if not data.has_labels:
        raise UserError(f"the {split} split of {dataset!r} has no labels, and every evaluation protocol needs them; "
                        f"use a dataset with class subfolders (and a test/ folder)")
    return data


def evaluate(run_dir: str | Path, cfg: EvalConfig, train: ImageSet | None = None,
             test: ImageSet | None = None) -> dict[str, Any]:
    """Run one protocol on a run folder; writes eval.json and eval-<tag>.json there and returns the record.
    `train`/`test` may be given directly (tests), else they are loaded from `cfg.data`."""
    validate(cfg)
    folder = Path(run_dir)
    info = load_run(folder, cfg.arch)
    if cfg.protocol != "supervised" and not cfg.random_init:
        if not info.pretrained:
            raise UserError(f"{folder} holds no pretrained network (checkpoint.pt from `ssnas retrain`); retrain "
                            f"first, or pass --random-init to evaluate untrained weights")
        if cfg.arch:
            raise UserError(f"--arch would replace the architecture whose weights {folder} holds; use it only "
                            f"with --random-init or --protocol supervised")
    thread_settings.apply(cfg.threads)
    device = resolve_device(cfg.device)
    started = time.perf_counter()
    if train is None:
        train = load_dataset(cfg.data, "train", seed=cfg.seed)
    if test is None:
        test = load_dataset(cfg.data, "test", seed=cfg.seed)
    train, test = _labelled(train, "train", cfg.data.dataset), _labelled(test, "test", cfg.data.dataset)
    if cfg.test_subset and cfg.test_subset < len(test):
        test = test.subset(balanced_subset_indices(test.labels, cfg.test_subset, cfg.seed))
    num_classes = len(train.classes)
    if info.state is not None:
        mean, std = info.state["data"]["mean"], info.state["data"]["std"]  # the pretraining's normalisation
    else:
        mean, std = train.mean_std()
    view_size = _view_size(info, train.image_size)
    plain = ViewMaker(AugmentConfig(size=view_size if view_size != train.image_size else 0), mean, std).plain
    net_cfg = _network_config(info, cfg)

    folder.mkdir(parents=True, exist_ok=True)
    log = _log(folder, cfg)
    try:
        record = _run_protocol(cfg, info, net_cfg, train, test, num_classes, mean, std, plain, view_size, device, log)
    finally:
        log.close()
    record.update({
        "protocol": cfg.protocol, "top1": round(100 * record["accuracy"], 2), "tag": protocol_tag(cfg),
        "arch": info.arch if isinstance(info.arch, str) else info.arch.to_json(),
        "random_init": cfg.random_init, "pretrained_epochs": _pretrained_epochs(info, cfg),
        "dataset": cfg.data.dataset, "n_train": len(train), "n_test": len(test),
        "seconds": round(time.perf_counter() - started, 2), "config": to_dict(cfg),
        "run_config": info.config if info.state is not None else None})
    record = {k: record[k] for k in ("protocol", "accuracy", "top1", *sorted(set(record) - {"protocol", "accuracy", "top1"}))}
    checkpoint.write_json(folder / f"eval-{protocol_tag(cfg)}.json", record)
    checkpoint.write_json(folder / "eval.json", record)
    return record


def _pretrained_epochs(info: RunInfo, cfg: EvalConfig) -> int:
    if cfg.random_init or cfg.protocol == "supervised" or info.state is None:
        return 0
    return epochs_done(info.state)


def _encoder(info: RunInfo, net_cfg: NetworkConfig, in_channels: int, cfg: EvalConfig, device: torch.device,
             load_weights: bool, num_classes: int = 0) -> nn.Module:
    """The run's network (its classifier, zero-initialised as SimCLR's, when num_classes > 0)."""
    # the retrain's seed: --random-init then gives exactly the weights its pretraining started from
    seed_everything(cfg.seed if info.state is None else info.state["config"]["run"]["seed"])
    encoder = build_encoder(info.arch, net_cfg, in_channels, num_classes)
    if load_weights:
        load_encoder_weights(encoder, info.state["encoder"], str(info.folder / "checkpoint.pt"))
    if num_classes:
        nn.init.zeros_(encoder.classifier.weight)  # SimCLR's zero_init_logits_layer
        nn.init.zeros_(encoder.classifier.bias)
    return encoder.to(device, memory_format=torch.channels_last)


def _run_protocol(cfg: EvalConfig, info: RunInfo, net_cfg: NetworkConfig, train: ImageSet, test: ImageSet,
                  num_classes: int, mean: list[float], std: list[float], plain: Callable, view_size: int,
                  device: torch.device, log: RunLog) -> dict[str, Any]:
    shape = (train.channels, view_size, view_size)
    if cfg.protocol == "supervised":
        return _supervised(cfg, info, net_cfg, train, test, num_classes, mean, std, device, log)
    if cfg.protocol == "finetune":
        model = _encoder(info, net_cfg, train.channels, cfg, device, load_weights=not cfg.random_init,
                         num_classes=num_classes)
        return {**describe(model, shape), **_finetune(cfg, model, train, test, mean, std, view_size, plain, device, log)}
    encoder = _encoder(info, net_cfg, train.channels, cfg, device, load_weights=not cfg.random_init)
    size = describe(encoder, shape)
    train_f = extract_features(encoder, train.images, plain, device)
    test_f = extract_features(encoder, test.images, plain, device)
    if cfg.protocol == "knn":
        preds = knn_predict(train_f, train.labels.to(device), test_f, num_classes, cfg.knn.k, cfg.knn.temperature)
        top1 = accuracy(preds, test.labels)
        log.log("eval", 1, epoch=1, knn_top1=top1)
        return {**size, "accuracy": top1}
    result = linear_probe(train_f, train.labels, test_f, test.labels, num_classes, cfg.linear, cfg.seed, log, cfg.progress)
    log.log("eval", cfg.linear.epochs, epoch=cfg.linear.epochs, linear_top1=result["accuracy"])
    return {**size, **result, "feature_dim": int(train_f.shape[1])}


def _finetune(cfg: EvalConfig, model: nn.Module, train: ImageSet, test: ImageSet, mean: list[float],
              std: list[float], view_size: int, plain: Callable, device: torch.device, log: RunLog) -> dict[str, Any]:
    f = cfg.finetune
    num_classes = len(train.classes)
    n = max(num_classes, round(f.labels_fraction * len(train)))
    labelled = train.subset(balanced_subset_indices(train.labels, min(n, len(train)), cfg.seed))
    # SimCLR App. B.5: only random crop (resized) and flip while fine-tuning
    crop_flip = ViewMaker(AugmentConfig(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0,
                                        size=view_size if view_size != train.image_size else 0), mean, std)
    batch = min(f.batch_size, len(labelled))
    lr = f.lr * batch / 256
    epochs = f.resolved_epochs()
    stats = _train_classifier(
        model, labelled, crop_flip, epochs, batch,
        lambda p: torch.optim.SGD(p, lr=lr, momentum=f.momentum, nesterov=f.momentum > 0, weight_decay=f.weight_decay),
        lr, device, cfg, log, "finetune")
    top1 = _test_accuracy(model, test, plain, device)
    log.log("eval", epochs, epoch=epochs, finetune_top1=top1)
    return {"accuracy": top1, **stats, "labels_fraction": f.labels_fraction, "n_labelled": len(labelled),
            "epochs": epochs}


def _accepts_darts_extras(arch: Any, net_cfg: NetworkConfig) -> bool:
    """Whether the architecture's network takes the auxiliary tower and drop-path (its space's check_network)."""
    if is_backbone(arch) or not (net_cfg.auxiliary or net_cfg.drop_path):
        return False
    try:
        resolved_network(net_cfg, arch)
    except UserError:
        return False
    return True


def _supervised(cfg: EvalConfig, info: RunInfo, net_cfg: NetworkConfig, train: ImageSet, test: ImageSet,
                num_classes: int, mean: list[float], std: list[float], device: torch.device, log: RunLog) -> dict[str, Any]:
    s = cfg.supervised
    # the auxiliary tower and drop-path belong to DARTS's network: where the space refuses them (NAS-Bench-201's
    # network, resnet18), DARTS's protocol runs without them
    net_cfg = NetworkConfig(layers=net_cfg.layers, init_channels=net_cfg.init_channels,
                            auxiliary=s.auxiliary, auxiliary_weight=s.auxiliary_weight, drop_path=s.drop_path)
    if not _accepts_darts_extras(info.arch, net_cfg):
        net_cfg.auxiliary, net_cfg.drop_path = False, 0.0
    seed_everything(cfg.seed)
    # the network's own classifier on the pooled features (DARTS's NetworkCIFAR; NAS-Bench-201's), and its tower
    model = build_encoder(info.arch, net_cfg, train.channels, num_classes).to(device, memory_format=torch.channels_last)
    size = describe(model, (train.channels, train.image_size, train.image_size))
    size["feature_dim"] = model.feature_dim
    views = SupervisedViews(mean, std, s.cutout)
    aux_weight = s.auxiliary_weight if net_cfg.auxiliary else 0.0
    stats = _train_classifier(
        model, train, views, s.epochs, s.batch_size,
        lambda p: torch.optim.SGD(p, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay),
        s.lr, device, cfg, log, "supervised", aux_weight=aux_weight, drop_path=net_cfg.drop_path,
        grad_clip=s.grad_clip, per_epoch_lr=True)
    native = ViewMaker(AugmentConfig(), mean, std).plain  # from scratch: at the images' own size
    top1 = _test_accuracy(model, test, native, device)
    log.log("eval", s.epochs, epoch=s.epochs, supervised_top1=top1)
    return {"accuracy": top1, **size, **stats, "test_error": round(100 * (1 - top1), 2),
            "auxiliary": net_cfg.auxiliary, "drop_path": net_cfg.drop_path, "cutout": s.cutout, "epochs": s.epochs}
