"""Over-the-air federated meta-learning: convergence and generalisation against the channel's SNR.

Runs configs/meta_sine.toml (or --config) at SNR 0, 5, 10, 20, 30 dB, on a noise-free air
("noiseless": fading, delays and truncation still on, receiver noise off) and with ideal
aggregation (exact mean, no channel), for several seeds. Every (condition, seed) is one ordinary
`airfl run` whose run directory is kept under --out. Writes one figure (meta-training loss per
round with 95% bands; generalisation gap and new-agent loss per condition with 95% intervals) and
one table (rich on screen, markdown file, or JSON with --json).

    python benchmarks/meta_sweep.py                   # 8 seeds, 2 processes, table + figure
    python benchmarks/meta_sweep.py --json            # the same numbers as JSON
    python benchmarks/meta_sweep.py --seeds 3 --rounds 60 --jobs 1
    python benchmarks/meta_sweep.py --reuse           # re-analyse the run directories already in --out
    python benchmarks/meta_sweep.py --set meta.tasks_per_agent=1 --out runs/meta_sweep_1task

Definitions (per seed, then mean and 95% Student-t interval across seeds):
- meta-training loss: the MAML objective over every training agent's own tasks, each round.
- tail: the mean over the last --tail rounds of a per-round quantity (one round is noisy).
- generalisation gap: new-agent query loss after personalisation minus training-agent query
  loss after the same personalisation (their own tasks). Paired: the same seed draws the same
  agents and tasks in every condition, so "gap - ideal" is a within-seed difference.
- rounds to target: first round whose 10-round moving average of the meta-training loss is at
  most 1.25 x the ideal run's tail meta-training loss (same seed), over the seeds that got there
  ("(k/n seeds)" when some never did).
- margin vs scratch: new-agent loss when fine-tuning the random initialisation (same steps) minus
  new-agent loss when fine-tuning the meta-model; positive means the meta-trained start wins.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "meta_sine.toml"
CONDITIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ideal", ("aggregation.kind=ideal",)),
    ("noiseless", ("channel.noise=false",)),
    ("30 dB", ("channel.snr_db=30",)),
    ("20 dB", ("channel.snr_db=20",)),
    ("10 dB", ("channel.snr_db=10",)),
    ("5 dB", ("channel.snr_db=5",)),
    ("0 dB", ("channel.snr_db=0",)),
)
TARGET_FACTOR = 1.25
SMOOTH = 10


def run_one(
    config: str, label: str, overrides: Sequence[str], seed: int, rounds: int | None, out: str,
    common: Sequence[str] = (), reuse: bool = False,
) -> dict[str, Any]:
    """One ordinary run (in a worker process); returns its per-round series and summary. With
    reuse, a complete run directory written from the same resolved config is read, not re-run."""
    from rich.console import Console

    from airfl.fl.config import load_config
    from airfl.fl.experiment import run_experiment

    extra = [f"seed={seed}", "aggregation.baseline=false", f"name=sweep_{label.replace(' ', '')}_s{seed}"]
    if rounds is not None:
        extra.append(f"rounds={rounds}")
    cfg = load_config(config, [*common, *overrides, *extra])
    rundir = Path(out) / label.replace(" ", "") / f"seed{seed}"
    done = rundir / "summary.json"
    if reuse and done.is_file() and (rundir / "config.toml").is_file() and load_config(rundir / "config.toml") == cfg \
            and json.loads(done.read_text())["status"] == "complete":
        summary = json.loads(done.read_text())
    else:
        summary = run_experiment(cfg, rundir, Console(quiet=True), progress=False)
    records = [json.loads(line) for line in (rundir / "metrics.jsonl").read_text().splitlines()]

    def series(key: str) -> list[float | None]:
        return [r.get(key) for r in records]

    return {
        "label": label,
        "seed": seed,
        "summary": summary,
        "meta_train_loss": series("meta_train_loss"),
        "train_agents_loss": series("train_agents_loss"),
        "loss": series("loss"),
        "accuracy": series("accuracy"),
        "gap": series("generalisation_gap"),
        "nmse_db": series("nmse_db"),
        "recovery_nmse_db": series("recovery_nmse_db"),
        "participants": [len(r["participants"]) for r in records],
    }


def ci95(values: Sequence[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% Student-t interval) across seeds."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return float(x.mean()), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))


def tail_mean(values: Sequence[float | None], tail: int) -> float:
    x = [v for v in values[-tail:] if v is not None]
    return float(np.mean(x)) if x else float("nan")


def rounds_to_target(losses: Sequence[float], target: float) -> int | None:
    smooth = np.convolve(np.asarray(losses, dtype=float), np.ones(SMOOTH) / SMOOTH, mode="valid")
    hit = np.flatnonzero(smooth <= target)
    return int(hit[0] + SMOOTH) if hit.size else None


def analyse(results: list[dict[str, Any]], tail: int) -> list[dict[str, Any]]:
    """One row per condition: means and 95% intervals across seeds of the per-seed figures."""
    by = {(r["label"], r["seed"]): r for r in results}
    seeds = sorted({r["seed"] for r in results})
    rows = []
    for label, _ in CONDITIONS:
        per_seed: dict[str, list[float]] = {k: [] for k in (
            "meta_train_loss", "train_agents_loss", "new_agents_loss", "gap", "gap_minus_ideal",
            "new_minus_ideal", "meta_minus_ideal", "margin_vs_scratch", "scratch_loss", "nmse_db",
            "recovery_nmse_db", "participants", "accuracy")}
        hits: list[int | None] = []
        for s in seeds:
            r, ideal = by[(label, s)], by[("ideal", s)]
            meta, new, gap = (tail_mean(r[k], tail) for k in ("meta_train_loss", "loss", "gap"))
            scratch = r["summary"]["meta"]["scratch"]["loss"]
            per_seed["meta_train_loss"].append(meta)
            per_seed["train_agents_loss"].append(tail_mean(r["train_agents_loss"], tail))
            per_seed["new_agents_loss"].append(new)
            per_seed["gap"].append(gap)
            per_seed["gap_minus_ideal"].append(gap - tail_mean(ideal["gap"], tail))
            per_seed["new_minus_ideal"].append(new - tail_mean(ideal["loss"], tail))
            per_seed["meta_minus_ideal"].append(meta - tail_mean(ideal["meta_train_loss"], tail))
            per_seed["margin_vs_scratch"].append(scratch - new)
            per_seed["scratch_loss"].append(scratch)
            per_seed["participants"].append(float(np.mean(r["participants"])))
            if r["accuracy"][-1] is not None:
                per_seed["accuracy"].append(tail_mean(r["accuracy"], tail))
            nmse = [v for v in r["nmse_db"] if v is not None]
            if nmse:
                per_seed["nmse_db"].append(float(np.mean(nmse)))
            per_seed["recovery_nmse_db"].append(float(np.mean([v for v in r["recovery_nmse_db"] if v is not None])))
            hits.append(rounds_to_target(r["meta_train_loss"], TARGET_FACTOR * tail_mean(ideal["meta_train_loss"], tail)))
        row: dict[str, Any] = {"condition": label, "seeds": len(seeds)}
        for key, values in per_seed.items():
            row[key] = ci95(values) if values else None
        reached = [h for h in hits if h is not None]
        row["rounds_to_target"] = ci95(reached) if reached else None  # over the seeds that reached it
        row["reached_target"] = len(reached)
        row["rounds_to_target_per_seed"] = hits
        row["per_seed"] = per_seed
        rows.append(row)
    return rows


def _pm(value: tuple[float, float] | None, spec: str = ".3f", sep: str = " ± ") -> str:
    if value is None:
        return "—"
    mean, half = value
    return f"{mean:{spec}}{sep}{half:{spec}}" if np.isfinite(half) else f"{mean:{spec}}"


# (key, markdown header, short header for the terminal, format)
COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("nmse_db", "agg. NMSE (dB)", "NMSE dB", ".1f"),
    ("recovery_nmse_db", "recovered update NMSE (dB)", "rec. dB", ".1f"),
    ("rounds_to_target", "rounds to target", "rounds", ".0f"),
    ("meta_train_loss", "meta-training loss", "meta loss", ".3f"),
    ("meta_minus_ideal", "meta-training − ideal (paired)", "Δmeta", ".3f"),
    ("train_agents_loss", "training-agent loss", "train", ".3f"),
    ("new_agents_loss", "new-agent loss", "new", ".3f"),
    ("gap", "generalisation gap", "gap", ".3f"),
    ("gap_minus_ideal", "gap − ideal (paired)", "Δgap", ".3f"),
    ("new_minus_ideal", "new − ideal (paired)", "Δnew", ".3f"),
    ("margin_vs_scratch", "margin vs scratch", "margin", ".3f"),
)


def _cells(row: dict[str, Any], compact: bool = False) -> list[str]:
    cells = []
    for key, _, _, spec in COLUMNS:
        value = row[key]
        exact = key in ("nmse_db", "recovery_nmse_db") and value is not None and value[0] < -200
        cell = "exact" if exact else _pm(value, spec, "±" if compact else " ± ")
        if key == "rounds_to_target" and row["reached_target"] < row["seeds"]:
            cell += f" ({row['reached_target']}/{row['seeds']})" if compact else f" ({row['reached_target']}/{row['seeds']} seeds)"
        cells.append(cell)
    return cells


def markdown_table(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| condition | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for row in rows:
        lines.append(f"| {row['condition']} | " + " | ".join(_cells(row)) + " |")
    return "\n".join(lines) + "\n"


def rich_table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, caption="mean ± 95% interval across seeds; Δ = paired difference to ideal; "
                  "losses are query MSE after personalisation, averaged over the last rounds")
    table.add_column("condition")
    for _, _, short, _ in COLUMNS:
        table.add_column(short, justify="right")
    for row in rows:
        table.add_row(row["condition"], *_cells(row, compact=True))
    return table


def _band(curves: np.ndarray, width: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rounds, mean, 95% half-width) across seeds of `width`-round moving averages."""
    curves = np.array(curves, dtype=float)
    curves[~np.isfinite(curves)] = np.nan  # a diverged run shows as a gap, not a crash
    smooth = np.array([np.convolve(c, np.ones(width) / width, mode="valid") for c in curves])
    n = len(smooth)
    half = stats.t.ppf(0.975, max(n - 1, 1)) * np.nanstd(smooth, axis=0, ddof=1) / np.sqrt(n)
    return np.arange(smooth.shape[1]) + width, np.nanmean(smooth, axis=0), half


def figure(results: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """2 x 2: convergence, its paired difference to ideal, the generalisation gap, personalised losses."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [c for c, _ in CONDITIONS]
    colours = dict(zip(labels, ["black", "tab:brown", "tab:blue", "tab:green", "tab:orange", "tab:red", "tab:purple"]))
    fig, ((ax_conv, ax_diff), (ax_gap, ax_new)) = plt.subplots(2, 2, figsize=(13, 9), dpi=110)
    seeds = sorted({r["seed"] for r in results})
    by = {(r["label"], r["seed"]): r for r in results}
    for label in labels:
        rounds, mean, half = _band([by[(label, s)]["meta_train_loss"] for s in seeds])
        ax_conv.plot(rounds, mean, color=colours[label], label=label, lw=1.4, ls="--" if label == "ideal" else "-")
        if label in ("ideal", "0 dB"):
            ax_conv.fill_between(rounds, mean - half, mean + half, color=colours[label], alpha=0.15)
        if label != "ideal":
            diff = [np.asarray(by[(label, s)]["meta_train_loss"], float) - np.asarray(by[("ideal", s)]["meta_train_loss"], float)
                    for s in seeds]
            rounds, mean, half = _band(diff, 10)
            ax_diff.plot(rounds, mean, color=colours[label], label=label, lw=1.4)
            if label in ("20 dB", "0 dB"):
                ax_diff.fill_between(rounds, mean - half, mean + half, color=colours[label], alpha=0.15)
    ax_conv.set_yscale("log")
    ax_conv.set_xlabel("round")
    ax_conv.set_ylabel("meta-training loss (MSE, 5-round mean)")
    ax_conv.set_title("convergence: mean across seeds (95% band: ideal, 0 dB)")
    ax_diff.axhline(0, color="black", lw=0.8, ls="--")
    ax_diff.set_xlabel("round")
    ax_diff.set_ylabel("meta-training loss minus ideal, same seed (10-round mean)")
    ax_diff.set_title("paired slow-down vs ideal (95% band: 20 dB, 0 dB)")
    for ax in (ax_conv, ax_diff):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, ncol=2)
    x = np.arange(len(rows))
    names = [row["condition"] for row in rows]
    for key, offset, marker, name in (("gap", -0.12, "o", "gap = new − training-agent loss"),
                                      ("gap_minus_ideal", 0.12, "s", "gap − ideal gap (same seed)")):
        ax_gap.errorbar(x + offset, [row[key][0] for row in rows], yerr=[row[key][1] for row in rows],
                        fmt=marker, capsize=3, label=name)
    ax_gap.axhline(0, color="grey", lw=0.8)
    ax_gap.set_ylabel("MSE, mean of the last rounds")
    ax_gap.set_title("generalisation gap (mean, 95% CI across seeds)")
    for key, offset, marker, name in (("train_agents_loss", -0.12, "v", "training agents"),
                                      ("new_agents_loss", 0.12, "^", "new agents")):
        ax_new.errorbar(x + offset, [row[key][0] for row in rows], yerr=[row[key][1] for row in rows],
                        fmt=marker, capsize=3, label=name)
    scratch = rows[0]["scratch_loss"][0]
    ax_new.axhline(scratch, color="grey", ls=":", label=f"new agents from scratch ({scratch:.2f})")
    ax_new.set_ylim(0, scratch * 1.1)
    ax_new.set_ylabel("query MSE after personalisation, last rounds")
    ax_new.set_title("personalised loss (mean, 95% CI across seeds)")
    for ax in (ax_gap, ax_new):
        ax.set_xticks(x, names)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="experiment config (default configs/meta_sine.toml)")
    p.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 (default 8)")
    p.add_argument("--rounds", type=int, default=None, help="rounds per run (default: the config's)")
    p.add_argument("--tail", type=int, default=20, help="rounds averaged at the end of a run (default 20)")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--out", default=str(ROOT / "runs" / "meta_sweep"), help="where run directories, figure and table go")
    p.add_argument("--figure", default=None, help="figure path (default OUT/meta_sweep.png)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run, e.g. --set meta.tasks_per_agent=1 (repeatable)")
    p.add_argument("--reuse", action="store_true",
                   help="read complete run directories under OUT made from the same config instead of re-running")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/meta_sweep.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(label, overrides, seed) for seed in range(args.seeds) for label, overrides in CONDITIONS]
    load_before = os.getloadavg()
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool, Progress(console=console, disable=args.json) as bar:
        task = bar.add_task("meta sweep", total=len(jobs))
        futures = [pool.submit(run_one, args.config, label, ov, seed, args.rounds, str(out), args.set, args.reuse) for label, ov, seed in jobs]
        for future in as_completed(futures):
            results.append(future.result())
            bar.advance(task)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    rows = analyse(results, args.tail)
    rounds = len(results[0]["meta_train_loss"])
    overrides = f" [{' '.join(args.set)}]" if args.set else ""
    run_seconds = sum(r["summary"]["wall_s"] for r in results)
    timing = (f"wall {wall:.0f} s with {args.jobs} processes" if not args.reuse else
              f"re-analysed with --reuse; the runs took {run_seconds:.0f} s of run time in all")
    title = (f"{Path(args.config).name}{overrides}: {args.seeds} seeds x {len(CONDITIONS)} conditions, {rounds} rounds, "
             f"tail = last {args.tail} rounds; {timing}")
    fig_path = Path(args.figure) if args.figure else out / "meta_sweep.png"
    figure(results, rows, fig_path, title)
    header = (f"`{command.strip()}` — {title}; load average {load_before[0]:.1f} at start, "
              f"{load_after[0]:.1f} at end (2 cores).")
    (out / "meta_sweep.md").write_text(markdown_table(rows, header), encoding="utf-8")
    document = {
        "command": command.strip(), "config": args.config, "seeds": args.seeds, "rounds": rounds, "tail": args.tail,
        "jobs": args.jobs, "overrides": args.set, "reused": args.reuse, "wall_s": wall, "run_seconds": run_seconds, "load_average_start": load_before[0], "load_average_end": load_after[0],
        "figure": str(fig_path), "table": str(out / "meta_sweep.md"), "rows": rows,
    }
    (out / "meta_sweep.json").write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(document, indent=1))
    else:
        out_console = Console()
        out_console.print(rich_table(rows, title))
        out_console.print(f"figure: {fig_path}\ntable: {out / 'meta_sweep.md'}\n{timing} "
                          f"(load average {load_before[0]:.1f} -> {load_after[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
