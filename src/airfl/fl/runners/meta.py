"""Over-the-air federated meta-learning experiment: the run and its ideal baseline in lockstep from
one seed, new agents personalised every round, and the from-scratch reference.

Each metrics line has the shared keys (accuracy, loss, applied, the aggregation record) where
"loss" / "accuracy" are the new agents' query loss / accuracy after personalisation, plus
meta_train_loss, train_agents_loss, generalisation_gap, recovery_nmse_db, outer_lr and selected.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from airfl.fl.aggregate import AggregationStats, IdealAggregator, OverTheAirAggregator
from airfl.fl.air_setup import loopback_aggregator, warn_if_round_outlasts_coherence
from airfl.fl.algorithms.compression import UplinkCodec
from airfl.fl.algorithms.maml import FlatModel, to_torch
from airfl.fl.algorithms.meta_pfl import AggregatorFor, Evaluation, MetaPfl, MetaSettings
from airfl.fl.config import ExperimentConfig
from airfl.fl.config_meta import MetaConfig
from airfl.fl.meta_tasks import build_task_set, stack_tasks
from airfl.fl.models import mlp
from airfl.fl.plots import plot_accuracy, plot_nmse
from airfl.fl.plots_meta import plot_meta_losses
from airfl.fl.rundir import RunDirectory, aggregation_record, run_rounds, to_db


def meta_settings(m: MetaConfig) -> MetaSettings:
    return MetaSettings(
        variant=m.variant, inner_steps=m.inner_steps, inner_lr=m.inner_lr, outer_lr=m.outer_lr,
        lr_schedule=m.lr_schedule, lr_decay_rounds=m.lr_decay_rounds, agents_per_round=m.agents_per_round,
        clip_norm=m.clip_norm, personalise_steps=m.personalise_steps, personalise_lr=m.personalise_lr,
        personalise_backtracking=m.personalise_backtracking,
    )


class SelectedDevices:
    """Over-the-air aggregation over the agents selected this round, through ONE persistent round
    protocol over every agent's radio, so per-client state (CFO trackers, timing advances,
    acquisition) follows each agent from round to round as it would on a bench.

    Agents not selected hand the protocol a non-finite update, which by its contract is never
    transmitted (they neither sound nor send); the stats are mapped back to positions among the
    selected agents, as the `Aggregator` protocol expects.
    """

    def __init__(self, inner: OverTheAirAggregator, n_agents: int, devices: Sequence[int]):
        self.inner = inner
        self.n_agents = n_agents
        self.devices = list(devices)

    def aggregate(
        self, updates: Sequence[np.ndarray], weights: Sequence[float]
    ) -> tuple[np.ndarray | None, AggregationStats]:
        n_values = int(np.asarray(updates[0]).size)
        silent = np.full(n_values, np.nan)
        full_updates: list[np.ndarray] = [silent] * self.n_agents
        full_weights = [0.0] * self.n_agents
        for j, k in enumerate(self.devices):
            full_updates[k] = updates[j]
            full_weights[k] = weights[j]
        estimate, stats = self.inner.aggregate(full_updates, full_weights)
        position = {k: j for j, k in enumerate(self.devices)}
        stats.participants = [position[k] for k in stats.participants if k in position]
        stats.rejected = [position[k] for k in stats.rejected if k in position]
        stats.truncated = [position[k] for k in stats.truncated if k in position]
        return estimate, stats


def device_aggregators(cfg: ExperimentConfig, n_agents: int, n_values: int, console: Console) -> AggregatorFor:
    """An aggregator per round over the selected agents only: on the loopback air every agent has
    its own radio (its own links), and only the selected ones sound and transmit."""
    if cfg.aggregation.kind == "ideal":
        ideal = IdealAggregator()
        return lambda _devices: ideal
    warn_if_round_outlasts_coherence(cfg, n_values, cfg.meta.agents_per_round, console)
    air = loopback_aggregator(cfg, n_agents)
    return lambda devices: SelectedDevices(air, n_agents, devices)


def build_meta_pfl(cfg: ExperimentConfig, aggregation: Literal["config", "ideal"], console: Console) -> MetaPfl:
    """Tasks, meta-model (initialised from cfg.seed), uplink codec and aggregators of `cfg`."""
    m = cfg.meta
    tasks = build_task_set(m, cfg.seed)
    torch.manual_seed(cfg.seed)
    model = FlatModel(mlp(tasks.n_features, cfg.model.hidden, tasks.n_outputs).double())
    codec = UplinkCodec.build(
        model.n_params, m.agents, m.topk_fraction, m.error_feedback, m.compression, m.compression_ratio,
        m.recovery, m.recovery_iterations, cfg.seed, m.clip_norm,
    )
    ideal_cfg = cfg.model_copy(update={"aggregation": cfg.aggregation.model_copy(update={"kind": "ideal"})})
    aggregator_for = device_aggregators(ideal_cfg if aggregation == "ideal" else cfg, m.agents, codec.n_values, console)
    return MetaPfl(
        model, model.initial(), tasks.kind, [to_torch(b) for b in tasks.train_agents],
        to_torch(stack_tasks(tasks.train_agents)), to_torch(stack_tasks(tasks.new_agents)),
        meta_settings(m), codec, aggregator_for, cfg.seed,
    )


def _scores(ev: Evaluation) -> dict[str, Any]:
    return {
        "accuracy": ev.new_agents.accuracy,
        "loss": ev.new_agents.loss,
        "meta_train_loss": ev.meta_train_loss,
        "train_agents_loss": ev.train_agents.loss,
        "train_agents_accuracy": ev.train_agents.accuracy,
        "generalisation_gap": ev.gap,
    }


def meta_table(summary: dict[str, Any]) -> Table:
    """The meta-learning figures of a run, beside its ideal baseline and the from-scratch start."""
    meta = summary["meta"]

    def fmt(x: Any) -> str:
        return "—" if x is None else f"{x:.4f}"

    table = Table(title="meta-learning (losses after personalisation unless stated)")
    table.add_column("")
    table.add_column("this run", justify="right")
    table.add_column("ideal baseline", justify="right")
    base = meta.get("baseline") or {}
    for key, label in [
        ("meta_train_loss", "meta-training loss (objective)"),
        ("train_agents_loss", "training agents' loss"),
        ("loss", "new agents' loss"),
        ("generalisation_gap", "generalisation gap (new - training)"),
        ("accuracy", "new agents' accuracy"),
    ]:
        table.add_row(label, fmt(meta["final"][key]), fmt(base.get(key)))
    tail, base_tail = meta["tail"], meta.get("baseline_tail") or {}
    n = meta["tail_rounds"]
    for key, label in [
        ("meta_train_loss", f"meta-training loss, mean of last {n} rounds"),
        ("loss", f"new agents' loss, mean of last {n} rounds"),
        ("generalisation_gap", f"generalisation gap, mean of last {n} rounds"),
    ]:
        table.add_row(label, fmt(tail[key]), fmt(base_tail.get(key)))
    table.add_row("new agents from scratch, same steps", fmt(meta["scratch"]["loss"]), "")
    table.add_row("margin: scratch - meta-trained (last round)", fmt(meta["margin_vs_scratch"]), "")
    return table


def run_meta(cfg: ExperimentConfig, rundir: RunDirectory, console: Console, progress: bool) -> dict[str, Any]:
    torch.set_num_threads(1)  # tiny models: threads cost more than they give
    ota = cfg.aggregation.kind == "ota"
    main_run = build_meta_pfl(cfg, "config", console)
    baseline = build_meta_pfl(cfg, "ideal", console) if ota and cfg.aggregation.baseline else None
    start = main_run.evaluate()
    scratch = start.new_agents  # fine-tuning the random initialisation: "training from scratch"

    def step(t: int) -> tuple[dict[str, Any], str]:
        r = main_run.round(t)
        record: dict[str, Any] = {
            "round": t,
            **_scores(r.evaluation),
            "applied": r.applied,
            "outer_lr": r.outer_lr,
            "selected": r.selected,
            "recovery_nmse_db": to_db(r.recovery_nmse),
            "update_norm": r.update_norm,
            **aggregation_record(r.stats),
        }
        note = f"meta {record['meta_train_loss']:.3f} | new {record['loss']:.3f}"
        if baseline is not None:
            b = baseline.round(t)
            record["baseline"] = _scores(b.evaluation)
            note += f" | ideal new {b.evaluation.new_agents.loss:.3f}"
        if record["nmse_db"] is not None:
            note += f" | NMSE {record['nmse_db']:.1f} dB"
        return record, note

    def extra(records: list[dict[str, Any]]) -> dict[str, Any]:
        keys = ("meta_train_loss", "train_agents_loss", "loss", "generalisation_gap", "accuracy")
        last = records[-1]
        tail = records[-max(1, len(records) // 10):]  # one round is noisy: also the mean of the last 10%
        return {
            "model_parameters": main_run.model.n_params,
            "uplink_values_per_agent": main_run.codec.n_values,
            "meta": {
                "task": cfg.meta.task,
                "variant": cfg.meta.variant,
                "final": {k: last[k] for k in keys},
                "tail_rounds": len(tail),
                "tail": {k: _mean_of(tail, k) for k in keys},
                "baseline_tail": (
                    {k: _mean_of([r["baseline"] for r in tail], k) for k in keys} if "baseline" in last else None
                ),
                "baseline": {k: last["baseline"][k] for k in keys} if "baseline" in last else None,
                "start": _scores(start),
                "scratch": {"loss": scratch.loss, "accuracy": scratch.accuracy, "steps": scratch.steps},
                "margin_vs_scratch": scratch.loss - last["loss"],
                "recovery_nmse_db_mean": _mean_of(records, "recovery_nmse_db"),
            },
        }

    def plots(records: list[dict[str, Any]], out: Path) -> None:
        title = f"{cfg.name}: over the air at {cfg.channel.snr_db:g} dB SNR per client" if ota else cfg.name
        if ota and not cfg.channel.noise:
            title = f"{cfg.name}: over the air, noise-free"
        label = "over the air" if ota else "ideal"
        plot_meta_losses(records, out / "meta_loss.png", title, label, scratch.loss)
        if records[0]["accuracy"] is not None:
            plot_accuracy([{**records[0], "label": label}, *records[1:]], out / "accuracy.png", title)
        plot_nmse(records, out / "aggregation_nmse.png", title)

    summary = run_rounds(cfg, rundir, step, console, progress, extra, plots)
    if progress and "meta" in summary:
        console.print(meta_table(summary))
    return summary


def _mean_of(records: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in records if r.get(key) is not None]
    return float(sum(values) / len(values)) if values else None
