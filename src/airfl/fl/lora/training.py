"""Local training on one client and evaluation, for any model whose forward takes keyword inputs.

The optional `penalty` is added to every mini-batch loss (SA-FedLoRA's proximal term). Only
parameters with requires_grad train; the optimizer is fresh every call (every round).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from airfl.fl.algorithms.fedavg import LocalTraining, make_optimizer
from airfl.fl.lora.tasks import Split

__all__ = ["LocalTraining", "local_train", "make_optimizer"]


def local_train(
    model: nn.Module,
    data: Split,
    cfg: LocalTraining,
    generator: torch.Generator,
    penalty: Callable[[], torch.Tensor] | None = None,
) -> float:
    """Train `model`'s trainable parameters in place on `data`; returns the mean cross-entropy."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter of the model requires gradients")
    opt = make_optimizer(params, cfg)
    model.train()
    total, count = 0.0, 0
    for _ in range(cfg.epochs):
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(**data.batch(idx)), data.labels[idx])
            total += loss.item() * len(idx)
            count += len(idx)
            if penalty is not None:
                loss = loss + penalty()
            loss.backward()
            opt.step()
    return total / max(count, 1)


def proximal_penalty(model: nn.Module, mu: float) -> Callable[[], torch.Tensor]:
    """mu/2 * ||w - w0||^2 over the trainable parameters, w0 = their values now (what was sent)."""
    params = [p for p in model.parameters() if p.requires_grad]
    anchors = [p.detach().clone() for p in params]

    def penalty() -> torch.Tensor:
        return 0.5 * mu * sum(torch.sum((p - a) ** 2) for p, a in zip(params, anchors))  # type: ignore[return-value]

    return penalty


@dataclass(frozen=True)
class Evaluation:
    """Accuracy and mean cross-entropy on a test split, and accuracy per class (NaN: class absent)."""

    accuracy: float
    loss: float
    per_class: np.ndarray

    def personalised(self, distribution: np.ndarray) -> float:
        """Accuracy on test data drawn with class shares `distribution` (classes absent from the
        test split count for nothing and the shares are renormalised)."""
        present = ~np.isnan(self.per_class)
        weights = distribution * present
        return float(np.sum(weights[present] * self.per_class[present]) / max(weights.sum(), 1e-300))


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, n_classes: int, batch_size: int = 256) -> Evaluation:
    """Evaluate `model` on `data` in eval mode (no dropout)."""
    model.eval()
    predictions: list[torch.Tensor] = []
    loss_sum = 0.0
    for start in range(0, len(data), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(data)))
        logits = model(**data.batch(idx))
        loss_sum += float(nn.functional.cross_entropy(logits, data.labels[idx], reduction="sum"))
        predictions.append(logits.argmax(dim=1))
    pred = torch.cat(predictions).numpy()
    labels = data.labels.numpy()
    correct = pred == labels
    per_class = np.full(n_classes, np.nan)
    for c in range(n_classes):
        mask = labels == c
        if mask.any():
            per_class[c] = float(correct[mask].mean())
    return Evaluation(float(correct.mean()), loss_sum / len(data), per_class)
