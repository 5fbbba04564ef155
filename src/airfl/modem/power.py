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
    """Feedback of one round: pre-equalisers, the common receive gain, who transmits where.

    precoders: complex b_k (single carrier, shape (K,)) or b_kf per used subcarrier (OFDM, (K, F));
        0 where a client is silent.
    eta: common receive power gain: every participant arrives with amplitude sqrt(eta).
    active: bool, same shape as precoders.
    threshold: the |h|^2 below which a client (or a client's subcarrier) stayed silent (linear).
    """

    precoders: np.ndarray
    eta: float
    active: np.ndarray
    threshold: float = 0.0

    @property
    def participants(self) -> np.ndarray:
        """Per client: transmits on at least one subcarrier."""
        return self.active if self.active.ndim == 1 else self.active.any(axis=1)

    @property
    def n_active(self) -> int:
        return int(self.participants.sum())


def _eta(gain2: np.ndarray, active: np.ndarray, tx_power: float, n_fft: int) -> float:
    """Largest common gain every client can reach within power P: client k sends mean power
    eta * sum_f(active/|h_kf|^2) / n_fft, so eta = P * n_fft / max_k sum_f(active/|h_kf|^2)."""
    with np.errstate(divide="ignore"):
        inverse = np.where(active, 1.0 / np.where(active, gain2, 1.0), 0.0)
    load = inverse.sum(axis=1).max()
    return float(tx_power * n_fft / load) if load > 0 else 0.0


def truncated_inversion(
    channels: np.ndarray, tx_power: float, threshold_gain: float, n_fft: int = 1
) -> PowerControl:
    """Truncated channel inversion.

    channels: estimated complex gains h_k (shape (K,)) or per-subcarrier H_kf (shape (K, F)).
    tx_power: per-client power limit P (linear, per complex time sample, for unit-power symbols).
    threshold_gain: where |h|^2 < threshold_gain the client stays silent (linear power gain; 0 means
        full inversion). n_fft: OFDM FFT size (time-domain power = sum_f |b_f|^2 / n_fft); 1 for
        single carrier.
    """
    h = np.asarray(channels, dtype=np.complex128)
    if not tx_power > 0:
        raise ValueError(f"tx_power must be > 0, got {tx_power}")
    h2 = h[:, None] if h.ndim == 1 else h
    gain2 = np.abs(h2) ** 2
    active = (gain2 >= threshold_gain) & (gain2 > 0)
    eta = _eta(gain2, active, tx_power, n_fft)
    b = np.zeros_like(h2)
    if eta > 0:
        b[active] = np.sqrt(eta) * np.conj(h2[active]) / gain2[active]
    if h.ndim == 1:
        return PowerControl(b[:, 0], eta, active[:, 0], threshold_gain)
    return PowerControl(b, eta, active, threshold_gain)


def predicted_error(
    gain2: np.ndarray, weights: np.ndarray, tx_power: float, noise_power: float, scale: float, spread: float,
    threshold: float, n_fft: int = 1,
) -> tuple[float, float]:
    """Predicted mean squared error per real value of the aggregate for one truncation threshold.

    Returns (noise part, truncation-bias part). On subcarrier f the participants' weights add up to
    W_f; the receiver divides by W_f, so noise per value is scale^2*sigma^2/(2*eta*W_f^2), and the
    clients left out shift the weighted mean: with independent client deviations of variance
    `spread` per value, the bias is spread * (sum_{in}(w_k/W_f - w_k)^2 + sum_{out} w_k^2).
    A subcarrier nobody transmits on loses its values: error = spread.
    """
    g2 = gain2[:, None] if gain2.ndim == 1 else gain2
    w = np.asarray(weights, dtype=np.float64) / np.sum(weights)
    active = (g2 >= threshold) & (g2 > 0)
    eta = _eta(g2, active, tx_power, n_fft)
    w_f = (w[:, None] * active).sum(axis=0)  # (F,)
    covered = w_f > 0
    if eta <= 0 or not covered.any():
        return float("inf"), float(spread)
    noise = np.where(covered, scale**2 * noise_power / (2 * eta * np.where(covered, w_f, 1.0) ** 2), 0.0)
    share = np.where(active, w[:, None] / np.where(covered, w_f, 1.0)[None, :], 0.0)
    bias = spread * (((share - w[:, None]) ** 2 * active).sum(axis=0) + ((w[:, None] ** 2) * ~active).sum(axis=0))
    bias = np.where(covered, bias, spread)
    return float(noise.mean()), float(bias.mean())


def optimal_threshold(
    gain2: np.ndarray, weights: np.ndarray, tx_power: float, noise_power: float, scale: float, spread: float,
    n_fft: int = 1, candidates: int = 64,
) -> float:
    """The truncation threshold that minimises predicted noise plus truncation bias.

    Broadband analog aggregation's trade-off: a high threshold silences deep fades (higher eta, less
    noise) but leaves their contributions out (bias). Candidates: 0 (full inversion) and up to
    `candidates` quantiles of the channel gains.
    """
    g = np.asarray(gain2, dtype=np.float64).ravel()
    g = g[g > 0]
    if g.size == 0:
        return 0.0
    cands = np.unique(np.concatenate([[0.0], np.quantile(g, np.linspace(0, 0.95, min(candidates, g.size)))]))
    errors = [sum(predicted_error(gain2, weights, tx_power, noise_power, scale, spread, t, n_fft)) for t in cands]
    return float(cands[int(np.argmin(errors))])


def error_variance_per_value(noise_power: float, eta: float, scale: CommonScale) -> float:
    """Truncation-inversion theory: error variance of each real entry of the de-normalised sum.

    With perfect CSI the receiver sees y = sqrt(eta)*sum(x_k) + n, n ~ CN(0, noise_power), so each
    real entry of the normalised sum carries noise_power/(2*eta); de-normalising multiplies by scale^2.
    """
    if eta <= 0:
        return float("inf")
    return noise_power / (2.0 * eta) * scale.scale**2
