"""The kNN probe of frozen features: the retrain monitor, the tune scorer and `ssnas eval --protocol knn` share it.

Weighted k-nearest neighbours on L2-normalised features (Wu et al. 2018, InstDisc, Sec. 3.4: each of the k
neighbours votes exp(s / t) for its class); k = 200, t = 0.1 as in lightly's CIFAR-10 benchmark.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.data.datasets import ImageSet
from ssnas.data.stream import FolderImages, batches, chunks


@dataclass
class KnnConfig:
    k: int = field(default=200, metadata={"flag": "--knn-k", "range": "[1, 100000]",
                                          "help": "neighbours that vote (lightly's CIFAR-10 benchmark: 200)"})
    temperature: float = field(default=0.1, metadata={
        "flag": "--knn-temperature", "range": "(0, 100]",
        "help": "votes weigh exp(similarity / t) (lightly: 0.1; InstDisc: 0.07)"})


@torch.no_grad()
def extract_features(encoder: nn.Module, images: torch.Tensor | FolderImages,
                     plain: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                     batch_size: int = 512) -> torch.Tensor:
    """Features [N, D] (float32, on `device`) of uint8 images [N, H, W, C] (in memory or streamed), in eval mode,
    no augmentation."""
    was_training = encoder.training
    encoder.eval()
    try:
        features = [encoder(plain(x)).float() for x in batches(images, chunks(len(images), batch_size), device)]
    finally:
        encoder.train(was_training)
    return torch.cat(features)


@torch.no_grad()
def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, num_classes: int,
                k: int = 200, temperature: float = 0.1, chunk: int = 256) -> torch.Tensor:
    """Weighted kNN (InstDisc, Wu et al. 2018, Sec. 3.4): cosine similarity s to the k nearest bank
    features; each neighbour adds exp(s / t) to its class; the class with most weight wins."""
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    k = min(k, len(bank))
    preds = []
    for q in queries.split(chunk):  # [chunk, N] similarities at a time: 10k x 50k at once would be 2 GB
        sim, idx = (q @ bank.t()).topk(k, dim=1)
        votes = torch.zeros(len(q), num_classes, device=q.device)
        votes.scatter_add_(1, bank_labels[idx], (sim / temperature).exp())
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def accuracy(preds: torch.Tensor, labels: torch.Tensor) -> float:
    return float((preds.cpu() == labels.cpu()).float().mean())


def knn_top1(encoder: nn.Module, bank: ImageSet, queries: ImageSet, plain: Callable[[torch.Tensor], torch.Tensor],
             device: torch.device, knn: KnnConfig) -> float:
    """Weighted-kNN top-1 of `encoder`'s frozen features: `bank` images vote for the labels of `queries`."""
    bank_f = extract_features(encoder, bank.images, plain, device)
    query_f = extract_features(encoder, queries.images, plain, device)
    preds = knn_predict(bank_f, bank.labels.to(device), query_f, len(bank.classes), knn.k, knn.temperature)
    return accuracy(preds, queries.labels)
