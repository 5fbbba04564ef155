"""The one interface every federated LoRA strategy implements, and the shared global-state base.

A round, as `airfl.fl.lora.trainer.FederatedLora` runs it:
1. `sent = broadcast(t)`: what the server sends every client this round (the downlink).
2. For every client k: `model = prepare(k, t, sent)` loads what client k holds (what it received,
   plus what it keeps: a frozen A from the shared seed, its own local LoRA), sets which parameters
   train; local training; `upload(k, t, sent)` returns what travels uplink: the change of the
   travelling tensors against what was sent (a state; the trainer flattens it for the Aggregator).
3. The Aggregator returns the weighted mean of the uploads; `apply(t, sent, mean)` updates the
   server's global state from it.
4. `global_model()` and `personal_model(k)` give the models to evaluate.

States are dicts of tensors keyed like peft's adapter state dicts (airfl.fl.lora.adapters).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from peft import PeftModel
from torch import nn

from airfl.fl.lora.adapters import (
    State,
    activate,
    adapter_state,
    add,
    load_adapter_state,
    lora_pairs,
    select,
    subtract,
    to_float64,
)


class Strategy(ABC):
    """What travels each round, and what the server does with the aggregate."""

    name: ClassVar[str]

    @abstractmethod
    def broadcast(self, t: int) -> State:
        """The global tensors the server sends at the start of round t (float64)."""

    @abstractmethod
    def prepare(self, k: int, t: int, sent: State) -> nn.Module:
        """Load client k's model for round t's local training and return it."""

    @abstractmethod
    def upload(self, k: int, t: int, sent: State) -> State:
        """After client k's training: what it sends uplink (its change of the travelling tensors)."""

    @abstractmethod
    def apply(self, t: int, sent: State, mean: State) -> None:
        """Server update from the aggregated weighted mean of the uploads."""

    @abstractmethod
    def global_model(self) -> nn.Module:
        """The global model, loaded and ready to evaluate."""

    def personal_model(self, k: int) -> nn.Module | None:
        """Client k's own model if it differs from the global one (None: it uses the global model)."""
        return None

    def rank(self, t: int) -> int | None:
        """LoRA rank sent in round t (None: not a LoRA strategy)."""
        return None

    def proximal_mu(self, t: int) -> float:
        """Weight mu of the proximal term mu/2 * ||w - w_sent||^2 in round t's local training."""
        return 0.0

    def client_lora_states(self, sent: State, uploads: Sequence[State]) -> list[State]:
        """Each client's LoRA factors after training, rebuilt from what it uploaded (for diagnostics:
        the server never needs them). Default: none."""
        return []


class GlobalStateStrategy(Strategy):
    """A strategy whose server holds one global state (float64), of which `travelling` keys are
    sent down and up every round; the other keys are shared from a seed and never change."""

    def __init__(self, model: nn.Module, travelling: list[str]):
        self.model = model
        self.global_state = to_float64(self.read_state())
        unknown = set(travelling) - set(self.global_state)
        if unknown:
            raise ValueError(f"travelling keys not in the model's state: {sorted(unknown)[:3]}")
        self.travelling = sorted(travelling)

    @abstractmethod
    def read_state(self) -> State:
        """The model's current state (the keys of the global state)."""

    @abstractmethod
    def write_state(self, state: State) -> None:
        """Load a full state into the model."""

    @abstractmethod
    def set_trainable(self) -> None:
        """Make exactly the parameters that train require gradients."""

    def broadcast(self, t: int) -> State:
        return {k: v.clone() for k, v in select(self.global_state, self.travelling).items()}

    def prepare(self, k: int, t: int, sent: State) -> nn.Module:
        self.write_state({**self.global_state, **sent})
        self.set_trainable()
        return self.model

    def upload(self, k: int, t: int, sent: State) -> State:
        return subtract(select(self.read_state(), self.travelling), sent)

    def apply(self, t: int, sent: State, mean: State) -> None:
        self.global_state.update(add(sent, mean))

    def global_model(self) -> nn.Module:
        self.write_state(self.global_state)
        return self.model

    def client_lora_states(self, sent: State, uploads: Sequence[State]) -> list[State]:
        return [{**self.global_state, **add(sent, u)} for u in uploads]


class AdapterStrategy(GlobalStateStrategy):
    """A global-state strategy over one peft adapter ("default") of a PeftModel."""

    def __init__(self, model: PeftModel, travelling: list[str] | None = None):
        self.peft_model = model
        keys = list(adapter_state(model)) if travelling is None else travelling
        super().__init__(model, keys)

    def read_state(self) -> State:
        return adapter_state(self.peft_model)

    def write_state(self, state: State) -> None:
        load_adapter_state(self.peft_model, state)

    def set_trainable(self) -> None:
        activate(self.peft_model, ["default"])


def product_gap(states: Sequence[State], weights: Sequence[float]) -> float | None:
    """How far averaging A and B separately lands from averaging the updates B @ A:

        || sum_k w_k B_k @ sum_k w_k A_k  -  sum_k w_k B_k @ A_k ||_F / || sum_k w_k B_k @ A_k ||_F

    over all adapted layers together (weights normalised). None when there are no LoRA pairs or
    no states; 0 when the exact mean of the products is zero and so is the gap."""
    if not states:
        return None
    pairs = lora_pairs(states[0])
    if not pairs:
        return None
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    num, den = 0.0, 0.0
    for p in pairs:
        mean_a = sum(float(wk) * s[p.a_key].double() for wk, s in zip(w, states))
        mean_b = sum(float(wk) * s[p.b_key].double() for wk, s in zip(w, states))
        mean_ba = sum(float(wk) * (s[p.b_key].double() @ s[p.a_key].double()) for wk, s in zip(w, states))
        num += float(torch.sum((mean_b @ mean_a - mean_ba) ** 2))
        den += float(torch.sum(mean_ba**2))
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return float(np.sqrt(num / den))
