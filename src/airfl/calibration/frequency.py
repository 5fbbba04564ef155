"""Carrier offset of each transmitter against the receiver, and the Pluto `xo_correction` that removes it.

What is sent. Each transmitter, alone, sends `periods` repetitions (64: 0.26 s at 1 MS/s) of one
buffer of `period_samples`: a Zadoff-Chu marker (root 1, `marker_length`, cyclic prefix and suffix)
followed by a tone at f_t = tone_hz (default 0.16 fs: 160 kHz at 1 MS/s; a whole number of cycles
per buffer, so the tone's phase runs on across buffers and a cyclic buffer repeats seamlessly). On a
timed bench the repetitions are one burst; on a cyclic bench (stock Pluto) the buffer repeats by
itself and the receiver finds the markers by correlation.

How it is measured (calibration/clock_sync.py), in three steps of increasing precision:
    coarse   the tone's peak in a zero-padded FFT of the whole capture, searched within
             f_t +- max_offset_ppm (55 ppm = 134 kHz at 2.44 GHz covers two +-25 ppm Plutos);
    markers  with that CFO removed, each marker by correlation (its fractional position too);
    fine     in each stretch of tone between two markers, the phase advance between its halves
             (~2000 samples apart: 0.06 Hz of white-noise error at 30 dB SNR). Stretches a
             fading-block boundary spoilt are dropped (residuals from a Theil-Sen line, median/MAD),
             the rest weighted by their inverse variance (their own SNR plus the scatter they all
             share: phase noise, ~1 Hz per stretch at the lab's 0.01 Hz linewidth), and a weighted
             straight line gives the offset at the centre of the capture and its drift (Hz/s, a
             crystal warming up). Phase noise sets the floor: ~0.15 Hz over 0.26 s in the lab preset.

From cycles per sample to ppm. The receiver counts in its own samples, so it sees the tone at
    c = f_t * fs_tx/fs_rx + (f_tx - f_rx)/fs_rx        (cycles per receiver sample).
On the AD9361 the sample clock and the carrier come from one reference, so fs_tx/fs_rx = f_tx/f_rx
= r, and with fs_rx/f_rx = fs/fc exactly (the same reference scales both):
    r - 1 = (c - f_t) / (f_t + fc/fs)                   (exact for locked clocks)
    carrier_offset_ppm = (r - 1) * 1e6                  (against the *receiver's* carrier)
    carrier_offset_hz  = (r - 1) * fc                   (in the receiver's Hz; a receiver off by
                                                         p ppm counts p ppm of it wrong: < 3 Hz of
                                                         120 kHz at 25 ppm)
The markers check the "locked" premise: their spacing on the receiver is P * fs_rx/fs_tx, so the
sample-clock offset (P/P_rx - 1) * 1e6 ppm must equal carrier_offset_ppm (within
`locked_tolerance_ppm`); radios with independent clocks are reported (their carrier estimate then
carries f_t*fs*(SCO difference) Hz of error, 0.15 Hz per ppm at the default tone).

xo_correction (Pluto, AD9361). `xo_correction` is the frequency (Hz, nominally 40e6) the AD9361's
driver believes its reference has; it programs every PLL for that value, so a radio whose crystal
actually runs at X_true = 40 MHz * (1 + e) while told X produces f = f_nominal * X_true / X. To
make the transmitter's carrier equal the receiver's (f_tx' = f_rx, i.e. scale it by 1/r):
    xo_new = xo_current * r = xo_current * (1 + carrier_offset_ppm * 1e-6)      (rounded to 1 Hz)
Sign: a transmitter that is fast (positive offset) is told its reference is faster than it
thought, so its PLLs divide more and its carrier comes down. One hertz of xo_correction is
0.025 ppm. This aligns every transmitter to the *receiver*, not to absolute frequency: the
receiver's own error remains common to all of them (which is what over-the-air computation needs:
every client lands on the same carrier at the server). To align to absolute frequency, first
calibrate the receiver against a trusted reference (a GPSDO-locked signal generator) and set its
xo_correction. After applying the correction the procedure measures again: the residual is the
check (on firmware whose driver does not re-tune the LO after a reference change, it shows here).

Radios without `set_xo_correction` (SoapySDR devices) get their offset measured and reported;
their profile entry has no xo_correction_hz. Units: Hz, ppm (of the carrier), samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import theilslopes

from airfl.calibration import plots
from airfl.calibration.bench import Bench, BenchError, Capture
from airfl.calibration.clock_sync import (
    check_marker_length,
    coarse_frequency,
    detect_markers,
    MarkerFit,
    fit_marker,
    lag_frequency,
    marker,
    trend_inliers,
    tone_snr_db,
    whole_cycles,
)
from airfl.calibration.output import ProcedureOutput, ProcedureResult
from airfl.modem.cfo import nco
from airfl.radio.recording import Annotation

SUMMARY = "each transmitter's carrier offset against the receiver (ppm); Pluto xo_correction; residual after applying it"

MARKER_EXTENSION = 16
"""Cyclic prefix and suffix of the marker (samples)."""
GUARD = 8
"""Samples of tone skipped next to each marker (filter transients, delay spread)."""


@dataclass(frozen=True)
class Options:
    """tone_hz: the tone's frequency (Hz; default 0.16 * sample rate, away from DC and the band edge).
    periods: buffers per measurement. period_samples: the buffer (samples). marker_length: the
    Zadoff-Chu marker (odd prime, samples). amplitude: of tone and marker (full-scale units).
    max_offset_ppm: the largest carrier offset searched for (ppm of the carrier).
    apply_correction: write xo_correction to radios that have it, then measure the residual.
    residual_tolerance_ppm: a residual above this is reported as a failed correction.
    locked_tolerance_ppm: how far the sample-clock offset may differ from the carrier offset (ppm)
    before the radios are reported as not sharing one reference."""

    tone_hz: float | None = None
    periods: int = 64
    period_samples: int = 4096
    marker_length: int = 127
    amplitude: float = 0.25
    max_offset_ppm: float = 55.0
    apply_correction: bool = True
    residual_tolerance_ppm: float = 0.1
    locked_tolerance_ppm: float = 1.0

    def __post_init__(self) -> None:
        check_marker_length(self.marker_length)
        if self.periods < 2:
            raise ValueError(f"periods must be >= 2 (the fine estimate compares stretches of tone), got {self.periods}")
        if self.period_samples < 4 * (self.marker_length + 2 * MARKER_EXTENSION):
            raise ValueError(
                f"period_samples must be >= 4 x the marker block ({self.marker_length + 2 * MARKER_EXTENSION} "
                f"samples) so most of it is tone, got {self.period_samples}"
            )
        if not 0 < self.amplitude <= 1:
            raise ValueError(f"amplitude must be in (0, 1] full-scale units, got {self.amplitude}")
        if not self.max_offset_ppm > 0:
            raise ValueError(f"max_offset_ppm must be > 0 ppm, got {self.max_offset_ppm}")
        if self.tone_hz is not None and not self.tone_hz > 0:
            raise ValueError(f"tone_hz must be > 0 Hz, got {self.tone_hz}")
        if self.residual_tolerance_ppm <= 0 or self.locked_tolerance_ppm <= 0:
            raise ValueError("residual_tolerance_ppm and locked_tolerance_ppm must be > 0 ppm")


@dataclass
class Measurement:
    """One transmitter's carrier offset from one capture.

    ratio_minus_one: f_tx / f_rx - 1 (dimensionless; x1e6 = ppm). cfo_cycles: the carrier offset in
    cycles per receiver sample. t_ref: index into the capture the estimate refers to; t_ref_true:
    the same moment in the emulated air's true time (samples; None on real radios).
    std_cycles: standard error of cfo_cycles. drift_cycles: d(cfo)/dt (cycles/sample per sample).
    sco_ppm / sco_std_ppm: the transmitter's sample clock against the receiver's, from the markers.
    """

    ratio_minus_one: float
    cfo_cycles: float
    t_ref: float
    t_ref_true: float | None
    std_cycles: float
    drift_cycles: float
    sco_ppm: float | None
    sco_std_ppm: float | None
    snr_db: float
    markers: list[float]
    regions: list[tuple[int, int]]
    stretches_used: int
    capture: Capture


@dataclass
class _Layout:
    period: int
    periods: int
    tone: float  # cycles/sample
    sequence: np.ndarray
    block: np.ndarray
    max_offset: float  # cycles/sample of carrier offset searched
    burst: np.ndarray = field(default_factory=lambda: np.zeros(0))


def layout(bench: Bench, options: Options) -> _Layout:
    """The buffer for this bench: marker block, then the tone, whole cycles per buffer."""
    fs, fc = bench.sample_rate_hz, bench.center_freq_hz
    tone_hz = options.tone_hz if options.tone_hz is not None else 0.16 * fs
    tone = whole_cycles(tone_hz / fs, options.period_samples)
    max_offset = options.max_offset_ppm * 1e-6 * fc / fs
    lo, hi = tone - max_offset, tone + max_offset
    if lo <= 0.01 or hi >= 0.49:
        raise BenchError(
            f"a tone at {tone * fs:.0f} Hz searched +-{options.max_offset_ppm:g} ppm ({max_offset * fs:.0f} Hz) "
            f"reaches DC or the band edge at {fs:.0f} S/s; choose -o tone_hz=... or a smaller max_offset_ppm"
        )
    block, sequence = marker(options.marker_length, 1, MARKER_EXTENSION)
    n = np.arange(options.period_samples * options.periods)
    burst = options.amplitude * np.exp(2j * np.pi * tone * n)
    starts = np.arange(options.periods) * options.period_samples
    for s in starts:
        burst[s : s + len(block)] = options.amplitude * block
    return _Layout(options.period_samples, options.periods, tone, sequence, block, max_offset, burst)


def measure(bench: Bench, index: int, lay: _Layout) -> Measurement | None:
    """Send transmitter `index`'s buffers and estimate its carrier offset; None if not detected."""
    period = lay.period
    if bench.timed:
        capture = bench.send_and_capture({index: lay.burst}, lay.periods * period + 256, pre=64)
    else:
        capture = bench.send_and_capture({index: lay.burst[:period]}, (lay.periods + 1) * period)
    true_end = bench.air.true_time() if bench.air is not None else None  # truth: when the window ended
    y = capture.samples - np.mean(capture.samples)
    fs_over_fc = bench.sample_rate_hz / bench.center_freq_hz
    coarse = coarse_frequency(y, lay.tone, lay.max_offset)
    cfo0 = coarse - lay.tone  # the marker carries the carrier offset only
    n = len(lay.sequence)
    starts, _ = detect_markers(y * np.conj(nco(len(y), cfo0)), lay.sequence, min_distance=3 * period // 4)
    fits = [f for f in (fit_marker(y, int(s), lay.sequence, MARKER_EXTENSION, cfo0) for s in starts) if f is not None]
    if not fits:
        return None
    positions = [f.position for f in fits]
    regions: list[tuple[int, int]] = []
    for p in positions:
        a = int(np.ceil(p)) + n + MARKER_EXTENSION + GUARD
        b = int(np.floor(p)) - MARKER_EXTENSION + period - GUARD
        if b <= len(y) and b - a >= period // 2:
            regions.append((a, b))
    if not regions:
        return None
    length = min(b - a for a, b in regions)
    rows = np.stack([y[a : a + length] * np.conj(nco(length, coarse, start=float(a))) for a, _ in regions])
    fine, _ = lag_frequency(rows)
    centres = np.array([a + length / 2.0 for a, _ in regions])
    # Inverse-variance weights: white noise (from each stretch's SNR) plus what every stretch shares
    # (phase noise of the two oscillators: ~1 Hz per 4 ms stretch at 0.01 Hz linewidth), the latter
    # taken from the robust scatter of the stretches. Deep fades get less weight, never all of it.
    level = np.mean(rows, axis=1)
    snr = np.abs(level) ** 2 / np.maximum(np.mean(np.abs(rows - level[:, None]) ** 2, axis=1), 1e-30)
    half = length // 2
    v_white = 1.0 / (half * np.maximum(snr, 1e-3)) / (2 * np.pi * half) ** 2
    ok = trend_inliers(centres, fine, 1e-10)  # a fading-block boundary inside a stretch spoils it
    f, t, vw = fine[ok], centres[ok], v_white[ok]
    if len(f) >= 3:
        slope0, icpt0, _, _ = theilslopes(f, t)
        spread = 1.4826 * float(np.median(np.abs(f - icpt0 - slope0 * t)))
    else:
        spread = 0.0
    wr = 1.0 / (max(spread**2 - float(np.median(vw)), 0.0) + vw)
    t_ref = float(np.sum(wr * t) / np.sum(wr))  # where the weighted line is best known
    if len(f) >= 4:
        (slope, intercept), cov = np.polyfit(t - t_ref, f, 1, w=np.sqrt(wr), cov="unscaled")
        std = float(np.sqrt(cov[1, 1]))
    else:
        slope, intercept = 0.0, float(np.sum(wr * f) / np.sum(wr))
        std = float(np.sqrt(1.0 / np.sum(wr)))
    c = coarse + float(intercept)
    ratio = (c - lay.tone) / (lay.tone + 1.0 / fs_over_fc)
    sco, sco_std = _sample_clock_ppm(fits, period)
    snr = float(np.median([tone_snr_db(y[a:b], c) for a, b in regions]))
    return Measurement(
        ratio_minus_one=float(ratio),
        cfo_cycles=float(ratio / fs_over_fc),
        t_ref=t_ref,
        t_ref_true=None if true_end is None else capture_true_time(bench, true_end, len(y), t_ref),
        std_cycles=float(std),
        drift_cycles=float(slope),
        sco_ppm=sco,
        sco_std_ppm=sco_std,
        snr_db=snr,
        markers=positions,
        regions=regions,
        stretches_used=int(ok.sum()),
        capture=capture,
    )


def capture_true_time(bench: Bench, true_end: float, length: int, index: float) -> float:
    """True time (samples) of sample `index` of a capture of `length` samples that ended at true
    time `true_end` (emulated benches only: a cyclic radio's sample count is not its clock)."""
    assert bench.air is not None
    osc = bench.air.oscillator(bench.air_name(bench.receiver))
    local_end = float(osc.local_time(true_end))
    return float(osc.true_time(local_end - length + index))


def _sample_clock_ppm(fits: list[MarkerFit], period: int) -> tuple[float | None, float | None]:
    """Transmitter sample clock against the receiver's (ppm, positive = faster) from the marker
    spacing: P transmitter samples span P * fs_rx / fs_tx receiver samples. A robust line (markers
    in a deep fade of a multipath channel move by up to a sample) weighted by marker amplitude."""
    if len(fits) < 4:
        return None, None
    m = np.array([f.position for f in fits])
    g = np.array([abs(f.gain) for f in fits])
    j = np.round((m - m[0]) / period)
    ok = trend_inliers(j, m, 1e-3)
    if ok.sum() < 4:
        return None, None
    (spacing, _), cov = np.polyfit(j[ok], m[ok], 1, w=g[ok], cov=True)
    ppm = (period / spacing - 1.0) * 1e6
    std = float(np.sqrt(cov[0, 0]) * period / spacing**2 * 1e6)
    return float(ppm), std


def supports_xo(radio: Any) -> bool:
    """Whether the radio can have its reference corrected (Pluto with xo_correction, the loopback)."""
    if not callable(getattr(radio, "set_xo_correction", None)) or not callable(getattr(radio, "xo_correction", None)):
        return False
    has = getattr(radio, "has_xo_correction", None)
    return bool(has()) if callable(has) else True


def xo_for(current_hz: float, ratio_minus_one: float) -> int:
    """The xo_correction (Hz) that makes a transmitter with f_tx/f_rx = 1 + ratio_minus_one match the
    receiver, from its current value (module docstring): xo_current * r, to the nearest hertz."""
    return int(round(current_hz * (1.0 + ratio_minus_one)))


def _truth(bench: Bench, index: int, m: Measurement) -> dict[str, float] | None:
    air = bench.air
    if air is None:
        return None
    rx, tx = bench.air_name(bench.receiver), bench.air_name(bench.transmitters[index])
    assert m.t_ref_true is not None
    t = m.t_ref_true
    o_tx, o_rx = air.oscillator(tx), air.oscillator(rx)
    p_tx, p_rx = float(o_tx.ppm_at(t)), float(o_rx.ppm_at(t))
    s_tx, s_rx = float(o_tx.sample_clock_ppm_at(t)), float(o_rx.sample_clock_ppm_at(t))
    ratio = (1 + 1e-6 * p_tx) / (1 + 1e-6 * p_rx) - 1
    return {
        "cfo_hz": float(air.link(tx, rx).cfo_hz(t)),
        "ppm": ratio * 1e6,
        "sco_ppm": ((1 + 1e-6 * s_tx) / (1 + 1e-6 * s_rx) - 1) * 1e6,
        "xo_hz": o_tx.reference_hz * (1 + ratio),
    }


def _annotations(m: Measurement, n: int, lay: _Layout) -> list[Annotation]:
    notes = [Annotation(int(np.floor(p)) - MARKER_EXTENSION, n + 2 * MARKER_EXTENSION, "marker", f"ZC root 1, N={n}, at {p:.3f}") for p in m.markers]
    notes += [Annotation(a, b - a, "tone", f"{lay.tone:.6f} cycles/sample sent") for a, b in m.regions]
    return sorted(notes, key=lambda a: a.sample_start)


def _spectrum_before_after(
    path: Any, before: np.ndarray, after: np.ndarray | None, fs: float, tone: float, span: float, title: str
) -> None:
    """The received tone before and after correction (Welch, dBFS per bin), zoomed on the tone."""
    from scipy.signal import welch  # noqa: PLC0415

    plt = plots._plt()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for label, x in (("before", before), ("after", after)):
        if x is None:
            continue
        f, pxx = welch(x, fs=fs, window="hann", nperseg=min(8192, len(x)), return_onesided=False, scaling="spectrum")
        order = np.argsort(f)
        ax.plot(f[order] / 1e3, 10 * np.log10(np.maximum(pxx[order], 1e-20)), lw=0.8, label=label)
    ax.axvline(tone * fs / 1e3, ls="--", color="gray")
    ax.annotate("tone sent", (tone * fs / 1e3, ax.get_ylim()[1]), rotation=90, va="top", ha="right", fontsize=8)
    ax.set_xlim((tone * fs - span) / 1e3, (tone * fs + span) / 1e3)
    ax.set_xlabel("frequency (kHz)")
    ax.set_ylabel("power per bin (dBFS)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(bench: Bench, out: ProcedureOutput, options: Options) -> ProcedureResult:
    bench.require_transmitters("frequency")
    lay = layout(bench, options)
    fs, fc = bench.sample_rate_hz, bench.center_freq_hz
    n = options.marker_length
    rows: list[dict[str, Any]] = []
    profile: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    labels: list[str] = []
    estimates: list[float] = []
    truths: list[float] = []
    errors_hz: list[float] = []
    errors_xo_ppm: list[float] = []
    residuals: list[float] = []
    for i, (radio, uri) in enumerate(zip(bench.transmitters, bench.transmitter_uris, strict=True)):
        before = measure(bench, i, lay)
        if before is None:
            rows.append({"transmitter": uri, "carrier_offset_Hz": None})
            notes.append(f"{uri}: no marker found above the detection threshold; check the antenna/cable and gains")
            continue
        xo_now = radio.xo_correction() if supports_xo(radio) else None
        out.save_capture(
            f"tone_tx{i}_before", before.capture, bench,
            description=f"{uri}: marker + tone buffers, before correction",
            annotations=_annotations(before, n, lay),
            extra={"transmitter": uri, "stage": "before", "tone_hz": lay.tone * fs, "period_samples": lay.period,
                   "xo_correction_hz": xo_now},
        )
        ppm = before.ratio_minus_one * 1e6
        row: dict[str, Any] = {
            "transmitter": uri,
            "carrier_offset_Hz": before.ratio_minus_one * fc,
            "carrier_offset_ppm": ppm,
            "std_Hz": before.std_cycles * fs,
            "drift_Hz_per_s": before.drift_cycles * fs * fs,
            "sample_clock_ppm": before.sco_ppm,
            "tone_snr_dB": before.snr_db,
        }
        truth = _truth(bench, i, before)
        if truth is not None:
            row["truth_offset_Hz"] = truth["cfo_hz"]
            errors_hz.append(abs(row["carrier_offset_Hz"] - truth["cfo_hz"]))
        if before.sco_ppm is not None and abs(before.sco_ppm - ppm) > options.locked_tolerance_ppm + 4 * (before.sco_std_ppm or 0.0):
            notes.append(
                f"{uri}: its sample clock is {before.sco_ppm:+.3f} ppm against the receiver but its carrier "
                f"{ppm:+.3f} ppm: the radios do not derive both from one reference (not AD9361-like); "
                "the carrier estimate assumes they do and is off by about "
                f"{abs(before.sco_ppm - ppm) * 1e-6 * lay.tone * fs:.2f} Hz"
            )
        entry: dict[str, Any] = {"carrier_offset_ppm": ppm}
        after: Measurement | None = None
        if xo_now is not None:
            new = xo_for(xo_now, before.ratio_minus_one)
            row["xo_correction_Hz"] = new
            entry["xo_correction_hz"] = new
            if truth is not None:
                errors_xo_ppm.append(abs(new / truth["xo_hz"] - 1) * 1e6)
            if options.apply_correction:
                radio.set_xo_correction(new)
                after = measure(bench, i, lay)
                if after is None:
                    notes.append(f"{uri}: after writing xo_correction = {new} Hz the tone was lost; check the radio")
                else:
                    residual = after.ratio_minus_one * 1e6
                    row["residual_offset_ppm"] = residual
                    entry["residual_offset_ppm"] = residual
                    residuals.append(abs(residual))
                    after_truth = _truth(bench, i, after)
                    if after_truth is not None:
                        row["truth_residual_ppm"] = after_truth["ppm"]
                    if abs(residual) > options.residual_tolerance_ppm:
                        notes.append(
                            f"{uri}: residual {residual:+.3f} ppm after xo_correction = {new} Hz exceeds "
                            f"{options.residual_tolerance_ppm:g} ppm; run again (a drifting crystal) or check that "
                            "the driver re-tunes its LO after a reference change"
                        )
                    out.save_capture(
                        f"tone_tx{i}_after", after.capture, bench,
                        description=f"{uri}: marker + tone buffers, after xo_correction = {new} Hz",
                        annotations=_annotations(after, n, lay),
                        extra={"transmitter": uri, "stage": "after", "tone_hz": lay.tone * fs,
                               "period_samples": lay.period, "xo_correction_hz": new},
                    )
            else:
                notes.append(f"{uri}: xo_correction = {new} Hz not applied (apply_correction off); no residual measured")
        else:
            notes.append(
                f"{uri}: this radio has no xo_correction; its offset ({ppm:+.3f} ppm) is left to the modem's "
                "per-round CFO correction (or an external reference)"
            )
        profile[uri] = entry
        rows.append(row)
        labels.append(uri)
        estimates.append(ppm)
        if truth is not None:
            truths.append(truth["ppm"])
        span = max(abs(before.ratio_minus_one) * fc * 1.5, 5e3)  # Hz either side of the tone sent
        _spectrum_before_after(
            out.figure_path(f"tone_spectrum_tx{i}"),
            before.capture.samples,
            after.capture.samples if after is not None else None,
            fs, lay.tone, span, f"{uri}: received tone before/after correction",
        )
    detected = [r for r in rows if r.get("carrier_offset_ppm") is not None]
    summary: dict[str, Any] = {
        "transmitters_measured": len(detected),
        "max_abs_offset_ppm": max((abs(r["carrier_offset_ppm"]) for r in detected), default=None),
        "max_abs_residual_ppm": max(residuals) if residuals else None,
        "reference": "the receiver's carrier (ppm of the carrier; not absolute frequency)",
    }
    if errors_hz:
        summary["max_error_vs_truth_hz"] = max(errors_hz)
    if errors_xo_ppm:
        summary["max_xo_error_vs_truth_ppm"] = max(errors_xo_ppm)
    if labels:
        plots.estimate_vs_truth(
            out.figure_path("carrier_offset"), labels, estimates,
            truths if len(truths) == len(labels) else None, "carrier offset (ppm)",
            "carrier offset against the receiver",
        )
    return ProcedureResult("frequency", rows, summary, profile, notes)
