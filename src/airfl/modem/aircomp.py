"""Analog over-the-air computation: one client's transmit chain and the receiver's chain for the sum.

Transmit (client k):  update --normalise(w_k, common scale)--> reals --pairs--> symbols
                      burst = b_k * [preamble | symbols]            (b_k from truncated inversion)
Receive (server):     window --detect preamble--> timing --slice payload--> / sqrt(eta)
                      --> reals --de-normalise--> estimate of sum_k w_k g_k over the participants

Everything here is numpy in, numpy out: the same functions run on the loopback, on real radios
and on recordings from any SDR or simulator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from airfl.modem.frame import AggregationLayout
from airfl.modem.mapping import reals_to_symbols, symbol_count, symbols_to_reals
from airfl.modem.power import CommonScale, denormalise, normalise
from airfl.modem.sync import Detection, detect_preamble


def client_symbols(update: np.ndarray, weight: float, scale: CommonScale) -> np.ndarray:
    """Normalise one client's update with the common scale and map it to complex symbols."""
    return reals_to_symbols(normalise(update, weight, scale))


def client_burst(symbols: np.ndarray, precoder: complex, layout: AggregationLayout) -> np.ndarray:
    """The complex baseband burst client k transmits: its pre-equaliser times [preamble | symbols]."""
    if len(symbols) != layout.n_symbols:
        raise ValueError(f"layout expects {layout.n_symbols} symbols, got {len(symbols)}")
    return precoder * np.concatenate([layout.preamble, symbols])


@dataclass(frozen=True)
class AggregateReceiveReport:
    """What the receiver measured while decoding one superposition.

    detection: preamble search result (metric, timing index, preamble gain).
    alignment: measured preamble gain / (sqrt(eta) * n_active); 1+0j when the pre-equalisers were
        exact, its magnitude (dB) and phase (degrees) show residual misalignment.
    """

    detection: Detection
    alignment: complex


class FrameNotDetectedError(RuntimeError):
    """The preamble was not found in the receive window."""


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
    """Decode the superposed bursts in `window` into the estimate of sum_k w_k g_k.

    window: received samples covering the whole aggregation frame, with some guard on either side.
    eta: the common receive power gain the pre-equalisers targeted (linear).
    n_values: length d of the update vectors; total_weight: sum of the participants' weights.
    Raises FrameNotDetectedError if the preamble is not found above the false-alarm threshold.
    """
    if eta <= 0:
        raise ValueError("eta must be > 0: nobody transmitted")
    if layout.n_symbols != symbol_count(n_values):
        raise ValueError(f"layout has {layout.n_symbols} symbols; {n_values} values need {symbol_count(n_values)}")
    rx = np.asarray(window, dtype=np.complex128)
    search = rx[: len(rx) - layout.n_symbols]  # the preamble must start early enough to hold the payload
    detection = detect_preamble(search, layout.preamble, false_alarm_probability)
    if not detection.detected:
        raise FrameNotDetectedError(
            f"no preamble in the receive window (best metric {detection.metric:.3g} at sample "
            f"{detection.index}, threshold {detection.threshold:.3g})"
        )
    start = detection.index + layout.preamble_length
    payload = rx[start : start + layout.n_symbols]
    normalised_sum = symbols_to_reals(payload / np.sqrt(eta), n_values)
    alignment = detection.gain / (np.sqrt(eta) * max(n_active, 1))
    report = AggregateReceiveReport(detection=detection, alignment=complex(alignment))
    return denormalise(normalised_sum, total_weight, scale), report
