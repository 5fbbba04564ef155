"""Transmit power linearity: gain steps, 1 dB compression point and the highest clean level.

Each transmitter sweeps its transmit gain g (dB, <= 0: the AD936x's attenuation, Pluto -89.75..0 in
0.25 dB steps) and at every setting sends one burst, measured at the receiver:

    [ preamble | ref tone | test tone | airfl waveform | ref tone ]

* test tone: a complex tone at `tone_offset_hz` with amplitude `tone_amplitude` at the DAC
  (full-scale units); ref tones: the same tone `reference_db` lower. A tone has a constant envelope,
  so its output against its input is the amplifier's AM/AM curve.
* waveform: the real over-the-air burst (modem.aircomp: a seeded update normalised, mapped to
  symbols, OFDM or single carrier, with its preamble and pilots) scaled to mean power
  `waveform_power` at the DAC (default: the highest power whose I/Q peaks stay within `dac_peak`).
  Its PAPR is the one a run transmits.

Measured per setting (powers in dBFS at the receiver's ADC; the receive gain is fixed for the sweep):
* tone output power |a_test|^2, from the tone's complex amplitude (projection at the frequency
  measured on the test tone, so noise, DC and images do not count).
* compression of the tone, in-burst: 20*log10(|a_test| / |a_ref|) - reference_db. The reference is
  `reference_db` lower, linear, and went through the same channel a few milliseconds apart, so this
  needs no stable link between settings. The two ref tones bracket the test tone and the waveform;
  if they disagree (beyond 1% or 5 standard errors) the link changed inside the burst and the
  setting is repeated (`retries`); a setting whose ref tones are too weak to see a 10% change, or
  that kept changing, is reported but not judged (column steady: "-" or "no").
* gain steps: the tone's output power between consecutive settings against the nominal step, and
  its deviation from the line of slope 1 dB/dB fitted to the low, uncompressed settings (the
  "linear extrapolation"). These need the link to stay put during the sweep (a cable and an
  attenuator, or antennas nobody walks past): the highest linear setting is measured again at the
  end and the drift reported; beyond 0.2 dB a note says the steps cannot be trusted and the summary
  leaves them out. (On the loopback's Rayleigh-fading "lab" air they never can: use a static link.)
* the 1 dB compression point: the setting g_1dB where the in-burst tone compression crosses -1 dB
  (linear interpolation between settings), given as the amplifier input power of the tone,
  P1dB_in = tone_amplitude^2 * 10^(g_1dB/10) (full-scale units^2 referred to the DAC, i.e. the DAC
  power that would reach the amplifier at 0 dB attenuation); the setting where the deviation from the
  extrapolated line crosses -1 dB is reported beside it as a cross-check.
* the waveform: a widely linear least-squares fit of the received samples on the known waveform
  (taps -8..8 on x for the fractional delay and multipath, -1..1 on conj(x) for IQ imbalance, TX and
  RX DC), after removing the carrier offset the tone shows, with the common phase tracked over
  blocks of 256 samples (oscillator phase noise is not distortion; AM/PM, sample by sample, stays
  in the residual). Its gain at the tone frequency against the ref tone is the waveform's
  compression (the Bussgang gain); the residual minus the receiver noise (measured with every
  transmitter silent) is its distortion: SDR = signal / distortion (dB), EVM = residual / signal
  (noise included). For OFDM also the out-of-band power (dBc: PSD outside the used subcarriers
  relative to inside, noise included).

Highest clean level: walking up from the lowest setting, the last setting at which the waveform
is compressed by at most `max_compression_db` and its SDR is at least `min_sdr_db` (a setting
fails only when it does so by more than 3 standard errors, so noise at low settings never does);
settings not judged (see steady, or clipped at the ADC) are stepped over. The profile gets, per transmitter, `tx_gain_db` = that setting and
`max_tx_power` = the waveform's mean power at the DAC (full-scale units^2): what
OtaSettings.tx_power may use at that setting. Power control never sends more than that (truncated
inversion keeps |b_k|^2 <= P), so every burst of a run is at most as compressed as measured here.

Receive gain: unless `rx_gain_db` is given, a probe at the highest setting sets it so the burst
peaks near `target_peak_dbfs` at the ADC (the top of the sweep must not clip the receiver, whose
clipping would look like compression). The bench's gains are restored afterwards.

If the amplifier that compresses sits before the attenuator (not the model here), the sweep shows
no compression and the DAC level is the knob: re-run with a lower -o waveform_power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from airfl.calibration import plots
from airfl.calibration.bench import Bench, Capture
from airfl.calibration.locate import BurstPosition, clipped_fraction, locate_burst, short_name, strongest_tone
from airfl.calibration.output import ProcedureOutput, ProcedureResult
from airfl.modem.aircomp import client_burst, client_burst_ofdm, client_symbols
from airfl.modem.frame import AggregationLayout, OfdmAggregationLayout
from airfl.modem.power import common_scale, update_statistics
from airfl.modem.sequences import zadoff_chu
from airfl.radio.base import RadioError
from airfl.radio.recording import Annotation

SUMMARY = "transmit power against transmit gain: gain steps, 1 dB compression, the highest clean level and power"

PREAMBLE_LENGTH = 127
PREAMBLE_ROOT = 3
GUARD = 32  # samples of silence between parts of the burst
EDGE = 16  # samples skipped at each end of a part (delay and interpolation transients)
TAPS = 8  # the waveform fit uses taps -TAPS..TAPS on x (a fractional delay needs ~8 a side)
CONJ_TAPS = 1  # and -CONJ_TAPS..CONJ_TAPS on conj(x)
PHASE_BLOCK = 256  # samples per block of the waveform fit's phase tracking (oscillator phase noise)
MAX_DRIFT_DB = 0.2  # a linear setting measured again at the end may differ by this much (dB)


@dataclass(frozen=True)
class Options:
    """gains_db: transmit gains to sweep (dB, <= 0; default -30..0 in 1 dB steps).
    tone_offset_hz: tone frequency (Hz). tone_amplitude: test tone amplitude at the DAC (full-scale
    units). reference_db: how far below it the reference tones are (dB). tone_samples: samples per tone.
    waveform: "ofdm" or "single_carrier" (the run's waveforms). waveform_samples: about how long.
    waveform_power: mean power at the DAC (full-scale units^2); None: the highest whose I/Q peaks stay
    within dac_peak. max_compression_db / min_sdr_db: what "clean" allows (dB). rx_gain_db: receive
    gain for the sweep (None: set by a probe so the burst peaks at target_peak_dbfs). retries: repeats
    of a setting whose link changed inside the burst. seed: of the waveform's content."""

    gains_db: list[float] | None = None
    tone_offset_hz: float = 10e3
    tone_amplitude: float = 0.8
    reference_db: float = 10.0
    tone_samples: int = 2048
    waveform: Literal["ofdm", "single_carrier"] = "ofdm"
    waveform_samples: int = 3000
    waveform_power: float | None = None
    dac_peak: float = 0.9
    max_compression_db: float = 1.0
    min_sdr_db: float = 25.0
    rx_gain_db: float | None = None
    target_peak_dbfs: float = -6.0
    retries: int = 5
    seed: int = 0

    def sweep(self) -> list[float]:
        """The transmit gains to measure, lowest first (dB)."""
        gains = [float(g) for g in range(-30, 1)] if self.gains_db is None else [float(g) for g in self.gains_db]
        return sorted(gains)

    def __post_init__(self) -> None:
        gains = self.sweep()
        if len(gains) < 4:
            raise ValueError("gains_db needs at least 4 settings (a linear region and a top)")
        if any(not math.isfinite(g) or g > 0 for g in gains):
            raise ValueError("every gain in gains_db must be <= 0 dB (the TX gain is an attenuation)")
        if len(set(gains)) != len(gains):
            raise ValueError("gains_db has repeated settings")
        if not 0 < self.tone_amplitude <= 0.95:
            raise ValueError(f"tone_amplitude must be in (0, 0.95] full-scale units, got {self.tone_amplitude}")
        if not 3.0 <= self.reference_db <= 40.0:
            raise ValueError(f"reference_db must be in [3, 40] dB, got {self.reference_db}")
        if self.tone_samples < 256 or self.waveform_samples < 512:
            raise ValueError("tone_samples must be >= 256 and waveform_samples >= 512")
        if self.waveform not in ("ofdm", "single_carrier"):
            raise ValueError(f"waveform must be 'ofdm' or 'single_carrier', got {self.waveform!r}")
        if self.waveform_power is not None and not 0 < self.waveform_power <= 1:
            raise ValueError(f"waveform_power must be in (0, 1] full-scale units^2, got {self.waveform_power}")
        if not 0 < self.dac_peak <= 1:
            raise ValueError(f"dac_peak must be in (0, 1] full-scale units, got {self.dac_peak}")
        if self.max_compression_db <= 0 or self.min_sdr_db <= 0:
            raise ValueError("max_compression_db and min_sdr_db must be > 0 dB")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")


# -- the burst -----------------------------------------------------------------------------------


def airfl_waveform(kind: str, n_samples: int, seed: int) -> np.ndarray:
    """A run's uplink burst of about `n_samples` samples, unit mean power: a seeded Gaussian update
    normalised with its own common scale (modem.power), mapped to symbols and framed by
    modem.aircomp exactly as a client does (pre-equaliser 1)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A11]))
    if kind == "ofdm":
        probe = OfdmAggregationLayout(1)
        per_symbol = probe.ofdm.n_data
        n_ofdm = max(2, n_samples // probe.ofdm.symbol_length - 1)
        layout = OfdmAggregationLayout(n_ofdm * per_symbol)
        update = rng.standard_normal(2 * layout.n_symbols)
        scale = common_scale([update_statistics(update)], np.array([1.0]))
        x = client_burst_ofdm(client_symbols(update, 1.0, scale), np.ones(layout.ofdm.n_used), layout)
    else:
        base = AggregationLayout(1, pilot_spacing=32)
        n_sym = max(1, int((n_samples - base.preamble_length) * 32 / 33))
        layout_sc = AggregationLayout(n_sym, pilot_spacing=32)
        update = rng.standard_normal(2 * n_sym)
        scale = common_scale([update_statistics(update)], np.array([1.0]))
        x = client_burst(client_symbols(update, 1.0, scale), 1.0, layout_sc)
    return x / np.sqrt(np.mean(np.abs(x) ** 2))


def dac_limited_power(x_unit: np.ndarray, dac_peak: float) -> float:
    """Highest mean power (full-scale units^2) of the unit-power waveform whose I and Q stay within dac_peak."""
    rail = float(np.max(np.maximum(np.abs(x_unit.real), np.abs(x_unit.imag))))
    return (dac_peak / rail) ** 2


@dataclass(frozen=True)
class BurstPlan:
    """Where each part of the burst sits (sample offsets from the burst start) and what it holds."""

    burst: np.ndarray
    waveform: np.ndarray  # the waveform as sent (at the DAC)
    f_tone: float  # cycles/sample
    ref1: int
    test: int
    wave: int
    ref2: int
    tone_samples: int
    amp_test: float
    amp_ref: float

    @property
    def length(self) -> int:
        return len(self.burst)


def plan_burst(options: Options, sample_rate_hz: float, waveform_power: float, x_unit: np.ndarray) -> BurstPlan:
    f = options.tone_offset_hz / sample_rate_hz
    if not 0 < abs(f) < 0.45:
        raise ValueError(f"tone_offset_hz {options.tone_offset_hz} Hz must be within +-0.45 of the sample rate")
    a_test = options.tone_amplitude
    a_ref = a_test * 10 ** (-options.reference_db / 20)
    nt = options.tone_samples
    wave = np.sqrt(waveform_power) * x_unit
    gap = np.zeros(GUARD, dtype=np.complex128)
    one = np.ones(nt)
    # Amplitude profile of the tone parts (0 elsewhere); the tone itself runs phase-continuously.
    parts = [a_test * zadoff_chu(PREAMBLE_LENGTH, PREAMBLE_ROOT), gap, a_ref * one, a_test * one, gap, wave, gap,
             a_ref * one, gap]
    offsets = np.cumsum([0] + [len(p) for p in parts])
    burst = np.concatenate(parts).astype(np.complex128)
    n = np.arange(len(burst))
    tone = np.exp(2j * np.pi * f * n)
    for k in (2, 3, 7):
        burst[offsets[k] : offsets[k + 1]] *= tone[offsets[k] : offsets[k + 1]]
    return BurstPlan(burst, wave, f, int(offsets[2]), int(offsets[3]), int(offsets[5]), int(offsets[7]), nt, a_test, a_ref)


# -- measuring one capture -----------------------------------------------------------------------


@dataclass
class Measurement:
    """One setting's burst, measured (complex amplitudes in full-scale units at the ADC)."""

    test: complex
    ref1: complex
    ref2: complex
    cfo: float  # cycles/sample
    steady: bool | None  # None: the reference tones are too weak to tell
    wave_gain: complex  # the fitted waveform response at the tone frequency
    wave_signal: float  # power of the fitted linear part (full-scale units^2)
    wave_residual: float  # residual power of the fit
    n_wave: int
    oob_dbc: float | None
    clipped: float  # fraction of ADC-clipped samples in the burst
    where: BurstPosition


def _amplitude(y: np.ndarray, start: int, n: int, f: float) -> complex:
    """Complex amplitude of the tone at f (cycles/sample, phase referred to capture index 0) in y[start:start+n]."""
    m = np.arange(start, start + n)
    return complex(np.mean(y[m] * np.exp(-2j * np.pi * f * m)))


def _shifted(x: np.ndarray, k: int) -> np.ndarray:
    """x delayed by k samples (zeros shifted in)."""
    out = np.zeros_like(x)
    if k >= 0:
        out[k:] = x[: len(x) - k]
    else:
        out[:k] = x[-k:]
    return out


def fit_waveform(
    y: np.ndarray, x: np.ndarray, cfo: float, start: int, phase_block: int = PHASE_BLOCK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Widely linear least squares of y[start:start+len(x)] (carrier offset removed) on the known x.

    Returns (coefficients on x taps -TAPS..TAPS, linear part on x, residual), skipping EDGE samples
    at each end. Columns: x delayed by each tap, conj(x) by -CONJ_TAPS..CONJ_TAPS, a constant (TX DC
    and leakage, which ride the carrier offset) and the RX DC (which does not: it turns at -cfo).
    Oscillator phase noise is not distortion: a first fit gives the common phase of each block of
    `phase_block` samples, the samples are de-rotated by it (interpolated between blocks) and fitted
    again. Blocks are long enough that the amplifier's AM/PM, which changes sample by sample, stays in
    the residual.
    """
    m = np.arange(start, start + len(x))
    seg = y[m] * np.exp(-2j * np.pi * cfo * m)
    cols = [_shifted(x, k) for k in range(-TAPS, TAPS + 1)]
    cols += [np.conj(_shifted(x, k)) for k in range(-CONJ_TAPS, CONJ_TAPS + 1)]
    cols += [np.ones(len(x), dtype=np.complex128), np.exp(-2j * np.pi * cfo * m)]
    a = np.stack(cols, axis=1)[EDGE:-EDGE]
    target = seg[EDGE:-EDGE]
    coef, *_ = np.linalg.lstsq(a, target, rcond=None)
    n_blocks = len(target) // phase_block
    if n_blocks >= 2:
        fitted = a @ coef
        cut = n_blocks * phase_block
        corr = np.sum((target[:cut] * np.conj(fitted[:cut])).reshape(n_blocks, phase_block), axis=1)
        centres = (np.arange(n_blocks) + 0.5) * phase_block
        phase = np.interp(np.arange(len(target)), centres, np.unwrap(np.angle(corr)))
        target = target * np.exp(-1j * phase)
        coef, *_ = np.linalg.lstsq(a, target, rcond=None)
    linear = a[:, : 2 * TAPS + 1] @ coef[: 2 * TAPS + 1]
    return coef[: 2 * TAPS + 1], linear, target - a @ coef


def out_of_band_dbc(samples: np.ndarray, used_fraction: float) -> float | None:
    """Mean PSD outside the occupied band (|f| > used_fraction/2 of the sample rate, 3% margin) over
    the mean PSD inside (dB). Noise counts, and so do OFDM's own sidelobes (no windowing)."""
    from scipy.signal import welch  # noqa: PLC0415

    if len(samples) < 256:
        return None
    f, pxx = welch(samples, fs=1.0, window="hann", nperseg=256, return_onesided=False)
    edge = used_fraction / 2
    inside = np.abs(f) < edge * 0.97
    outside = np.abs(f) > edge * 1.03 + 2 / 256
    if not inside.any() or not outside.any():
        return None
    return float(10 * np.log10(np.mean(pxx[outside]) / np.mean(pxx[inside])))


def measure(y: np.ndarray, where: BurstPosition, plan: BurstPlan, noise_power: float, used_fraction: float | None,
            clipped: float) -> Measurement:
    """Measure the tones and the waveform of the burst that starts at `where.index` in `y`."""
    s = where.index
    nt = plan.tone_samples - 2 * EDGE
    test_start = s + plan.test + EDGE
    f_hat = strongest_tone(y[test_start : test_start + nt])
    cfo = (f_hat - plan.f_tone + 0.5) % 1.0 - 0.5
    test = _amplitude(y, test_start, nt, f_hat)
    ref1 = _amplitude(y, s + plan.ref1 + EDGE, nt, f_hat)
    ref2 = _amplitude(y, s + plan.ref2 + EDGE, nt, f_hat)
    # The two references agree within the noise unless the link changed during the burst (their
    # magnitudes: the phase between them also carries the frequency estimate's error).
    sigma = math.sqrt(noise_power / (2 * nt)) if noise_power > 0 else 0.0
    mean_ref = (abs(ref1) + abs(ref2)) / 2
    tolerance = max(5 * math.sqrt(2) * sigma, 0.01 * mean_ref)
    steady: bool | None = abs(abs(ref1) - abs(ref2)) <= tolerance
    if tolerance > 0.1 * mean_ref:  # a 10% change of the link would go unseen: cannot tell
        steady = None
    coef, linear, resid = fit_waveform(y, plan.waveform, cfo, s + plan.wave)
    k = np.arange(-TAPS, TAPS + 1)
    gain = complex(np.sum(coef * np.exp(-2j * np.pi * plan.f_tone * k)))
    seg = y[s + plan.wave + EDGE : s + plan.wave + len(plan.waveform) - EDGE]
    oob = out_of_band_dbc(seg, used_fraction) if used_fraction is not None else None
    return Measurement(test, ref1, ref2, float(cfo), steady, gain, float(np.mean(np.abs(linear) ** 2)),
                       float(np.mean(np.abs(resid) ** 2)), len(resid), oob, clipped, where)


def db(x: float) -> float:
    return float(10 * math.log10(x)) if x > 0 else float("-inf")


def crossing(x: np.ndarray, y: np.ndarray, level: float) -> float | None:
    """The first x where y (sampled at increasing x) falls through `level`, interpolated linearly."""
    for i in range(1, len(x)):
        if y[i - 1] > level >= y[i]:
            return float(x[i - 1] + (level - y[i - 1]) * (x[i] - x[i - 1]) / (y[i] - y[i - 1]))
    return None


# -- the procedure ---------------------------------------------------------------------------------


def _send(bench: Bench, index: int, plan: BurstPlan) -> tuple[Capture, BurstPosition | None, float]:
    n = plan.length + 256 if bench.timed else 2 * plan.length + 256
    cap = bench.send_and_capture({index: plan.burst}, n, pre=128)
    cfo = strongest_tone(cap.samples) - plan.f_tone  # the test tone is the strongest line in the window
    where = locate_burst(cap, plan.burst[:PREAMBLE_LENGTH], plan.length, cfo=(cfo + 0.5) % 1.0 - 0.5)
    clipped = clipped_fraction(cap.samples[where.index : where.index + plan.length] if where is not None else cap.samples,
                               bench.receiver.capabilities.adc_bits)
    return cap, where, clipped


def _measure_setting(bench: Bench, index: int, g: float, plan: BurstPlan, noise: float, used_fraction: float | None,
                     retries: int) -> tuple[Capture, BurstPosition | None, Measurement | None]:
    """Set transmitter `index` to gain g and measure one burst, repeated (up to `retries` times) while
    its two reference tones say the link changed inside it (not when they are too weak to tell)."""
    bench.set_tx_gain(index, g)
    m: Measurement | None = None
    for _ in range(retries + 1):
        cap, where, clipped = _send(bench, index, plan)
        if where is None:
            return cap, None, None
        m = measure(cap.samples, where, plan, noise, used_fraction, clipped)
        if m.steady is not False:
            break
    return cap, where, m


def _auto_rx_gain(bench: Bench, index: int, plan: BurstPlan, top: float, target_dbfs: float, notes: list[str]) -> None:
    """Set the receive gain so the burst at the highest setting peaks near target_dbfs at the ADC."""
    bench.set_tx_gain(index, top)
    for _ in range(6):
        cap, where, clipped = _send(bench, index, plan)
        y = cap.samples[where.index : where.index + plan.length] if where is not None else cap.samples
        peak = float(np.max(np.maximum(np.abs(y.real), np.abs(y.imag)))) if len(y) else 0.0
        peak_db = 20 * math.log10(peak) if peak > 0 else -200.0
        if clipped > 0:
            step = -12.0
        elif where is None:
            step = 12.0
        elif peak_db > target_dbfs + 3 or peak_db < target_dbfs - 10:
            step = target_dbfs - peak_db
        else:
            return
        previous = bench.config.rx_gain_db
        try:
            bench.set_rx_gain(previous + step)
        except (RadioError, ValueError) as exc:  # beyond the receiver's range: keep the last gain
            bench.set_rx_gain(previous)
            notes.append(f"the probe wanted rx gain {previous + step:g} dB, which the receiver refused ({exc})")
            return
    notes.append(f"the probe could not bring the burst's peak to {target_dbfs:g} dBFS; rx gain left at {bench.config.rx_gain_db:g} dB")


def run(bench: Bench, out: ProcedureOutput, options: Options) -> ProcedureResult:
    bench.require_transmitters("tx_linearity")
    gains = options.sweep()
    fs = bench.sample_rate_hz
    x_unit = airfl_waveform(options.waveform, options.waveform_samples, options.seed)
    p_dac = dac_limited_power(x_unit, options.dac_peak)
    p_wave = options.waveform_power if options.waveform_power is not None else p_dac
    plan = plan_burst(options, fs, p_wave, x_unit)
    used_fraction = None
    if options.waveform == "ofdm":
        ofdm = OfdmAggregationLayout(1).ofdm
        used_fraction = (ofdm.n_used + 1) / ofdm.n_fft
    original_rx = bench.config.rx_gain_db
    original_tx = list(bench.tx_gains_db)
    air = bench.air
    rows: list[dict[str, object]] = []
    notes: list[str] = []
    summary: dict[str, object] = {
        "waveform": options.waveform,
        "waveform_power": p_wave,
        "waveform_papr_db": db(float(np.max(np.abs(x_unit) ** 2))),
        "tone_power_dbfs_at_dac": db(options.tone_amplitude**2),
    }
    if p_wave > p_dac * 1.0001:
        notes.append(f"waveform_power {p_wave:.3g} drives the DAC beyond dac_peak {options.dac_peak:g}: expect DAC clipping")
    profile: dict[str, dict[str, object]] = {}
    try:
        for i, uri in enumerate(bench.transmitter_uris):
            label = short_name(uri)
            if options.rx_gain_db is not None:
                bench.set_rx_gain(options.rx_gain_db)
            else:
                _auto_rx_gain(bench, i, plan, gains[-1], options.target_peak_dbfs, notes)
            rx_gain = bench.config.rx_gain_db
            quiet = bench.listen(16384)
            noise = float(np.mean(np.abs(quiet.samples - np.mean(quiet.samples)) ** 2))
            out.save_capture(f"noise_{label}", quiet, bench, description="receiver noise during the sweep, every transmitter silent",
                             annotations=[Annotation(0, len(quiet.samples), "noise")], extra={"rx_gain_db": rx_gain})
            results: dict[float, Measurement] = {}
            spectra: dict[float, np.ndarray] = {}
            for g in gains:
                cap, where, m = _measure_setting(bench, i, g, plan, noise, used_fraction, options.retries)
                name = f"{label}_tx{g:+06.2f}dB".replace(".", "p")
                notes_cap = [] if where is None else [
                    Annotation(where.index, PREAMBLE_LENGTH, "preamble", f"Zadoff-Chu root {PREAMBLE_ROOT} ({where.how})"),
                    Annotation(where.index + plan.ref1, plan.tone_samples, "tone_reference", f"amplitude {plan.amp_ref:.4g}"),
                    Annotation(where.index + plan.test, plan.tone_samples, "tone_test", f"amplitude {plan.amp_test:.4g}"),
                    Annotation(where.index + plan.wave, len(plan.waveform), "waveform", f"{options.waveform}, mean power {p_wave:.4g}"),
                    Annotation(where.index + plan.ref2, plan.tone_samples, "tone_reference", f"amplitude {plan.amp_ref:.4g}"),
                ]
                out.save_capture(
                    f"lin_{name}", cap, bench,
                    description=f"{uri} at tx gain {g:g} dB: reference tone, test tone, {options.waveform} waveform, reference tone",
                    annotations=notes_cap,
                    extra={"transmitter": uri, "tx_gain_db": g, "rx_gain_db": rx_gain, "tone_hz": plan.f_tone * fs,
                           "tone_amplitude": plan.amp_test, "reference_amplitude": plan.amp_ref,
                           "waveform": options.waveform, "waveform_power": p_wave, "waveform_seed": options.seed},
                )
                if m is None:
                    continue
                results[g] = m
                s = where.index + plan.wave + EDGE  # type: ignore[union-attr]
                spectra[g] = cap.samples[s : s + len(plan.waveform) - 2 * EDGE]
            # Did the link drift? The highest setting still linear in-burst (else the lowest judged one),
            # measured again.
            judged = [g for g, m in results.items() if m.steady is True]
            linear = [g for g in judged if 20 * math.log10(abs(results[g].test) / ((abs(results[g].ref1)
                      + abs(results[g].ref2)) / 2)) - options.reference_db > -0.1]
            if judged:
                g_re = max(linear) if linear else min(judged)
                _, _, m_re = _measure_setting(bench, i, g_re, plan, noise, used_fraction, options.retries)
                if m_re is not None and m_re.steady is True:
                    summary[f"{label}.drift_db"] = db(abs(m_re.test) ** 2) - db(abs(results[g_re].test) ** 2)
                    summary[f"{label}.drift_setting_db"] = g_re
            rows_tx, tx_summary, chosen, figs = _analyse(results, gains, plan, noise, options, fs)
            for row in rows_tx:
                rows.append({"radio": label, **row})
            drift = summary.get(f"{label}.drift_db")
            if isinstance(drift, float) and abs(drift) > MAX_DRIFT_DB:
                notes.append(
                    f"{label}: the tone at {summary.get(f'{label}.drift_setting_db')} dB came back {drift:+.2f} dB different "
                    "at the end of the sweep: the link changed, so the gain steps (column step_err_dB) and the line they "
                    "extrapolate are not trustworthy and are left out of the summary (cable the radios); the in-burst "
                    "compression, P1dB and the clean level do not depend on it"
                )
                for key in ("p1db_setting_extrapolated_db", "linear_slope_db_per_db", "max_step_error_db"):
                    tx_summary[key] = None
            for key, value in tx_summary.items():
                summary[f"{label}.{key}"] = value
            if not results:
                notes.append(f"{label}: no burst was found at any setting; check the link and the gains")
                continue
            if any(m.clipped > 0 for m in results.values()):
                notes.append(f"{label}: the ADC clipped at some settings (column adc_clip); those settings are not judged")
            if air is not None:
                fe = air.frontend(bench.air_name(bench.transmitters[i]))
                p1 = fe.tx_p1db_input_power
                summary[f"{label}.truth_p1db_input_dbfs"] = db(p1) if p1 is not None else None
                summary[f"{label}.truth_p1db_setting_db"] = db(p1) - db(plan.amp_test**2) if p1 is not None else None
            _figures(out, label, figs, plan, spectra, chosen, fs, options)
            if chosen is None:
                notes.append(f"{label}: no setting was clean (compression <= {options.max_compression_db:g} dB and SDR >= "
                             f"{options.min_sdr_db:g} dB); lower waveform_power or sweep lower gains")
            else:
                profile[uri] = {"tx_gain_db": chosen, "max_tx_power": p_wave}
                if chosen == gains[-1]:
                    notes.append(f"{label}: clean up to the top of the sweep ({chosen:g} dB): the waveform could be sent "
                                 "louder only with a higher waveform_power (DAC headroom permitting)")
    finally:
        bench.set_rx_gain(original_rx)
        for i, g in enumerate(original_tx):
            bench.set_tx_gain(i, g)
    return ProcedureResult("tx_linearity", rows, summary, profile, notes)


def _analyse(results: dict[float, Measurement], gains: list[float], plan: BurstPlan, noise: float, options: Options,
             fs: float) -> tuple[list[dict[str, object]], dict[str, object], float | None, dict[str, np.ndarray]]:
    """Rows, summary, the highest clean setting and the curves to plot, from one transmitter's sweep."""
    g = np.array([x for x in gains if x in results])
    if len(g) == 0:
        return [], {}, None, {}
    ms = [results[x] for x in g]
    p_tone = np.array([db(abs(m.test) ** 2) for m in ms])
    ref = np.array([(abs(m.ref1) + abs(m.ref2)) / 2 for m in ms])
    nt = plan.tone_samples - 2 * EDGE
    c_tone = np.array([20 * math.log10(abs(m.test) / r) if r > 0 else float("nan") for m, r in zip(ms, ref)]) \
        - options.reference_db
    # standard error (dB) of a tone amplitude estimate: 8.7 * sqrt(noise / (2 * n * |a|^2))
    se_ref = np.array([8.686 * math.sqrt(noise / (2 * 2 * nt * r * r)) if r > 0 else float("inf") for r in ref])
    gain_ref = ref / plan.amp_ref  # small-signal gain of the whole link at this setting (amplitude)
    c_wave = np.array([20 * math.log10(abs(m.wave_gain) / gr) if gr > 0 else float("nan") for m, gr in zip(ms, gain_ref)])
    p_wave_rx = np.array([db(m.wave_signal) for m in ms])
    distortion = np.array([m.wave_residual - noise for m in ms])
    # standard error of (residual - noise): both are averages of |noise|^2 over their lengths
    se_dist = np.array([noise * math.sqrt(1.0 / m.n_wave + 1.0 / 16384) for m in ms])
    sdr = np.array([m.wave_signal / d if d > 2 * s else float("inf") for m, d, s in zip(ms, distortion, se_dist)])
    evm = np.array([db(m.wave_residual / m.wave_signal) if m.wave_signal > 0 else float("nan") for m in ms])
    snr_tone = np.array([db(abs(m.test) ** 2 * nt / noise) if noise > 0 else float("inf") for m in ms])

    # A setting whose link changed inside every try (or whose references are too weak to tell), or
    # that clipped the ADC, is not judged.
    known = np.array([m.steady is True and m.clipped == 0 for m in ms])
    # Linear region: tone not compressed (in-burst) and well above the noise; line of slope 1.
    linear = (c_tone > -0.1 - 3 * se_ref) & (snr_tone > 30) & known
    lin_idx = np.flatnonzero(linear)
    if len(lin_idx) >= 2:
        lo = lin_idx[: max(2, (len(lin_idx) + 1) // 2)]  # the lower half of the linear settings
        offset = float(np.mean(p_tone[lo] - g[lo]))
        slope = float(np.polyfit(g[lin_idx], p_tone[lin_idx], 1)[0])
    else:
        offset, slope = float(p_tone[0] - g[0]), float("nan")
    deviation = p_tone - (g + offset)
    offset_w = float(np.mean(p_wave_rx[lin_idx] - g[lin_idx])) if len(lin_idx) else float(p_wave_rx[0] - g[0])
    steps = np.concatenate([[np.nan], np.diff(p_tone) - np.diff(g)])

    # Clean: compression and distortion within limits (beyond 3 standard errors fails), no ADC clip.
    allowed_dist = np.array([m.wave_signal * 10 ** (-options.min_sdr_db / 10) for m in ms])
    se_cw = se_ref * math.sqrt(2)
    clean = (c_wave >= -options.max_compression_db - 3 * se_cw) & (distortion <= allowed_dist + 3 * se_dist)
    chosen: float | None = None
    for k in range(len(g)):
        if not known[k]:
            continue
        if not clean[k]:
            break
        chosen = float(g[k])

    rows = []
    for k, m in enumerate(ms):
        rows.append({
            "tx_gain_dB": float(g[k]),
            "tone_dBFS": float(p_tone[k]),
            "step_err_dB": None if k == 0 else float(steps[k]),
            "tone_comp_dB": float(c_tone[k]),
            "tone_vs_fit_dB": float(deviation[k]),
            "wave_dBFS": float(p_wave_rx[k]),
            "wave_comp_dB": float(c_wave[k]),
            "sdr_dB": None if not math.isfinite(sdr[k]) else float(10 * math.log10(sdr[k])) if sdr[k] > 0 else None,
            "evm_dB": float(evm[k]),
            "oob_dBc": m.oob_dbc,
            "steady": m.steady,
            "adc_clip": m.clipped,
            "clean": bool(clean[k]) if known[k] else None,
        })
    p1_setting = crossing(g[known], c_tone[known], -1.0)
    p1_setting_x = crossing(g, deviation, -1.0)
    # Steps judged where both tone estimates are precise (SNR after projection >= 50 dB: 0.01 dB).
    precise = linear & (snr_tone >= 50)
    lin_steps = [abs(steps[k]) for k in range(1, len(g)) if precise[k] and precise[k - 1]]
    summary: dict[str, object] = {
        "p1db_setting_db": p1_setting,
        "p1db_input_dbfs": None if p1_setting is None else db(plan.amp_test**2) + p1_setting,
        "p1db_rx_dbfs": None if p1_setting is None else float(np.interp(p1_setting, g, p_tone)),
        "p1db_setting_extrapolated_db": p1_setting_x,
        "linear_slope_db_per_db": slope,
        "max_step_error_db": max(lin_steps) if lin_steps else None,
        "highest_clean_setting_db": chosen,
        "noise_dbfs": db(noise),
        "cfo_hz": float(np.median([m.cfo for m in ms]) * fs),
    }
    figs = {"g": g, "p_tone": p_tone, "fit_tone": g + offset, "p_wave": p_wave_rx, "fit_wave": g + offset_w,
            "c_tone": c_tone, "c_wave": c_wave, "deviation": deviation,
            "p1": np.array([np.nan if p1_setting is None else p1_setting])}
    return rows, summary, chosen, figs


def _figures(out: ProcedureOutput, label: str, figs: dict[str, np.ndarray], plan: BurstPlan,
             spectra: dict[float, np.ndarray], chosen: float | None, fs: float, options: Options) -> None:
    if not figs:
        return
    g = figs["g"]
    marks: dict[str, float] = {}
    if np.isfinite(figs["p1"][0]):
        marks["tone P1dB"] = float(figs["p1"][0])
    if chosen is not None:
        marks["highest clean"] = chosen
    plots.curve(
        out.figure_path(f"linearity_{label}"), g,
        {"tone (measured)": figs["p_tone"], "tone, linear fit": figs["fit_tone"],
         f"{options.waveform} (measured)": figs["p_wave"], f"{options.waveform}, linear fit": figs["fit_wave"]},
        "tx gain (dB)", "received power (dBFS)", f"{label}: output power against transmit gain", marks=marks,
    )
    plots.curve(
        out.figure_path(f"compression_{label}"), g,
        {"tone, in-burst": figs["c_tone"], "tone vs linear fit": figs["deviation"], f"{options.waveform}, in-burst": figs["c_wave"],
         "-1 dB": np.full(len(g), -1.0)},
        "tx gain (dB)", "gain relative to linear (dB)", f"{label}: compression against transmit gain", marks=marks,
    )
    at = chosen if chosen is not None and chosen in spectra else (max(spectra) if spectra else None)
    if at is not None:
        plots.spectrum(out.figure_path(f"spectrum_{label}"), spectra[at], fs,
                       f"{label}: {options.waveform} at tx gain {at:g} dB" + (" (highest clean)" if at == chosen else ""), nfft=256)
