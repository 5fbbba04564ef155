"""Analog over-the-air computation: one client's transmit chain and the receiver's chain for the sum.

Transmit (client k):  update --normalise(w_k, common scale)--> reals --pairs--> symbols
                      burst = b_k * [preamble | symbols]            (b_k from truncated inversion)
Receive (server):     window --detect preamble--> timing --slice payload--> / sqrt(eta)
                      --> reals --de-normalise--> estimate of sum_k w_k g_k over the participants

Everything here is numpy in, numpy out: the same functions run on the loopback, on real radios
and on recordings from any SDR or simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from airfl.modem.frame import AggregationLayout, OfdmAggregationLayout
from airfl.modem.mapping import reals_to_symbols, symbol_count, symbols_to_reals
from airfl.modem.ofdm import common_phase_errors
from airfl.modem.pilots import pilot_values, track_common_gain
from airfl.modem.power import CommonScale, denormalise, normalise
from airfl.modem.sync import Detection, detect_preamble


def client_symbols(update: np.ndarray, weight: float, scale: CommonScale, clip: float | None = None) -> np.ndarray:
    """Normalise one client's update with the common scale and map it to complex symbols.

    clip: if given, normalised reals are limited to +-clip first (see `peak_clip_level`), so the
    burst can never exceed the DAC's full scale; the few clipped values are a small, known
    distortion instead of a backoff of every client's power.
    """
    reals = normalise(update, weight, scale)
    if clip is not None:
        reals = np.clip(reals, -clip, clip)
    return reals_to_symbols(reals)


def peak_clip_level(tx_power: float, dac_peak: float = 1.0) -> float:
    """Largest normalised real a client may send so its single-carrier burst stays within dac_peak.

    A pre-equaliser has |b|^2 <= P (truncated inversion), a symbol a+jb has |s| <= sqrt(2)*max(|a|,|b|),
    so |b*s| <= dac_peak whenever every real is within dac_peak / sqrt(2*P).
    """
    return float(dac_peak / np.sqrt(2.0 * tx_power))


def client_burst(symbols: np.ndarray, precoder: complex, layout: AggregationLayout) -> np.ndarray:
    """The complex baseband burst client k transmits: its pre-equaliser times
    [preamble | payload with pilots]."""
    if len(symbols) != layout.n_symbols:
        raise ValueError(f"layout expects {layout.n_symbols} symbols, got {len(symbols)}")
    return precoder * np.concatenate([layout.preamble, layout.pattern.insert(symbols)])


def client_burst_ofdm(symbols: np.ndarray, precoders: np.ndarray, layout: OfdmAggregationLayout) -> np.ndarray:
    """Client k's OFDM burst: preamble symbol and data symbols, every used subcarrier f scaled by
    its pre-equaliser b_kf (0 where the client is silent on f)."""
    if len(symbols) != layout.n_symbols:
        raise ValueError(f"layout expects {layout.n_symbols} symbols, got {len(symbols)}")
    o = layout.ofdm
    b = np.asarray(precoders, dtype=np.complex128)
    if b.shape != (o.n_used,):
        raise ValueError(f"expected {o.n_used} subcarrier pre-equalisers, got shape {b.shape}")
    grid = np.vstack([o.preamble_values[None, :], o.data_grid(symbols)])
    return o.modulate(grid * b[None, :])


@dataclass(frozen=True)
class AggregateReceiveReport:
    """What the receiver measured while decoding one superposition.

    detection: preamble search result (metric, timing index, preamble gain).
    alignment: measured preamble gain / (sqrt(eta) * n_active); 1+0j when the pre-equalisers were
        exact, its magnitude (dB) and phase (degrees) show residual misalignment.
    residual_cfo: common frequency error left after the transmitters' corrections (cycles/sample),
        from the phase slope of the payload pilots (0 without pilots).
    pilot_snr_db: SNR of the pilots after tracking (nan without pilots).
    common_gain: the tracked common gain per pilot (or per OFDM symbol); 1 means no common error.
    lost_values: values that no client carried (OFDM subcarriers where everybody was silent).
    """

    detection: Detection
    alignment: complex
    residual_cfo: float = 0.0
    pilot_snr_db: float = float("nan")
    common_gain: np.ndarray = field(default_factory=lambda: np.ones(0, dtype=np.complex128))
    lost_values: int = 0


class FrameNotDetectedError(RuntimeError):
    """The preamble was not found in the receive window."""


def _detect(search: np.ndarray, reference: np.ndarray, false_alarm_probability: float) -> Detection:
    detection = detect_preamble(search, reference, false_alarm_probability)
    if not detection.detected:
        raise FrameNotDetectedError(
            f"no preamble in the receive window (best metric {detection.metric:.3g} at sample "
            f"{detection.index}, threshold {detection.threshold:.3g})"
        )
    return detection


def receive_sum(
    window: np.ndarray,
    layout: AggregationLayout,
    eta: float,
    scale: CommonScale,
    n_values: int,
    total_weight: float,
    n_active: int,
    false_alarm_probability: float = 1e-6,
) -> tuple[np.ndarray, AggregateReceiveReport]:
    """Decode the superposed single-carrier bursts in `window` into the estimate of sum_k w_k g_k.

    window: received samples covering the whole aggregation frame, with some guard on either side.
    eta: the common receive power gain the pre-equalisers targeted (linear).
    n_values: length d of the update vectors; total_weight: sum of the participants' weights.
    n_active: participants (their preambles and pilots add up).
    Raises FrameNotDetectedError if the preamble is not found above the false-alarm threshold.
    """
    if eta <= 0:
        raise ValueError("eta must be > 0: nobody transmitted")
    if layout.n_symbols != symbol_count(n_values):
        raise ValueError(f"layout has {layout.n_symbols} symbols; {n_values} values need {symbol_count(n_values)}")
    rx = np.asarray(window, dtype=np.complex128)
    payload_length = layout.pattern.length
    detection = _detect(rx[: len(rx) - payload_length], layout.preamble, false_alarm_probability)
    start = detection.index + layout.preamble_length
    payload = rx[start : start + payload_length]
    data, track = track_common_gain(payload, layout.pattern, np.sqrt(eta), np.sqrt(eta) * max(n_active, 1))
    normalised_sum = symbols_to_reals(data, n_values)
    alignment = detection.gain / (np.sqrt(eta) * max(n_active, 1))
    report = AggregateReceiveReport(
        detection=detection,
        alignment=complex(alignment),
        residual_cfo=track.residual_cfo,
        pilot_snr_db=track.snr_db,
        common_gain=track.gains,
    )
    return denormalise(normalised_sum, total_weight, scale), report


def expected_ofdm_preamble(layout: OfdmAggregationLayout, eta: float, carrier_counts: np.ndarray) -> np.ndarray:
    """What the receiver expects to see of the OFDM preamble: on subcarrier f the n_f participants'
    pre-equalised preambles add up to sqrt(eta) * n_f * P_f. The pre-equalisers invert a channel
    that includes the FFT window's `backoff`, so the preamble arrives `backoff` samples early;
    the reference is advanced the same way, so the detection index is the frame start."""
    o = layout.ofdm
    advance = np.exp(2j * np.pi * o.used * o.backoff / o.n_fft)
    return o.modulate(np.sqrt(eta) * np.asarray(carrier_counts, dtype=np.float64) * o.preamble_values * advance)


def receive_sum_ofdm(
    window: np.ndarray,
    layout: OfdmAggregationLayout,
    eta: float,
    scale: CommonScale,
    n_values: int,
    carrier_weights: np.ndarray,
    carrier_counts: np.ndarray,
    false_alarm_probability: float = 1e-6,
) -> tuple[np.ndarray, AggregateReceiveReport]:
    """Decode superposed OFDM bursts into the estimate of the weighted mean.

    carrier_weights: per used subcarrier, the sum W_f of the weights of the clients transmitting
        on it; values carried on f are divided by W_f, so each is the weighted mean over the
        clients that actually sent it. carrier_counts: per used subcarrier, how many transmit.
    Values on subcarriers nobody used come back as the common offset (counted in lost_values).
    """
    if eta <= 0:
        raise ValueError("eta must be > 0: nobody transmitted")
    if layout.n_symbols != symbol_count(n_values):
        raise ValueError(f"layout has {layout.n_symbols} symbols; {n_values} values need {symbol_count(n_values)}")
    o = layout.ofdm
    w_f = np.asarray(carrier_weights, dtype=np.float64)
    n_f = np.asarray(carrier_counts, dtype=np.float64)
    rx = np.asarray(window, dtype=np.complex128)
    reference = expected_ofdm_preamble(layout, eta, n_f)
    data_length = layout.n_ofdm_symbols * o.symbol_length
    detection = _detect(rx[: len(rx) - data_length], reference, false_alarm_probability)
    start = detection.index + o.symbol_length
    grid = o.demodulate(rx[start:], layout.n_ofdm_symbols)
    pilots = np.sqrt(eta) * n_f[o.pilot_slots][None, :] * pilot_values(len(o.pilot_slots))[None, :]
    full_expected = np.zeros_like(grid)
    full_expected[:, o.pilot_slots] = pilots
    cpe = common_phase_errors(grid, full_expected, o)
    data_w = w_f[o.data_slots]
    covered = data_w > 0
    values = grid[:, o.data_slots] / (np.sqrt(eta) * cpe[:, None] * np.where(covered, data_w, 1.0)[None, :])
    values[:, ~covered] = 0.0
    symbols = values.ravel()[: layout.n_symbols]
    lost = int(np.sum(~np.resize(covered, layout.n_ofdm_symbols * o.n_data)[: layout.n_symbols])) * 2
    normalised = symbols_to_reals(symbols, n_values)
    alignment = detection.gain  # the reference already holds sqrt(eta) * n_f per subcarrier
    residual = 0.0
    if len(cpe) >= 2:
        slope = np.polyfit(np.arange(len(cpe)) * o.symbol_length, np.unwrap(np.angle(cpe)), 1)[0]
        residual = float(slope / (2 * np.pi))
    pilot_error = grid[:, o.pilot_slots] / cpe[:, None] - pilots
    pilot_noise = float(np.mean(np.abs(pilot_error) ** 2))
    pilot_snr = float(10 * np.log10(np.mean(np.abs(pilots) ** 2) / pilot_noise)) if pilot_noise > 0 else float("inf")
    report = AggregateReceiveReport(
        detection=detection,
        alignment=complex(alignment),
        residual_cfo=residual,
        pilot_snr_db=pilot_snr,
        common_gain=cpe,
        lost_values=lost,
    )
    return denormalise(normalised, 1.0, scale), report
