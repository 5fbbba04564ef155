"""FedAvg experiment: the over-the-air run and its ideal baseline, in lockstep from one seed.

Each metrics line then compares the two at the same round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from airfl.fl.aggregate import IdealAggregator, close_aggregator
from airfl.fl.air_setup import make_aggregator
from airfl.fl.algorithms.fedavg import FedAvg, LocalTraining
from airfl.fl.config import ExperimentConfig
from airfl.fl.data import load_federated_digits
from airfl.fl.models import count_parameters, mlp
from airfl.fl.plots import plot_accuracy, plot_nmse
from airfl.fl.rundir import RunDirectory, aggregation_record, run_rounds


def run_fedavg(cfg: ExperimentConfig, rundir: RunDirectory, console: Console, progress: bool) -> dict[str, Any]:
    torch.set_num_threads(1)  # tiny models: threads cost more than they give
    d = cfg.data
    data = load_federated_digits(d.clients, d.dirichlet_alpha, cfg.seed, d.test_fraction, d.min_samples_per_client)

    def factory() -> torch.nn.Module:
        return mlp(data.n_features, cfg.model.hidden, data.n_classes)

    training = LocalTraining(cfg.train.local_epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.momentum)
    n_params = count_parameters(factory())
    aggregator = make_aggregator(cfg, len(data.clients), n_params, console)
    main_run = FedAvg(factory, data, training, aggregator, cfg.seed)
    ota = cfg.aggregation.kind == "ota"
    baseline = FedAvg(factory, data, training, IdealAggregator(), cfg.seed) if ota and cfg.aggregation.baseline else None

    def step(t: int) -> tuple[dict[str, Any], str]:
        r = main_run.round(t)
        record: dict[str, Any] = {
            "round": t,
            "accuracy": r.accuracy,
            "loss": r.loss,
            "train_loss": r.train_loss,
            "applied": r.applied,
            **aggregation_record(r.stats),
        }
        note = f"acc {r.accuracy:.3f}"
        if baseline is not None:
            b = baseline.round(t)
            record["baseline"] = {"accuracy": b.accuracy, "loss": b.loss, "train_loss": b.train_loss}
            note += f" | ideal {b.accuracy:.3f}"
        if record["nmse_db"] is not None:
            note += f" | NMSE {record['nmse_db']:.1f} dB"
        return record, note

    def plots(records: list[dict[str, Any]], out: Path) -> None:
        title = f"{cfg.name}: over the air at {cfg.channel.snr_db:g} dB SNR per client" if ota else cfg.name
        label = "over the air" if ota else "ideal"
        plot_accuracy([{**records[0], "label": label}, *records[1:]], out / "accuracy.png", title)
        plot_nmse(records, out / "aggregation_nmse.png", title)

    try:
        return run_rounds(cfg, rundir, step, console, progress, lambda _: {"model_parameters": n_params}, plots)
    finally:
        close_aggregator(aggregator)
