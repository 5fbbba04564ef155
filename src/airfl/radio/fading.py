"""Block fading: unit-mean-power complex coefficients that are constant within a coherence block.

Blocks are windows of `coherence_samples` of true time, starting at multiples of it (block b covers
[b*Tc, (b+1)*Tc)); a sample's block is the one its arrival time falls in. So the channel measured
by a sounding in one block is stale for a payload arriving in the next.

    "none"      static: constant amplitude, one random phase per link
    "rayleigh"  z ~ CN(0, 1) per block (independent across blocks and across taps)
    "rician"    z = sqrt(K/(K+1)) exp(j*phi_LOS) + sqrt(1/(K+1)) CN(0, 1), K = 10^(rician_k_db/10),
                with a static line-of-sight phase phi_LOS per link; E|z|^2 = 1. With multipath only
                the first (shortest) tap carries the line of sight.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

FadingKind = Literal["none", "rayleigh", "rician"]
FADING_KINDS: tuple[str, ...] = ("none", "rayleigh", "rician")


def rician_weights(k_db: float) -> tuple[float, float]:
    """(line-of-sight amplitude, scattered amplitude) for K-factor `k_db` (dB); their squares sum to 1."""
    k = 10.0 ** (k_db / 10.0)
    return math.sqrt(k / (k + 1.0)), math.sqrt(1.0 / (k + 1.0))


def circular_normal(rng: np.random.Generator, n: int | None = None) -> complex | np.ndarray:
    """CN(0, 1): real and imaginary parts N(0, 1/2). The scalar form draws re then im, as always."""
    if n is None:
        return (rng.standard_normal() + 1j * rng.standard_normal()) / np.sqrt(2.0)
    parts = rng.standard_normal((2, n))
    return (parts[0] + 1j * parts[1]) / np.sqrt(2.0)


def add_line_of_sight(scattered: complex | np.ndarray, k_db: float, los_phase: float) -> complex | np.ndarray:
    """Rician coefficient(s) from CN(0, 1) draw(s): LOS on the first element (or the scalar)."""
    los, scatter = rician_weights(k_db)
    if np.ndim(scattered) == 0:
        return los * np.exp(1j * los_phase) + scatter * complex(scattered)  # type: ignore[arg-type]
    z = scatter * np.asarray(scattered, dtype=np.complex128)
    z[0] += los * np.exp(1j * los_phase)
    return z


def k_factor_db(samples: np.ndarray) -> float:
    """Moment estimate of the Rician K-factor (dB) from coefficient samples: |mean|^2 / var."""
    z = np.asarray(samples, dtype=np.complex128)
    m = np.mean(z)
    return float(10.0 * np.log10(abs(m) ** 2 / np.mean(np.abs(z - m) ** 2)))
