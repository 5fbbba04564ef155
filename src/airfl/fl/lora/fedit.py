"""FedIT (Zhang et al., 2024): federated instruction tuning with LoRA, plain FedAvg on the adapter.

Every client trains A, B (and the head) from the global adapter; the server averages A and B
separately. The resulting update mean(B) @ mean(A) is not the mean of the clients' updates B_k @ A_k:
the trainer measures that gap every round (`product_gap`).
"""

from __future__ import annotations

from peft import PeftModel

from airfl.fl.lora.strategy import AdapterStrategy


class FedIT(AdapterStrategy):
    """A, B and the head all train and all travel; the server averages each separately."""

    name = "fedit"

    def __init__(self, model: PeftModel, rank: int):
        super().__init__(model)
        self._rank = rank

    def rank(self, t: int) -> int | None:
        return self._rank
