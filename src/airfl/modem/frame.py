"""Frame layouts of one over-the-air round (lengths in samples; one complex sample per symbol).

Sounding frame (all clients at once, code-orthogonal):
    [ cyclic prefix (cp) | Zadoff-Chu of prime length N, cyclically shifted by k*shift, x repeats ]
The receiver drops the prefix; a circular correlation of each period with the base sequence then
shows client k's channel impulse response in bins [k*shift, k*shift + cp]. Delays up to `cp`
samples stay orthogonal. With two or more periods, the phase advance of each client's response
from one period to the next measures that client's carrier frequency offset.

Aggregation frame (all participants at once, pre-equalised):
    [ preamble: Zadoff-Chu (detection, timing) | payload: the normalised update as complex symbols ]
Every participant sends the same preamble through its pre-equaliser, so it adds coherently.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from airfl.modem.ofdm import OfdmLayout
from airfl.modem.pilots import PilotPattern
from airfl.modem.sequences import next_prime, zadoff_chu

PILOT_ROOT = 1
PREAMBLE_ROOT = 7
PRECURSOR = 2
"""Correlation bins kept before each client's nominal response: a fractional delay spreads a
response into its neighbours on both sides."""


@dataclass(frozen=True)
class SoundingLayout:
    """Cyclic-shift pilots for `n_clients` clients.

    cp: cyclic prefix (samples) >= the largest delay + channel spread to be tolerated.
    min_shift: smallest spacing between clients' shifts (samples); must exceed cp so every client's
        window also holds noise-only bins, from which the receiver estimates the noise power.
    min_length: shortest pilot (samples); longer pilots average more noise out of the estimates.
    """

    n_clients: int
    cp: int = 16
    min_shift: int = 32
    min_length: int = 127
    repeats: int = 1

    def __post_init__(self) -> None:
        if self.n_clients < 1:
            raise ValueError(f"n_clients must be >= 1, got {self.n_clients}")
        if self.cp < 0:
            raise ValueError(f"cp must be >= 0 samples, got {self.cp}")
        if self.min_shift < self.cp + PRECURSOR + 4:
            raise ValueError(
                f"min_shift ({self.min_shift}) must exceed cp ({self.cp}) by at least {PRECURSOR + 4} samples so "
                "responses stay apart and the noise power can be estimated"
            )
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1 (2 or more also measure each client's CFO), got {self.repeats}")

    @cached_property
    def length(self) -> int:
        """Pilot length N (a prime, samples)."""
        return next_prime(max(self.min_length, self.n_clients * self.min_shift))

    @cached_property
    def shift(self) -> int:
        """Cyclic shift between consecutive clients (samples)."""
        return self.length // self.n_clients

    @property
    def burst_length(self) -> int:
        return self.cp + self.repeats * self.length

    @cached_property
    def base(self) -> np.ndarray:
        return zadoff_chu(self.length, PILOT_ROOT)

    def pilot(self, client: int, amplitude: float = 1.0) -> np.ndarray:
        """Client `client`'s sounding burst: cyclic prefix + `repeats` periods of the base sequence
        delayed by client*shift."""
        if not 0 <= client < self.n_clients:
            raise ValueError(f"client index must be in 0..{self.n_clients - 1}, got {client}")
        seq = np.roll(self.base, client * self.shift)
        return amplitude * np.concatenate([seq[len(seq) - self.cp :], *([seq] * self.repeats)])


@dataclass(frozen=True)
class AggregationLayout:
    """Single-carrier aggregation frame: preamble, then the payload with pilots every
    `pilot_spacing` data symbols (0 = no pilots; see modem.pilots)."""

    n_symbols: int
    preamble_length: int = 127
    pilot_spacing: int = 0

    def __post_init__(self) -> None:
        if self.n_symbols < 1:
            raise ValueError(f"n_symbols must be >= 1, got {self.n_symbols}")
        zadoff_chu(self.preamble_length, PREAMBLE_ROOT)  # validates the length now, not mid-round

    @cached_property
    def preamble(self) -> np.ndarray:
        return zadoff_chu(self.preamble_length, PREAMBLE_ROOT)

    @cached_property
    def pattern(self) -> PilotPattern:
        return PilotPattern(self.n_symbols, self.pilot_spacing)

    @property
    def burst_length(self) -> int:
        return self.preamble_length + self.pattern.length


@dataclass(frozen=True)
class OfdmAggregationLayout:
    """OFDM aggregation frame: one preamble OFDM symbol, then data OFDM symbols."""

    n_symbols: int
    ofdm: OfdmLayout = OfdmLayout()

    def __post_init__(self) -> None:
        if self.n_symbols < 1:
            raise ValueError(f"n_symbols must be >= 1, got {self.n_symbols}")

    @property
    def n_ofdm_symbols(self) -> int:
        return self.ofdm.n_symbols(self.n_symbols)

    @property
    def burst_length(self) -> int:
        return (1 + self.n_ofdm_symbols) * self.ofdm.symbol_length
