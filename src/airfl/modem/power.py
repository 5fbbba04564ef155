"""Common-scale normalisation and truncated channel inversion.

Normalisation: analog aggregation only sums linearly if every client uses the *same* scale. Each
client reports two scalars over the control plane (mean and variance of its update); the server
broadcasts one offset and one scale; client k then transmits w_k*(g_k - offset)/scale, whose complex
symbols have mean power <= 1 for every client (= 1 for the client that sets the scale).

Truncated inversion: client k pre-equalises with b_k = sqrt(eta) * conj(h_k) / |h_k|^2 so every
participant arrives with the same gain sqrt(eta). A transmit power limit P per complex sample forces
eta = P * min_k |h_k|^2 over the participants; clients in a deep fade (|h_k|^2 below the threshold)
stay silent so they do not drag eta, and thus the SNR of the sum, down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class UpdateStatistics:
    """The control-plane report of one client: mean and variance of its update's entries.

    The variance (not the mean square) travels so the server never subtracts two large numbers:
    E[(g - offset)^2] = variance + (mean - offset)^2 stays accurate when |mean| >> spread.
    """

    mean: float
    variance: float
    n_values: int


@dataclass(frozen=True)
class CommonScale:
    """Server broadcast: transmit w_k*(g_k - offset)/scale; the receiver undoes it."""

    offset: float
    scale: float


def update_statistics(update: np.ndarray) -> UpdateStatistics:
    """The two scalars a client reports about its update (finite input assumed)."""
    g = np.asarray(update, dtype=np.float64)
    return UpdateStatistics(mean=float(g.mean()), variance=float(g.var()), n_values=g.size)


def common_scale(stats: list[UpdateStatistics], weights: np.ndarray) -> CommonScale:
    """Offset and scale so that every client's normalised symbols have mean power <= 1.

    weights: the aggregation weights w_k of the same clients, summing to 1.
    A client's transmitted reals are w_k*(g_k - offset)/scale; two reals make one complex symbol,
    so mean symbol power is 2 * w_k^2 * E[(g_k - offset)^2] / scale^2.
    """
    if not stats:
        raise ValueError("common_scale needs at least one client")
    w = np.asarray(weights, dtype=np.float64)
    means = np.array([s.mean for s in stats])
    variances = np.array([s.variance for s in stats])
    offset = float(np.dot(w, means) / w.sum())
    centred_ms = variances + (means - offset) ** 2  # E[(g_k - offset)^2]
    worst = float(np.max(w * w * np.maximum(centred_ms, 0.0)))
    scale = float(np.sqrt(2.0 * worst))
    if not scale > 0:
        scale = 1.0  # every update equals the offset: nothing to send but zeros
    return CommonScale(offset=offset, scale=scale)


def normalise(update: np.ndarray, weight: float, scale: CommonScale) -> np.ndarray:
    """The reals client k puts on the air: weight*(update - offset)/scale."""
    return weight * (np.asarray(update, dtype=np.float64) - scale.offset) / scale.scale


def denormalise(normalised_sum: np.ndarray, total_weight: float, scale: CommonScale) -> np.ndarray:
    """Undo `normalise` on a sum over clients whose weights add up to `total_weight`."""
    return np.asarray(normalised_sum) * scale.scale + scale.offset * total_weight


@dataclass(frozen=True)
class PowerControl:
    """Feedback of one round: pre-equaliser per client, the common receive gain, who transmits."""

    precoders: np.ndarray  # complex b_k, 0 for silent clients
    eta: float  # common receive power gain: participants arrive with amplitude sqrt(eta)
    active: np.ndarray  # bool per client

    @property
    def n_active(self) -> int:
        return int(self.active.sum())


def truncated_inversion(
    channels: np.ndarray, tx_power: float, threshold_gain: float
) -> PowerControl:
    """Truncated channel inversion.

    channels: estimated complex gains h_k. tx_power: per-client power limit P (linear, per complex
    sample, for unit-power symbols). threshold_gain: clients with |h_k|^2 < threshold_gain stay silent
    (linear power gain; 0 means full inversion, everybody transmits).
    """
    h = np.asarray(channels, dtype=np.complex128)
    if not tx_power > 0:
        raise ValueError(f"tx_power must be > 0, got {tx_power}")
    gain2 = np.abs(h) ** 2
    active = (gain2 >= threshold_gain) & (gain2 > 0)
    if not active.any():
        return PowerControl(np.zeros_like(h), 0.0, active)
    eta = float(tx_power * gain2[active].min())
    b = np.zeros_like(h)
    b[active] = np.sqrt(eta) * np.conj(h[active]) / gain2[active]
    return PowerControl(b, eta, active)


def error_variance_per_value(noise_power: float, eta: float, scale: CommonScale) -> float:
    """Truncation-inversion theory: error variance of each real entry of the de-normalised sum.

    With perfect CSI the receiver sees y = sqrt(eta)*sum(x_k) + n, n ~ CN(0, noise_power), so each
    real entry of the normalised sum carries noise_power/(2*eta); de-normalising multiplies by scale^2.
    """
    if eta <= 0:
        return float("inf")
    return noise_power / (2.0 * eta) * scale.scale**2
