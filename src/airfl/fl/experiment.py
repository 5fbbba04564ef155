"""Run one experiment from a validated config: pick the runner of `cfg.algorithm`, give it a
RunDirectory, return the summary (DESIGN.md section 6)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from airfl.fl.config import ExperimentConfig
from airfl.fl.rundir import RunDirectory
from airfl.fl.runners.fedavg import run_fedavg
from airfl.fl.runners.lora import run_lora
from airfl.fl.runners.meta import run_meta

Runner = Callable[[ExperimentConfig, RunDirectory, Console, bool], dict[str, Any]]

# One entry per algorithm family; a new family adds its runner module and one line here.
RUNNERS: dict[str, Runner] = {
    "fedavg": run_fedavg,
    "lora": run_lora,
    "meta": run_meta,
}


def run_experiment(
    cfg: ExperimentConfig, out_dir: str | Path, console: Console | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train the configured experiment, write its run directory, return summary.json's content."""
    rundir = RunDirectory(out_dir)
    rundir.write_config(cfg)
    return RUNNERS[cfg.algorithm](cfg, rundir, console or Console(), progress)
