"""OFDM for analog aggregation: per-subcarrier pre-equalisation makes a multipath channel flat.

Layout of one OFDM symbol (samples): [cyclic prefix (cp) | n_fft]. Used subcarriers are
-n_used/2..-1 and 1..n_used/2 (DC is left empty: it carries the radios' DC offset); every
`pilot_every`-th used subcarrier carries a known pilot (common phase tracking), the rest carry
data. Time-domain samples have power sum_f |X_f|^2 / n_fft, so a client whose subcarrier
coefficients are b_f sends mean power sum_f |b_f|^2 / n_fft for unit-power symbols.

The receiver's FFT window starts `backoff` samples inside the cyclic prefix, so responses that
arrive slightly early (fractional-delay precursors) stay inside the window; the per-subcarrier
channel H_f that the pre-equalisers invert includes that shift.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from airfl.modem.pilots import centred_average, pilot_values
from airfl.modem.sequences import next_prime, zadoff_chu

OFDM_PREAMBLE_ROOT = 11


@dataclass(frozen=True)
class OfdmLayout:
    """OFDM numerology (all counts in samples or subcarriers)."""

    n_fft: int = 64
    cp: int = 16
    n_used: int = 52
    pilot_every: int = 13
    backoff: int = 2

    def __post_init__(self) -> None:
        if self.n_fft < 8 or self.n_fft & (self.n_fft - 1):
            raise ValueError(f"n_fft must be a power of two >= 8, got {self.n_fft}")
        if not 0 < self.n_used < self.n_fft or self.n_used % 2:
            raise ValueError(f"n_used must be even and in 2..{self.n_fft - 2}, got {self.n_used}")
        if not 0 <= self.backoff <= self.cp:
            raise ValueError(f"backoff must be in 0..cp ({self.cp}), got {self.backoff}")
        if self.pilot_every < 2:
            raise ValueError(f"pilot_every must be >= 2, got {self.pilot_every}")

    @cached_property
    def used(self) -> np.ndarray:
        """FFT bin indices of the used subcarriers (negative frequencies wrapped to the top)."""
        half = self.n_used // 2
        freqs = np.concatenate([np.arange(-half, 0), np.arange(1, half + 1)])
        return np.mod(freqs, self.n_fft)

    @cached_property
    def pilot_slots(self) -> np.ndarray:
        """Positions within `used` that carry pilots."""
        return np.arange(self.pilot_every // 2, self.n_used, self.pilot_every)

    @cached_property
    def data_slots(self) -> np.ndarray:
        mask = np.ones(self.n_used, dtype=bool)
        mask[self.pilot_slots] = False
        return np.flatnonzero(mask)

    @property
    def n_data(self) -> int:
        return len(self.data_slots)

    @property
    def symbol_length(self) -> int:
        return self.cp + self.n_fft

    def n_symbols(self, n_data_symbols: int) -> int:
        """OFDM symbols needed for `n_data_symbols` complex data symbols."""
        return -(-n_data_symbols // self.n_data)

    @cached_property
    def preamble_values(self) -> np.ndarray:
        """Known values on every used subcarrier of the preamble symbol (unit modulus)."""
        return zadoff_chu(next_prime(max(self.n_used, OFDM_PREAMBLE_ROOT + 1)), OFDM_PREAMBLE_ROOT)[: self.n_used]

    def channel_response(self, taps: np.ndarray, precursor: int) -> np.ndarray:
        """Per-used-subcarrier channel (K, n_used) from sounding taps (K, width).

        taps[:, j] is the response at lag j - precursor relative to the client's integer delay;
        the FFT window starts `backoff` samples early, which adds `backoff` to every lag.
        """
        taps = np.atleast_2d(taps)
        lags = np.arange(taps.shape[1]) - precursor
        if lags.max() + self.backoff > self.cp or lags.min() + self.backoff < 0:
            raise ValueError("the channel response is longer than the OFDM cyclic prefix")
        return self.response_at(taps, lags)

    def response_at(self, taps: np.ndarray, lags: np.ndarray) -> np.ndarray:
        """Per-used-subcarrier channel (K, n_used) of taps at arbitrary integer `lags` (samples,
        relative to the aligned frame start; the FFT window's `backoff` is added here)."""
        f = self.signed_used / self.n_fft
        phase = np.exp(-2j * np.pi * np.outer(np.asarray(lags) + self.backoff, f))  # (W, n_used)
        return np.atleast_2d(taps) @ phase

    @cached_property
    def signed_used(self) -> np.ndarray:
        """Used subcarriers as signed frequency indices (-n_used/2..-1, 1..n_used/2)."""
        half = self.n_used // 2
        return np.concatenate([np.arange(-half, 0), np.arange(1, half + 1)]).astype(np.float64)

    def modulate(self, grid: np.ndarray) -> np.ndarray:
        """(n_symbols, n_used) subcarrier values -> time samples with cyclic prefixes."""
        grid = np.atleast_2d(grid)
        spectrum = np.zeros((grid.shape[0], self.n_fft), dtype=np.complex128)
        spectrum[:, self.used] = grid
        body = np.fft.ifft(spectrum, axis=1) * np.sqrt(self.n_fft)
        return np.concatenate([body[:, -self.cp :], body], axis=1).ravel()

    def demodulate(self, samples: np.ndarray, n_symbols: int) -> np.ndarray:
        """Time samples starting at the first symbol's start -> (n_symbols, n_used) values."""
        x = np.asarray(samples, dtype=np.complex128)[: n_symbols * self.symbol_length]
        if len(x) < n_symbols * self.symbol_length:
            raise ValueError(f"need {n_symbols * self.symbol_length} samples for {n_symbols} OFDM symbols")
        frames = x.reshape(n_symbols, self.symbol_length)
        start = self.cp - self.backoff
        body = frames[:, start : start + self.n_fft]
        return (np.fft.fft(body, axis=1) / np.sqrt(self.n_fft))[:, self.used]

    def data_grid(self, symbols: np.ndarray) -> np.ndarray:
        """Place data symbols (zero-padded to whole OFDM symbols) and pilots on the used subcarriers."""
        n_sym = self.n_symbols(len(symbols))
        data = np.zeros(n_sym * self.n_data, dtype=np.complex128)
        data[: len(symbols)] = symbols
        grid = np.empty((n_sym, self.n_used), dtype=np.complex128)
        grid[:, self.data_slots] = data.reshape(n_sym, self.n_data)
        grid[:, self.pilot_slots] = pilot_values(len(self.pilot_slots))[None, :]
        return grid


def common_phase_errors(received: np.ndarray, expected: np.ndarray, layout: OfdmLayout, smoothing: int = 3) -> np.ndarray:
    """Common complex gain per OFDM symbol from its pilots (1 = no common error), smoothed over symbols.

    received, expected: (n_symbols, n_used) grids; expected holds what each pilot should be.
    """
    p = layout.pilot_slots
    num = np.sum(received[:, p] * np.conj(expected[:, p]), axis=1)
    den = np.sum(np.abs(expected[:, p]) ** 2, axis=1)
    raw = num / np.where(den > 0, den, 1.0)
    return centred_average(raw, smoothing)
