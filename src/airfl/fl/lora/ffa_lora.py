"""FFA-LoRA (Sun et al., 2024): federated LoRA with the A factors frozen.

A is drawn once from a seed every party shares and never trains, so it never travels; only B (and
the head) train and travel. The server's mean of B gives mean(B) @ A = mean(B @ A): the average of
the clients' updates, exactly, which is what over-the-air addition computes. Half the LoRA values
per round, and no averaging gap.
"""

from __future__ import annotations

from peft import PeftModel

from airfl.fl.lora.adapters import adapter_state, is_lora_a
from airfl.fl.lora.strategy import AdapterStrategy


class FFALoRA(AdapterStrategy):
    """B and the head train and travel; A stays at its shared-seed initialisation."""

    name = "ffa"

    def __init__(self, model: PeftModel, rank: int):
        travelling = [k for k in adapter_state(model) if not is_lora_a(k)]
        super().__init__(model, travelling)
        self._rank = rank

    def set_trainable(self) -> None:
        super().set_trainable()
        for pname, p in self.peft_model.named_parameters():
            if ".lora_A." in pname:
                p.requires_grad_(False)

    def rank(self, t: int) -> int | None:
        return self._rank
