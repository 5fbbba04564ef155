"""PNG plots of a meta-learning run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_meta_losses(
    records: list[dict[str, Any]], path: Path, title: str, label: str, scratch_loss: float | None
) -> None:
    """Left: meta-training loss per round (run and ideal baseline). Right: loss after
    personalisation on new and on training agents, with the from-scratch reference."""
    rounds = [r["round"] for r in records]
    has_base = bool(records and records[0].get("baseline"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=120)
    left.plot(rounds, [r["meta_train_loss"] for r in records], label=label)
    if has_base:
        left.plot(rounds, [r["baseline"]["meta_train_loss"] for r in records], ls="--", label="ideal aggregation")
    left.set_ylabel("meta-training loss")
    right.plot(rounds, [r["loss"] for r in records], label=f"new agents ({label})")
    right.plot(rounds, [r["train_agents_loss"] for r in records], label=f"training agents ({label})")
    if has_base:
        right.plot(rounds, [r["baseline"]["loss"] for r in records], ls="--", label="new agents (ideal)")
    if scratch_loss is not None:
        right.axhline(scratch_loss, color="grey", ls=":", label="new agents from scratch")
    right.set_ylabel("query loss after personalisation")
    for ax in (left, right):
        ax.set_xlabel("round")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
