"""Per-radio reference oscillators: carrier offset, sample-clock offset, drift and phase noise.

A radio derives its carrier and (by default) its sample clock from one reference crystal, as the
AD9361 on an ADALM-Pluto does. The reference's fractional error is ppm(t) * 1e-6 with

    ppm(t) = ppm + drift_ppm_per_s * t / fs                      (linear drift, ppm/s)

Times `t` are *true* time in samples of the air's nominal rate fs (the physics clock; a real lab's
wall clock). A radio's own sample clock runs at fs * (1 + eps(t)), eps = sample-clock ppm * 1e-6, so
it reads  tau(t) = integral_0^t (1 + eps(t')) dt'  samples: a burst scheduled at sample T of a
radio's clock happens at true time tau^-1(T) (T / (1 + eps) without drift).

The carrier of a radio is fc * (1 + ppm(t) * 1e-6); its deviation from the nominal carrier
accumulates the phase 2*pi*fc*1e-6 * integral_0^t ppm(t') dt' / fs (continuous in true time) plus a
Wiener phase noise whose increments over one sample have variance 2*pi*linewidth_hz / fs (rad^2),
the phase process of an oscillator with a Lorentzian line of full width `linewidth_hz`.

Reference correction (`Oscillator.set_reference_hz`, the AD9361's `xo_correction`): a radio that is
told its reference runs at X Hz instead of the nominal NOMINAL_REFERENCE_HZ (40 MHz) programs its
PLLs for that reference, so everything it synthesises from it (carrier and, when locked, sample
clock) is scaled by k = NOMINAL_REFERENCE_HZ / X from the true time of the change on:
1 + ppm_eff(t) * 1e-6 = k * (1 + ppm(t) * 1e-6). Telling a fast radio (ppm > 0) that its reference
is fast, X = 40 MHz * (1 + ppm * 1e-6), removes its error. The carrier phase and the sample clock
stay continuous through a change (they integrate ppm_eff); `ppm` and `drift_ppm_per_s` remain the
crystal's own values, and `ppm_at` / `carrier_offset_hz` / `sample_clock_ppm_at` give the effective
ones. An independent sample clock does not come from the reference and is not corrected.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np

from airfl.radio.seeding import (
    TAG_OSCILLATOR,
    TAG_PHASE_BRIDGE,
    TAG_PHASE_SUM,
    seeded_rng,
    stable_id,
)

SampleClockMode = Literal["locked", "independent"]

MAX_ABS_PPM = 1000.0  # beyond this it is not a crystal error but a wrong configuration
NOMINAL_REFERENCE_HZ = 40e6
"""Nominal reference frequency (Hz) of an emulated radio: the AD9361's 40 MHz crystal on a Pluto."""
MAX_REFERENCE_CORRECTION_PPM = 200.0
"""How far `set_reference_hz` may move the reference from nominal (ppm), as the AD9361's driver allows."""


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")


def _ppm_range(name: str, value: float) -> None:
    _finite(name, value)
    if abs(value) > MAX_ABS_PPM:
        raise ValueError(f"{name} must be within +-{MAX_ABS_PPM:g} ppm, got {value}")


def _spread(name: str, value: float, unit: str) -> None:
    _finite(name, value)
    if value < 0:
        raise ValueError(f"{name} must be >= 0 {unit} (a half-width), got {value}")


def frozen_mapping(value: Mapping[str, object] | None, name: str, kind: type) -> Mapping[str, object]:
    """A read-only copy of a radio-name -> override mapping, checked for key and value types."""
    items = dict(value or {})
    for key, item in items.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{name} keys must be non-empty radio names, got {key!r}")
        if not isinstance(item, kind):
            raise ValueError(f"{name}[{key!r}] must be a {kind.__name__}, got {type(item).__name__}")
    return MappingProxyType(items)


@dataclass(frozen=True)
class OscillatorOverride:
    """Exact values for one radio's oscillator; None keeps the value drawn from the seed.

    ppm: reference error at t = 0 (ppm). drift_ppm_per_s: linear drift (ppm/s). linewidth_hz: phase
    noise linewidth (Hz). sample_clock_ppm: sample-clock error (ppm) when the sample clock is
    independent of the reference (OscillatorConfig.sample_clock = "independent").
    """

    ppm: float | None = None
    drift_ppm_per_s: float | None = None
    linewidth_hz: float | None = None
    sample_clock_ppm: float | None = None

    def __post_init__(self) -> None:
        if self.ppm is not None:
            _ppm_range("OscillatorOverride.ppm", self.ppm)
        if self.drift_ppm_per_s is not None:
            _finite("OscillatorOverride.drift_ppm_per_s", self.drift_ppm_per_s)
        if self.linewidth_hz is not None:
            _spread("OscillatorOverride.linewidth_hz", self.linewidth_hz, "Hz")
        if self.sample_clock_ppm is not None:
            _ppm_range("OscillatorOverride.sample_clock_ppm", self.sample_clock_ppm)


@dataclass(frozen=True)
class OscillatorConfig:
    """Reference-oscillator errors of every radio on the air. The default is ideal (all off).

    Each radio draws its values once from the air seed and its name: value = nominal + spread * u,
    u uniform in [-1, 1) (so exactly the nominal value when the spread is 0); `overrides` pins exact
    values for named radios (tests, calibration).

    ppm / ppm_spread: reference frequency error at t = 0 and its per-radio half-width (ppm).
        The carrier offset of a link tx -> rx is (ppm_tx(t) - ppm_rx(t)) * 1e-6 * center_freq_hz.
    drift_ppm_per_s / drift_spread_ppm_per_s: linear drift of the reference and its half-width (ppm/s).
    linewidth_hz: Wiener phase-noise linewidth of every radio's carrier (Hz); 0 turns it off.
    sample_clock: "locked" (default) derives the sample clock from the reference, so it shares its
        ppm and drift (AD9361); "independent" gives it its own constant error below (no drift).
    sample_clock_ppm / sample_clock_ppm_spread: independent sample-clock error and half-width (ppm).
    overrides: radio name -> OscillatorOverride with exact values.
    """

    ppm: float = 0.0
    ppm_spread: float = 0.0
    drift_ppm_per_s: float = 0.0
    drift_spread_ppm_per_s: float = 0.0
    linewidth_hz: float = 0.0
    sample_clock: SampleClockMode = "locked"
    sample_clock_ppm: float = 0.0
    sample_clock_ppm_spread: float = 0.0
    overrides: Mapping[str, OscillatorOverride] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _ppm_range("ppm", self.ppm)
        _spread("ppm_spread", self.ppm_spread, "ppm")
        _ppm_range("ppm + ppm_spread", abs(self.ppm) + self.ppm_spread)
        _finite("drift_ppm_per_s", self.drift_ppm_per_s)
        _spread("drift_spread_ppm_per_s", self.drift_spread_ppm_per_s, "ppm/s")
        _spread("linewidth_hz", self.linewidth_hz, "Hz")
        if self.sample_clock not in ("locked", "independent"):
            raise ValueError(f"sample_clock must be 'locked' or 'independent', got {self.sample_clock!r}")
        _ppm_range("sample_clock_ppm", self.sample_clock_ppm)
        _spread("sample_clock_ppm_spread", self.sample_clock_ppm_spread, "ppm")
        _ppm_range("sample_clock_ppm + sample_clock_ppm_spread", abs(self.sample_clock_ppm) + self.sample_clock_ppm_spread)
        object.__setattr__(self, "overrides", frozen_mapping(self.overrides, "overrides", OscillatorOverride))


class WienerPhase:
    """A Wiener phase process theta(t) in true time t (samples), theta(0) = 0 (rad).

    Increments over one sample are N(0, variance_per_sample). The process is drawn on a grid of
    1/OVERSAMPLE sample, lazily and reproducibly, in chunks of CHUNK grid steps: the chunk sums come
    from one stream per GROUP chunks, and a chunk's inside is a Brownian bridge between its end
    points from its own stream, so evaluating the phase far in the future costs O(t / CHUNK), not
    O(t), and never depends on what was asked before. Between grid points the phase is interpolated
    linearly, which lowers the variance of a one-sample increment between off-grid times by at most
    1/(2*OVERSAMPLE) (6%; radios with a sample-clock offset sample off-grid) and is exact on the grid.
    """

    OVERSAMPLE = 8
    CHUNK = 32768
    _RAMP = np.arange(CHUNK + 1) / CHUNK
    GROUP = 1024
    _CACHE_CHUNKS = 16

    def __init__(self, variance_per_sample: float, seed: int, words: tuple[int, ...]):
        if variance_per_sample < 0:
            raise ValueError(f"variance_per_sample must be >= 0 rad^2, got {variance_per_sample}")
        self.variance_per_sample = float(variance_per_sample)
        self._sigma = math.sqrt(self.variance_per_sample / self.OVERSAMPLE)  # per grid step
        self._seed = seed
        self._words = words
        self._starts = np.zeros(1)  # theta at chunk starts (grid index c * CHUNK), c = 0..len-1
        self._chunks: OrderedDict[int, np.ndarray] = OrderedDict()

    def _ensure_starts(self, last_chunk: int) -> None:
        """Make theta at grid index c * CHUNK known for c <= last_chunk + 1."""
        while len(self._starts) <= last_chunk + 1:
            group = (len(self._starts) - 1) // self.GROUP
            sums = seeded_rng(self._seed, *self._words, TAG_PHASE_SUM, group).standard_normal(self.GROUP)
            sums *= self._sigma * math.sqrt(self.CHUNK)
            self._starts = np.concatenate([self._starts, self._starts[-1] + np.cumsum(sums)])

    def _chunk(self, c: int) -> np.ndarray:
        """theta at grid indices c*CHUNK .. (c+1)*CHUNK inclusive (CHUNK + 1 values)."""
        cached = self._chunks.get(c)
        if cached is not None:
            self._chunks.move_to_end(c)
            return cached
        values = np.empty(self.CHUNK + 1)
        values[0] = 0.0
        seeded_rng(self._seed, *self._words, TAG_PHASE_BRIDGE, c).standard_normal(out=values[1:])
        values[1:] *= self._sigma
        np.cumsum(values, out=values)  # a free walk from 0
        s0, s1 = self._starts[c], self._starts[c + 1]
        values -= self._RAMP * (values[-1] - (s1 - s0))  # pin the end to s1 - s0
        values += s0
        self._chunks[c] = values
        if len(self._chunks) > self._CACHE_CHUNKS:
            self._chunks.popitem(last=False)
        return values

    def at(self, t: np.ndarray | float) -> np.ndarray:
        """Phase (rad) at true times `t` (samples, float); times before 0 read theta(0) = 0."""
        t = np.maximum(np.asarray(t, dtype=np.float64), 0.0)
        if self.variance_per_sample == 0.0 or t.size == 0:
            return np.zeros(t.shape)
        g = t * self.OVERSAMPLE
        k = np.floor(g).astype(np.int64)
        f = g - k
        chunk = k // self.CHUNK
        i = k - chunk * self.CHUNK
        self._ensure_starts(int(chunk.max()))
        flat_chunk, flat_i, flat_f = chunk.ravel(), i.ravel(), f.ravel()
        order = np.argsort(flat_chunk, kind="stable")  # already sorted for a window: O(n)
        sorted_chunk = flat_chunk[order]
        cuts = np.flatnonzero(np.diff(sorted_chunk)) + 1
        out = np.empty(flat_chunk.shape)
        for part in np.split(order, cuts):
            values = self._chunk(int(flat_chunk[part[0]]))
            j, w = flat_i[part], flat_f[part]
            out[part] = values[j] * (1.0 - w) + values[j + 1] * w
        return out.reshape(t.shape)


class Oscillator:
    """One radio's reference: its drawn errors (truth for tests) and the clocks they make.

    All times are true time in samples of the nominal rate (`sample_rate_hz`), as floats.
    """

    def __init__(
        self,
        config: OscillatorConfig,
        name: str,
        seed: int,
        sample_rate_hz: float,
        center_freq_hz: float,
    ):
        self.name = name
        self.sample_rate_hz = float(sample_rate_hz)
        self.center_freq_hz = float(center_freq_hz)
        u = seeded_rng(seed, stable_id(name), TAG_OSCILLATOR).uniform(-1.0, 1.0, 3)
        over = config.overrides.get(name, OscillatorOverride())
        assert isinstance(over, OscillatorOverride)

        def pick(exact: float | None, nominal: float, spread: float, draw: float) -> float:
            if exact is not None:
                return float(exact)
            return float(nominal + spread * draw) if spread > 0 else float(nominal)

        #: reference error at t = 0 (ppm)
        self.ppm = pick(over.ppm, config.ppm, config.ppm_spread, u[0])
        #: reference drift (ppm/s)
        self.drift_ppm_per_s = pick(over.drift_ppm_per_s, config.drift_ppm_per_s, config.drift_spread_ppm_per_s, u[1])
        #: phase-noise linewidth (Hz)
        self.linewidth_hz = float(over.linewidth_hz if over.linewidth_hz is not None else config.linewidth_hz)
        self.sample_clock_mode: SampleClockMode = config.sample_clock
        if config.sample_clock == "locked":
            self.sample_clock_ppm = self.ppm
            self.sample_clock_drift_ppm_per_s = self.drift_ppm_per_s
        else:
            self.sample_clock_ppm = pick(
                over.sample_clock_ppm, config.sample_clock_ppm, config.sample_clock_ppm_spread, u[2]
            )
            self.sample_clock_drift_ppm_per_s = 0.0
        #: True when this radio's sample clock is exactly the air's (no SCO): integer times stay integer.
        self.ideal_clock = self.sample_clock_ppm == 0.0 and self.sample_clock_drift_ppm_per_s == 0.0
        self._ideal_crystal_clock = self.ideal_clock
        #: the reference frequency (Hz) this radio is told it has (`xo_correction`); nominal 40 MHz
        self.reference_hz = NOMINAL_REFERENCE_HZ
        #: True once a reference correction other than nominal has been applied (see set_reference_hz)
        self.corrected = False
        # Piecewise model of the corrections: segment i starts at true time _seg_t[i] (samples) with
        # scale _seg_k[i] = NOMINAL_REFERENCE_HZ / reference; _seg_s[i] = integral_0^t ppm_eff at its start.
        self._seg_t = np.zeros(1)
        self._seg_k = np.ones(1)
        self._seg_s = np.zeros(1)
        self.phase_noise_process = WienerPhase(
            2.0 * math.pi * self.linewidth_hz / self.sample_rate_hz, seed, (stable_id(name),)
        )

    # -- reference correction ----------------------------------------------------------------
    def set_reference_hz(self, reference_hz: float, at_true_time: float) -> None:
        """Tell the radio its reference runs at `reference_hz` (Hz), from true time `at_true_time`
        (samples) on: carrier and locked sample clock scale by NOMINAL_REFERENCE_HZ / reference_hz,
        phase- and time-continuously (module docstring). Changes must come in time order."""
        _finite("reference_hz", reference_hz)
        _finite("at_true_time", at_true_time)
        offset_ppm = (reference_hz / NOMINAL_REFERENCE_HZ - 1.0) * 1e6
        if abs(offset_ppm) > MAX_REFERENCE_CORRECTION_PPM:
            raise ValueError(
                f"reference_hz {reference_hz:.0f} Hz is {offset_ppm:+.1f} ppm from the nominal "
                f"{NOMINAL_REFERENCE_HZ:.0f} Hz; a correction may move it at most +-{MAX_REFERENCE_CORRECTION_PPM:g} ppm"
            )
        if at_true_time < self._seg_t[-1]:
            raise ValueError(f"oscillator {self.name!r}: a correction at {at_true_time} precedes the last one")
        if at_true_time == self._seg_t[-1]:  # supersedes a correction made at the same instant
            self._seg_t, self._seg_k, self._seg_s = self._seg_t[:-1], self._seg_k[:-1], self._seg_s[:-1]
        start = float(self.ppm_integral_at(at_true_time)) if len(self._seg_t) else 0.0
        self._seg_t = np.append(self._seg_t, float(at_true_time))
        self._seg_k = np.append(self._seg_k, NOMINAL_REFERENCE_HZ / float(reference_hz))
        self._seg_s = np.append(self._seg_s, start)
        self.reference_hz = float(reference_hz)
        self.corrected = bool(np.any(self._seg_k != 1.0))
        locked = self.sample_clock_mode == "locked"
        self.ideal_clock = self._ideal_crystal_clock and not (locked and self.corrected)

    def _segment(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For true times t: (time since the start of their segment, its scale k, the effective
        ppm at its start, and the integral of ppm_eff up to its start)."""
        i = np.maximum(np.searchsorted(self._seg_t, t, side="right") - 1, 0)
        start, k = self._seg_t[i], self._seg_k[i]
        ppm0 = (k - 1.0) * 1e6 + k * self._crystal_ppm_at(start)
        return t - start, k, ppm0, self._seg_s[i]

    # -- frequency ---------------------------------------------------------------------------
    def _crystal_ppm_at(self, t: np.ndarray | float) -> np.ndarray | float:
        return self.ppm + self.drift_ppm_per_s * np.asarray(t, dtype=np.float64) / self.sample_rate_hz

    def ppm_at(self, t: np.ndarray | float) -> np.ndarray | float:
        """Effective reference error (ppm) at true time t (samples), after any reference correction."""
        if not self.corrected:
            return self._crystal_ppm_at(t)
        t = np.asarray(t, dtype=np.float64)
        _, k, _, _ = self._segment(t)
        return (k - 1.0) * 1e6 + k * self._crystal_ppm_at(t)

    def crystal_ppm_at(self, t: np.ndarray | float) -> np.ndarray | float:
        """The crystal's own error (ppm) at true time t (samples), whatever the correction."""
        return self._crystal_ppm_at(t)

    def carrier_offset_hz(self, t: np.ndarray | float) -> np.ndarray | float:
        """This radio's carrier minus the nominal carrier (Hz) at true time t (samples)."""
        return self.ppm_at(t) * 1e-6 * self.center_freq_hz

    def sample_clock_ppm_at(self, t: np.ndarray | float) -> np.ndarray | float:
        """Sample-clock error (ppm) at true time t (samples)."""
        if self.corrected and self.sample_clock_mode == "locked":
            return self.ppm_at(t)
        return self.sample_clock_ppm + self.sample_clock_drift_ppm_per_s * np.asarray(t, dtype=np.float64) / self.sample_rate_hz

    def ppm_integral(self) -> tuple[float, float]:
        """(a1, a2) with integral_0^t ppm(t') dt' = a1 * t + a2 * t^2 (t in samples), without
        reference correction (use `ppm_integral_at` once `corrected`)."""
        return self.ppm, self.drift_ppm_per_s / (2.0 * self.sample_rate_hz)

    def ppm_integral_at(self, t: np.ndarray | float) -> np.ndarray:
        """integral_0^t ppm_at(t') dt' (ppm x samples) at true time t (samples), corrections included."""
        t = np.asarray(t, dtype=np.float64)
        if not self.corrected:
            a1, a2 = self.ppm_integral()
            return a1 * t + a2 * t * t
        u, k, ppm0, s0 = self._segment(t)
        slope = k * self.drift_ppm_per_s / self.sample_rate_hz  # ppm per sample
        return s0 + ppm0 * u + 0.5 * slope * u * u

    # -- clocks ------------------------------------------------------------------------------
    def local_time(self, t: np.ndarray | float) -> np.ndarray:
        """This radio's sample clock (samples) at true time t (samples): tau(t)."""
        t = np.asarray(t, dtype=np.float64)
        if self.ideal_clock:
            return t
        if self.corrected and self.sample_clock_mode == "locked":
            return t + 1e-6 * self.ppm_integral_at(t)
        a = 1e-6 * self.sample_clock_drift_ppm_per_s / (2.0 * self.sample_rate_hz)
        return t * (1.0 + 1e-6 * self.sample_clock_ppm) + a * t * t

    def true_time(self, n: np.ndarray | float) -> np.ndarray:
        """True time (samples) at which this radio's sample clock reads n: tau^-1(n)."""
        n = np.asarray(n, dtype=np.float64)
        if self.ideal_clock:
            return n
        if self.corrected and self.sample_clock_mode == "locked":
            return self._corrected_true_time(n)
        a = 1e-6 * self.sample_clock_drift_ppm_per_s / (2.0 * self.sample_rate_hz)
        b = 1.0 + 1e-6 * self.sample_clock_ppm
        if a == 0.0:
            return n / b
        disc = b * b + 4.0 * a * n
        if np.any(disc < 0):
            raise ValueError(f"oscillator {self.name!r}: sample clock stopped (drift too large for this time)")
        return 2.0 * n / (b + np.sqrt(disc))

    def _corrected_true_time(self, n: np.ndarray) -> np.ndarray:
        """tau^-1(n) for a locked clock with reference corrections: tau is a quadratic per segment."""
        starts = self._seg_t + 1e-6 * self._seg_s  # the clock's reading at each segment start
        i = np.maximum(np.searchsorted(starts, n, side="right") - 1, 0)
        t0 = self._seg_t[i]
        _, k, ppm0, _ = self._segment(t0)
        b = 1.0 + 1e-6 * ppm0
        a = 0.5e-6 * k * self.drift_ppm_per_s / self.sample_rate_hz
        m = n - starts[i]
        disc = b * b + 4.0 * a * m
        if np.any(disc < 0):
            raise ValueError(f"oscillator {self.name!r}: sample clock stopped (drift too large for this time)")
        return t0 + 2.0 * m / (b + np.sqrt(disc))

    # -- phase -------------------------------------------------------------------------------
    @property
    def has_phase_noise(self) -> bool:
        return self.linewidth_hz > 0.0

    def phase_noise(self, t: np.ndarray | float) -> np.ndarray:
        """Wiener phase noise (rad) of this radio's carrier at true times t (samples); 0 at t = 0."""
        return self.phase_noise_process.at(t)
