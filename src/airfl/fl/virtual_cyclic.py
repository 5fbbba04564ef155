"""Virtual clients over two stock-firmware Plutos: the emulated sum sent from a cyclic buffer.

The virtual timing mode (radio/virtual.py) forwards the K emulated clients' sum through one real
transmitter at the sample time the round asks for. A stock Pluto has no hardware time, so for a
two-Pluto lab each receive window of the round is carried differently:

    1. the emulated sum for the window is computed on the virtual clients' air (they are timed, so
       the round's schedule, timing advances and CFO corrections all apply to them unchanged);
    2. the real transmitter loads  [marker | gap | window | gap | quiet]  into its cyclic buffer, where the
       marker is one Zadoff-Chu sequence sent twice (MARKER_LENGTH samples each);
    3. the real receiver captures two periods "now" (a full copy is always inside), the buffer stops;
    4. the marker gives the real link's timing (integer peak + fractional delay from the phase slope
       of the second copy's spectrum), its carrier offset (phase between the two copies) and its
       phase; the window is read out at that timing with band-limited interpolation, de-rotated by
       that offset and phase (after removing the receiver's DC, measured in the quiet part, which the
       de-rotation would otherwise turn into a tone), and handed to the round as if captured at the asked sample time.

The real link is thus re-referenced at every window: its delay, CFO and phase, which change
arbitrarily between independent cyclic loads, look constant to the round; its gain, noise, IQ
imbalance, DC, phase noise and quantisation stay in the samples. Only the amplitude is left alone,
so the SNR is the real link's.

The sum must fit the DAC: the K clients at ota.tx_power add up in power, so their peaks can exceed
full scale. `forward_gain_db` scales the sum before it is sent (a fixed attenuation, part of the
channel the round measures); a window that would still clip is refused with the gain to use.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from airfl.dsp.resample import interpolate_uniform
from airfl.modem.sequences import zadoff_chu
from airfl.modem.sync import correlation_metric, detection_threshold
from airfl.radio.base import Capabilities, Radio, RadioConfig, RadioError
from airfl.radio.virtual import VirtualClients

MARKER_LENGTH = 131
"""Samples per marker copy (a prime Zadoff-Chu length no sequence of the round uses, so nothing in the
window looks like it): its two copies measure the real link's CFO unambiguously within
+-1/(2*131) cycles/sample (+-3.8 kHz at 1 MS/s: calibrate xo_correction first)."""
MARKER_ROOT = 29
MARKER_AMPLITUDE = 0.5
"""Marker amplitude (full-scale units, -6 dBFS): strong enough to find at any usable SNR."""
GAP = 64
"""Zeros (samples) between marker and window, and after the window: room for the link's delay spread."""
QUIET = 512
"""Further zeros (samples) at the end of the buffer, where the receiver's DC is measured."""
IN_BAND = 0.4
"""Bins (cycles/sample) trusted for the delay's phase slope."""
FALSE_ALARM = 1e-6


def cyclic_capable(radio: Radio) -> bool:
    """Whether `radio` can carry the virtual sum only as a cyclic buffer (no hardware time)."""
    caps = radio.capabilities
    return caps.cyclic_tx and not caps.timed_tx


class CyclicForwardingReceiver:
    """The round's receiver for virtual clients over a cyclic transmitter and an untimed receiver.

    To the round it is a timed radio on the virtual clients' clock (`now()` is theirs); every
    `receive` is one cyclic exchange over the real link (module docstring).
    """

    def __init__(self, bank: VirtualClients, transmitter: Radio, receiver: Radio, forward_gain_db: float = 0.0):
        if not (math.isfinite(forward_gain_db) and forward_gain_db <= 0):
            raise ValueError(f"forward_gain_db must be a finite attenuation (<= 0 dB), got {forward_gain_db}")
        self._bank = bank
        self._tx = transmitter
        self._rx = receiver
        self.forward_gain = 10.0 ** (forward_gain_db / 20.0)
        self._marker = MARKER_AMPLITUDE * zadoff_chu(MARKER_LENGTH, MARKER_ROOT)
        self._freqs = np.fft.fftfreq(MARKER_LENGTH)
        self.last_link: dict[str, float] = {}  # the real link as the last marker measured it

    @property
    def name(self) -> str:
        return self._rx.name

    @property
    def capabilities(self) -> Capabilities:
        return replace(self._rx.capabilities, name=f"virtual-cyclic:{self._rx.name}", timed_tx=False, timed_rx=True)

    def configure(self, config: RadioConfig) -> None:
        self._rx.configure(config)

    def now(self) -> int:
        return self._bank.air.now()

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        raise RadioError("the virtual-cyclic receiver only receives; the virtual clients transmit")

    def close(self) -> None:
        self._rx.close()

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        n_samples, at_sample = int(n_samples), int(at_sample)
        lookback = self._bank.lookback
        window = self._bank.emulated_sum(n_samples + lookback, at_sample - lookback) * self.forward_gain
        peak = float(np.max(np.abs(window))) if window.size else 0.0
        if peak > 1.0:
            need = 20 * math.log10(peak)
            raise RadioError(
                f"the virtual clients' sum peaks at {need:+.1f} dBFS and would clip the real transmitter's DAC; "
                f"set ota.virtual_forward_gain_db <= {20 * math.log10(self.forward_gain) - need - 1:.0f} dB "
                "(or lower ota.tx_power)"
            )
        m = MARKER_LENGTH
        buffer = np.concatenate([self._marker, self._marker, np.zeros(GAP), window, np.zeros(GAP + QUIET)])
        period = len(buffer)
        self._tx.transmit_cyclic(buffer)  # type: ignore[attr-defined]
        try:
            capture = self._rx.receive(2 * period, self._rx.now())
        finally:
            self._tx.stop_transmit()  # type: ignore[attr-defined]
        start, cfo, phase = self._locate(capture, period)
        u0 = start + 2 * m + GAP  # where the window starts in the capture (fractional samples)
        # The receiver's own DC does not turn with the link's carrier offset: measure it in the quiet
        # tail (after the window's delay spread has died out) and take it out before the de-rotation
        # would spin it into a tone (the round's DC correction removes constants only).
        # The quiet part also holds the transmitter's LO leakage, turning at the link's offset: fit both.
        quiet_from = int(np.ceil(u0)) + len(window) + GAP
        quiet = capture[quiet_from : int(start) + period]
        n = np.arange(len(quiet))
        if abs(cfo) * len(quiet) > 0.25:
            basis = np.stack([np.ones(len(quiet)), np.exp(2j * np.pi * cfo * n)], axis=1)
            rx_dc = np.linalg.lstsq(basis, quiet, rcond=None)[0][0]
        else:  # both DCs look constant here, and the de-rotation barely turns them over a window
            rx_dc = np.mean(quiet)
        capture = capture - rx_dc
        got = interpolate_uniform(capture, u0, len(window))
        # De-rotate relative to the marker's second copy, where `phase` was measured.
        t = (u0 - (start + m)) + np.arange(len(window))
        got *= np.exp(-1j * (2 * np.pi * cfo * t + phase))
        return got[lookback:]

    def _locate(self, capture: np.ndarray, period: int) -> tuple[float, float, float]:
        """(start of the marker's first copy in `capture` (fractional samples), the link's CFO
        (cycles/sample), its phase at the second copy (rad)) from the last complete copy."""
        m = MARKER_LENGTH
        metric, _ = correlation_metric(capture, self._marker)
        threshold = detection_threshold(m, FALSE_ALARM)
        # A marker is two copies: score each start by both, so a lone look-alike never wins.
        twin = np.zeros_like(metric)
        twin[: len(metric) - m] = np.minimum(metric[: len(metric) - m], metric[m:])
        if not twin.size or twin.max() <= threshold:
            best = int(np.argmax(metric)) if metric.size else -1
            raise RadioError(
                f"no marker from the virtual-clients transmitter in the capture (best normalised correlation "
                f"{float(metric.max()) if metric.size else 0:.2f} at sample {best}, threshold {threshold:.2f}); "
                "check the RF link, the gains and the carrier (hil_setup.md, troubleshooting)"
            )
        p = int(np.argmax(twin)) % period  # a whole period from here is inside a capture of two periods
        if p + 2 * period <= len(capture):
            p += period  # the later copy: further from anything the receiver buffered before the load
        y1 = capture[p : p + m]
        y2 = capture[p + m : p + 2 * m]
        cfo = float(np.angle(np.vdot(y1, y2))) / (2 * np.pi * m)
        # Fractional delay: phase slope of the second copy's spectrum (a cyclic convolution, since
        # the first copy is its cyclic prefix), after removing the CFO.
        n = np.arange(m)
        # Only neighbouring bins inside |f| < IN_BAND: converters' filters bend the phase near
        # Nyquist, and the pair across +-fs/2 would wrap.
        h = np.fft.fft(y2 * np.exp(-2j * np.pi * cfo * n)) / np.fft.fft(self._marker)
        order = np.argsort(self._freqs)
        hs, fs = h[order], self._freqs[order]
        pairs = (np.abs(fs[:-1]) < IN_BAND) & (np.abs(fs[1:]) < IN_BAND)
        delay = -float(np.angle(np.sum(np.conj(hs[:-1]) * hs[1:] * pairs))) * m / (2 * np.pi)
        start = p + delay
        y2f = interpolate_uniform(capture, start + m, m) * np.exp(-2j * np.pi * cfo * n)
        phase = float(np.angle(np.vdot(self._marker, y2f)))
        self.last_link = {"start": start, "cfo_cycles_per_sample": cfo, "delay": delay, "phase_rad": phase}
        return start, cfo, phase
