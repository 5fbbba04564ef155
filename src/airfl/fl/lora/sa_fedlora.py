"""SA-FedLoRA (Yang et al., 2024): an initiating stage against client drift, then rank annealing.

- Initiating stage (rounds 1..initiating_rounds): local training adds mu/2 * ||w - w_global||^2
  over the trainable tensors (w_global: what the server sent), as FedProx does.
- Annealing: the rank budget r(t) follows `RankSchedule` from r_max ("heating") down to r_min
  ("cooled"). The adapter is built at r_max; in round t only its first r(t) components are sent,
  trained and returned (the others are zero and stay zero: with A's row and B's column zero, both
  gradients are zero). After averaging A and B, the server forms W = mean(B) @ mean(A) for every
  adapted layer and re-factorises it by truncated SVD to next round's rank r(t+1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from peft import PeftModel

from airfl.fl.lora.adapters import State, add, adapter_state, lora_pairs, pad_rank, subtract, truncate_rank
from airfl.fl.lora.factorise import refactorise
from airfl.fl.lora.rank_schedule import RankSchedule
from airfl.fl.lora.strategy import AdapterStrategy


class SAFedLoRA(AdapterStrategy):
    """FedIT-style averaging with a proximal initiating stage and an annealed, SVD-truncated rank."""

    name = "sa_fedlora"

    def __init__(self, model: PeftModel, schedule: RankSchedule, initiating_rounds: int, mu: float):
        super().__init__(model)
        self.schedule = schedule
        self.initiating_rounds = initiating_rounds
        self.mu = mu
        self.template = {k: v.clone() for k, v in adapter_state(model).items()}
        # row norm of A at initialisation, per layer: refactorised A's rows keep it
        self.a_row_norm = {
            p.a_key: float(torch.sqrt(torch.mean(torch.sum(self.global_state[p.a_key] ** 2, dim=1))))
            for p in lora_pairs(self.global_state)
        }
        self.last_dropped: dict[str, torch.Tensor] = {}

    def rank(self, t: int) -> int | None:
        return self.schedule.rank(t)

    def proximal_mu(self, t: int) -> float:
        return self.mu if t <= self.initiating_rounds else 0.0

    def broadcast(self, t: int) -> State:
        return {k: v.clone() for k, v in truncate_rank(self.global_state, self.schedule.rank(t)).items()}

    def prepare(self, k: int, t: int, sent: State) -> torch.nn.Module:
        self.write_state(pad_rank(sent, self.template))
        self.set_trainable()
        return self.model

    def upload(self, k: int, t: int, sent: State) -> State:
        return subtract(truncate_rank(self.read_state(), self.schedule.rank(t)), sent)

    def apply(self, t: int, sent: State, mean: State) -> None:
        state = pad_rank(add(sent, mean), self.template)
        next_rank = self.schedule.rank(t + 1)
        self.last_dropped = {}
        for p in lora_pairs(state):
            r = refactorise(state[p.b_key], state[p.a_key], next_rank, self.a_row_norm[p.a_key])
            state = {**state, p.b_key: r.b, p.a_key: r.a}
            self.last_dropped[p.a_key] = r.dropped
        self.global_state = pad_rank(state, self.template)

    def client_lora_states(self, sent: State, uploads: Sequence[State]) -> list[State]:
        return [add(sent, u) for u in uploads]
