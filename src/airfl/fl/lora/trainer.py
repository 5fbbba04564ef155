"""The federated LoRA round: broadcast, local training on every client, aggregation, server update.

Every client's upload is flattened to a float64 vector and handed to the `Aggregator` (ideal, or
over the air): the strategy decides what is in it, the aggregator decides how it is summed, the
trainer never touches a radio. Local randomness (mini-batch order, dropout) is seeded by
(seed, round, client), so runs with the same seed and different aggregators see the same client
randomness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from airfl.fl.aggregate import AggregationStats, Aggregator
from airfl.fl.lora.adapters import count_values, flatten, unflatten
from airfl.fl.lora.strategy import Strategy, product_gap
from airfl.fl.lora.tasks import FederatedTask
from airfl.fl.lora.training import Evaluation, LocalTraining, evaluate, local_train, proximal_penalty


@dataclass
class LoraRound:
    """What one federated LoRA round produced.

    personalised: per client, its model's accuracy on test data drawn with its label shares.
    values_per_client: reals each transmitting client sent uplink; downlink_values: reals broadcast.
    product_gap: ||mean(B) mean(A) - mean(B A)||_F / ||mean(B A)||_F over the participants (None
        without LoRA pairs in the upload), see strategy.product_gap.
    """

    round: int
    train_loss: float
    evaluation: Evaluation
    personalised: list[float]
    applied: bool
    stats: AggregationStats
    rank: int | None
    values_per_client: int
    downlink_values: int
    product_gap: float | None
    proximal_mu: float


class FederatedLora:
    """Runs rounds of `strategy` over `task.clients`, aggregated by `aggregator`."""

    def __init__(
        self, strategy: Strategy, task: FederatedTask, training: LocalTraining, aggregator: Aggregator, seed: int
    ):
        self.strategy = strategy
        self.task = task
        self.training = training
        self.aggregator = aggregator
        self.seed = seed

    def round(self, t: int) -> LoraRound:
        """Round t (1-based)."""
        s = self.strategy
        sent = s.broadcast(t)
        mu = s.proximal_mu(t)
        weights = self.task.sizes
        uploads = []
        losses = []
        for k, client in enumerate(self.task.clients):
            model = s.prepare(k, t, sent)
            seed_k = self.seed * 1_000_003 + t * 10_007 + k
            torch.manual_seed(seed_k)  # dropout
            generator = torch.Generator().manual_seed(seed_k)
            penalty = proximal_penalty(model, mu) if mu > 0 else None
            losses.append(local_train(model, client, self.training, generator, penalty))
            uploads.append(s.upload(k, t, sent))
        estimate, stats = self.aggregator.aggregate([flatten(u) for u in uploads], weights)
        part = stats.participants
        gap = product_gap(s.client_lora_states(sent, [uploads[k] for k in part]), [weights[k] for k in part])
        applied = estimate is not None
        if estimate is not None:
            s.apply(t, sent, unflatten(estimate, uploads[0]))
        evaluation = evaluate(s.global_model(), self.task.test, self.task.n_classes)
        personalised = []
        for k, dist in enumerate(self.task.label_distributions):
            own = s.personal_model(k)
            ev = evaluation if own is None else evaluate(own, self.task.test, self.task.n_classes)
            personalised.append(ev.personalised(dist))
        return LoraRound(
            round=t,
            train_loss=float(np.average(losses, weights=weights)),
            evaluation=evaluation,
            personalised=personalised,
            applied=applied,
            stats=stats,
            rank=s.rank(t),
            values_per_client=count_values(uploads[0]),
            downlink_values=count_values(sent),
            product_gap=gap,
            proximal_mu=mu,
        )
