"""FedAvg: every round, clients train locally from the global model; the server adds the weighted
mean of their model deltas (weights = local sample counts) to the global model.

The mean comes from an `Aggregator`, so the same loop runs with exact averaging or over the air.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from airfl.fl.aggregate import AggregationStats, Aggregator
from airfl.fl.data import ClientData, FederatedDataset
from airfl.fl.models import get_flat, set_flat


@dataclass(frozen=True)
class LocalTraining:
    """Client-side training: epochs over the local set, mini-batch size, learning rate, SGD
    momentum, and the optimizer ("sgd" or "adam"; shared with the LoRA trainer)."""

    epochs: int = 2
    batch_size: int = 16
    lr: float = 0.05
    momentum: float = 0.0
    optimizer: str = "sgd"


def make_optimizer(params: list[nn.Parameter], cfg: LocalTraining) -> torch.optim.Optimizer:
    """A fresh optimizer for one round of local training (no state carries across rounds)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


def local_train(model: nn.Module, data: ClientData, cfg: LocalTraining, generator: torch.Generator) -> float:
    """Train `model` in place on one client's data; returns the mean training loss."""
    x = torch.from_numpy(data.x)
    y = torch.from_numpy(data.y)
    opt = make_optimizer([p for p in model.parameters() if p.requires_grad], cfg)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    total, count = 0.0, 0
    for _ in range(cfg.epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cross-entropy loss) of `model` on a labelled set."""
    model.eval()
    logits = model(torch.from_numpy(x))
    target = torch.from_numpy(y)
    loss = float(nn.functional.cross_entropy(logits, target))
    accuracy = float((logits.argmax(dim=1) == target).double().mean())
    return accuracy, loss


@dataclass
class FedAvgRound:
    """What one FedAvg round produced."""

    round: int
    train_loss: float
    accuracy: float
    loss: float
    applied: bool  # False when the aggregator delivered nothing and the global model stayed put
    stats: AggregationStats


class FedAvg:
    """Federated averaging over `dataset.clients`, aggregated by `aggregator`.

    Local training randomness is seeded by (seed, round, client), so two FedAvg runs with the same
    seed and different aggregators see exactly the same client-side randomness.
    """

    def __init__(
        self,
        model_factory: Callable[[], nn.Module],
        dataset: FederatedDataset,
        training: LocalTraining,
        aggregator: Aggregator,
        seed: int,
    ):
        torch.manual_seed(seed)
        self.model = model_factory()
        self._local = model_factory()
        self.dataset = dataset
        self.training = training
        self.aggregator = aggregator
        self.seed = seed

    def round(self, t: int) -> FedAvgRound:
        """Run round `t`: local training on every client, aggregate the deltas, update the model."""
        start = get_flat(self.model)
        updates: list[np.ndarray] = []
        weights: list[float] = []
        losses: list[float] = []
        for k, client in enumerate(self.dataset.clients):
            set_flat(self._local, start)
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + t * 10_007 + k)
            losses.append(local_train(self._local, client, self.training, generator))
            updates.append(get_flat(self._local) - start)
            weights.append(float(len(client)))
        estimate, stats = self.aggregator.aggregate(updates, weights)
        applied = estimate is not None
        if applied:
            set_flat(self.model, start + estimate)
        accuracy, loss = evaluate(self.model, self.dataset.x_test, self.dataset.y_test)
        train_loss = float(np.average(losses, weights=weights))
        return FedAvgRound(t, train_loss, accuracy, loss, applied, stats)
