"""PFTT (Jiang et al., 2024): personalised federated task tuning.

Two adapters sit on the same layers and add up: a global adapter (with the classification head),
which every client trains and the server aggregates over the air, and a local LoRA per client,
which that client trains and keeps: it never leaves the client, it is never passed to the
Aggregator. The global model is the global adapter alone; client k's model adds its local LoRA.
(The paper's global adapters are bottleneck adapters; here both are peft LoRA adapters, the global
one named "global", the local one "local".)
"""

from __future__ import annotations

from collections.abc import Sequence

from peft import PeftModel
from torch import nn

from airfl.fl.lora.adapters import State, activate, adapter_state, add, load_adapter_state, subtract, to_float64
from airfl.fl.lora.strategy import Strategy

GLOBAL = "global"
LOCAL = "local"


class PFTT(Strategy):
    """Global adapter aggregated, local LoRA kept by each of `n_clients` clients."""

    name = "pftt"

    def __init__(self, model: PeftModel, n_clients: int, rank: int):
        self.model = model
        self._rank = rank
        self.global_state = to_float64(adapter_state(model, GLOBAL))
        initial_local = to_float64(adapter_state(model, LOCAL))
        # client-side memory: client k's local LoRA, carried from round to round
        self.local_states: list[State] = [{k: v.clone() for k, v in initial_local.items()} for _ in range(n_clients)]

    def rank(self, t: int) -> int | None:
        return self._rank

    def broadcast(self, t: int) -> State:
        return {k: v.clone() for k, v in self.global_state.items()}

    def _load(self, global_state: State, k: int | None) -> None:
        load_adapter_state(self.model, global_state, GLOBAL)
        if k is None:
            activate(self.model, [GLOBAL])
        else:
            load_adapter_state(self.model, self.local_states[k], LOCAL)
            activate(self.model, [GLOBAL, LOCAL])

    def prepare(self, k: int, t: int, sent: State) -> nn.Module:
        self._load(sent, k)
        return self.model

    def upload(self, k: int, t: int, sent: State) -> State:
        self.local_states[k] = to_float64(adapter_state(self.model, LOCAL))  # stays on client k
        return subtract(adapter_state(self.model, GLOBAL), sent)

    def apply(self, t: int, sent: State, mean: State) -> None:
        self.global_state = add(sent, mean)

    def global_model(self) -> nn.Module:
        self._load(self.global_state, None)
        return self.model

    def personal_model(self, k: int) -> nn.Module | None:
        self._load(self.global_state, k)
        return self.model

    def client_lora_states(self, sent: State, uploads: Sequence[State]) -> list[State]:
        return [add(sent, u) for u in uploads]
