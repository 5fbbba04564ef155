"""Frame layouts of one over-the-air round (lengths in samples; one complex sample per symbol).

Sounding frame (all clients at once, code-orthogonal):
    [ cyclic prefix (cp) | Zadoff-Chu of prime length N, cyclically shifted by k*shift for client k ]
The receiver drops the prefix; a circular correlation with the base sequence then shows client k's
channel impulse response in bins [k*shift, k*shift + cp]. Delays up to `cp` samples stay orthogonal.

Aggregation frame (all participants at once, pre-equalised):
    [ preamble: Zadoff-Chu (detection, timing) | payload: the normalised update as complex symbols ]
Every participant sends the same preamble through its pre-equaliser, so it adds coherently.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from airfl.modem.sequences import next_prime, zadoff_chu

PILOT_ROOT = 1
PREAMBLE_ROOT = 7


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

    def __post_init__(self) -> None:
        if self.n_clients < 1:
            raise ValueError(f"n_clients must be >= 1, got {self.n_clients}")
        if self.cp < 0:
            raise ValueError(f"cp must be >= 0 samples, got {self.cp}")
        if self.min_shift < self.cp + 4:
            raise ValueError(
                f"min_shift ({self.min_shift}) must exceed cp ({self.cp}) by at least 4 samples so the "
                "noise power can be estimated"
            )

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
        return self.cp + self.length

    @cached_property
    def base(self) -> np.ndarray:
        return zadoff_chu(self.length, PILOT_ROOT)

    def pilot(self, client: int, amplitude: float = 1.0) -> np.ndarray:
        """Client `client`'s sounding burst: cyclic prefix + base sequence delayed by client*shift."""
        if not 0 <= client < self.n_clients:
            raise ValueError(f"client index must be in 0..{self.n_clients - 1}, got {client}")
        seq = np.roll(self.base, client * self.shift)
        return amplitude * np.concatenate([seq[len(seq) - self.cp :], seq])


@dataclass(frozen=True)
class AggregationLayout:
    """Preamble + payload of the simultaneous transmission."""

    n_symbols: int
    preamble_length: int = 127

    def __post_init__(self) -> None:
        if self.n_symbols < 1:
            raise ValueError(f"n_symbols must be >= 1, got {self.n_symbols}")

    @cached_property
    def preamble(self) -> np.ndarray:
        return zadoff_chu(self.preamble_length, PREAMBLE_ROOT)

    @property
    def burst_length(self) -> int:
        return self.preamble_length + self.n_symbols
