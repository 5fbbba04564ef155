"""The [meta] section: over-the-air federated meta-learning (pre-training) and personalisation.

Used when `algorithm = "meta"` (see docs/meta_learning.md); the model's hidden widths come from
[model], the air from [channel] and [ota], rounds and seed from the top level.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class MetaConfig(BaseModel):
    """Meta-training across agents, the uplink's sparsification and compression, and new agents."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # tasks
    task: Literal["sine", "digits_fewshot"] = Field("sine", description="task family")
    agents: int = Field(20, ge=1, le=1000, description="training agents (each holds its own fixed tasks)")
    tasks_per_agent: int = Field(5, ge=1, le=1000, description="fixed tasks held by every training agent")
    support: int = Field(10, ge=1, le=1000, description="support size: points (sine) or shots per class (digits)")
    query: int = Field(10, ge=1, le=1000, description="query size: points (sine) or images per class (digits)")
    n_way: int = Field(5, ge=2, le=10, description="classes per episode (digits only)")
    heterogeneity: float = Field(0.5, ge=0, le=1, description="0: i.i.d. agents, 1: maximally different agents")
    class_split: Literal["skewed", "disjoint"] = Field("skewed", description="digits: class subsets per agent")
    # meta-training
    variant: Literal["maml", "fomaml", "reptile"] = "maml"
    inner_steps: int = Field(1, ge=1, le=100, description="adaptation steps inside meta-training")
    inner_lr: float = Field(0.01, gt=0, le=10, description="adaptation step size")
    outer_lr: float = Field(0.05, gt=0, le=100, description="meta step size beta_0")
    lr_schedule: Literal["constant", "decaying"] = Field(
        "constant", description="decaying: beta_t = beta_0 / sqrt(1 + (t - 1) / lr_decay_rounds)"
    )
    lr_decay_rounds: float = Field(50.0, gt=0)
    agents_per_round: int = Field(5, ge=1, le=1000, description="devices selected at random every round")
    clip_norm: float = Field(
        0.0, ge=0,
        description="L2 bound on each agent's meta-gradient and transmitted vector; "
        "the server projects its estimate onto it (0: off)",
    )
    # uplink: sparsification with error feedback, then linear compression shared by seed
    topk_fraction: float = Field(
        1.0, gt=0, le=1, description="share of entries each agent keeps (1: no sparsification)"
    )
    error_feedback: bool = Field(True, description="keep what top-k dropped and add it next round")
    compression: Literal["none", "gaussian", "dft"] = Field("none", description="linear sketch sent on the air")
    compression_ratio: float = Field(0.5, gt=0, le=1, description="sketch length / model size")
    recovery: Literal["iht", "amp"] = Field("iht", description="sparse recovery at the server")
    recovery_iterations: int = Field(60, ge=1, le=10_000)
    # new agents: personalisation
    new_agents: int = Field(20, ge=1, le=1000, description="agents never seen in training")
    new_agent_tasks: int = Field(5, ge=1, le=1000)
    personalise_steps: int = Field(5, ge=0, le=1000, description="fine-tuning steps on a new agent's support set")
    personalise_lr: float = Field(0.01, gt=0, le=10)
    personalise_backtracking: bool = Field(
        True, description="halve the step instead of taking one that raises the agent's own support loss"
    )

    @model_validator(mode="after")
    def _consistent(self) -> MetaConfig:
        if self.agents_per_round > self.agents:
            raise ValueError(
                f"meta.agents_per_round ({self.agents_per_round}) cannot exceed meta.agents ({self.agents})"
            )
        if self.compression != "none" and self.topk_fraction >= 1:
            raise ValueError(
                "meta.compression needs sparse updates to recover: set meta.topk_fraction below 1 "
                "(e.g. 0.05), or meta.compression = \"none\""
            )
        return self
