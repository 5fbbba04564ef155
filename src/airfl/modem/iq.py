"""Receiver front-end corrections: DC offset and IQ imbalance.

DC: the receiver listens to a quiet interval (nobody transmits) before each round; its mean is
the DC offset, its variance the noise floor.

IQ imbalance: an imperfect mixer turns a proper (circular) signal s into y = mu*s + nu*conj(s).
Because E[s^2] = 0 for the signals on air here (Zadoff-Chu pilots, noise, sums of many clients),
E[y^2] / E[|y|^2] ~= 2*nu/conj(mu) =: 2*beta, and z = y - beta*conj(y) cancels the image to first
order (the image rejection improves from |nu/mu|^2 to about |nu/mu|^4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrontEndCorrection:
    """DC offset (complex, full-scale units) and image coefficient beta = nu/conj(mu)."""

    dc: complex = 0j
    beta: complex = 0j

    def apply(self, samples: np.ndarray) -> np.ndarray:
        y = np.asarray(samples, dtype=np.complex128) - self.dc
        if self.beta == 0:
            return y
        return y - self.beta * np.conj(y)

    @property
    def image_rejection_db(self) -> float:
        """How far below the signal the image was before correction (dB; inf if none)."""
        b = abs(self.beta)
        return float("inf") if b == 0 else float(-20 * np.log10(b))


def estimate_dc(quiet: np.ndarray) -> tuple[complex, float]:
    """(DC offset, noise power per complex sample) from samples received while nobody transmits."""
    q = np.asarray(quiet, dtype=np.complex128)
    if q.size < 2:
        raise ValueError("estimating the DC offset needs at least 2 quiet samples")
    dc = complex(q.mean())
    return dc, float(np.mean(np.abs(q - dc) ** 2))


def estimate_image(samples: np.ndarray, dc: complex = 0j) -> complex:
    """beta = nu/conj(mu) of the receiver's IQ imbalance, from a proper signal's samples."""
    y = np.asarray(samples, dtype=np.complex128) - dc
    power = float(np.mean(np.abs(y) ** 2))
    if power <= 0:
        return 0j
    return complex(np.mean(y * y) / (2 * power))
