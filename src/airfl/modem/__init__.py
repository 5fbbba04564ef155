"""modem: pure DSP for analog over-the-air computation. numpy in, numpy out; no I/O.

Never imports radio/ or fl/. Public API (stable; usable on recordings from any SDR or simulator):
sequences (Zadoff-Chu), mapping (reals <-> symbols), power (normalisation, truncated inversion,
theory), frame (layouts), estimate (per-client channels), sync (preamble detection), aircomp
(transmit burst, receive chain).
"""

from airfl.modem.aircomp import (
    AggregateReceiveReport,
    FrameNotDetectedError,
    client_burst,
    client_symbols,
    receive_sum,
)
from airfl.modem.estimate import ChannelEstimates, estimate_channels
from airfl.modem.frame import AggregationLayout, SoundingLayout
from airfl.modem.mapping import reals_to_symbols, symbol_count, symbols_to_reals
from airfl.modem.power import (
    CommonScale,
    PowerControl,
    UpdateStatistics,
    common_scale,
    denormalise,
    error_variance_per_value,
    normalise,
    truncated_inversion,
    update_statistics,
)
from airfl.modem.sequences import zadoff_chu
from airfl.modem.sync import Detection, detect_preamble, detection_threshold

__all__ = [
    "AggregateReceiveReport",
    "AggregationLayout",
    "ChannelEstimates",
    "CommonScale",
    "Detection",
    "FrameNotDetectedError",
    "PowerControl",
    "SoundingLayout",
    "UpdateStatistics",
    "client_burst",
    "client_symbols",
    "common_scale",
    "denormalise",
    "detect_preamble",
    "detection_threshold",
    "error_variance_per_value",
    "estimate_channels",
    "normalise",
    "reals_to_symbols",
    "receive_sum",
    "symbol_count",
    "symbols_to_reals",
    "truncated_inversion",
    "update_statistics",
    "zadoff_chu",
]
