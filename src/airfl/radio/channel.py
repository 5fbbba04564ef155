"""Link models of the emulated air: what happens to a burst between one transmitter and one receiver.

A link's state is drawn from the air's seed and the two radio names only, so it does not depend on
the order in which radios were opened or bursts were sent: same seed, same samples.

Per link, in order (DESIGN.md section 3): the burst leaves the transmitter's DAC as a band-limited
waveform on the transmitter's sample clock; it is delayed by an integer plus a fractional number of
samples and read on the receiver's sample clock (`resample.py`, sample-clock offsets from
`oscillator.py`); it goes through the tapped delay line of block-fading taps (`multipath.py`,
`fading.py`) scaled to the path gain; and it is rotated by the carrier offset and the phase noise
of the two oscillators (phase of tx minus rx, continuous in true time).

Units: gains in dB (power) or linear amplitude as named; delays in samples; "true time" is the air's
physics clock in samples of the nominal rate (equal to every radio's clock when no oscillator
impairment is on); noise power in full-scale units squared per complex sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from airfl.radio.fading import FADING_KINDS, FadingKind, add_line_of_sight, circular_normal
from airfl.radio.frontend import FrontendConfig
from airfl.radio.multipath import apply_taps, exponential_pdp, rms_delay_spread_samples
from airfl.radio.oscillator import Oscillator, OscillatorConfig
from airfl.dsp.resample import DEFAULT_HALF_LENGTH, interpolate, interpolate_uniform
from airfl.radio.seeding import (
    TAG_FLAT_BLOCK,
    TAG_LINK_EXTRA,
    TAG_LINK_STATIC,
    TAG_TAP_BLOCK,
    seeded_rng,
    stable_id,
)

__all__ = ["ChannelConfig", "FadingKind", "LinkModel", "seeded_rng", "stable_id", "DEFAULT_CENTER_FREQ_HZ"]

DEFAULT_CENTER_FREQ_HZ = 2.4e9


@dataclass(frozen=True)
class ChannelConfig:
    """Physics of every link in the loopback air. Every impairment can be switched off; the defaults
    are the original loopback's (Rayleigh block fading, nothing else), bit for bit.

    path_loss_db: mean power loss of a link (dB); 0 means unit mean power gain.
    path_loss_spread_db: each link's loss is drawn uniformly in path_loss_db +- spread/2 (dB).
    fading: "rayleigh" draws a CN(0, 1) block-fading coefficient per coherence block; "rician" adds a
        static line of sight with K-factor `rician_k_db`; "none" keeps a constant amplitude with a
        random static phase (and, with multipath, one static draw of the taps).
    rician_k_db: Rician K-factor (dB): line-of-sight power over scattered power (fading="rician").
    coherence_time_s: duration of one fading block (s); blocks start at multiples of it in true time.
    max_delay_samples: each link's integer propagation/processing delay is uniform in [0, max] (samples).
    max_fractional_delay: each link adds a fractional delay uniform in [0, max) (samples, <= 1); 0 is off.
    rms_delay_spread_ns: multipath RMS delay spread (ns) of an exponential power-delay profile on a
        tapped delay line at sample spacing; 0 is a flat (single-tap) channel.
    noise_power: complex white Gaussian noise power per sample added at every receiver input
        (full-scale units squared); 0 turns noise off.
    oscillator: per-radio carrier/sample-clock errors, drift and phase noise (`OscillatorConfig`).
    frontend: per-radio IQ imbalance, DC offset, DAC clipping and ADC (`FrontendConfig`).
    resampler_half_length: taps either side of the band-limited interpolator used for fractional
        delays and sample-clock offsets (samples).
    """

    path_loss_db: float = 0.0
    path_loss_spread_db: float = 0.0
    fading: FadingKind = "rayleigh"
    coherence_time_s: float = 0.02
    max_delay_samples: int = 0
    noise_power: float = 0.0
    rician_k_db: float = 6.0
    max_fractional_delay: float = 0.0
    rms_delay_spread_ns: float = 0.0
    oscillator: OscillatorConfig = field(default_factory=OscillatorConfig)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    resampler_half_length: int = DEFAULT_HALF_LENGTH

    def __post_init__(self) -> None:
        if self.path_loss_spread_db < 0:
            raise ValueError(f"path_loss_spread_db must be >= 0 dB, got {self.path_loss_spread_db}")
        if not self.coherence_time_s > 0:
            raise ValueError(f"coherence_time_s must be > 0 s, got {self.coherence_time_s}")
        if self.max_delay_samples < 0:
            raise ValueError(f"max_delay_samples must be >= 0, got {self.max_delay_samples}")
        if self.noise_power < 0:
            raise ValueError(f"noise_power must be >= 0, got {self.noise_power}")
        if self.fading not in FADING_KINDS:
            raise ValueError(f"fading must be one of {', '.join(map(repr, FADING_KINDS))}, got {self.fading!r}")
        if not math.isfinite(self.rician_k_db) or abs(self.rician_k_db) > 100:
            raise ValueError(f"rician_k_db must be a finite K-factor within +-100 dB, got {self.rician_k_db}")
        if not 0.0 <= self.max_fractional_delay <= 1.0:
            raise ValueError(f"max_fractional_delay must be in [0, 1] samples, got {self.max_fractional_delay}")
        if not (math.isfinite(self.rms_delay_spread_ns) and self.rms_delay_spread_ns >= 0):
            raise ValueError(f"rms_delay_spread_ns must be finite and >= 0 ns, got {self.rms_delay_spread_ns}")
        if not isinstance(self.oscillator, OscillatorConfig):
            raise ValueError(f"oscillator must be an OscillatorConfig, got {type(self.oscillator).__name__}")
        if not isinstance(self.frontend, FrontendConfig):
            raise ValueError(f"frontend must be a FrontendConfig, got {type(self.frontend).__name__}")
        if not 4 <= self.resampler_half_length <= 64:
            raise ValueError(f"resampler_half_length must be in [4, 64] taps, got {self.resampler_half_length}")


class LinkModel:
    """One transmitter -> receiver link and its truth (for tests and calibration).

    Static state: `path_gain` (linear power), `delay_samples` (integer) and `fractional_delay`
    (samples, [0, 1)), the mean tap powers `pdp` (sum = path_gain). Time-varying truth: `taps_at(t)`,
    `cfo_hz(t)`, `phase_at(t)` at true time t, and `true_gain(at_sample)` for a send time.
    """

    def __init__(
        self,
        config: ChannelConfig,
        sample_rate_hz: float,
        seed: int,
        tx: str,
        rx: str,
        *,
        center_freq_hz: float = DEFAULT_CENTER_FREQ_HZ,
        tx_oscillator: Oscillator | None = None,
        rx_oscillator: Oscillator | None = None,
    ):
        self.config = config
        self.tx = tx
        self.rx = rx
        self.sample_rate_hz = float(sample_rate_hz)
        self.center_freq_hz = float(center_freq_hz)
        self._seed = seed
        self._ids = (stable_id(tx), stable_id(rx))
        self.coherence_samples = max(1, int(round(config.coherence_time_s * sample_rate_hz)))
        rng = seeded_rng(seed, *self._ids, TAG_LINK_STATIC)
        spread = config.path_loss_spread_db
        loss_db = config.path_loss_db + (rng.uniform(-spread / 2, spread / 2) if spread > 0 else 0.0)
        self.path_gain_db: float = -loss_db
        self.path_gain: float = 10.0 ** (-loss_db / 10.0)
        self.delay_samples: int = int(rng.integers(0, config.max_delay_samples + 1))
        self._static_phase: float = float(rng.uniform(-np.pi, np.pi))

        extra = seeded_rng(seed, *self._ids, TAG_LINK_EXTRA)
        #: fractional part of the delay (samples, in [0, max_fractional_delay))
        self.fractional_delay: float = float(config.max_fractional_delay * extra.uniform(0.0, 1.0))
        #: static phase of the line of sight (rad), fading="rician"
        self.los_phase: float = float(extra.uniform(-np.pi, np.pi))
        shape = exponential_pdp(config.rms_delay_spread_ns * 1e-9, sample_rate_hz)
        #: mean power of each tap (linear, sums to path_gain); one element for a flat channel
        self.pdp: np.ndarray = self.path_gain * shape
        self.n_taps: int = len(shape)
        self._tap_amplitudes = np.sqrt(self.path_gain * shape)
        static = circular_normal(extra, self.n_taps)
        self._static_taps = self._tap_amplitudes * static / np.sqrt(np.sum(shape * np.abs(static) ** 2))

        self.tx_oscillator = tx_oscillator or Oscillator(config.oscillator, tx, seed, sample_rate_hz, center_freq_hz)
        self.rx_oscillator = rx_oscillator or Oscillator(config.oscillator, rx, seed, sample_rate_hz, center_freq_hz)
        a_tx, b_tx = self.tx_oscillator.ppm_integral()
        a_rx, b_rx = self.rx_oscillator.ppm_integral()
        # carrier-offset phase in cycles: k1 * t + k2 * t^2 (t in samples)
        scale = self.center_freq_hz * 1e-6 / self.sample_rate_hz
        self._cycles = (scale * (a_tx - a_rx), scale * (b_tx - b_rx))
        self._block_cache: dict[int, complex] = {}
        self._taps_cache: dict[int, np.ndarray] = {}

    # -- static truth ------------------------------------------------------------------------
    @property
    def integer_timing(self) -> bool:
        """True when a sample sent at tx clock T arrives exactly at rx sample T + delay_samples."""
        return self.fractional_delay == 0.0 and self.tx_oscillator.ideal_clock and self.rx_oscillator.ideal_clock

    @property
    def rotates(self) -> bool:
        """True when the link rotates the signal (carrier offset, reference correction or phase noise)."""
        tx, rx = self.tx_oscillator, self.rx_oscillator
        return (
            self._cycles != (0.0, 0.0) or tx.corrected or rx.corrected or tx.has_phase_noise or rx.has_phase_noise
        )

    @property
    def total_delay(self) -> float:
        """delay_samples + fractional_delay: propagation delay in true-time samples."""
        return self.delay_samples + self.fractional_delay

    @property
    def rms_delay_spread_s(self) -> float:
        """RMS delay spread (s) of the mean power-delay profile `pdp`."""
        return rms_delay_spread_samples(self.pdp) / self.sample_rate_hz

    # -- fading ------------------------------------------------------------------------------
    def block_gain(self, block: int) -> complex:
        """Complex amplitude gain of fading block `block` (includes the path gain).

        For a multipath link this is the sum of the block's taps (the response at DC).
        """
        cached = self._block_cache.get(block)
        if cached is not None:
            return cached
        if self.n_taps > 1:
            gain = complex(np.sum(self.block_taps(block)))
        else:
            amplitude = np.sqrt(self.path_gain)
            if self.config.fading in ("rayleigh", "rician"):
                rng = seeded_rng(self._seed, *self._ids, TAG_FLAT_BLOCK, block)
                z = (rng.standard_normal() + 1j * rng.standard_normal()) / np.sqrt(2.0)
                if self.config.fading == "rician":
                    z = add_line_of_sight(z, self.config.rician_k_db, self.los_phase)
                gain = complex(amplitude * z)
            else:
                gain = complex(amplitude * np.exp(1j * self._static_phase))
        if len(self._block_cache) > 4096:
            self._block_cache.clear()
        self._block_cache[block] = gain
        return gain

    def block_taps(self, block: int) -> np.ndarray:
        """Complex tap gains (n_taps,) of fading block `block`, tap l at delay l samples."""
        if self.n_taps == 1:
            return np.array([self.block_gain(block)])
        cached = self._taps_cache.get(block)
        if cached is not None:
            return cached
        if self.config.fading == "none":
            taps = self._static_taps
        else:
            z = circular_normal(seeded_rng(self._seed, *self._ids, TAG_TAP_BLOCK, block), self.n_taps)
            if self.config.fading == "rician":
                z = add_line_of_sight(z, self.config.rician_k_db, self.los_phase)
            taps = self._tap_amplitudes * z
        if len(self._taps_cache) > 4096:
            self._taps_cache.clear()
        self._taps_cache[block] = taps
        return taps

    def _table(self, blocks: np.ndarray) -> np.ndarray:
        first, last = int(blocks[0]), int(blocks[-1])
        if first == last:
            return np.full(blocks.shape, self.block_gain(first), dtype=np.complex128)
        table = np.array([self.block_gain(b) for b in range(first, last + 1)], dtype=np.complex128)
        return table[blocks - first]

    def gain_at(self, arrival_times: np.ndarray) -> np.ndarray:
        """Per-sample complex gain for samples arriving at the given integer true times (samples)."""
        return self._table(np.asarray(arrival_times, dtype=np.int64) // self.coherence_samples)

    def block_of(self, t: np.ndarray | float) -> np.ndarray:
        """Fading block index of true time(s) t (samples)."""
        return np.floor(np.asarray(t, dtype=np.float64) / self.coherence_samples).astype(np.int64)

    def taps_at(self, t: np.ndarray | float) -> np.ndarray:
        """Complex taps at true time(s) t (samples): shape (n_taps,) for a scalar, (len(t), n_taps) else."""
        blocks = self.block_of(t)
        if blocks.ndim == 0:
            return self.block_taps(int(blocks))
        first, last = int(blocks.min()), int(blocks.max())
        table = np.array([self.block_taps(b) for b in range(first, last + 1)])
        return table[blocks - first]

    def frequency_response(self, t: float, n_fft: int) -> np.ndarray:
        """Channel response on an n_fft-point DFT grid at true time t (FFT order; taps at sample spacing)."""
        return np.fft.fft(self.taps_at(t), n_fft)

    # -- timing ------------------------------------------------------------------------------
    def arrival_time(self, at_sample: float) -> float:
        """True time (samples) at which a sample sent at `at_sample` of the tx clock arrives."""
        return float(self.tx_oscillator.true_time(at_sample)) + self.total_delay

    def arrival_sample(self, at_sample: float) -> float:
        """Position on the receiver's clock (samples, fractional) where a sample sent at `at_sample` arrives."""
        return float(self.rx_oscillator.local_time(self.arrival_time(at_sample)))

    def true_gain(self, at_sample: int) -> complex:
        """The channel the receiver would see for a sample sent at `at_sample` (tx clock; test truth).

        The gain of the block in which the sample arrives; a multipath link gives the sum of its taps.
        """
        if self.integer_timing:
            return self.block_gain((at_sample + self.delay_samples) // self.coherence_samples)
        return self.block_gain(int(self.block_of(self.arrival_time(at_sample))))

    # -- carrier -----------------------------------------------------------------------------
    def cfo_hz(self, t: np.ndarray | float) -> np.ndarray | float:
        """Carrier frequency offset (Hz) of this link at true time t (samples): f_tx - f_rx."""
        return (self.tx_oscillator.ppm_at(t) - self.rx_oscillator.ppm_at(t)) * 1e-6 * self.center_freq_hz

    def phase_at(self, t: np.ndarray | float) -> np.ndarray:
        """Carrier phase (rad) the link applies at true time t (samples): the integral of cfo_hz from
        t = 0 plus the phase noise of the tx oscillator minus that of the rx oscillator."""
        t = np.asarray(t, dtype=np.float64)
        if self.tx_oscillator.corrected or self.rx_oscillator.corrected:  # piecewise after xo_correction
            scale = self.center_freq_hz * 1e-6 / self.sample_rate_hz
            cycles = scale * (self.tx_oscillator.ppm_integral_at(t) - self.rx_oscillator.ppm_integral_at(t))
        else:
            cycles = self._cycles[0] * t + self._cycles[1] * t * t
        phase = 2.0 * np.pi * (cycles - np.floor(cycles))
        if self.tx_oscillator.has_phase_noise:
            phase = phase + self.tx_oscillator.phase_noise(t)
        if self.rx_oscillator.has_phase_noise:
            phase = phase - self.rx_oscillator.phase_noise(t)
        return phase

    # -- the burst through the link ----------------------------------------------------------
    def propagate(self, samples: np.ndarray, start: int, win_lo: int, win_hi: int) -> tuple[int, np.ndarray] | None:
        """What a burst sent at tx sample `start` contributes to rx samples [win_lo, win_hi).

        Returns (first rx sample, contribution) or None when it does not reach the window.
        """
        n_taps = self.n_taps
        length = len(samples)
        if self.integer_timing:
            arrive = start + self.delay_samples
            lo, hi = max(arrive, win_lo), min(arrive + length + n_taps - 1, win_hi)
            if hi <= lo:
                return None
            times = np.arange(lo, hi, dtype=np.int64)
            if n_taps == 1:
                seg = self.gain_at(times) * samples[lo - arrive : hi - arrive]
            else:
                z = np.zeros(hi - lo + n_taps - 1, dtype=np.complex128)
                a, b = max(lo - n_taps + 1, arrive), min(hi, arrive + length)
                z[a - (lo - n_taps + 1) : b - (lo - n_taps + 1)] = samples[a - arrive : b - arrive]
                seg = apply_taps(z, self.taps_at(times.astype(np.float64)))
            t_out = times
        else:
            tx, rx = self.tx_oscillator, self.rx_oscillator
            half = self.config.resampler_half_length
            delay = self.total_delay
            first = math.floor(float(rx.local_time(tx.true_time(start - half) + delay))) - 1
            last = math.ceil(float(rx.local_time(tx.true_time(start + length - 1 + half) + delay))) + n_taps
            lo, hi = max(first, win_lo), min(last + 1, win_hi)
            if hi <= lo:
                return None
            n_ext = np.arange(lo - n_taps + 1, hi, dtype=np.float64)
            if tx.ideal_clock and rx.ideal_clock:  # a constant fractional shift: one FIR filter
                z = interpolate_uniform(samples, n_ext[0] - delay - start, len(n_ext), half)
                t_ext = n_ext
            else:
                t_ext = rx.true_time(n_ext)
                z = interpolate(samples, tx.local_time(t_ext - delay) - start, half)
            t_out = t_ext[n_taps - 1 :]
            if n_taps == 1:
                seg = self._table(self.block_of(t_out)) * z
            else:
                seg = apply_taps(z, self.taps_at(t_out))
        if self.rotates:
            seg = seg * np.exp(1j * self.phase_at(t_out))
        return lo, seg
