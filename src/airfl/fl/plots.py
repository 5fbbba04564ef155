"""PNG plots of a run (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_accuracy(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Test accuracy per round, over the air and with ideal aggregation."""
    rounds = [r["round"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(rounds, [r["accuracy"] for r in records], marker="o", ms=3, label=records[0].get("label", "run"))
    if records and records[0].get("baseline"):
        ax.plot(rounds, [r["baseline"]["accuracy"] for r in records], ls="--", label="ideal aggregation")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_nmse(records: list[dict[str, Any]], path: Path, title: str) -> None:
    """Aggregation NMSE per round (dB), measured beside truncated-inversion theory."""
    rows = [r for r in records if r.get("nmse_db") is not None]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot([r["round"] for r in rows], [r["nmse_db"] for r in rows], marker="o", ms=3, label="measured")
    theory = [r for r in rows if r.get("nmse_theory_db") is not None]
    if theory:
        ax.plot([r["round"] for r in theory], [r["nmse_theory_db"] for r in theory], ls="--", label="theory")
    ax.set_xlabel("round")
    ax.set_ylabel("aggregation NMSE (dB)")
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
