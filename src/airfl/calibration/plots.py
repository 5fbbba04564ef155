"""Figures procedures share: spectrum, constellation, estimate against truth, a swept curve, a
scatter, and complex coefficients around a target.

Each function draws one PNG (matplotlib, Agg: no display needed) and returns nothing; the caller
chooses the path with `ProcedureOutput.figure_path`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _plt():  # noqa: ANN202 - pyplot module
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def spectrum(path: Path, samples: np.ndarray, sample_rate_hz: float, title: str, nfft: int = 1024) -> None:
    """Averaged periodogram (Welch, Hann window) in dBFS per bin against frequency (kHz)."""
    from scipy.signal import welch  # noqa: PLC0415

    plt = _plt()
    x = np.asarray(samples)
    nperseg = min(nfft, len(x))
    f, pxx = welch(x, fs=sample_rate_hz, window="hann", nperseg=nperseg, return_onesided=False, scaling="spectrum")
    order = np.argsort(f)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(f[order] / 1e3, 10 * np.log10(np.maximum(pxx[order], 1e-20)), lw=0.8)
    ax.set_xlabel("frequency (kHz)")
    ax.set_ylabel("power per bin (dBFS)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def constellation(path: Path, symbols: np.ndarray, title: str, reference: np.ndarray | None = None) -> None:
    """Received complex symbols (and, if given, where they should be)."""
    plt = _plt()
    s = np.asarray(symbols)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(s.real, s.imag, ".", ms=2, alpha=0.5, label="received")
    if reference is not None:
        r = np.asarray(reference)
        ax.plot(r.real, r.imag, "x", ms=6, color="k", label="reference")
        ax.legend(loc="upper right")
    ax.set_aspect("equal")
    ax.set_xlabel("I")
    ax.set_ylabel("Q")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def estimate_vs_truth(
    path: Path, labels: Sequence[str], estimate: Sequence[float], truth: Sequence[float] | None, unit: str, title: str
) -> None:
    """One bar pair per radio: the measured value beside the emulator's truth (when known)."""
    plt = _plt()
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(labels) + 2), 3.5))
    width = 0.4 if truth is not None else 0.6
    ax.bar(x - (width / 2 if truth is not None else 0), estimate, width, label="measured")
    if truth is not None:
        ax.bar(x + width / 2, truth, width, label="truth (loopback)")
        ax.legend()
    ax.set_xticks(x, labels, rotation=20, ha="right")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def curve(
    path: Path,
    x: Sequence[float] | np.ndarray,
    ys: dict[str, Sequence[float] | np.ndarray],
    xlabel: str,
    ylabel: str,
    title: str,
    marks: dict[str, float] | None = None,
) -> None:
    """One or more measured curves against a swept setting, with optional vertical marks."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, y in ys.items():
        ax.plot(x, y, marker="o", ms=3, label=label)
    for label, xv in (marks or {}).items():
        ax.axvline(xv, ls="--", color="gray")
        ax.annotate(label, (xv, ax.get_ylim()[1]), rotation=90, va="top", ha="right", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(ys) > 1:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scatter(path: Path, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, xlabel: str, ylabel: str,
            title: str) -> None:
    """Paired values (e.g. an estimate against the exact value), with the y = x line."""
    plt = _plt()
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(xs, ys, ".", ms=2, alpha=0.5)
    if xs.size:
        lo, hi = float(min(xs.min(), ys.min())), float(max(xs.max(), ys.max()))
        ax.plot([lo, hi], [lo, hi], "-", color="k", lw=0.8, label="y = x")
        ax.legend(loc="upper left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def coefficients(path: Path, groups: dict[str, np.ndarray], title: str, target: complex = 1.0 + 0j) -> None:
    """Complex coefficients, one colour per group (e.g. per client), in a square view centred on
    `target` (e.g. effective gains normalised to their target, 1)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 5))
    spread = 0.0
    for label, values in groups.items():
        v = np.asarray(values, dtype=np.complex128).ravel()
        v = v[np.isfinite(v)]
        if v.size:
            spread = max(spread, float(np.max(np.abs(v - target))))
            ax.plot(v.real, v.imag, ".", ms=5, alpha=0.7, label=label)
    ax.plot([target.real], [target.imag], "x", ms=10, color="k", label="target")
    half = max(1.1 * spread, 1e-3)
    ax.set_xlim(target.real - half, target.real + half)
    ax.set_ylim(target.imag - half, target.imag + half)
    ax.set_aspect("equal")
    ax.set_xlabel("I")
    ax.set_ylabel("Q")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
