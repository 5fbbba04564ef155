"""Run one experiment from a validated config and write its run directory (DESIGN.md section 6).

The run directory holds: config.toml (the resolved config: re-runnable as is), metrics.jsonl (one
line per round, written as the round ends, so an interrupted run loses nothing), summary.json (the
contract scripts rely on) and PNG plots. The over-the-air run and its ideal baseline advance in
lockstep from the same seed, so each metrics line compares them at the same round.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from airfl.fl.aggregate import Aggregator, IdealAggregator, OverTheAirAggregator
from airfl.fl.algorithms.fedavg import FedAvg, FedAvgRound, LocalTraining
from airfl.fl.config import ExperimentConfig
from airfl.fl.data import load_federated_digits
from airfl.fl.models import count_parameters, mlp
from airfl.fl.ota import OtaSettings, OverTheAirRound
from airfl.fl.plots import plot_accuracy, plot_nmse
from airfl.modem import SoundingLayout, symbol_count
from airfl.radio import AirConfig, ChannelConfig, LoopbackAir

SUMMARY_SCHEMA_VERSION = 1
_NMSE_FLOOR = 1e-30  # an exact aggregation reports -300 dB rather than -inf (JSON has no -inf)


def noise_power_for_snr(snr_db: float, tx_power: float, path_loss_db: float) -> float:
    """sigma^2 such that P * E|h|^2 / sigma^2 = snr_db, with E|h|^2 = 10^(-path_loss_db/10)."""
    return tx_power * 10.0 ** (-path_loss_db / 10.0) / 10.0 ** (snr_db / 10.0)


def ota_settings(cfg: ExperimentConfig) -> OtaSettings:
    o = cfg.ota
    return OtaSettings(
        tx_power=o.tx_power,
        truncation_threshold_db=o.truncation_threshold_db if o.power_control == "truncated" else None,
        sounding_cp=o.sounding_cp,
        sounding_min_shift=o.sounding_min_shift,
        sounding_min_length=o.sounding_min_length,
        preamble_length=o.preamble_length,
        guard_samples=o.guard_samples,
        lead_samples=o.lead_samples,
        frame_period_s=o.frame_period_s,
        false_alarm_probability=o.false_alarm_probability,
    )


def loopback_aggregator(cfg: ExperimentConfig, n_clients: int) -> OverTheAirAggregator:
    """Over-the-air aggregation on an emulated air built from the [channel] section."""
    c = cfg.channel
    noise = noise_power_for_snr(c.snr_db, cfg.ota.tx_power, c.path_loss_db) if c.noise else 0.0
    air = LoopbackAir(
        AirConfig(
            seed=cfg.seed,
            sample_rate_hz=c.sample_rate_hz,
            channel=ChannelConfig(
                path_loss_db=c.path_loss_db,
                path_loss_spread_db=c.path_loss_spread_db,
                fading=c.fading,
                coherence_time_s=c.coherence_time_s,
                max_delay_samples=c.max_delay_samples,
                noise_power=noise,
            ),
        )
    )
    clients = [air.radio(f"client{k}") for k in range(n_clients)]
    protocol = OverTheAirRound(clients, air.radio("server"), c.sample_rate_hz, ota_settings(cfg))
    if cfg.ota.sounding_cp < c.max_delay_samples:
        raise ValueError(
            f"ota.sounding_cp ({cfg.ota.sounding_cp}) must cover channel.max_delay_samples "
            f"({c.max_delay_samples}) or client delays cannot be measured"
        )
    return OverTheAirAggregator(protocol)


def _warn_if_round_outlasts_coherence(cfg: ExperimentConfig, n_values: int, n_clients: int, console: Console) -> None:
    """Block fading redraws the channel every coherence time: a longer round sends on stale CSI."""
    o = cfg.ota
    sounding = SoundingLayout(n_clients, o.sounding_cp, o.sounding_min_shift, o.sounding_min_length).burst_length
    payload = o.preamble_length + symbol_count(n_values)
    round_samples = sounding + payload + o.lead_samples + cfg.channel.max_delay_samples
    coherence = cfg.channel.coherence_time_s * cfg.channel.sample_rate_hz
    if cfg.channel.fading == "rayleigh" and round_samples > coherence:
        console.print(
            f"[yellow]warning:[/] one round lasts {round_samples:,} samples but the channel changes every "
            f"{coherence:,.0f} samples (channel.coherence_time_s): the payload will be sent on stale channel "
            "estimates; raise channel.coherence_time_s or channel.sample_rate_hz for a block-fading experiment"
        )


def _db(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return 10.0 * math.log10(max(x, _NMSE_FLOOR))


def _record(r: FedAvgRound, baseline: FedAvgRound | None) -> dict[str, Any]:
    s = r.stats
    rec: dict[str, Any] = {
        "round": r.round,
        "accuracy": r.accuracy,
        "loss": r.loss,
        "train_loss": r.train_loss,
        "applied": r.applied,
        "nmse_db": _db(s.nmse) if s.nmse is not None and s.channel_uses else None,
        "nmse_theory_db": _db(s.nmse_theory),
        "snr_db": s.snr_db,
        "participants": s.participants,
        "rejected": s.rejected,
        "truncated": s.truncated,
        "airtime_s": s.airtime_s,
        "channel_uses": s.channel_uses,
        "uplink_values": s.uplink_values,
        "failure": s.failure,
    }
    if baseline is not None:
        rec["baseline"] = {"accuracy": baseline.accuracy, "loss": baseline.loss, "train_loss": baseline.train_loss}
    return rec


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarise(cfg: ExperimentConfig, records: list[dict[str, Any]], wall_s: float, n_params: int) -> dict[str, Any]:
    """summary.json: the keys of DESIGN.md section 6 (never renamed), plus extras."""
    last = records[-1] if records else None
    ota = cfg.aggregation.kind == "ota"
    nmse = [r["nmse_db"] for r in records if r["nmse_db"] is not None]
    theory = [r["nmse_theory_db"] for r in records if r["nmse_theory_db"] is not None]
    snr_measured = [r["snr_db"] for r in records if r["snr_db"] is not None]
    base = last.get("baseline") if last else None
    return {
        "rounds": len(records),
        "final": {"accuracy": last["accuracy"], "loss": last["loss"]} if last else {"accuracy": None, "loss": None},
        "baseline": {"accuracy": base["accuracy"], "loss": base["loss"]} if base else None,
        "aggregation": {
            "kind": cfg.aggregation.kind,
            "nmse_db_mean": _mean(nmse) if ota else None,
            "nmse_db_theory": _mean(theory) if ota else None,
            "snr_db": cfg.channel.snr_db if ota and cfg.channel.noise else None,
            "snr_db_measured": _mean(snr_measured),
            "failed_rounds": sum(1 for r in records if not r["applied"]),
            "mean_participants": _mean([float(len(r["participants"])) for r in records]),
            "rejected_updates": sum(len(r["rejected"]) for r in records),
        },
        "airtime_s": float(sum(r["airtime_s"] for r in records)),
        "uplink_values": int(sum(r["uplink_values"] for r in records)),
        "channel_uses": int(sum(r["channel_uses"] for r in records)),
        "wall_s": wall_s,
        "name": cfg.name,
        "seed": cfg.seed,
        "model_parameters": n_params,
        "schema_version": SUMMARY_SCHEMA_VERSION,
    }


def _table(summary: dict[str, Any]) -> Table:
    def fmt(x: Any, spec: str = ".4f") -> str:
        return "—" if x is None else format(x, spec)

    agg = summary["aggregation"]
    table = Table(title=f"airfl run: {summary['name']} ({summary['rounds']} rounds, seed {summary['seed']})")
    table.add_column("")
    table.add_column("over the air" if agg["kind"] == "ota" else "ideal", justify="right")
    table.add_column("ideal baseline", justify="right")
    base = summary["baseline"] or {}
    table.add_row("test accuracy", fmt(summary["final"]["accuracy"]), fmt(base.get("accuracy")))
    table.add_row("test loss", fmt(summary["final"]["loss"]), fmt(base.get("loss")))
    if agg["kind"] == "ota":
        table.add_row("aggregation NMSE (dB), mean", fmt(agg["nmse_db_mean"], ".2f"), "")
        table.add_row("  theory (truncated inversion)", fmt(agg["nmse_db_theory"], ".2f"), "")
        table.add_row("SNR per client (dB): set / measured", f"{fmt(agg['snr_db'], '.1f')} / {fmt(agg['snr_db_measured'], '.1f')}", "")
        table.add_row("mean participants per round", fmt(agg["mean_participants"], ".2f"), "")
        table.add_row("failed rounds", str(agg["failed_rounds"]), "")
        table.add_row("airtime (s)", fmt(summary["airtime_s"], ".4f"), "")
    table.add_row("values sent uplink", f"{summary['uplink_values']:,}", "")
    table.add_row("wall time (s)", fmt(summary["wall_s"], ".1f"), "")
    return table


def write_resolved_config(cfg: ExperimentConfig, path: Path) -> None:
    path.write_text(tomli_w.dumps(cfg.model_dump(mode="json")), encoding="utf-8")


def run_experiment(
    cfg: ExperimentConfig, out_dir: str | Path, console: Console | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train the configured experiment (and its ideal baseline), write the run directory, return the summary."""
    console = console or Console()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_resolved_config(cfg, out / "config.toml")
    torch.set_num_threads(1)  # tiny models: threads cost more than they give, and 1 is deterministic

    data = load_federated_digits(
        cfg.data.clients, cfg.data.dirichlet_alpha, cfg.seed, cfg.data.test_fraction, cfg.data.min_samples_per_client
    )

    def factory() -> torch.nn.Module:
        return mlp(data.n_features, cfg.model.hidden, data.n_classes)

    training = LocalTraining(cfg.train.local_epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.momentum)
    aggregator: Aggregator = (
        loopback_aggregator(cfg, len(data.clients)) if cfg.aggregation.kind == "ota" else IdealAggregator()
    )
    main_run = FedAvg(factory, data, training, aggregator, cfg.seed)
    if cfg.aggregation.kind == "ota":
        _warn_if_round_outlasts_coherence(cfg, count_parameters(main_run.model), len(data.clients), console)
    baseline_run = (
        FedAvg(factory, data, training, IdealAggregator(), cfg.seed)
        if cfg.aggregation.baseline and cfg.aggregation.kind == "ota"
        else None
    )
    n_params = count_parameters(main_run.model)

    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    status = "complete"
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    try:
        with (out / "metrics.jsonl").open("w", encoding="utf-8") as metrics, Progress(
            *columns, console=console, disable=not progress, transient=False
        ) as bar:
            task = bar.add_task(f"{cfg.name}", total=cfg.rounds, info="")
            for t in range(1, cfg.rounds + 1):
                r = main_run.round(t)
                b = baseline_run.round(t) if baseline_run else None
                rec = _record(r, b)
                records.append(rec)
                metrics.write(json.dumps(rec) + "\n")
                metrics.flush()
                info = f"acc {r.accuracy:.3f}"
                if b is not None:
                    info += f" | ideal {b.accuracy:.3f}"
                if rec["nmse_db"] is not None:
                    info += f" | NMSE {rec['nmse_db']:.1f} dB"
                bar.update(task, advance=1, info=info)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        summary = summarise(cfg, records, time.perf_counter() - started, n_params)
        summary["status"] = status
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if records:
            title = f"{cfg.name}: over the air at {cfg.channel.snr_db:g} dB SNR per client" if cfg.aggregation.kind == "ota" else cfg.name
            label = "over the air" if cfg.aggregation.kind == "ota" else "ideal"
            plot_accuracy([{**records[0], "label": label}, *records[1:]], out / "accuracy.png", title)
            plot_nmse(records, out / "aggregation_nmse.png", title)
    if progress:
        console.print(_table(summary))
        console.print(f"run directory: {out}")
    return summary

