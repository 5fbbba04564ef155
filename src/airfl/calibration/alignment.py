"""Channel and power alignment: per-client channels, pre-equalisers, and the residual misalignment.

Analog aggregation only adds the clients' values if every participant arrives with the same
complex gain sqrt(eta). This procedure runs the over-the-air round's feedback loop (fl/ota.py,
steps 0-4, with the same modem pieces) with a *pre-equalised sounding* in place of the payload,
and measures how close each transmitter gets to that target: the figure that predicts the
over-the-air error.

Timed benches (loopback, SoapySDR with hardware time). Once: listen (the receiver's DC offset,
modem.iq.estimate_dc, removed from every capture) and acquire, as the round does: each client sends
a tone and a Zadoff-Chu marker (calibration.clock_sync.marker, its own root) in its own slot, the
slots `acquisition_search_samples` (S) apart on either side, so a client may arrive up to S samples
early or late (sample clocks that ran apart during the minute of the `timing` procedure, a host
that started late). Per slot, modem.cfo.coarse_cfo of the whole slot gives a first carrier offset;
with it removed, clock_sync.detect_markers finds the marker by normalised correlation within +-S of
where it was scheduled and clock_sync.fit_marker gives its (fractional) timing offset; the tone
before the marker gives the carrier offset over +-fs/2 again, over exactly its span. Each client's
timing advance starts from that offset, so the first sounding lands inside the cyclic prefix. A
client whose pilot a sounding does not find inside its window (modem.sync.sounding_found: its timing
moved, or a deep fade) is acquired again and the repetition starts over, once; then the procedure
stops with one sentence (as it does when a marker is not found). Then per repetition
(`repeats` after `warmup_repeats` that let the trackers converge, each starting on the round's
frame grid `frame_period_s`, so it sees one fading block as a round does):

1. Sound at t0: every client sends its cyclic-shift Zadoff-Chu pilot (modem.frame.SoundingLayout,
   amplitude sqrt(P)) at once, CFO-corrected by an NCO whose phase is referred to t0 and advanced
   by its timing advance. modem.estimate.estimate_channels gives each client's gain h_k (referred
   to t0), integer + fractional delay, residual CFO and the noise power sigma^2; OFDM also takes the
   per-subcarrier channel H_kf = OfdmLayout.response_at(response, lags), as the round does.
2. Feed back: CFO (the round's Kalman tracker, modem.tracking) and timing corrections are
   updated; truncated inversion (modem.power) gives b_k = sqrt(eta) conj(h_k) / |h_k|^2 (OFDM: per
   subcarrier) and eta = P min_k |h_k|^2.
3. Pre-equalised sounding at t1 = t0 + D (D = `feedback_delay_samples`): each participant sends
   what it would send as its payload, with the round's corrections (integer advance; single
   carrier: fractional re-timing and sample-clock pre-stretch; NCO referred to t0 times
   exp(-j 2 pi dnu T_k) for the change dnu of its correction seen through its lag T_k):
     single carrier: b_k times its sounding pilot. The estimator's taps give client k's effective
         response around the common sampling lag: the tap there is c_k = b_k h_k(t1) (a residual
         timing error shows as sinc loss), every other tap is inter-symbol interference;
     OFDM: M >= K OFDM symbols carrying b_kf P_f w_k[m] on data subcarrier f, P_f the preamble
         values and w_k[m] = exp(j 2 pi k m / M) a DFT cover code per client, and the round's
         common pilots on the pilot subcarriers. The receiver removes each symbol's common phase
         with the pilots (as the round's receiver does, keeping its mean) and separates the clients
         per subcarrier, c_kf = (1/M) sum_m Y_mf conj(w_k[m]) / P_f.
   The residual a_k = c_k / sqrt(eta) is 1 for perfect alignment; its amplitude 20 log10|a_k| (dB)
   and phase arg a_k (degrees) are reported per client (OFDM: per subcarrier, summarised by their
   RMS), with the spread over the repetitions.

Predicted error. The round's receiver tracks the *common* gain with pilots every participant sends
(modem.pilots; OFDM: one common phase per symbol), i.e. it divides by a_bar = mean_k a_k; what
remains is each client's deviation from the others. With independent updates normalised to equal
symbol power and weights w_k, misalignment adds

    NMSE_mis = sum_k w_k^2 e_k / sum_k w_k^2,   e_k = mean_f |a_kf / a_bar - 1|^2        (OFDM)
                                                e_k = |a_k / a_bar - 1|^2 + I_k / |a_bar|^2  (single carrier)

with I_k = sum over the other lags of |r_k(lag)|^2 / eta, the ISI energy of client k's effective
response r_k (at one sample per symbol a fractional delay or a multipath tap spreads a client over
neighbouring symbols; OFDM's cyclic prefix absorbs it). Beside it, the noise term of truncated-
inversion theory (DESIGN.md section 2): each client's normalised symbols have unit power, the exact
sum of K has power K, and the noise after dividing by sqrt(eta) has power sigma^2/eta, so
NMSE_noise = sigma^2 / (eta K). Predicted NMSE = NMSE_noise + NMSE_mis; compare it with the round's
measured NMSE (`airfl calibrate end_to_end`). The measurement of a_k is noisy itself, each tap
with variance sigma^2 / (eta N R) on single carrier (N the pilot length, R its repeats; the
coefficient and the cp + 2 ISI taps of the window count) and each a_kf with sigma^2 / (eta M) on
OFDM; that floor (`measurement_floor`) is reported and subtracted from NMSE_mis.

What grows the residual (the tests check each against the loopback's truth): a residual CFO dnu
rotates a client by 2 pi dnu D over the feedback delay; independent Wiener phase noise of total
linewidth b_tx + b_rx (Hz) gives a residual phase of variance about 2 pi (b_tx + b_rx) D / fs
rad^2, and more when the CFO correction extrapolates a CFO estimate corrupted by it
(`phase_noise_residual_variance` gives both figures); block fading redraws h_k every coherence
time, so a D that crosses a block boundary meets another channel (a_k = h_k(t1) / h_k(t0)).

Cyclic benches (stock Plutos: bursts repeat at unknown offsets, no shared time base): clients are
measured one at a time, each from a cyclic buffer. The coarse CFO of a tone and the fine CFO from
the phase advance between repetitions are removed at the receiver; for single carrier the
correlation peak locates the periodic pilot and the same estimator gives |h_k| (and, after the
periodic pre-equalised pilot, |a_k| and the ISI); for OFDM a periodic OFDM symbol (its own cyclic
prefix) gives |H_kf| from the FFT of the averaged period. A transmitter's phase relative to the
others is undefined without a common time base, so only the amplitude residual is reported and
NMSE_mis is its amplitude part (a lower bound).

Units: samples at the bench's sample rate; powers in full-scale units^2 per complex sample; P is
the per-client power limit (`tx_power`, else the profile's max_tx_power, else 0.1). Bursts whose
peak would exceed the DAC's full scale are all scaled down together (eta with them), as in the round.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airfl.calibration import plots
from airfl.calibration.bench import Bench, BenchError, Capture
from airfl.calibration.clock_sync import detect_markers, fit_marker, marker, marker_root
from airfl.calibration.output import ProcedureOutput, ProcedureResult
from airfl.calibration.profile import load_profile
from airfl.modem import SoundingLayout, estimate_channels, truncated_inversion
from airfl.modem.cfo import coarse_cfo, correct
from airfl.modem.frame import PRECURSOR
from airfl.modem.iq import FrontEndCorrection, estimate_dc
from airfl.modem.ofdm import OfdmLayout, common_phase_errors
from airfl.modem.pilots import pilot_values
from airfl.modem.power import PowerControl
from airfl.modem.sync import sounding_found
from airfl.modem.timing import PAD, retime
from airfl.modem.tracking import CfoTracker, residual_cfo_variance
from airfl.radio.base import RadioError
from airfl.radio.recording import Annotation

SUMMARY = (
    "per-client channel estimates, pre-equalisers and the residual misalignment after "
    "pre-equalisation (dB, degrees): the figure that predicts the over-the-air error"
)

DEFAULT_TX_POWER = 0.1
"""P when neither the option nor a profile gives one (= OtaSettings().tx_power, full-scale units^2)."""
DAC_PEAK = 1.0
"""Largest |x| a transmitter may send (full scale); louder bursts are scaled down together."""
PRE_SAMPLES = 64
"""Samples captured before each scheduled burst (timed benches)."""
POST_SAMPLES = 64
"""Samples captured after each burst's nominal end: room for delays and the channel's tail."""
MARKER_LENGTH = 127
"""Samples of each client's acquisition marker (an odd prime: a Zadoff-Chu sequence, clock_sync.marker)."""
MARKER_EXTENSION = 16
"""Cyclic prefix and suffix of the marker (samples): room for fit_marker's fractional search."""
FALSE_ALARM = 1e-6
"""Per-lag (marker) and per-window (sounding) false-alarm probability of the detections."""


@dataclass(frozen=True)
class Options:
    """waveform: "single_carrier" or "ofdm" (per-subcarrier pre-equalisers), as the round's waveform.
    tx_power: per-client power limit P (full-scale units^2 per complex sample); None: the smallest
        max_tx_power of the transmitters in `profile`, else 0.1. profile: a calibration profile whose
        gains (rx_gain_db, tx_gain_db) and max_tx_power are applied during the measurement.
    truncation_threshold_db: clients (OFDM: subcarriers) with |h|^2 this far below the mean stay
        silent, as in the round; None: full inversion, every client is measured.
    repeats: repetitions (each a sounding and a pre-equalised sounding) that show the spread;
        warmup_repeats run first and are not scored: the CFO tracker (the round's Kalman filter)
        and the timing advance converge over them, as over a run's first rounds.
    feedback_delay_samples: D, from the sounding to the pre-equalised sounding (samples); None: the
        shortest the bench allows (the sounding's capture, the largest timing advances, guards),
        close to a round's sounding-to-payload time (a real host that cannot turn a capture around
        that fast is told to raise it, and so must the round).
    frame_period_s: repetitions start on multiples of this (s), as rounds do; 0: no grid.
    sounding_cp / sounding_min_shift / sounding_min_length / sounding_repeats: pilot layout
        (modem.frame.SoundingLayout; the lab's delays need cp >= 24); repeats >= 2 measure the CFO.
    ofdm_fft / ofdm_cp / ofdm_used: OFDM numerology (modem.ofdm); ofdm_symbols: OFDM symbols M of
        the pre-equalised sounding (at least the number of clients; more average more noise out).
    acquisition_length: samples of each client's coarse-CFO tone. acquisition_search_samples:
        largest timing offset (samples, early or late) acquisition finds (each client's slot holds
        its tone, its marker and twice this margin); at least sounding_cp. quiet_samples: samples
        for the receiver's DC offset (0: skip).
    cfo_correction / fractional_timing / sample_clock_locked: as in OtaSettings (switch a correction
        off to see what it buys; sample_clock_locked: the sample clock derives from the carrier
        reference, as on the AD9361, so transmitters pre-stretch bursts by CFO / carrier).
    """

    waveform: str = "single_carrier"
    tx_power: float | None = None
    profile: str | None = None
    truncation_threshold_db: float | None = None
    repeats: int = 5
    warmup_repeats: int = 2
    feedback_delay_samples: int | None = None
    frame_period_s: float = 0.02
    sounding_cp: int = 24
    sounding_min_shift: int = 40
    sounding_min_length: int = 251
    sounding_repeats: int = 4
    ofdm_fft: int = 64
    ofdm_cp: int = 16
    ofdm_used: int = 52
    ofdm_symbols: int = 32
    acquisition_length: int = 256
    acquisition_search_samples: int = 256
    quiet_samples: int = 1024
    cfo_correction: bool = True
    fractional_timing: bool = True
    sample_clock_locked: bool = True

    def __post_init__(self) -> None:
        if self.waveform not in ("single_carrier", "ofdm"):
            raise ValueError(f"waveform must be single_carrier or ofdm, got {self.waveform!r}")
        if self.tx_power is not None and not (math.isfinite(self.tx_power) and 0 < self.tx_power <= 1):
            raise ValueError(f"tx_power must be in (0, 1] full-scale units^2, got {self.tx_power}")
        if self.repeats < 1 or self.warmup_repeats < 0:
            raise ValueError(f"repeats must be >= 1 and warmup_repeats >= 0, got {self.repeats}, {self.warmup_repeats}")
        if self.feedback_delay_samples is not None and self.feedback_delay_samples < 1:
            raise ValueError(f"feedback_delay_samples must be >= 1 sample, got {self.feedback_delay_samples}")
        if not (math.isfinite(self.frame_period_s) and self.frame_period_s >= 0):
            raise ValueError(f"frame_period_s must be >= 0 s, got {self.frame_period_s}")
        if self.sounding_repeats < 2:
            raise ValueError("sounding_repeats must be >= 2: the phase advance between periods measures the CFO")
        if self.ofdm_symbols < 1 or self.quiet_samples < 0:
            raise ValueError("ofdm_symbols must be >= 1 and quiet_samples >= 0")
        if self.acquisition_length <= self.sounding_cp + 16:
            raise ValueError("acquisition_length must exceed sounding_cp by more than 16 samples (the tone's FFT span)")
        if not self.sounding_cp <= self.acquisition_search_samples <= 1_000_000:
            raise ValueError(
                f"acquisition_search_samples must be between sounding_cp ({self.sounding_cp}) and 1000000 samples (the "
                f"largest timing offset acquisition finds), got {self.acquisition_search_samples}"
            )
        SoundingLayout(1, self.sounding_cp, self.sounding_min_shift, self.sounding_min_length, self.sounding_repeats)
        OfdmLayout(self.ofdm_fft, self.ofdm_cp, self.ofdm_used)


# -- power and gains from a profile ----------------------------------------------------------------
@dataclass(frozen=True)
class PowerPlan:
    """The per-client power limit P (full-scale units^2), where it came from ("option", "profile",
    "default"), and the gains (dB) a profile asks for: the receiver's and transmitter index -> gain."""

    tx_power: float
    source: str
    rx_gain_db: float | None = None
    tx_gains_db: Mapping[int, float] = field(default_factory=dict)


def power_plan(bench: Bench, tx_power: float | None, profile: str | None) -> PowerPlan:
    """P from the option, else from the profile (the smallest max_tx_power of the transmitters, so
    no client exceeds its own clean level), else DEFAULT_TX_POWER; plus the profile's gains."""
    rx_gain: float | None = None
    tx_gains: dict[int, float] = {}
    limits: list[float] = []
    if profile is not None:
        prof = load_profile(profile)
        rx_entry = prof.entry(bench.receiver_uri, getattr(bench.receiver, "serial", None))
        if rx_entry is not None:
            rx_gain = rx_entry.rx_gain_db
        for i, (radio, uri) in enumerate(zip(bench.transmitters, bench.transmitter_uris, strict=True)):
            entry = prof.entry(uri, getattr(radio, "serial", None))
            if entry is None:
                continue
            if entry.tx_gain_db is not None:
                tx_gains[i] = entry.tx_gain_db
            if entry.max_tx_power is not None:
                limits.append(entry.max_tx_power)
    if tx_power is not None:
        return PowerPlan(float(tx_power), "option", rx_gain, tx_gains)
    if limits:
        return PowerPlan(float(min(min(limits), 1.0)), "profile", rx_gain, tx_gains)
    return PowerPlan(DEFAULT_TX_POWER, "default", rx_gain, tx_gains)


@contextmanager
def profile_gains(bench: Bench, plan: PowerPlan) -> Iterator[None]:
    """Apply the plan's gains for the duration of a measurement, then restore the bench's."""
    rx_before = bench.config.rx_gain_db
    tx_before = list(bench.tx_gains_db)
    try:
        if plan.rx_gain_db is not None:
            bench.set_rx_gain(plan.rx_gain_db)
        for i, g in plan.tx_gains_db.items():
            bench.set_tx_gain(i, g)
        yield
    finally:
        if plan.rx_gain_db is not None:
            bench.set_rx_gain(rx_before)
        for i in plan.tx_gains_db:
            bench.set_tx_gain(i, tx_before[i])


# -- theory --------------------------------------------------------------------------------------
def phase_noise_residual_variance(
    linewidth_hz: float,
    feedback_delay: int,
    layout: SoundingLayout,
    sample_rate_hz: float,
    cfo_correction: bool = True,
) -> float:
    """Variance (rad^2) of the residual phase this procedure measures on single carrier when the only
    impairment is Wiener phase noise of total linewidth `linewidth_hz` (transmitter's + receiver's, Hz).

    Small-angle model of this procedure's estimators: each period's correlation has the phase of
    theta(t) averaged over that period; the CFO estimate is (mean phase of the last period - that of
    the first) / (2 pi N (R - 1)); a gain's phase is the periods' mean phase, derotated by the CFO
    estimate to the window start. With `cfo_correction` the transmitters remove that one sounding's
    CFO estimate from t0 on, so the pre-equalised sounding, D = `feedback_delay` samples later and
    measured the same way, sees it extrapolated over D (the procedure's and the round's Kalman
    tracker average the estimates of successive soundings, so they land between the two figures).
    The residual is a weighted sum of theta, hence of its independent increments (variance
    2 pi linewidth / fs each), whose variances add.
    """
    n, reps, cp = layout.length, layout.repeats, layout.cp
    d = int(feedback_delay)
    total = d + layout.burst_length + 1
    starts = cp + np.arange(reps) * n
    centre = float(np.mean(starts + (n - 1) / 2.0))

    def estimator(offset: int) -> tuple[np.ndarray, np.ndarray]:
        """(weights on theta of the gain phase, of 2 pi x the CFO estimate) of a sounding whose
        window starts `offset` samples after t0."""
        means = np.zeros((reps, total))
        for r, p in enumerate(starts):
            means[r, offset + p : offset + p + n] = 1.0 / n
        slope = (means[-1] - means[0]) / (n * (reps - 1))
        return means.mean(axis=0) - slope * centre, slope

    phase1, slope1 = estimator(0)
    phase2, _ = estimator(d)
    residual = phase2 - phase1 - (slope1 * d if cfo_correction else 0.0)
    tail = np.cumsum(residual[::-1])[::-1]  # weight of increment i: sum of theta weights at t >= i
    return float(2.0 * math.pi * linewidth_hz / sample_rate_hz * np.sum(tail[1:] ** 2))


def misalignment_nmse(
    residuals: np.ndarray, isi: np.ndarray | None = None, weights: np.ndarray | None = None
) -> tuple[float, complex]:
    """(NMSE contribution of misalignment, the common gain a_bar the receiver's pilots remove).

    residuals: a_k (K,) or a_kf (K, F), NaN where a client (subcarrier) is silent. isi: I_k (K,),
    single carrier only. weights: aggregation weights (default equal). Formula: module docstring.
    """
    a = np.asarray(residuals, dtype=np.complex128)
    a = a[:, None] if a.ndim == 1 else a
    on = np.isfinite(a)
    if not on.any():
        return float("nan"), complex("nan")
    common = complex(np.mean(a[on]))
    dev = np.where(on, np.abs(np.where(on, a, 0) / common - 1.0) ** 2, 0.0)
    per_client = dev.sum(axis=1) / np.maximum(on.sum(axis=1), 1)
    if isi is not None:
        per_client = per_client + np.where(np.isfinite(isi), isi, 0.0) / abs(common) ** 2
    talking = on.any(axis=1)
    w = np.ones(a.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    w2 = w[talking] ** 2
    return float(np.sum(w2 * per_client[talking]) / np.sum(w2)), common


def db10(x: float) -> float | None:
    """10 log10(x), or None where undefined."""
    return float(10 * np.log10(x)) if math.isfinite(x) and x > 0 else None


# -- truth (emulated benches) ------------------------------------------------------------------
def truth_coefficient(
    bench: Bench,
    client: int,
    window_start: int,
    burst_start: float,
    cfo: float,
    reference: int,
    extra_phase: float = 0.0,
    ofdm: OfdmLayout | None = None,
    lag: float = 0.0,
    rate: float = 0.0,
) -> complex | np.ndarray:
    """What the emulated air does to a burst, referred to rx sample `window_start` as the
    estimators refer their gains (test truth; the bench must be emulated).

    The link's gain (block fading and path gain at the burst's arrival, times the tx and rx gains),
    its carrier phase (CFO, drift, phase noise) at the window start, and the transmitter's NCO phase
    -2 pi (cfo u + rate u^2 / 2) + extra_phase, u = s - reference, at the tx sample s that arrives
    then. Single carrier: the flat gain (a multipath link's sum of taps). OFDM (`ofdm` given): per used subcarrier, the
    FFT of the taps times the phase ramp of the burst's arrival (from tx sample `burst_start`)
    relative to `lag` samples after the window start, plus the FFT window's backoff.
    """
    air = bench.air
    if air is None:
        raise BenchError("truth_coefficient needs an emulated bench")
    tx, rx = bench.air_name(bench.transmitters[client]), bench.air_name(bench.receiver)
    link = air.link(tx, rx)
    t_w = float(air.oscillator(rx).true_time(window_start))
    s_w = float(air.oscillator(tx).local_time(t_w - link.total_delay))
    gains = 10 ** ((bench.tx_gains_db[client] + bench.config.rx_gain_db) / 20)
    u = s_w - reference
    rotation = np.exp(1j * (float(link.phase_at(t_w)) - 2 * np.pi * (cfo * u + 0.5 * rate * u * u) + extra_phase))
    if ofdm is None:
        return complex(gains * link.true_gain(int(round(burst_start))) * rotation)
    arrival = link.arrival_sample(burst_start) - window_start - lag
    response = np.fft.fft(link.taps_at(link.arrival_time(burst_start)), ofdm.n_fft)[ofdm.used]
    ramp = np.exp(-2j * np.pi * ofdm.signed_used * (arrival + ofdm.backoff) / ofdm.n_fft)
    return gains * response * ramp * rotation


def truth_arrival(bench: Bench, client: int, tx_sample: float) -> float:
    """Receiver sample (fractional) at which transmitter `client`'s sample `tx_sample` arrives."""
    air = bench.air
    assert air is not None
    link = air.link(bench.air_name(bench.transmitters[client]), bench.air_name(bench.receiver))
    return float(link.arrival_sample(tx_sample))


def truth_cfo_hz(bench: Bench, client: int, rx_sample: int) -> float:
    """Carrier offset (Hz) of transmitter `client` against the receiver at rx sample `rx_sample`."""
    air = bench.air
    assert air is not None
    rx = bench.air_name(bench.receiver)
    link = air.link(bench.air_name(bench.transmitters[client]), rx)
    return float(link.cfo_hz(float(air.oscillator(rx).true_time(rx_sample))))


# -- what one repetition measured ----------------------------------------------------------------
@dataclass
class Repetition:
    """One sounding and pre-equalised sounding. Arrays are over clients (OFDM: clients x used
    subcarriers). channel: h_k / H_kf (referred to t0; cyclic benches: magnitudes). residual: a_k /
    a_kf (NaN where silent; cyclic: magnitudes). isi: I_k (single carrier). arrival: T_k (samples
    from t0 to the arrival, timed benches). cfo_hz: each client's correction after the sounding.
    truth_*: the loopback's truth (emulated timed benches), same shapes."""

    t0: int
    t1: int
    channel: np.ndarray
    power: PowerControl
    eta: float
    noise_power: float
    residual: np.ndarray
    isi: np.ndarray | None = None
    arrival: np.ndarray | None = None
    cfo_hz: np.ndarray | None = None
    truth_channel: np.ndarray | None = None
    truth_residual: np.ndarray | None = None
    truth_arrival: np.ndarray | None = None
    truth_cfo_hz: np.ndarray | None = None


def _threshold(gain2: np.ndarray, threshold_db: float | None) -> float:
    return 0.0 if threshold_db is None else float(np.mean(gain2)) * 10 ** (threshold_db / 10)


def _ofdm_symbol_body(ofdm: OfdmLayout, values: np.ndarray) -> np.ndarray:
    """One OFDM symbol without cyclic prefix (n_fft samples) carrying `values` on the used subcarriers."""
    spectrum = np.zeros(ofdm.n_fft, dtype=np.complex128)
    spectrum[ofdm.used] = values
    return np.fft.ifft(spectrum) * math.sqrt(ofdm.n_fft)


# -- timed benches -------------------------------------------------------------------------------
def timed_send(bench: Bench, bursts: Mapping[int, tuple[int, np.ndarray]], t: int, length: int) -> tuple[Capture, int]:
    """Send burst k from receiver-clock sample t + offset_k (offsets may be negative: advances) and
    capture from PRE_SAMPLES before the earliest; returns the capture and the index of sample t in
    it. The capture reaches `length` + POST_SAMPLES samples past t (or the last burst's end)."""
    lo = min(off for off, _ in bursts.values())
    padded = {k: np.concatenate([np.zeros(off - lo, dtype=np.complex128), x]) for k, (off, x) in bursts.items()}
    end = max(length, max(off + len(x) for off, x in bursts.values()))
    cap = bench.send_and_capture(padded, end - lo + PRE_SAMPLES + POST_SAMPLES, pre=PRE_SAMPLES, at=t + lo)
    assert cap.burst_at is not None
    return cap, cap.burst_at - lo


def listen_for_dc(bench: Bench, out: ProcedureOutput, quiet_samples: int, fe: FrontEndCorrection) -> FrontEndCorrection:
    """The receiver's DC offset from `quiet_samples` with every transmitter silent (the capture is
    saved); `fe` unchanged when there are too few samples."""
    if quiet_samples < 2:
        return fe
    cap = bench.listen(quiet_samples)
    out.save_capture("quiet", cap, bench, description="every transmitter silent (DC offset)",
                     annotations=[Annotation(0, len(cap.samples), "noise", "DC offset estimate")])
    return FrontEndCorrection(dc=estimate_dc(cap.samples)[0])


class TimedAlignment:
    """The round's sounding and feedback loop, with a pre-equalised sounding in place of the payload."""

    def __init__(self, bench: Bench, out: ProcedureOutput, options: Options, tx_power: float):
        self.bench, self.out, self.o, self.p = bench, out, options, tx_power
        o, k = options, len(bench.transmitters)
        self.layout = SoundingLayout(k, o.sounding_cp, o.sounding_min_shift, o.sounding_min_length, o.sounding_repeats)
        self.ofdm = OfdmLayout(o.ofdm_fft, o.ofdm_cp, o.ofdm_used)
        self.is_ofdm = o.waveform == "ofdm"
        self.n_symbols = max(o.ofdm_symbols, k)
        self.target_lag = o.sounding_cp // 2  # where pilots land, as OverTheAirRound.target_lag
        self.cfo = np.zeros(k)  # each client's correction in use (cycles/sample)
        self.tracker = CfoTracker(k)  # the round's Kalman filter of each client's offset and drift
        self.advance = np.zeros(k, dtype=np.int64)  # each client's timing advance at sounding (samples)
        self.acquired_offset = np.full(k, np.nan)  # timing offset acquisition measured (samples, late > 0)
        self.fe = FrontEndCorrection()
        self.frame = max(1, int(round(o.frame_period_s * bench.sample_rate_hz))) if o.frame_period_s > 0 else 1
        self.emulated = bench.air is not None

    def listen(self) -> None:
        self.fe = listen_for_dc(self.bench, self.out, self.o.quiet_samples, self.fe)

    def acquire(self, clients: list[int] | None = None, name: str = "acquisition") -> np.ndarray:
        """Coarse CFO (cycles/sample) and timing offset of `clients` (default all), each from a tone
        and a marker in its own slot; initialises their timing advances (and, with cfo_correction,
        the CFO tracker). Returns the coarse CFO of every client (those not acquired now: 0).

        Slot j spans `pitch` samples: S = acquisition_search_samples of margin, the tone
        (acquisition_length), the extended marker (MARKER_LENGTH + 2 MARKER_EXTENSION), S more.
        Bursts go out without timing advance, so the offset found is the client's whole offset
        (receiver sample of arrival minus scheduled sample, samples); one not found within +-S
        stops the procedure (BenchError).
        """
        o, bench = self.o, self.bench
        k = len(bench.transmitters)
        clients = list(range(k)) if clients is None else list(clients)
        search, tone_len, ext = o.acquisition_search_samples, o.acquisition_length, MARKER_EXTENSION
        pitch = tone_len + MARKER_LENGTH + 2 * ext + 2 * search
        amp = math.sqrt(self.p)
        sequences: dict[int, np.ndarray] = {}
        bursts: dict[int, np.ndarray] = {}
        for n, j in enumerate(clients):
            block, sequences[j] = marker(MARKER_LENGTH, marker_root(j, MARKER_LENGTH), ext)
            bursts[j] = amp * np.concatenate([np.zeros(n * pitch + search, dtype=np.complex128),
                                              np.ones(tone_len, dtype=np.complex128), block])
        t = bench.now() + bench.lead_samples + PRE_SAMPLES
        cap = bench.send_and_capture(bursts, len(clients) * pitch + 2 * PRE_SAMPLES, pre=PRE_SAMPLES, at=t)
        y = self.fe.apply(cap.samples)
        nominal = search + tone_len + ext  # where a slot's bare marker starts when the client is on time
        span = tone_len - o.sounding_cp
        coarse = np.zeros(k)
        notes: list[Annotation] = []
        missing: list[str] = []
        for n, j in enumerate(clients):
            lo = PRE_SAMPLES + n * pitch
            slot = y[lo : lo + pitch]
            rough = coarse_cfo(slot)  # the tone's peak stands far above the marker's flat spectrum
            starts, _ = detect_markers(correct(slot, rough), sequences[j], false_alarm_probability=FALSE_ALARM,
                                       lo=nominal - search, hi=nominal + search + 1, strongest_only=True)
            if not len(starts):
                missing.append(bench.transmitter_uris[j])
                continue
            at = int(starts[0])
            tone_at = at - ext - tone_len
            coarse[j] = coarse_cfo(slot[tone_at + o.sounding_cp : tone_at + o.sounding_cp + span])
            fit = fit_marker(slot, at, sequences[j], ext, float(coarse[j]))
            offset = (fit.position if fit is not None else float(at)) - nominal  # samples, late > 0
            self.acquired_offset[j] = offset
            self.advance[j] = int(round(offset)) - self.target_lag
            cfo_hz = coarse[j] * bench.sample_rate_hz
            notes.append(Annotation(lo + tone_at, tone_len, "tone", f"{bench.transmitter_uris[j]} CFO {cfo_hz:.1f} Hz"))
            notes.append(Annotation(lo + at - ext, MARKER_LENGTH + 2 * ext, "preamble",
                                    f"{bench.transmitter_uris[j]} marker, offset {offset:.2f} samples"))
        self.out.save_capture(
            name, cap, bench,
            description="acquisition: per client a tone (coarse CFO) and a Zadoff-Chu marker (timing offset), "
                        "each in its own slot",
            annotations=notes, extra={"tone_amplitude": amp, "slot_samples": pitch, "search_samples": search,
                                      "clients": [bench.transmitter_uris[j] for j in clients]},
        )
        if missing:
            raise BenchError(
                f"the acquisition marker of {', '.join(missing)} was not found within {search} samples of where it was "
                "scheduled: check that it transmits and its gain, or raise -o acquisition_search_samples if its clock "
                "has run further away"
            )
        if o.cfo_correction:
            # the coarse estimate is good to a small fraction of an FFT bin (1/span cycles/sample)
            variance = np.full(len(clients), (0.1 / span) ** 2)
            self.tracker.set(clients, coarse[clients], variance, t / bench.sample_rate_hz)
            self.cfo[clients] = coarse[clients]
        return coarse

    def _ofdm_grid(self, code: np.ndarray) -> np.ndarray:
        """(M, n_used) subcarrier values of one client's OFDM sounding before pre-equalisation: the
        preamble values times its cover code on the data subcarriers, the round's pilots on the
        pilot subcarriers (the same for every client, so they add up as in a payload)."""
        o = self.ofdm
        grid = o.preamble_values[None, :] * code[:, None]
        grid[:, o.pilot_slots] = pilot_values(len(o.pilot_slots))[None, :]
        return grid

    def repetition(self, index: int, retry: bool = False) -> Repetition:
        """One sounding and pre-equalised sounding. A client whose pilot is not found in its window is
        acquired again and the repetition starts over, once (`retry`); then the procedure stops."""
        o, bench, k = self.o, self.bench, len(self.bench.transmitters)
        max_adv = int(max(self.advance.max(), 0))
        earliest = bench.now() + bench.lead_samples + max_adv + PRE_SAMPLES
        t0 = -(-earliest // self.frame) * self.frame

        # 1. Sound: CFO-corrected (NCO phase referred to t0), advanced.
        amp = math.sqrt(self.p)
        clients = list(range(k))
        if o.cfo_correction:
            self.cfo = self.tracker.predict(clients, t0 / bench.sample_rate_hz)
        applied, advance0 = self.cfo.copy(), self.advance.copy()
        bursts: dict[int, tuple[int, np.ndarray]] = {}
        for j in range(k):
            pilot = self.layout.pilot(j, amp)
            ahead = -int(advance0[j])
            bursts[j] = (ahead, correct(pilot, applied[j], ahead) if o.cfo_correction else pilot)
        cap, i0 = timed_send(bench, bursts, t0, self.layout.burst_length)
        est = estimate_channels(self.fe.apply(cap.samples[i0:]), self.layout, amp)
        self.out.save_capture(
            f"sounding_{index}" + ("_retry" if retry else ""), cap, bench,
            description="code-orthogonal sounding: every client's cyclic-shift Zadoff-Chu pilot at once",
            annotations=[Annotation(i0, self.layout.burst_length, "sounding",
                                    f"cp {self.layout.cp}, N {self.layout.length} x {self.layout.repeats}, "
                                    f"client k at cyclic shift k*{self.layout.shift}")],
            extra={"t0_index": i0, "pilot_amplitude": amp, "clients": k},
        )

        lost = [j for j in range(k) if not sounding_found(est, self.layout, amp, FALSE_ALARM)[j]]
        if lost:
            names = ", ".join(bench.transmitter_uris[j] for j in lost)
            if retry:
                raise BenchError(
                    f"the sounding pilot of {names} was not found inside its {o.sounding_cp}-sample cyclic prefix even "
                    "after acquiring it again: its timing moved during the measurement, or it is in a deep fade"
                )
            self.acquire(lost, f"reacquisition_{index}")
            return self.repetition(index, retry=True)

        # 2. Feed back: CFO, timing, pre-equalisers.
        arrival = advance0 + est.delays  # integer arrival lag (samples from t0)
        frac = est.fractional.astype(np.float64)
        lag_total = arrival + frac  # T_k
        if o.cfo_correction:
            snr = self.p * np.abs(est.gains) ** 2 / max(est.noise_power, 1e-30)
            variance = residual_cfo_variance(self.layout.length, self.layout.repeats, snr)
            self.cfo = self.tracker.update(clients, applied + est.cfo, variance)
        change = self.cfo - applied
        rate = self.tracker.x[:, 1] / bench.sample_rate_hz if o.cfo_correction else np.zeros(k)  # drift, per sample
        if self.is_ofdm:
            channel = self.ofdm.response_at(est.response, est.response_lags)
            n_fft = self.ofdm.n_fft
        else:
            channel = est.gains
            n_fft = 1
        pc = truncated_inversion(channel, self.p, _threshold(np.abs(channel) ** 2, o.truncation_threshold_db), n_fft)
        rep = Repetition(t0, t0, channel, pc, pc.eta, est.noise_power, np.full(channel.shape, np.nan + 0j),
                         arrival=lag_total.copy(), cfo_hz=self.cfo * bench.sample_rate_hz)
        if self.emulated:
            ofdm = self.ofdm if self.is_ofdm else None
            rep.truth_channel = np.array([
                truth_coefficient(bench, j, t0, t0 - int(advance0[j]), applied[j] if o.cfo_correction else 0.0, t0,
                                  ofdm=ofdm, lag=float(est.delays[j]))
                for j in range(k)
            ])
            rep.truth_arrival = np.array(
                [truth_arrival(bench, j, t0 - int(advance0[j])) - t0 + advance0[j] for j in range(k)]
            )
            rep.truth_cfo_hz = np.array([truth_cfo_hz(bench, j, t0) for j in range(k)])
        self.advance = arrival - self.target_lag  # the next sounding's advance, as the round keeps it

        # 3. Pre-equalised sounding, built as the round builds its payload.
        lead = arrival - (0 if self.is_ofdm else self.target_lag)
        length = self.n_symbols * self.ofdm.symbol_length if self.is_ofdm else self.layout.burst_length
        # the sounding's capture ran until its latest client ended (a negative advance sends later)
        late = int(max(-advance0.min(), 0))
        min_gap = self.layout.burst_length + late + POST_SAMPLES + int(max(lead.max(), 0)) + 2 * PAD + PRE_SAMPLES
        gap = o.feedback_delay_samples if o.feedback_delay_samples is not None else min_gap
        if gap < min_gap:
            raise BenchError(
                f"feedback_delay_samples={gap} is too short: the pre-equalised sounding can start {min_gap} samples "
                "after the sounding at the earliest (its capture, the largest timing advances either way and the "
                "guards)"
            )
        t1 = t0 + gap
        rep.t1 = t1
        codes = np.exp(2j * np.pi * np.outer(np.arange(k), np.arange(self.n_symbols)) / self.n_symbols)  # (K, M)
        jobs: dict[int, tuple[int, int, np.ndarray, float]] = {}  # client -> (start, pad, samples, extra phase)
        for j in range(k):
            if not pc.participants[j]:
                continue
            if self.is_ofdm:
                x = self.ofdm.modulate(pc.precoders[j][None, :] * self._ofdm_grid(codes[j]))
                delay = 0.0
            else:
                x = pc.precoders[j] * self.layout.pilot(j, 1.0)
                delay = -float(frac[j]) if o.fractional_timing else 0.0
            stretch = 0.0
            if o.sample_clock_locked and o.cfo_correction:
                stretch = float(self.cfo[j] * bench.sample_rate_hz / bench.center_freq_hz)
                delay += stretch * (t1 - int(lead[j]) - t0)
            pad = 0
            if delay != 0.0 or stretch != 0.0:
                x, pad = retime(x, delay, stretch), PAD
            start = t1 - int(lead[j]) - pad
            extra = -2 * np.pi * float(change[j]) * float(lag_total[j])
            if o.cfo_correction:
                x = correct(x, self.cfo[j], start - t0, float(rate[j])) * np.exp(1j * extra)
            jobs[j] = (start, pad, x, extra)
        if not jobs:
            return rep
        peak = max(float(np.max(np.abs(x))) for _, _, x, _ in jobs.values())
        backoff = min(1.0, DAC_PEAK / peak) if peak > 0 else 1.0
        rep.eta = pc.eta * backoff**2
        sqrt_eta = math.sqrt(rep.eta)
        try:
            cap, i0 = timed_send(bench, {j: (start - t1, x * backoff) for j, (start, _, x, _) in jobs.items()}, t1, length)
        except RadioError as exc:
            raise BenchError(
                f"the pre-equalised sounding could not be scheduled {gap} samples after the sounding ({exc}); this "
                "host needs more time between a capture and the next burst: raise -o feedback_delay_samples (and "
                "the round's ota.lead_samples, which has the same deadline)"
            ) from exc
        window = self.fe.apply(cap.samples[i0:])
        if self.is_ofdm:
            o_ = self.ofdm
            y = o_.demodulate(window, self.n_symbols)  # (M, F)
            # The round's receiver removes the common phase of every OFDM symbol with the pilots that
            # all participants send alike; so does this one (keeping its mean, the static common gain).
            expected = np.zeros_like(y)
            carriers = pc.active.sum(axis=0)[o_.pilot_slots]  # participants on each pilot subcarrier
            expected[:, o_.pilot_slots] = sqrt_eta * carriers * pilot_values(len(o_.pilot_slots))
            cpe = common_phase_errors(y, expected, o_)
            y = y / cpe[:, None] * np.mean(cpe)
            c = (np.conj(codes) @ y) / self.n_symbols / o_.preamble_values[None, :]  # (K, F)
            c[:, o_.pilot_slots] = np.nan  # pilots carry no cover code
            rep.residual = np.where(pc.active, c / sqrt_eta, np.nan)
            label = (f"{self.n_symbols} OFDM symbols: b_kf P_f times a DFT cover code per client on the data "
                     "subcarriers, common pilots on the pilot subcarriers")
        else:
            taps = estimate_channels(window, self.layout, 1.0).taps / sqrt_eta  # (K, width)
            at = self.target_lag + PRECURSOR
            rep.residual = np.where(pc.active, taps[:, at], np.nan)
            others = np.abs(np.delete(taps, at, axis=1)) ** 2
            rep.isi = np.where(pc.active, others.sum(axis=1), np.nan)
            label = f"b_k times each client's pilot, aligned to lag {self.target_lag}"
        if self.emulated:
            ofdm = self.ofdm if self.is_ofdm else None
            rep.truth_residual = np.full(channel.shape, np.nan + 0j)
            for j, (start, pad, _, extra) in jobs.items():
                coeff = truth_coefficient(bench, j, t1, start + pad, self.cfo[j] if o.cfo_correction else 0.0, t0,
                                          extra, ofdm=ofdm, lag=0.0 if self.is_ofdm else float(self.target_lag),
                                          rate=float(rate[j]))
                rep.truth_residual[j] = np.where(pc.active[j], pc.precoders[j] * backoff * coeff / sqrt_eta, np.nan)
            if self.is_ofdm:
                rep.truth_residual[:, self.ofdm.pilot_slots] = np.nan  # as measured: data subcarriers only
        self.out.save_capture(
            f"preequalised_{index}", cap, bench,
            description="pre-equalised sounding: every participant as it would send its payload",
            annotations=[Annotation(i0, length, "pilot", label)],
            extra={"t1_index": i0, "eta": rep.eta, "feedback_delay_samples": gap, "waveform": o.waveform},
        )
        return rep


# -- cyclic benches ------------------------------------------------------------------------------
def fine_cfo(samples: np.ndarray, period: int) -> float:
    """Residual CFO (cycles/sample) of a periodic signal from the phase advance between its
    repetitions; unambiguous within +-1/(2 period)."""
    m = len(samples) // period
    if m < 2:
        return 0.0
    z = np.asarray(samples[: m * period]).reshape(m, period)
    return float(np.angle(np.sum(z[1:] * np.conj(z[:-1]))) / (2 * np.pi * period))


def periodic_window(samples: np.ndarray, base: np.ndarray, cp: int, repeats: int, lag: int) -> np.ndarray:
    """From a capture of `base` (length N) repeated, the window [cp | repeats periods] whose
    correlation peak sits at `lag`: the circular correlation of a period-long stretch with `base`
    locates the repetition."""
    n = len(base)
    corr = np.fft.ifft(np.fft.fft(samples[:n]) * np.conj(np.fft.fft(base)))
    start = (int(np.argmax(np.abs(corr))) - cp - lag) % n
    return samples[start : start + cp + repeats * n]


class CyclicAlignment:
    """Clients one at a time, each repeating its burst from a cyclic buffer (amplitudes only)."""

    def __init__(self, bench: Bench, out: ProcedureOutput, options: Options, tx_power: float):
        self.bench, self.out, self.o, self.p = bench, out, options, tx_power
        o = options
        self.layout = SoundingLayout(1, o.sounding_cp, o.sounding_min_shift, o.sounding_min_length, o.sounding_repeats)
        self.ofdm = OfdmLayout(o.ofdm_fft, o.ofdm_cp, o.ofdm_used)
        self.is_ofdm = o.waveform == "ofdm"
        self.fe = FrontEndCorrection()
        self.cfo = np.zeros(len(bench.transmitters))
        self.target_lag = o.sounding_cp // 2

    def listen(self) -> None:
        self.fe = listen_for_dc(self.bench, self.out, self.o.quiet_samples, self.fe)

    def acquire(self) -> np.ndarray:
        amp = math.sqrt(self.p)
        for k in range(len(self.bench.transmitters)):
            tone = np.full(self.o.acquisition_length, amp, dtype=np.complex128)
            cap = self.bench.send_and_capture({k: tone}, 4 * self.o.acquisition_length)
            self.cfo[k] = coarse_cfo(self.fe.apply(cap.samples))
            self.out.save_capture(f"acquisition_client{k}", cap, self.bench,
                                  description=f"coarse CFO tone of client {k} (cyclic)",
                                  annotations=[Annotation(0, len(cap.samples), "tone", self.bench.transmitter_uris[k])])
        return self.cfo.copy()

    def _measure(self, k: int, x: np.ndarray, name: str) -> tuple[np.ndarray, float, float]:
        """Client k's response to its periodic burst x, the noise power, and (single carrier) the
        fractional part of its delay (samples). Single carrier: the estimator's taps around
        `target_lag` (their magnitudes are meaningful); OFDM: the used subcarriers' values."""
        period = len(x)
        cap = self.bench.send_and_capture({k: x}, (self.layout.repeats + 3) * max(period, self.layout.length))
        y = correct(self.fe.apply(cap.samples), self.cfo[k])
        y = correct(y, fine_cfo(y, period))
        frac = 0.0
        if self.is_ofdm:
            m = len(y) // period
            z = y[: m * period].reshape(m, period)
            mean = z.mean(axis=0)  # coherent average of the repetitions
            value = np.fft.fft(mean)[self.ofdm.used] / math.sqrt(self.ofdm.n_fft)
            noise = float(np.sum(np.abs(z - mean) ** 2) / (period * (m - 1))) if m > 1 else float("nan")
            label = "periodic OFDM symbol (the repetition is its own cyclic prefix)"
        else:
            window = periodic_window(y, self.layout.base, self.layout.cp, self.layout.repeats, self.target_lag)
            est = estimate_channels(window, self.layout, 1.0)
            value, noise, frac = est.taps[0], est.noise_power, float(est.fractional[0])
            label = "periodic Zadoff-Chu pilot"
        self.out.save_capture(name, cap, self.bench, description=f"client {k} alone, cyclic: {label}",
                              annotations=[Annotation(0, len(cap.samples), "pilot", label)],
                              extra={"period_samples": period, "client": self.bench.transmitter_uris[k]})
        return value, noise, frac

    def _burst(self, values: np.ndarray | complex, delay: float = 0.0) -> np.ndarray:
        """A periodic buffer: the OFDM symbol carrying `values` x P_f, or `values` x the pilot delayed
        by `delay` samples (a periodic signal's fractional delay is a phase ramp on its DFT)."""
        if self.is_ofdm:
            return _ofdm_symbol_body(self.ofdm, np.asarray(values) * self.ofdm.preamble_values)
        x = complex(values) * self.layout.base
        if delay == 0.0:
            return x
        f = np.fft.fftfreq(len(x))
        return np.fft.ifft(np.fft.fft(x) * np.exp(-2j * np.pi * f * delay))

    def repetition(self, index: int) -> Repetition:
        k = len(self.bench.transmitters)
        amp = math.sqrt(self.p)
        at = self.target_lag + PRECURSOR
        sounding = [self._measure(j, self._burst(amp * (np.ones(self.ofdm.n_used) if self.is_ofdm else 1.0)),
                                  f"sounding_{index}_client{j}") for j in range(k)]
        noise = float(np.nanmedian([n for _, n, _ in sounding]))
        frac = np.array([f for _, _, f in sounding])
        if self.is_ofdm:
            h = np.abs(np.array([v for v, _, _ in sounding]) / self.ofdm.preamble_values[None, :]) / amp + 0j
            n_fft = self.ofdm.n_fft
        else:
            # the gain a fractionally aligned transmission sees (the peak tap over sinc(frac))
            h = np.abs(np.array([v[at] for v, _, _ in sounding]) / np.sinc(frac)) / amp + 0j
            n_fft = 1
        pc = truncated_inversion(h, self.p, _threshold(np.abs(h) ** 2, self.o.truncation_threshold_db), n_fft)
        delay = -frac if self.o.fractional_timing else np.zeros(k)
        bursts = {j: self._burst(pc.precoders[j], float(delay[j])) for j in range(k) if pc.participants[j]}
        peak = max((float(np.max(np.abs(x))) for x in bursts.values()), default=0.0)
        backoff = min(1.0, DAC_PEAK / peak) if peak > 0 else 1.0
        eta = pc.eta * backoff**2
        rep = Repetition(0, 0, h, pc, eta, noise, np.full(h.shape, np.nan + 0j),
                         isi=None if self.is_ofdm else np.full(k, np.nan))
        for j, x in bursts.items():
            response = self._measure(j, x * backoff, f"preequalised_{index}_client{j}")[0] / math.sqrt(eta)
            if self.is_ofdm:
                rep.residual[j] = np.where(pc.active[j], np.abs(response / self.ofdm.preamble_values), np.nan)
            else:
                rep.residual[j] = abs(response[at])
                assert rep.isi is not None
                rep.isi[j] = float(np.sum(np.abs(np.delete(response, at)) ** 2))
        return rep


# -- the procedure -------------------------------------------------------------------------------
def _deg(z: np.ndarray) -> np.ndarray:
    return np.degrees(np.angle(z))


def _db20(z: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 20 * np.log10(np.abs(z))


def _rms(x: np.ndarray) -> float | None:
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.sqrt(np.mean(v * v))) if v.size else None


def _mean(x: np.ndarray) -> float | None:
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.mean(v)) if v.size else None


def _std(x: np.ndarray) -> float | None:
    v = np.asarray(x, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.std(v)) if v.size > 1 else None


def run(bench: Bench, out: ProcedureOutput, options: Options) -> ProcedureResult:
    bench.require_transmitters("alignment")
    plan = power_plan(bench, options.tx_power, options.profile)
    with profile_gains(bench, plan):
        cls = TimedAlignment if bench.timed else CyclicAlignment
        runner = cls(bench, out, options, plan.tx_power)
        runner.listen()
        coarse = runner.acquire()
        warmup = options.warmup_repeats if bench.timed else 0  # cyclic benches track nothing across repetitions
        reps = [runner.repetition(i) for i in range(warmup + options.repeats)][warmup:]
        gains = (list(bench.tx_gains_db), bench.config.rx_gain_db)
    result = report(bench, out, options, plan, reps, coarse, gains)
    if isinstance(runner, TimedAlignment):  # what acquisition found before the first sounding (samples, late > 0)
        result.summary["acquisition_offset_samples"] = {
            uri: float(v) for uri, v in zip(bench.transmitter_uris, runner.acquired_offset, strict=True)
        }
    return result


def measurement_floor(options: Options, clients: int, timed: bool, noise: float, eta: float) -> float:
    """Expected NMSE_mis of a perfectly aligned bench from the measurement noise alone.

    Single carrier: each tap of the effective response has noise variance sigma^2 / (eta N R)
    (N R pilot samples averaged), and NMSE_mis sums the coefficient tap and the other taps of the
    window (ISI). OFDM: each a_kf averages M symbols (timed) or the m repetitions of the periodic
    symbol (cyclic). Cyclic benches measure magnitudes, which carry half the coefficient's noise.
    """
    if not (eta > 0 and math.isfinite(noise)):
        return float("nan")
    o = options
    n_pilot = SoundingLayout(clients if timed else 1, o.sounding_cp, o.sounding_min_shift, o.sounding_min_length,
                             o.sounding_repeats)
    coefficient = 1.0 if timed else 0.5
    if o.waveform == "ofdm":
        if timed:
            averaged = max(o.ofdm_symbols, clients)
        else:  # the periods of the capture CyclicAlignment._measure takes
            averaged = ((n_pilot.repeats + 3) * max(o.ofdm_fft, n_pilot.length)) // o.ofdm_fft
        return noise / (eta * averaged) * coefficient
    width = o.sounding_cp + 1 + PRECURSOR
    return noise / (eta * n_pilot.length * n_pilot.repeats) * (coefficient + width - 1)


def report(
    bench: Bench, out: ProcedureOutput, options: Options, plan: PowerPlan, reps: list[Repetition],
    coarse: np.ndarray, gains: tuple[list[float], float],
) -> ProcedureResult:
    """Rows (one per client), summary, notes and figures from the repetitions."""
    k = len(bench.transmitters)
    timed = bench.timed
    ofdm = options.waveform == "ofdm"
    emulated = bench.air is not None and timed
    residual = np.stack([r.residual for r in reps])  # (R, K) or (R, K, F)
    isi = np.stack([r.isi for r in reps]) if reps[0].isi is not None else None  # (R, K)
    eta = float(np.median([r.eta for r in reps]))
    noise = float(np.nanmedian([r.noise_power for r in reps]))
    floor = measurement_floor(options, k, timed, noise, eta)
    mis = [misalignment_nmse(residual[i], isi[i] if isi is not None else None) for i in range(len(reps))]
    mis_raw = float(np.mean([m for m, _ in mis]))
    common = np.array([c for _, c in mis])
    mis_net = max(mis_raw - floor, 0.0) if math.isfinite(floor) else mis_raw
    talking = np.isfinite(residual).reshape(len(reps), k, -1).any(axis=(0, 2))
    noise_nmse = noise / (eta * int(talking.sum())) if eta > 0 and talking.any() else float("nan")

    amp_db = _db20(residual)
    phase_deg = _deg(residual)
    last = reps[-1]
    rows: list[dict[str, Any]] = []
    for j in range(k):
        row: dict[str, Any] = {"client": bench.transmitter_uris[j]}
        h = last.channel[j]
        row["gain_dB"] = _mean(_db20(h))
        if timed and not ofdm:
            row["phase_deg"] = float(_deg(h))
        if timed:
            assert last.arrival is not None and last.cfo_hz is not None
            row["cfo_Hz"] = float(last.cfo_hz[j]) if options.cfo_correction else float(coarse[j] * bench.sample_rate_hz)
            row["delay_samples"] = float(last.arrival[j])
        else:
            row["cfo_Hz"] = float(coarse[j] * bench.sample_rate_hz)
        row["snr_dB"] = db10(plan.tx_power * float(np.mean(np.abs(h) ** 2)) / noise) if noise > 0 else None
        b = np.atleast_1d(last.power.precoders[j])
        row["precoder_dB"] = _mean(_db20(b[np.abs(b) > 0]))
        # residual a_k: SC mean and spread over the repetitions; OFDM RMS over subcarriers and
        # repetitions, and the spread of the per-repetition RMS
        if ofdm:
            row["resid_dB"] = _rms(amp_db[:, j])
            row["resid_spread_dB"] = _std(np.array([_rms(amp_db[i, j]) or np.nan for i in range(len(reps))]))
            row["resid_deg"] = _rms(phase_deg[:, j]) if timed else None
            per_rep = np.array([_rms(phase_deg[i, j]) or np.nan for i in range(len(reps))])
            row["resid_spread_deg"] = _std(per_rep) if timed else None
        else:
            row["resid_dB"] = _mean(amp_db[:, j])
            row["resid_spread_dB"] = _std(amp_db[:, j])
            row["resid_deg"] = _mean(phase_deg[:, j]) if timed else None
            row["resid_spread_deg"] = _std(phase_deg[:, j]) if timed else None
            assert isi is not None
            row["isi_dB"] = db10(float(np.nanmean(isi[:, j]))) if np.isfinite(isi[:, j]).any() else None
        if emulated:
            error = np.stack([r.channel[j] / r.truth_channel[j] for r in reps])  # type: ignore[index]
            row["gain_err_dB"] = _rms(_db20(error))
            row["phase_err_deg"] = _rms(_deg(error))
            tr = np.stack([r.truth_residual[j] for r in reps])  # type: ignore[index]
            row["true_resid_dB"] = _rms(_db20(tr)) if ofdm else _mean(_db20(tr))
            row["true_resid_deg"] = _rms(_deg(tr)) if ofdm else _mean(_deg(tr))
        rows.append(row)

    summary: dict[str, Any] = {
        "waveform": options.waveform,
        "mode": "timed" if timed else "cyclic (amplitude only)",
        "tx_power": plan.tx_power,
        "tx_power_source": plan.source,
        "tx_gains_db": gains[0],
        "rx_gain_db": gains[1],
        "repeats": options.repeats,
        "feedback_delay_samples": int(last.t1 - last.t0) if timed else None,
        "eta": eta,
        "noise_power": noise if math.isfinite(noise) else None,
        "residual_amp_rms_db": _rms(amp_db),
        "residual_phase_rms_deg": _rms(phase_deg) if timed else None,
        "common_gain_db": _mean(_db20(common)),
        "common_phase_deg": float(np.degrees(np.angle(np.mean(common)))) if timed else None,
        "nmse_misalignment_db": db10(mis_net),
        "nmse_misalignment_raw_db": db10(mis_raw),
        "measurement_floor_db": db10(floor),
        "nmse_noise_db": db10(noise_nmse),
        "nmse_predicted_db": db10(noise_nmse + mis_net),
    }
    if emulated:
        errors = np.concatenate([np.ravel(r.channel / r.truth_channel) for r in reps])  # type: ignore[operator]
        truth_res = np.stack([r.truth_residual for r in reps])  # type: ignore[arg-type]
        summary["truth_gain_error_rms_db"] = _rms(_db20(errors))
        summary["truth_phase_error_rms_deg"] = _rms(_deg(errors))
        summary["truth_residual_amp_rms_db"] = _rms(_db20(truth_res))
        summary["truth_residual_phase_rms_deg"] = _rms(_deg(truth_res))
        summary["truth_nmse_misalignment_db"] = db10(float(np.mean([misalignment_nmse(r)[0] for r in truth_res])))
        cfo_err = np.concatenate([r.cfo_hz - r.truth_cfo_hz for r in reps])  # type: ignore[operator]
        delay_err = np.concatenate([r.arrival - r.truth_arrival for r in reps])  # type: ignore[operator]
        summary["truth_cfo_error_max_hz"] = float(np.max(np.abs(cfo_err))) if options.cfo_correction else None
        summary["truth_delay_error_max_samples"] = float(np.max(np.abs(delay_err)))
    notes: list[str] = []
    if not timed:
        notes.append(
            "cyclic bench: the transmitters share no time base, so each was measured alone and only the amplitude "
            "residual (and ISI) is defined; the phase misalignment needs timed radios. Each client's pre-equalised "
            "capture comes one host loop (a capture per client) after its sounding: a channel that changes faster "
            "than that shows up in the residual"
        )
    if plan.source == "default":
        notes.append(f"P = {DEFAULT_TX_POWER} (no tx_power option and no profile with max_tx_power)")
    silent = [bench.transmitter_uris[j] for j in range(k) if not talking[j]]
    if silent:
        notes.append(f"below the truncation threshold, never measured: {', '.join(silent)}")
    if mis_net <= 0 and mis_raw > 0:
        notes.append("the misalignment is below the measurement floor (noise of the estimates): nmse_misalignment_db "
                     "is not resolvable; use more repeats, a longer pilot or more OFDM symbols")
    if emulated and not ofdm:
        notes.append("truth for single carrier is the flat channel (gain, carrier phase): it omits the sinc loss of a "
                     "residual fractional delay and multipath ISI, which the measured residual includes")
    _figures(bench, out, options, reps, residual, rows, emulated)
    return ProcedureResult("alignment", rows, summary, {}, notes)


def _figures(bench: Bench, out: ProcedureOutput, options: Options, reps: list[Repetition], residual: np.ndarray,
             rows: list[dict[str, Any]], emulated: bool) -> None:
    labels = [f"client{j}" for j in range(len(bench.transmitters))]
    last = reps[-1]
    ofdm = options.waveform == "ofdm"
    timed = bench.timed
    truth = last.truth_channel if emulated else None
    plots.estimate_vs_truth(
        out.figure_path("channel_gain"), labels, [_mean(_db20(h)) or 0.0 for h in last.channel],
        [_mean(_db20(t)) or 0.0 for t in truth] if truth is not None else None,
        "|h| (dB" + (", mean over subcarriers)" if ofdm else ")"), "channel gain per client (last repetition)",
    )
    if timed:
        def phase(h: np.ndarray) -> float:
            return float(np.degrees(np.angle(np.mean(h))))

        plots.estimate_vs_truth(
            out.figure_path("channel_phase"), labels, [phase(h) for h in last.channel],
            [phase(t) for t in truth] if truth is not None else None,
            "arg h (deg" + (", of the mean over subcarriers)" if ofdm else ")"),
            "channel phase per client at the sounding",
        )
    if ofdm:
        series: dict[str, np.ndarray] = {}
        for j, h in enumerate(last.channel):
            series[labels[j]] = _db20(h)
            if truth is not None:
                series[f"{labels[j]} truth"] = _db20(truth[j])
        used = OfdmLayout(options.ofdm_fft, options.ofdm_cp, options.ofdm_used).signed_used
        plots.curve(out.figure_path("channel_subcarriers"), used, series, "subcarrier", "|H| (dB)",
                    "per-subcarrier channel (last repetition)")
    plots.coefficients(
        out.figure_path("residual_constellation"), {labels[j]: residual[:, j] for j in range(len(labels))},
        "effective coefficient / sqrt(eta)" + (" per subcarrier" if ofdm else "")
        + ("" if timed else " (amplitude only)"),
    )
    amp_key = "resid_dB"
    plots.estimate_vs_truth(
        out.figure_path("residual_amplitude"), labels, [r.get(amp_key) or 0.0 for r in rows],
        [r.get("true_resid_dB") or 0.0 for r in rows] if emulated else None, "dB",
        "residual amplitude per client" + (" (RMS over subcarriers)" if ofdm else " (mean over repetitions)"),
    )
    if timed:
        phase_key = "resid_deg"
        plots.estimate_vs_truth(
            out.figure_path("residual_phase"), labels, [r.get(phase_key) or 0.0 for r in rows],
            [r.get("true_resid_deg") or 0.0 for r in rows] if emulated else None, "deg",
            "residual phase per client" + (" (RMS over subcarriers)" if ofdm else " (mean over repetitions)"),
        )
