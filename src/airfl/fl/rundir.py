"""The run directory every experiment leaves behind (DESIGN.md section 6), whatever its algorithm.

config.toml (the resolved config, re-runnable as is), metrics.jsonl (one line per round, flushed
as the round ends, so an interrupted run loses nothing), summary.json (the contract scripts rely
on) and PNG plots. Runners call `run_rounds` with a function that does one round and returns its
metrics record; this module owns the progress bar, the files and the summary's shared keys.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from airfl.fl.aggregate import AggregationStats
from airfl.fl.config import ExperimentConfig

SUMMARY_SCHEMA_VERSION = 1
_NMSE_FLOOR = 1e-30  # an exact aggregation reports -300 dB rather than -inf (JSON has no -inf)


def to_db(x: float | None) -> float | None:
    """10*log10(x) for a linear ratio, None for missing or non-finite values (floored at -300 dB)."""
    if x is None or not math.isfinite(x):
        return None
    return 10.0 * math.log10(max(x, _NMSE_FLOOR))


def aggregation_record(stats: AggregationStats) -> dict[str, Any]:
    """The per-round keys every runner writes about its aggregation."""
    return {
        "nmse_db": to_db(stats.nmse) if stats.nmse is not None and stats.channel_uses else None,
        "nmse_theory_db": to_db(stats.nmse_theory),
        "snr_db": stats.snr_db,
        "participants": stats.participants,
        "rejected": stats.rejected,
        "truncated": stats.truncated,
        "airtime_s": stats.airtime_s,
        "channel_uses": stats.channel_uses,
        "uplink_values": stats.uplink_values,
        "failure": stats.failure,
        "ota": {k: (v if math.isfinite(v) else None) for k, v in stats.extra.items()},
    }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarise(cfg: ExperimentConfig, records: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """summary.json: the keys of DESIGN.md section 6 (never renamed), plus extras.

    Records need "accuracy" (or None), "loss", the keys of `aggregation_record`, "applied", and
    optionally "baseline": {"accuracy", "loss"}.
    """
    last = records[-1] if records else None
    ota = cfg.aggregation.kind == "ota"
    nmse = [r["nmse_db"] for r in records if r.get("nmse_db") is not None]
    theory = [r["nmse_theory_db"] for r in records if r.get("nmse_theory_db") is not None]
    snr_measured = [r["snr_db"] for r in records if r.get("snr_db") is not None]
    base = last.get("baseline") if last else None
    return {
        "rounds": len(records),
        "final": {"accuracy": last.get("accuracy"), "loss": last["loss"]} if last else {"accuracy": None, "loss": None},
        "baseline": {"accuracy": base.get("accuracy"), "loss": base["loss"]} if base else None,
        "aggregation": {
            "kind": cfg.aggregation.kind,
            "nmse_db_mean": _mean(nmse) if ota else None,
            "nmse_db_theory": _mean(theory) if ota else None,
            "snr_db": cfg.channel.snr_db if ota and cfg.channel.noise else None,
            "snr_db_measured": _mean(snr_measured),
            "failed_rounds": sum(1 for r in records if not r.get("applied", True)),
            "mean_participants": _mean([float(len(r["participants"])) for r in records]),
            "rejected_updates": sum(len(r["rejected"]) for r in records),
        },
        "airtime_s": float(sum(r["airtime_s"] for r in records)),
        "uplink_values": int(sum(r["uplink_values"] for r in records)),
        "channel_uses": int(sum(r["channel_uses"] for r in records)),
        "wall_s": wall_s,
        "name": cfg.name,
        "algorithm": cfg.algorithm,
        "seed": cfg.seed,
        "schema_version": SUMMARY_SCHEMA_VERSION,
    }


def summary_table(summary: dict[str, Any]) -> Table:
    """The end-of-run table: the run beside its ideal baseline, and the aggregation figures."""

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
        table.add_row(
            "SNR per client (dB): set / measured", f"{fmt(agg['snr_db'], '.1f')} / {fmt(agg['snr_db_measured'], '.1f')}", ""
        )
        table.add_row("mean participants per round", fmt(agg["mean_participants"], ".2f"), "")
        table.add_row("failed rounds", str(agg["failed_rounds"]), "")
        table.add_row("airtime (s)", fmt(summary["airtime_s"], ".4f"), "")
    table.add_row("values sent uplink", f"{summary['uplink_values']:,}", "")
    table.add_row("wall time (s)", fmt(summary["wall_s"], ".1f"), "")
    return table


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


class RunDirectory:
    """One experiment's output folder."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_config(self, cfg: ExperimentConfig) -> None:
        """The resolved config as TOML. TOML has no null: keys left at None (their default) are
        omitted, so reading the file back gives the same config."""
        (self.path / "config.toml").write_text(tomli_w.dumps(_drop_none(cfg.model_dump(mode="json"))), encoding="utf-8")

    def write_summary(self, summary: dict[str, Any]) -> None:
        (self.path / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def run_rounds(
    cfg: ExperimentConfig,
    rundir: RunDirectory,
    step: Callable[[int], tuple[dict[str, Any], str]],
    console: Console,
    progress: bool,
    extra_summary: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    plots: Callable[[list[dict[str, Any]], Path], None] | None = None,
) -> dict[str, Any]:
    """Run rounds 1..cfg.rounds through `step` (returns the round's record and a progress note),
    writing metrics as they come, then summary.json and plots, even when interrupted."""
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
        with (rundir.path / "metrics.jsonl").open("w", encoding="utf-8") as metrics, Progress(
            *columns, console=console, disable=not progress
        ) as bar:
            task = bar.add_task(cfg.name, total=cfg.rounds, info="")
            for t in range(1, cfg.rounds + 1):
                record, note = step(t)
                records.append(record)
                metrics.write(json.dumps(record) + "\n")
                metrics.flush()
                bar.update(task, advance=1, info=note)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        summary = summarise(cfg, records, time.perf_counter() - started)
        if extra_summary is not None and records:
            summary.update(extra_summary(records))
        summary["status"] = status
        rundir.write_summary(summary)
        if plots is not None and records:
            plots(records, rundir.path)
    if progress:
        console.print(summary_table(summary))
        console.print(f"run directory: {rundir.path}")
    return summary
