"""The radio contract: complex baseband samples, at sample times, to and from a device.

Every backend (the emulated loopback air, Pluto, SoapySDR) implements `Radio`. Times are integer
sample indices on the radio's own sample clock (at `RadioConfig.sample_rate_hz`); samples are
complex64/complex128 arrays in full-scale units, so |x| <= 1 is the DAC's range on every backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


class RadioError(RuntimeError):
    """A radio could not do what was asked; the message says why and what to do."""


class LateCommandError(RadioError):
    """A timed transmit or receive was requested for a sample time that has already passed."""


class DriverMissingError(RadioError):
    """The driver library for a backend is not installed; the message names what to install."""


@dataclass(frozen=True)
class RadioConfig:
    """Settings shared by every backend.

    sample_rate_hz: complex sample rate (Hz). center_freq_hz: RF carrier (Hz).
    tx_gain_db / rx_gain_db: hardware gains (dB); the loopback ignores them unless a model uses them.
    """

    sample_rate_hz: float = 1e6
    center_freq_hz: float = 2.4e9
    tx_gain_db: float = 0.0
    rx_gain_db: float = 0.0

    def __post_init__(self) -> None:
        if not self.sample_rate_hz > 0:
            raise ValueError(f"sample_rate_hz must be > 0 Hz, got {self.sample_rate_hz}")
        if not self.center_freq_hz > 0:
            raise ValueError(f"center_freq_hz must be > 0 Hz, got {self.center_freq_hz}")


@dataclass(frozen=True)
class Capabilities:
    """What a radio can do, so the round protocol can pick a timing mode.

    timed_tx / timed_rx: bursts can be scheduled at a future hardware time.
    cyclic_tx: the transmitter can repeat a buffer forever (Pluto's stock-firmware mode).
    full_duplex: transmit and receive at the same time on one device.
    """

    name: str
    timed_tx: bool
    timed_rx: bool
    cyclic_tx: bool
    full_duplex: bool
    max_sample_rate_hz: float
    adc_bits: int | None = None


@runtime_checkable
class Radio(Protocol):
    """One radio: configure it, send a burst at a sample time, receive a window at a sample time."""

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> Capabilities: ...

    def configure(self, config: RadioConfig) -> None:
        """Apply sample rate, carrier and gains."""

    def now(self) -> int:
        """The current sample time of this radio's clock (samples)."""

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Schedule `samples` (complex, full-scale units) to leave the antenna at `at_sample`."""

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """Return `n_samples` complex samples captured from `at_sample` on (blocks until then)."""

    def close(self) -> None:
        """Release buffers and the device; safe to call twice."""


def check_transmit_now(name: str, at_sample: int, delivered: int) -> None:
    """A radio without hardware time sends only "now": `at_sample` must equal its sample count."""
    if at_sample < delivered:
        raise LateCommandError(
            f"{name}: transmit at sample {at_sample} is before now() = {delivered}; this radio can only transmit now"
        )
    if at_sample != delivered:
        raise RadioError(
            f"{name}: this radio has no hardware time (a stock Pluto, or its loopback emulation), so a burst cannot "
            f"be scheduled at sample {at_sample} (now() = {delivered}); pass at_sample=now() to send at once, or use "
            'transmit_cyclic() and rotate the buffer by the measured timing offset (ota.timing_mode = "cyclic")'
        )


def untimed_window(name: str, n_samples: int, at_sample: int, delivered: int) -> tuple[int, int]:
    """Check a receive request on a radio without hardware time, whose clock is only the count of
    samples already delivered: (samples to skip, samples to read). Windows in the past are late."""
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    if at_sample < delivered:
        raise LateCommandError(
            f"{name}: receive from sample {at_sample} asked, but {delivered} samples have already been "
            "delivered; without hardware time only windows from now() on can be captured"
        )
    skip = at_sample - delivered
    return skip, skip + n_samples


def as_baseband(samples: np.ndarray) -> np.ndarray:
    """Validate a transmit burst: 1-D, finite, complex; returns a complex128 copy-free view."""
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"a burst must be a 1-D array of complex samples, got shape {x.shape}")
    x = x.astype(np.complex128, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError("a burst contains NaN or Inf samples; refusing to transmit it")
    return x
