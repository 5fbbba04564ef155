"""From a validated config to the pieces of a federated LoRA run: task, model, strategy, local
training settings, radio frame."""

from __future__ import annotations

from torch import nn

from airfl.fl.air_setup import ota_settings
from airfl.fl.config import ExperimentConfig
from airfl.fl.lora.accounting import RadioFrame
from airfl.fl.lora.adapters import AdapterSpec, add_lora, attach_lora
from airfl.fl.lora.ffa_lora import FFALoRA
from airfl.fl.lora.fedit import FedIT
from airfl.fl.lora.full_fedavg import FullFedAvg
from airfl.fl.lora.models import (
    HEAD,
    default_targets,
    digits_mlp,
    minilm_classifier,
    minilm_tokenizer,
    pretrained_digits_body,
)
from airfl.fl.lora.pftt import GLOBAL, LOCAL, PFTT
from airfl.fl.lora.rank_schedule import RankSchedule
from airfl.fl.lora.sa_fedlora import SAFedLoRA
from airfl.fl.lora.strategy import Strategy
from airfl.fl.lora.tasks import FederatedTask, digits_task, text_task
from airfl.fl.lora.training import LocalTraining

N_DIGIT_FEATURES = 64


def build_task(cfg: ExperimentConfig) -> FederatedTask:
    """Digits (mlp_digits) or generated text (minilm), split over [data]'s clients."""
    d, lo = cfg.data, cfg.lora
    if lo.model == "minilm":
        return text_task(
            minilm_tokenizer(),
            d.clients,
            d.dirichlet_alpha,
            cfg.seed,
            lo.text_train_samples,
            lo.text_test_samples,
            lo.max_seq_length,
            d.min_samples_per_client,
        )
    return digits_task(d.clients, d.dirichlet_alpha, cfg.seed, d.test_fraction, d.min_samples_per_client)


def base_model(cfg: ExperimentConfig, n_classes: int) -> nn.Module:
    """The pre-trained model with a fresh head (drawn from the run's seed)."""
    lo = cfg.lora
    if lo.model == "minilm":
        return minilm_classifier(n_classes, cfg.seed)
    hidden = list(cfg.model.hidden)
    body = pretrained_digits_body(
        tuple(hidden), lo.pretrain_classes, lo.pretrain_epochs, cfg.seed, cfg.data.test_fraction
    )
    return digits_mlp(body, N_DIGIT_FEATURES, hidden, n_classes, cfg.seed)


def adapter_spec(cfg: ExperimentConfig, rank: int, with_head: bool = True, alpha: float | None = None) -> AdapterSpec:
    """LoRA of `rank` on the configured targets (alpha: lora.alpha unless given), the head trained in full."""
    lo = cfg.lora
    targets = lo.target_modules or default_targets(lo.model, list(cfg.model.hidden))
    a = lo.alpha if alpha is None else alpha
    return AdapterSpec(rank, a, lo.dropout, tuple(targets), (HEAD,) if with_head else ())


def build_strategy(cfg: ExperimentConfig, task: FederatedTask) -> tuple[Strategy, int]:
    """The configured strategy on a fresh pre-trained model, and the model's parameter count
    (what full-model FedAvg sends per client per round)."""
    lo = cfg.lora
    model = base_model(cfg, task.n_classes)
    n_full = sum(p.numel() for p in model.parameters())
    seed = cfg.seed + 17  # adapter initialisation, shared by every client
    if lo.strategy == "full_fedavg":
        return FullFedAvg(model), n_full
    if lo.strategy == "pftt":
        peft_model = attach_lora(model, adapter_spec(cfg, lo.rank), seed, GLOBAL)
        # the local LoRA gets the global adapter's scale alpha / r, so neither learns faster per unit
        local = adapter_spec(cfg, lo.local_rank, with_head=False, alpha=lo.alpha * lo.local_rank / lo.rank)
        add_lora(peft_model, local, seed + 1, LOCAL)
        return PFTT(peft_model, len(task.clients), lo.rank), n_full
    if lo.strategy == "sa_fedlora":
        schedule = RankSchedule(
            lo.r_max, lo.r_min, cfg.rounds, lo.rank_warmup_rounds, lo.rank_final_rounds, lo.rank_schedule
        )
        peft_model = attach_lora(model, adapter_spec(cfg, lo.r_max), seed)
        return SAFedLoRA(peft_model, schedule, lo.initiating_rounds, lo.mu), n_full
    peft_model = attach_lora(model, adapter_spec(cfg, lo.rank), seed)
    if lo.strategy == "ffa":
        return FFALoRA(peft_model, lo.rank), n_full
    return FedIT(peft_model, lo.rank), n_full


def local_training(cfg: ExperimentConfig) -> LocalTraining:
    t = cfg.train
    return LocalTraining(t.local_epochs, t.batch_size, t.lr, t.momentum, cfg.lora.optimizer)


def radio_frame(cfg: ExperimentConfig) -> RadioFrame:
    """The round protocol's frames on the configured radio (for airtime accounting)."""
    return RadioFrame(ota_settings(cfg), cfg.channel.sample_rate_hz)
