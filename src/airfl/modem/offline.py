"""The modem without radios: plan a round, encode one client's burst, decode a recorded superposition.

A `FrameSpec` holds everything the feedback step hands out (waveform and layout, eta, the common
scale, each client's weight and pre-equaliser, and what the receiver needs to undo the sum). It is
plain data (`to_dict`/`from_dict` give JSON-ready dicts), so the receive chain can run on captures
from any SDR or simulator: `airfl modem encode` and `airfl modem decode` are thin wrappers over
`encode_client` and `decode_sum`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from airfl.modem.aircomp import (
    AggregateReceiveReport,
    client_burst,
    client_burst_ofdm,
    client_symbols,
    expected_ofdm_preamble,
    receive_sum,
    receive_sum_ofdm,
)
from airfl.modem.frame import AggregationLayout, OfdmAggregationLayout
from airfl.modem.mapping import symbol_count
from airfl.modem.ofdm import OfdmLayout
from airfl.modem.power import CommonScale, common_scale, error_variance_per_value, truncated_inversion, update_statistics

SPEC_VERSION = 1


def _c(z: complex) -> list[float]:
    return [float(np.real(z)), float(np.imag(z))]


def _z(pair: Any) -> complex:
    return complex(pair[0], pair[1])


@dataclass
class FrameSpec:
    """One round's frame, as agreed over the control plane.

    precoders: per client, [re, im] (single carrier) or a list of [re, im] per used subcarrier (OFDM).
    carrier_weights / carrier_counts: OFDM only, per used subcarrier (see receive_sum_ofdm).
    """

    waveform: Literal["single_carrier", "ofdm"]
    n_values: int
    eta: float
    offset: float
    scale: float
    weights: list[float]
    precoders: list[Any]
    preamble_length: int = 127
    pilot_spacing: int = 32
    ofdm: dict[str, int] = field(default_factory=dict)
    carrier_weights: list[float] = field(default_factory=list)
    carrier_counts: list[float] = field(default_factory=list)
    sample_rate_hz: float = 1e6
    false_alarm_probability: float = 1e-6
    version: int = SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FrameSpec:
        if raw.get("version") != SPEC_VERSION:
            raise ValueError(f"frame spec version {raw.get('version')!r} is not supported (expected {SPEC_VERSION})")
        return cls(**raw)

    @property
    def common_scale(self) -> CommonScale:
        return CommonScale(self.offset, self.scale)

    @property
    def n_active(self) -> int:
        return sum(1 for w, b in zip(self.weights, self.precoders) if w > 0 and np.any(np.asarray(b) != 0))

    def sc_layout(self) -> AggregationLayout:
        return AggregationLayout(symbol_count(self.n_values), self.preamble_length, self.pilot_spacing)

    def ofdm_layout(self) -> OfdmAggregationLayout:
        return OfdmAggregationLayout(symbol_count(self.n_values), OfdmLayout(**self.ofdm))

    @property
    def burst_length(self) -> int:
        return (self.ofdm_layout() if self.waveform == "ofdm" else self.sc_layout()).burst_length


def plan_round(
    updates: list[np.ndarray],
    weights: list[float],
    channels: np.ndarray,
    tx_power: float = 0.1,
    threshold_gain: float = 0.0,
    waveform: Literal["single_carrier", "ofdm"] = "single_carrier",
    ofdm: OfdmLayout | None = None,
    pilot_spacing: int = 32,
    sample_rate_hz: float = 1e6,
) -> FrameSpec:
    """The feedback of one round for known channels: truncated inversion and the common scale.

    channels: complex gain per client (single carrier) or (clients, n_used) per subcarrier (OFDM).
    """
    layout = ofdm or OfdmLayout()
    h = np.asarray(channels, dtype=np.complex128)
    pc = truncated_inversion(h, tx_power, threshold_gain, layout.n_fft if waveform == "ofdm" else 1)
    part = pc.participants
    w = np.zeros(len(updates))
    w[part] = np.asarray(weights, dtype=np.float64)[part] / np.sum(np.asarray(weights)[part])
    scale = common_scale([update_statistics(updates[k]) for k in np.flatnonzero(part)], w[part])
    spec = FrameSpec(
        waveform=waveform,
        n_values=int(np.asarray(updates[0]).size),
        eta=pc.eta,
        offset=scale.offset,
        scale=scale.scale,
        weights=[float(x) for x in w],
        precoders=[],
        pilot_spacing=pilot_spacing,
        sample_rate_hz=sample_rate_hz,
    )
    if waveform == "ofdm":
        spec.ofdm = {"n_fft": layout.n_fft, "cp": layout.cp, "n_used": layout.n_used, "pilot_every": layout.pilot_every}
        spec.precoders = [[_c(b) for b in row] for row in pc.precoders]
        spec.carrier_weights = [float(x) for x in (w[:, None] * pc.active).sum(axis=0)]
        spec.carrier_counts = [float(x) for x in pc.active.sum(axis=0)]
    else:
        spec.precoders = [_c(b) for b in pc.precoders]
    return spec


def encode_client(update: np.ndarray, spec: FrameSpec, client: int) -> np.ndarray:
    """Client `client`'s transmit burst (complex baseband, full-scale units) for this frame."""
    if not 0 <= client < len(spec.weights):
        raise ValueError(f"client must be in 0..{len(spec.weights) - 1}, got {client}")
    g = np.asarray(update, dtype=np.float64).ravel()
    if g.size != spec.n_values:
        raise ValueError(f"the update has {g.size} values; the frame carries {spec.n_values}")
    if not np.all(np.isfinite(g)):
        raise ValueError("the update holds NaN or Inf values; refusing to encode it")
    symbols = client_symbols(g, spec.weights[client], spec.common_scale)
    if spec.waveform == "ofdm":
        b = np.array([_z(p) for p in spec.precoders[client]])
        return client_burst_ofdm(symbols, b, spec.ofdm_layout())
    return client_burst(symbols, _z(spec.precoders[client]), spec.sc_layout())


def decode_sum(samples: np.ndarray, spec: FrameSpec) -> tuple[np.ndarray, dict[str, Any]]:
    """Estimate of the weighted mean from a recorded superposition, and a JSON-ready report."""
    rx = np.asarray(samples, dtype=np.complex128)
    if spec.waveform == "ofdm":
        layout = spec.ofdm_layout()
        estimate, report = receive_sum_ofdm(
            rx, layout, spec.eta, spec.common_scale, spec.n_values, np.asarray(spec.carrier_weights),
            np.asarray(spec.carrier_counts), spec.false_alarm_probability,
        )
        channel = _aggregate_channel_ofdm(rx, layout, spec, report)
    else:
        estimate, report = receive_sum(
            rx, spec.sc_layout(), spec.eta, spec.common_scale, spec.n_values, 1.0, spec.n_active,
            spec.false_alarm_probability,
        )
        channel = [_c(report.alignment)]
    return estimate, _report_dict(report, spec, channel)


def _aggregate_channel_ofdm(
    rx: np.ndarray, layout: OfdmAggregationLayout, spec: FrameSpec, report: AggregateReceiveReport
) -> list[list[float]]:
    """Per used subcarrier, the received preamble divided by what perfect alignment would give."""
    o = layout.ofdm
    start = report.detection.index
    received = o.demodulate(rx[start:], 1)[0]
    expected = o.demodulate(expected_ofdm_preamble(layout, spec.eta, np.asarray(spec.carrier_counts)), 1)[0]
    ratio = np.where(np.abs(expected) > 0, received / np.where(np.abs(expected) > 0, expected, 1.0), 0.0)
    return [_c(z) for z in ratio]


def _report_dict(report: AggregateReceiveReport, spec: FrameSpec, channel: list[list[float]]) -> dict[str, Any]:
    return {
        "detected": bool(report.detection.detected),
        "detection_metric": report.detection.metric,
        "detection_threshold": report.detection.threshold,
        "timing_index": report.detection.index,
        "residual_cfo_hz": report.residual_cfo * spec.sample_rate_hz,
        "pilot_snr_db": None if not np.isfinite(report.pilot_snr_db) else report.pilot_snr_db,
        "alignment_db": float(20 * np.log10(max(abs(report.alignment), 1e-300))),
        "alignment_deg": float(np.degrees(np.angle(report.alignment))),
        "aggregate_channel": channel,
        "lost_values": report.lost_values,
    }


def theory_error_variance(spec: FrameSpec, noise_power: float) -> float:
    """Truncated-inversion theory for this frame: error variance per value at this noise power."""
    return error_variance_per_value(noise_power, spec.eta, spec.common_scale)
