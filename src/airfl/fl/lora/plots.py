"""PNG plot of a federated LoRA run: accuracy against the values sent uplink (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_accuracy_vs_uplink(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Global and personalised test accuracy against cumulative uplink values, with the values
    full-model FedAvg would have sent in the same rounds marked for reference."""
    x = [r["uplink_values_cumulative"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(x, [r["accuracy"] for r in records], marker="o", ms=3, label="global model")
    ax.plot(x, [r["personalised_accuracy"] for r in records], marker="s", ms=3, ls="--", label="personalised (mean)")
    full = records[-1].get("full_fedavg_uplink_values_cumulative")
    if full:
        ax.axvline(full, color="grey", ls=":", label="full-model FedAvg, same rounds")
    ax.set_xscale("log")
    ax.set_xlabel("cumulative values sent uplink (all clients)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
