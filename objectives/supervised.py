"""Plain cross-entropy on labels: the original DARTS search and training, for comparison with the same code."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssnas.errors import UserError
from ssnas.training.objective import Batch, Objective, ViewSpec


class Supervised(Objective):
    name = "supervised"
    labels = "all"
    uses = frozenset()  # cross-entropy on the encoder's features: no temperature, no projection head

    def __init__(self, cfg, feature_dim: int, num_classes: int = 0):
        super().__init__(cfg, feature_dim, num_classes)
        if num_classes < 2:
            raise UserError("the supervised objective needs a labelled dataset with at least 2 classes")
        self.classifier = nn.Linear(feature_dim, num_classes)

    def view_spec(self) -> ViewSpec:
        return ViewSpec(weak=1)

    def forward(self, encoder: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.classifier(encoder(batch.views[0]))
        loss = F.cross_entropy(logits, batch.labels)
        accuracy = (logits.argmax(1) == batch.labels).float().mean()
        return {"loss": loss, "cross_entropy": loss.detach(), "accuracy": accuracy.detach()}
