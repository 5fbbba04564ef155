"""The Aggregator: the one narrow hook between learning algorithms and the physical layer.

An algorithm hands over its clients' update vectors and weights and gets back an estimate of the
weighted mean (the weights renormalised over the clients that actually contributed) plus stats.
It never sees a radio or a waveform. Implementations: `IdealAggregator` (exact, no channel) and
`OverTheAirAggregator` (analog aggregation through radios and the modem).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from airfl.fl.ota import OverTheAirRound, RoundResult, split_finite
from airfl.radio.base import Radio


@dataclass
class AggregationStats:
    """What one aggregation measured.

    participants / rejected / truncated: client indices that contributed, that were refused for a
        non-finite update (never transmitted), and that stayed silent in a deep fade.
    nmse: ||estimate - exact||^2 / ||exact||^2, exact = weighted mean over the participants.
    nmse_theory: the same predicted by truncated-inversion theory from the receiver's estimates.
    snr_db: mean per-client receive SNR at full power measured at sounding (dB), if measured.
    airtime_s: time the medium was occupied by this aggregation (s).
    channel_uses: complex samples on the air; uplink_values: reals sent by all clients together.
    failure: why no estimate was delivered, if none was.
    """

    participants: list[int]
    rejected: list[int] = field(default_factory=list)
    truncated: list[int] = field(default_factory=list)
    nmse: float | None = None
    nmse_theory: float | None = None
    snr_db: float | None = None
    airtime_s: float = 0.0
    channel_uses: int = 0
    uplink_values: int = 0
    failure: str | None = None
    extra: dict[str, float] = field(default_factory=dict)


class Aggregator(Protocol):
    """aggregate(updates, weights) -> (weighted mean estimate or None, stats)."""

    def aggregate(
        self, updates: Sequence[np.ndarray], weights: Sequence[float]
    ) -> tuple[np.ndarray | None, AggregationStats]: ...


def weighted_mean(updates: Sequence[np.ndarray], weights: Sequence[float], clients: Sequence[int]) -> np.ndarray:
    """Exact sum_k w_k g_k / sum_k w_k over `clients`."""
    w = np.asarray([weights[k] for k in clients], dtype=np.float64)
    stacked = np.stack([np.asarray(updates[k], dtype=np.float64) for k in clients])
    return (w / w.sum()) @ stacked


def close_aggregator(aggregator: Aggregator) -> None:
    """Close what an aggregator holds open (radios), if it holds anything."""
    close = getattr(aggregator, "close", None)
    if callable(close):
        close()


class IdealAggregator:
    """Exact weighted mean: the baseline with no channel. Non-finite updates are left out too."""

    def aggregate(
        self, updates: Sequence[np.ndarray], weights: Sequence[float]
    ) -> tuple[np.ndarray | None, AggregationStats]:
        finite, bad = split_finite(updates)
        if not finite:
            return None, AggregationStats([], rejected=bad, failure="every update was non-finite")
        n_values = int(np.asarray(updates[0]).size)
        stats = AggregationStats(finite, rejected=bad, nmse=0.0, uplink_values=n_values * len(finite))
        return weighted_mean(updates, weights, finite), stats


def _nmse(estimate: np.ndarray, exact: np.ndarray) -> float:
    denom = float(np.sum(exact**2))
    return float(np.sum((estimate - exact) ** 2) / denom) if denom > 0 else 0.0


class OverTheAirAggregator:
    """Analog over-the-air aggregation through `OverTheAirRound` (loopback or real radios)."""

    def __init__(self, round_protocol: OverTheAirRound, owned: Sequence[Radio] = ()):
        self.round = round_protocol
        self.last: RoundResult | None = None
        self._owned = list(owned)

    def close(self) -> None:
        """Close the radios this aggregator opened (buffers torn down, cyclic transmissions stopped)."""
        owned, self._owned = self._owned, []
        for radio in owned:
            radio.close()

    def aggregate(
        self, updates: Sequence[np.ndarray], weights: Sequence[float]
    ) -> tuple[np.ndarray | None, AggregationStats]:
        result = self.round.run(updates, weights)
        self.last = result
        n_values = int(np.asarray(updates[0]).size)
        snr = None
        if result.channels is not None and result.channels.noise_power > 0:
            mean_gain = float(np.mean(np.abs(result.channels.gains) ** 2))
            snr = float(10 * np.log10(self.round.settings.tx_power * mean_gain / result.channels.noise_power))
        stats = AggregationStats(
            participants=result.participants,
            rejected=result.rejected,
            truncated=result.truncated,
            snr_db=snr,
            airtime_s=result.airtime_samples / self.round.sample_rate_hz,
            channel_uses=result.airtime_samples,
            uplink_values=n_values * len(result.participants) if result.estimate is not None else 0,
            failure=result.failure,
        )
        if result.estimate is None:
            return None, stats
        exact = result.exact_target(updates)
        stats.nmse = _nmse(result.estimate, exact)
        denom = float(np.sum(exact**2))
        if result.error_variance_theory is not None and denom > 0:
            stats.nmse_theory = result.error_variance_theory * n_values / denom
        stats.extra = {
            "eta": result.eta,
            "noise_power": result.noise_power,
            "detection_metric": float(result.detection_metric or 0.0),
            **{k: float(v) for k, v in result.diagnostics.items()},
        }
        return result.estimate, stats
