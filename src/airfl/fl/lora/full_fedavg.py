"""Full-model FedAvg: the reference LoRA is measured against. Every parameter of the pre-trained
model (and the new head) trains and travels, every round."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from airfl.fl.lora.adapters import State
from airfl.fl.lora.strategy import GlobalStateStrategy


class FullFedAvg(GlobalStateStrategy):
    """FedAvg on all parameters of a plain (not peft) model."""

    name = "full_fedavg"

    def __init__(self, model: nn.Module):
        names = [n for n, _ in model.named_parameters()]
        super().__init__(model, names)

    def read_state(self) -> State:
        return {n: p.detach().clone() for n, p in self.model.named_parameters()}

    @torch.no_grad()
    def write_state(self, state: State) -> None:
        for n, p in self.model.named_parameters():
            p.copy_(state[n].to(p.dtype))

    def set_trainable(self) -> None:
        for p in self.model.parameters():
            p.requires_grad_(True)

    def client_lora_states(self, sent: State, uploads: Sequence[State]) -> list[State]:
        return []  # no LoRA factors: nothing to compare
