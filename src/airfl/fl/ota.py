"""The over-the-air round: sound, feed back, transmit together, receive.

This is the one place that drives radios with the modem. One round, for the clients whose updates
are finite:
1. Sound: every client sends its cyclic-shift pilot at the same scheduled time t0; the server
   estimates each client's gain h_k, delay d_k and the noise power.
2. Feed back (control plane): truncated inversion picks the participants and their pre-equalisers
   b_k; the aggregation weights are renormalised over the participants; clients' two scalars
   (mean, mean square) give the common scale; each participant gets its timing advance d_k.
3. Transmit together: participant k sends b_k*[preamble | symbols] at t1 - d_k, so all arrive at t1.
4. Receive: detect the preamble, slice the payload, divide by sqrt(eta), de-normalise.

Rounds start on a frame grid (multiples of frame_period_s on the radio clock) so that, on an air
with block fading aligned to the same grid, sounding and payload see the same channel when the
round is shorter than the coherence time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from airfl.modem import (
    AggregationLayout,
    ChannelEstimates,
    FrameNotDetectedError,
    SoundingLayout,
    client_burst,
    client_symbols,
    common_scale,
    error_variance_per_value,
    estimate_channels,
    receive_sum,
    symbol_count,
    truncated_inversion,
    update_statistics,
)
from airfl.radio import Radio


@dataclass(frozen=True)
class OtaSettings:
    """Knobs of the round protocol (samples are at the radios' sample rate).

    tx_power: per-client transmit power limit P (full-scale units squared per complex sample).
    truncation_threshold_db: a client stays silent when |h_k|^2 is below this many dB relative to
        the mean |h|^2 of the clients sounded this round; None means full inversion (all transmit).
    sounding_cp / sounding_min_shift / sounding_min_length: pilot layout (see modem.frame).
    preamble_length: Zadoff-Chu preamble of the aggregation frame (samples, odd).
    guard_samples: extra samples the receiver captures on each side of the aggregation frame.
    lead_samples: scheduling margin between now and the next burst (processing time).
    frame_period_s: rounds start at multiples of this on the radio clock (s).
    false_alarm_probability: preamble detection threshold, per lag, on noise alone.
    """

    tx_power: float = 0.1
    truncation_threshold_db: float | None = -10.0
    sounding_cp: int = 16
    sounding_min_shift: int = 32
    sounding_min_length: int = 127
    preamble_length: int = 127
    guard_samples: int = 32
    lead_samples: int = 64
    frame_period_s: float = 0.02
    false_alarm_probability: float = 1e-6


@dataclass
class RoundResult:
    """Everything one round measured. `estimate` is None when the round delivered nothing."""

    estimate: np.ndarray | None
    weights: np.ndarray  # renormalised aggregation weights per client (0 for non-participants)
    participants: list[int]
    rejected: list[int]  # non-finite updates: never transmitted
    truncated: list[int]  # deep fade: stayed silent this round
    eta: float
    noise_power: float  # estimated at sounding (full-scale units squared per sample)
    error_variance_theory: float | None  # per real value, from the estimated eta and noise power
    channels: ChannelEstimates | None
    airtime_samples: int
    detection_metric: float | None = None
    alignment: complex | None = None
    failure: str | None = None
    timing: dict[str, int] = field(default_factory=dict)


def split_finite(updates: Sequence[np.ndarray]) -> tuple[list[int], list[int]]:
    """Indices of finite updates, and of updates holding NaN or Inf (which are never transmitted)."""
    ok: list[int] = []
    bad: list[int] = []
    for k, g in enumerate(updates):
        (ok if np.all(np.isfinite(g)) else bad).append(k)
    return ok, bad


class OverTheAirRound:
    """Runs analog aggregation rounds over `clients` (transmitters) and `server` (receiver)."""

    def __init__(
        self, clients: Sequence[Radio], server: Radio, sample_rate_hz: float, settings: OtaSettings | None = None
    ):
        if not clients:
            raise ValueError("an over-the-air round needs at least one client radio")
        self.clients = list(clients)
        self.server = server
        self.sample_rate_hz = sample_rate_hz
        self.settings = settings or OtaSettings()
        self.frame_period = max(1, int(round(self.settings.frame_period_s * sample_rate_hz)))

    def _next_frame(self, earliest: int) -> int:
        return -(-earliest // self.frame_period) * self.frame_period

    def run(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> RoundResult:
        """One round over all clients; updates[k] goes through self.clients[k]."""
        s = self.settings
        if len(updates) != len(self.clients) or len(weights) != len(self.clients):
            raise ValueError(
                f"got {len(updates)} updates and {len(weights)} weights for {len(self.clients)} client radios"
            )
        w_all = np.asarray(weights, dtype=np.float64)
        if not (np.all(np.isfinite(w_all)) and np.all(w_all >= 0) and w_all.sum() > 0):
            raise ValueError("aggregation weights must be finite, >= 0 and not all zero")
        n_values = int(np.asarray(updates[0]).size)
        if any(np.asarray(g).size != n_values for g in updates):
            raise ValueError("every client's update must have the same length; nothing was transmitted")
        valid, rejected = split_finite(updates)
        empty = RoundResult(None, np.zeros(len(updates)), [], rejected, [], 0.0, 0.0, None, None, 0)
        if not valid:
            empty.failure = "every update was non-finite; nothing was transmitted"
            return empty

        # 1. Sound.
        sounding = SoundingLayout(len(valid), s.sounding_cp, s.sounding_min_shift, s.sounding_min_length)
        amp = float(np.sqrt(s.tx_power))
        t0 = self._next_frame(self.server.now() + s.lead_samples)
        for j, k in enumerate(valid):
            self.clients[k].transmit(sounding.pilot(j, amp), t0)
        est = estimate_channels(self.server.receive(sounding.burst_length, t0), sounding, amp)

        # 2. Feed back: who transmits, pre-equalisers, weights, common scale, timing advance.
        gain2 = np.abs(est.gains) ** 2
        if s.truncation_threshold_db is None:
            threshold = 0.0
        else:
            threshold = float(np.mean(gain2)) * 10.0 ** (s.truncation_threshold_db / 10.0)
        pc = truncated_inversion(est.gains, s.tx_power, threshold)
        active = [k for j, k in enumerate(valid) if pc.active[j]]
        truncated = [k for j, k in enumerate(valid) if not pc.active[j]]
        airtime = sounding.burst_length
        result = RoundResult(
            None, np.zeros(len(updates)), active, rejected, truncated, pc.eta, est.noise_power, None, est, airtime
        )
        if not active:
            result.failure = "every client was in a deep fade (below the truncation threshold); nobody transmitted"
            return result
        if w_all[active].sum() <= 0:
            result.failure = "every participant has weight 0; nothing was transmitted"
            return result
        w = np.zeros(len(updates))
        w[active] = w_all[active] / w_all[active].sum()
        result.weights = w
        scale = common_scale([update_statistics(updates[k]) for k in active], w[active])
        layout = AggregationLayout(symbol_count(n_values), s.preamble_length)

        # 3. Transmit together, each participant advanced by its own delay.
        delays = {k: int(est.delays[j]) for j, k in enumerate(valid)}
        t1 = t0 + sounding.burst_length + s.lead_samples + max(delays[k] for k in active)
        for j, k in enumerate(valid):
            if pc.active[j]:
                symbols = client_symbols(updates[k], float(w[k]), scale)
                self.clients[k].transmit(client_burst(symbols, pc.precoders[j], layout), t1 - delays[k])
        result.airtime_samples += layout.burst_length
        result.timing = {"sounding_at": t0, "payload_at": t1}

        # 4. Receive.
        window = self.server.receive(layout.burst_length + 2 * s.guard_samples, t1 - s.guard_samples)
        try:
            estimate, report = receive_sum(
                window, layout, pc.eta, scale, n_values, 1.0, len(active), s.false_alarm_probability
            )
        except FrameNotDetectedError as exc:
            result.failure = str(exc)
            return result
        result.estimate = estimate
        result.detection_metric = report.detection.metric
        result.alignment = report.alignment
        result.error_variance_theory = error_variance_per_value(est.noise_power, pc.eta, scale)
        return result
