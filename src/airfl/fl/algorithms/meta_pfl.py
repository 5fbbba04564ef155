"""Over-the-air federated meta-learning (meta-pFL, after Wen, Xing and Simeone 2024).

Round t, with meta-model theta_t:
1. The server selects `agents_per_round` of the training agents uniformly at random (seeded by
   (seed, t), so runs with different aggregators select the same agents).
2. Each selected agent computes its meta-gradient g_k (MAML, first-order MAML or Reptile) over its
   own fixed tasks, sparsifies it with error feedback and compresses it (`UplinkCodec.encode`).
3. The payloads are summed by an `Aggregator` (over the air, or exactly); the server recovers the
   mean sparse update g_hat (`UplinkCodec.decode`). Agents that stayed silent keep their update in
   their error-feedback memory.
   With clip_norm C > 0 an agent clips its meta-gradient and its transmitted sparse vector to norm
   C, and the server projects its estimate onto the same ball (see UplinkCodec): bounded energy on
   the air, and no single hard task or deep-faded round can throw the meta-model off.
4. theta_{t+1} = theta_t - beta_t g_hat, beta_t = beta_0 (constant) or
   beta_0 / sqrt(1 + (t - 1) / lr_decay_rounds) (decaying).
Then the round is scored: the meta-training loss (the MAML objective over every training agent's
tasks), and personalisation of training agents and of new agents (never seen in training).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from airfl.fl.aggregate import AggregationStats, Aggregator, weighted_mean
from airfl.fl.algorithms.compression import UplinkCodec, clip_to_norm
from airfl.fl.algorithms.maml import FlatModel, TorchTasks, Variant, meta_gradient, meta_loss
from airfl.fl.algorithms.personalise import Scores, personalised_scores
from airfl.fl.meta_tasks import TaskKind

# An aggregator for the agents selected this round (the i-th update comes from devices[i]).
AggregatorFor = Callable[[Sequence[int]], Aggregator]


@dataclass(frozen=True)
class MetaSettings:
    """Meta-training and personalisation knobs (see config_meta.MetaConfig for each)."""

    variant: Variant = "maml"
    inner_steps: int = 1
    inner_lr: float = 0.01
    outer_lr: float = 0.05
    lr_schedule: Literal["constant", "decaying"] = "constant"
    lr_decay_rounds: float = 50.0
    agents_per_round: int = 5
    clip_norm: float = 0.0  # L2 bound on each agent's meta-gradient (0: none)
    personalise_steps: int = 5
    personalise_lr: float = 0.01
    personalise_backtracking: bool = True

    def outer_lr_at(self, t: int) -> float:
        """beta_t for round t (1-based)."""
        if self.lr_schedule == "constant":
            return self.outer_lr
        return self.outer_lr / math.sqrt(1.0 + (t - 1) / self.lr_decay_rounds)


def select_agents(seed: int, t: int, n_agents: int, n_select: int) -> list[int]:
    """The agents selected in round t: uniform without replacement, seeded by (seed, t)."""
    rng = np.random.default_rng([seed, t, 0x5E1EC7])
    return sorted(int(k) for k in rng.choice(n_agents, n_select, replace=False))


@dataclass(frozen=True)
class Evaluation:
    """The meta-model scored on training agents (their own tasks) and on new agents."""

    meta_train_loss: float  # MAML objective with the inner loop of training
    train_agents: Scores  # personalised on training agents' own tasks
    new_agents: Scores  # personalised on new agents' tasks

    @property
    def gap(self) -> float:
        """Generalisation gap: new-agent loss minus training-agent loss, both after personalisation."""
        return self.new_agents.loss - self.train_agents.loss


@dataclass
class MetaRound:
    """What one meta-pFL round produced."""

    round: int
    selected: list[int]
    applied: bool  # False when the aggregator delivered nothing and theta stayed put
    outer_lr: float
    stats: AggregationStats
    recovery_nmse: float | None  # ||g_hat - exact mean sparse update||^2 / ||exact||^2 (channel + recovery)
    update_norm: float
    evaluation: Evaluation


class MetaPfl:
    """Meta-training of one flat meta-model over `train_tasks` agents through `aggregator_for`."""

    def __init__(
        self,
        model: FlatModel,
        theta0: Tensor,
        kind: TaskKind,
        train_tasks: list[TorchTasks],
        eval_train: TorchTasks,
        eval_new: TorchTasks,
        settings: MetaSettings,
        codec: UplinkCodec,
        aggregator_for: AggregatorFor,
        seed: int,
    ):
        self.model = model
        self.theta = theta0.detach().clone()
        self.kind: TaskKind = kind
        self.train_tasks = train_tasks
        self.eval_train = eval_train
        self.eval_new = eval_new
        self.settings = settings
        self.codec = codec
        self.aggregator_for = aggregator_for
        self.seed = seed

    def evaluate(self, theta: Tensor | None = None) -> Evaluation:
        """Score theta (default: the current meta-model)."""
        th = self.theta if theta is None else theta
        s = self.settings
        with torch.no_grad():
            train_loss = float(meta_loss(self.model, th, self.eval_train, self.kind, s.inner_steps, s.inner_lr))
        def personalise(tasks: TorchTasks) -> Scores:
            return personalised_scores(
                self.model, th, tasks, self.kind, s.personalise_steps, s.personalise_lr, s.personalise_backtracking
            )

        return Evaluation(train_loss, personalise(self.eval_train), personalise(self.eval_new))

    def round(self, t: int) -> MetaRound:
        """Run round t (1-based): select, compute, encode, aggregate, decode, update, evaluate."""
        s = self.settings
        selected = select_agents(self.seed, t, len(self.train_tasks), s.agents_per_round)
        payloads: list[np.ndarray] = []
        pending = []
        sparse: list[np.ndarray] = []
        for k in selected:
            g = meta_gradient(
                self.model, self.theta, self.train_tasks[k], self.kind, s.variant, s.inner_steps, s.inner_lr
            )
            payload, state = self.codec.encode(k, clip_to_norm(g.detach().numpy().astype(np.float64), s.clip_norm))
            payloads.append(payload)
            pending.append(state)
            sparse.append(state[0])
        weights = [1.0] * len(selected)
        mean_payload, stats = self.aggregator_for(selected).aggregate(payloads, weights)
        applied = mean_payload is not None
        delivered = set(stats.participants) if applied else set()
        for j, k in enumerate(selected):
            self.codec.commit(k, pending[j], j in delivered)
        beta = s.outer_lr_at(t)
        recovery_nmse: float | None = None
        update_norm = 0.0
        if mean_payload is not None:
            g_hat = self.codec.decode(mean_payload, len(stats.participants))
            exact = weighted_mean(sparse, weights, stats.participants)
            denom = float(exact @ exact)
            recovery_nmse = float(np.sum((g_hat - exact) ** 2) / denom) if denom > 0 else 0.0
            update_norm = float(beta * np.linalg.norm(g_hat))
            self.theta = self.theta - beta * torch.as_tensor(g_hat, dtype=self.theta.dtype)
        return MetaRound(t, selected, applied, beta, stats, recovery_nmse, update_norm, self.evaluate())
