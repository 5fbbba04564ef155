"""Federated LoRA strategies side by side: accuracy against the values sent uplink.

Runs full-model FedAvg, FedIT, FFA-LoRA, PFTT and SA-FedLoRA, each with ideal aggregation and over
the loopback air (default 20 dB average receive SNR per client), through the same code path as
`airfl run configs/lora_<strategy>.toml` (full-model FedAvg: lora_fedit.toml with
lora.strategy = "full_fedavg"), and writes one table and one figure.

    python benchmarks/lora_compare.py                              # rich table, figure
    python benchmarks/lora_compare.py --json                       # the same numbers as JSON
    python benchmarks/lora_compare.py --markdown docs/lora_compare.md --figure docs/figures/lora_compare.png

Saving = 100 * (1 - uplink values of the strategy / uplink values of full-model FedAvg), both
summed over all rounds and all clients that transmitted, same aggregation mode. Personalised
accuracy: each client's model on test data drawn with that client's label shares, mean over
clients (PFTT: global adapter + the client's local LoRA; the others: the global model).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from airfl.fl.config import load_config
from airfl.fl.experiment import run_experiment

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES: dict[str, tuple[str, list[str]]] = {
    "full_fedavg": ("lora_fedit.toml", ["lora.strategy=\"full_fedavg\""]),
    "fedit": ("lora_fedit.toml", []),
    "ffa": ("lora_ffa.toml", []),
    "pftt": ("lora_pftt.toml", []),
    "sa_fedlora": ("lora_sa_fedlora.toml", []),
}
LABELS = {
    "full_fedavg": "full-model FedAvg",
    "fedit": "FedIT",
    "ffa": "FFA-LoRA",
    "pftt": "PFTT",
    "sa_fedlora": "SA-FedLoRA",
}
MODES = ("ideal", "ota")


def run_one(strategy: str, mode: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One run; returns its summary and per-round curves."""
    config, extra = STRATEGIES[strategy]
    overrides = [
        *extra,
        f"aggregation.kind=\"{mode}\"",
        "aggregation.baseline=false",
        f"channel.snr_db={args.snr_db}",
        f"seed={args.seed}",
        *([f"rounds={args.rounds}"] if args.rounds else []),
    ]
    cfg = load_config(ROOT / "configs" / config, overrides)
    summary = run_experiment(cfg, out / f"{strategy}_{mode}", progress=False)
    records = [json.loads(line) for line in (out / f"{strategy}_{mode}" / "metrics.jsonl").read_text().splitlines()]
    return {
        "strategy": strategy,
        "mode": mode,
        "command": "airfl run configs/" + config + " " + " ".join(shlex.quote(o) for o in overrides),
        "accuracy": summary["final"]["accuracy"],
        "personalised_accuracy": summary["lora"]["final_personalised_accuracy"],
        "uplink_values": summary["uplink_values"],
        "uplink_values_per_client_first_last": summary["lora"]["uplink_values_per_client_first_last"],
        "uplink_airtime_s": summary["lora"]["totals"]["uplink_airtime_s"],
        "downlink_values": summary["lora"]["totals"]["downlink_values"],
        "nmse_db_mean": summary["aggregation"]["nmse_db_mean"],
        "mean_participants": summary["aggregation"]["mean_participants"],
        "final_rank": summary["lora"]["final_rank"],
        "wall_s": summary["wall_s"],
        "curve": {
            "uplink_values_cumulative": [r["uplink_values_cumulative"] for r in records],
            "accuracy": [r["accuracy"] for r in records],
            "personalised_accuracy": [r["personalised_accuracy"] for r in records],
        },
    }


def add_savings(rows: list[dict[str, Any]]) -> None:
    """Each row's uplink saving against full-model FedAvg in the same mode, in percent."""
    full = {r["mode"]: r["uplink_values"] for r in rows if r["strategy"] == "full_fedavg"}
    for r in rows:
        ref = full.get(r["mode"])
        r["saving_pct_vs_full_fedavg"] = 100.0 * (1.0 - r["uplink_values"] / ref) if ref else None


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


COLUMNS = (
    "strategy",
    "aggregation",
    "global acc.",
    "personalised acc.",
    "uplink values",
    "saving vs full FedAvg",
    "values/client/round",
    "uplink airtime (s)",
    "NMSE (dB)",
)


def table_rows(rows: list[dict[str, Any]], snr_db: float) -> list[list[str]]:
    out = []
    for r in rows:
        first, last = r["uplink_values_per_client_first_last"]
        out.append([
            LABELS[r["strategy"]],
            "ideal" if r["mode"] == "ideal" else f"air {snr_db:g} dB",
            _fmt(r["accuracy"], ".3f"),
            _fmt(r["personalised_accuracy"], ".3f"),
            f"{r['uplink_values']:,}",
            _fmt(r["saving_pct_vs_full_fedavg"], ".1f") + (" %" if r["saving_pct_vs_full_fedavg"] is not None else ""),
            f"{first:,}" if first == last else f"{first:,} → {last:,}",
            _fmt(r["uplink_airtime_s"], ".4f"),
            _fmt(r["nmse_db_mean"], ".1f"),
        ])
    return out


def rich_table(rows: list[dict[str, Any]], title: str, snr_db: float) -> Table:
    table = Table(title=title)
    for i, c in enumerate(COLUMNS):
        table.add_column(c, justify="left" if i < 2 else "right")
    for row in table_rows(rows, snr_db):
        table.add_row(*row)
    return table


def markdown_table(rows: list[dict[str, Any]], snr_db: float) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(COLUMNS) - 2)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(rows, snr_db)]
    return "\n".join(lines) + "\n"


def figure(rows: list[dict[str, Any]], path: Path, title: str, snr_db: float) -> None:
    """Global (left) and personalised (right) accuracy against cumulative uplink values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(STRATEGIES, ["black", "tab:blue", "tab:orange", "tab:green", "tab:red"]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=120, sharey=True)
    for ax, key, name in zip(axes, ("accuracy", "personalised_accuracy"), ("global model", "personalised (mean over clients)")):
        for r in rows:
            ax.plot(
                r["curve"]["uplink_values_cumulative"],
                r["curve"][key],
                color=colours[r["strategy"]],
                ls="-" if r["mode"] == "ideal" else "--",
                lw=1.4,
                label=f"{LABELS[r['strategy']]}, " + ("ideal" if r["mode"] == "ideal" else f"air {snr_db:g} dB"),
            )
        ax.set_xscale("log")
        ax.set_xlabel("cumulative values sent uplink (all clients)")
        ax.set_title(name)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_ylim(0.4, 1.0)
    axes[1].legend(loc="lower right", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print a JSON document instead of the table")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    parser.add_argument("--figure", type=Path, default=ROOT / "runs" / "lora_compare" / "lora_compare.png")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "lora_compare", help="run directories")
    parser.add_argument("--rounds", type=int, default=0, help="override every config's rounds (0: as configured)")
    parser.add_argument("--snr-db", type=float, default=20.0, help="average receive SNR per client over the air")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated subset")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STRATEGIES]
    if unknown:
        print(f"lora_compare: unknown strategies {unknown}; choose from {', '.join(STRATEGIES)}.", file=sys.stderr)
        return 2
    # a table this wide wraps badly at rich's 80 columns when the output is not a terminal
    console = Console(stderr=args.json, width=None if sys.stdout.isatty() else 170)
    started = time.perf_counter()
    rows = []
    for s in chosen:
        for mode in MODES:
            console.log(f"{LABELS[s]}, {mode} ...")
            rows.append(run_one(s, mode, args, args.out))
    add_savings(rows)
    title = (
        f"Federated LoRA on digits (MLP pre-trained on 0-4), seed {args.seed}: "
        f"ideal and over the air at {args.snr_db:g} dB SNR per client"
    )
    figure(rows, args.figure, title, args.snr_db)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_table(rows, args.snr_db), encoding="utf-8")
    wall = time.perf_counter() - started
    if args.json:
        print(json.dumps({"title": title, "rows": rows, "figure": str(args.figure), "wall_s": wall}, indent=1))
    else:
        console.print(rich_table(rows, title, args.snr_db))
        console.print(f"figure: {args.figure}   wall time: {wall:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
