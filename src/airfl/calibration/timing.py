"""Timing offset of each transmitter against the receiver, and its drift over a minute.

What is sent. Transmitter i sends a sounding of a tone (`tone_samples` at 0.16 fs: its CFO) and a
Zadoff-Chu sequence of `zc_length` samples with a cyclic prefix and suffix of 32 (its timing),
root chosen per transmitter (clock_sync.marker_root) so that each one is found by its own
correlation. The soundings of the transmitters sit in consecutive slots of one burst.

How an offset is measured (calibration/clock_sync.py). The transmitter's sequence is found by
correlation; the tone just before it gives the CFO (coarse FFT, then the median of block phase
advances, so a fading-block boundary inside it does not matter); with the CFO removed, the
correlation peak gives the integer position and the phase slope across frequency (bins within
+-0.4 fs) the fraction. The CFO must go first because a Zadoff-Chu sequence turns a frequency offset
into a delay (a CFO of one bin, fs/N, moves the peak 1/root samples); what is left after it (a few
Hz at 20 dB SNR) moves it < 0.003 samples.

Timed bench (loopback, SoapySDR with hardware time): every burst is scheduled at a known sample T
of the transmitter's clock; the offset is absolute,
    offset(T) = (receiver sample where the sequence sent at T arrives) - T      (samples)
the link's delay plus the difference of the two clocks at T. `measurements` bursts spread over
`duration_s` of bench time (the loopback's air simply jumps ahead, a minute costs no compute) give
its drift, the slope of a straight line through offset(T) against T:
    timing_drift_ppm = d offset / d T * 1e6     (ppm of elapsed time; x fs = samples/s)
positive when the transmitter's bursts arrive later and later (its clock is slow against the
receiver's; on an AD9361, where one reference drives carrier and sample clock, it is minus the
carrier offset in ppm). A crystal warming up bends the line (0.02 ppm/s is 1.2 ppm over a
minute, several samples of curvature): the report gives the rms residual and the quadratic term
(drift_change_ppm_per_s); the profile gets the slope and the offset measured at the first sounding.
Each burst is placed in its slot with the offset predicted from the previous measurements, so even
+-25 ppm radios (1500 samples a minute) stay inside their windows.

Multipath: the phase slope measures the channel's group delay over the band, i.e. the first
path's delay plus where the taps put the energy: with the lab's 50 ns spread at 1 MS/s that is
< 0.05 samples usually, up to a sample when the first tap is in a deep fade. That is the delay a
transmitter has to advance by, so it is reported as is.

Cyclic bench (stock Pluto): each transmitter repeats its slot of the buffer, started at an unknown
offset, and there is no clock to schedule against. One capture of `cyclic_capture_s` holds many
repetitions of every transmitter: the spacing of one transmitter's repetitions on the receiver
(P * fs_rx / fs_tx for a buffer of P samples) gives its drift against the receiver, and the
offsets are reported *relative to the first transmitter* (how far each buffer would have to be
rotated to align with it, in (-P/2, P/2]; cyclic-mode rounds measure it again each time the buffers
restart, so it is not written into the profile), with their relative drift. Soundings of two
transmitters that happen to overlap are detected and the capture repeated (`cyclic_attempts`).

Units: samples (offsets), ppm (drift, of elapsed time), samples/s, Hz.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airfl.calibration import plots
from airfl.calibration.bench import Bench, BenchError
from airfl.calibration.clock_sync import (
    check_marker_length,
    detect_markers,
    fit_marker,
    marker,
    marker_inverse,
    marker_root,
    tone_frequency,
    trend_inliers,
)
from airfl.calibration.output import ProcedureOutput, ProcedureResult
from airfl.radio.recording import Annotation

SUMMARY = "each transmitter's timing offset in its timing mode (samples), and its drift over a minute (ppm)"

EXTENSION = 32
"""Cyclic prefix and suffix of the timing sequence (samples): room for the delay interpolator's tails."""
TONE_FRACTION = 0.16
"""Tone frequency as a fraction of the sample rate."""


@dataclass(frozen=True)
class Options:
    """duration_s: bench time the measurements span on a timed bench (s). measurements: how many
    (>= 2; >= 3 to see whether the drift is a straight line). tone_samples / zc_length: the sounding
    (samples; zc_length an odd prime). amplitude: of the sounding (full-scale units).
    max_cfo_ppm: largest carrier (and clock) offset between two radios (ppm; 55 ppm covers two
    uncalibrated +-25 ppm Plutos): sets the CFO search and, with the spacing of the measurements,
    how far a transmitter may wander before the prediction catches it. min_snr_db: soundings whose tone is weaker are not used (dB).
    search_samples: half-width of the window around the predicted arrival (samples).
    slot_guard_samples: gap between the transmitters' soundings (samples).
    cyclic_capture_s: the one capture of a cyclic bench (s). cyclic_period_samples: the cyclic buffer
    (samples; default 8 x transmitters x slot). cyclic_attempts: captures tried until no two
    soundings overlap."""

    duration_s: float = 60.0
    measurements: int = 7
    tone_samples: int = 1024
    zc_length: int = 353
    amplitude: float = 0.25
    max_cfo_ppm: float = 55.0
    min_snr_db: float = 0.0
    search_samples: int = 1024
    slot_guard_samples: int = 128
    cyclic_capture_s: float = 1.0
    cyclic_period_samples: int | None = None
    cyclic_attempts: int = 6

    def __post_init__(self) -> None:
        check_marker_length(self.zc_length)
        if self.measurements < 2:
            raise ValueError(f"measurements must be >= 2 to fit a drift, got {self.measurements}")
        if not self.duration_s > 0:
            raise ValueError(f"duration_s must be > 0 s, got {self.duration_s}")
        if self.tone_samples < 256:
            raise ValueError(f"tone_samples must be >= 256 for a CFO estimate, got {self.tone_samples}")
        if not 0 < self.amplitude <= 1:
            raise ValueError(f"amplitude must be in (0, 1] full-scale units, got {self.amplitude}")
        if not self.max_cfo_ppm > 0:
            raise ValueError(f"max_cfo_ppm must be > 0 ppm, got {self.max_cfo_ppm}")
        if self.search_samples < 16 or self.slot_guard_samples < 0:
            raise ValueError("search_samples must be >= 16 and slot_guard_samples >= 0 samples")
        if not self.cyclic_capture_s > 0 or self.cyclic_attempts < 1:
            raise ValueError("cyclic_capture_s must be > 0 s and cyclic_attempts >= 1")
        if self.cyclic_period_samples is not None and self.cyclic_period_samples < 1:
            raise ValueError(f"cyclic_period_samples must be >= 1, got {self.cyclic_period_samples}")


@dataclass
class Sounding:
    """The bursts of one measurement and where their sequences are (samples)."""

    tone: float  # cycles/sample
    sequences: list[np.ndarray]
    bursts: dict[int, np.ndarray]
    zc_at: list[int]  # index in each burst of its sequence's first sample (after the prefix)
    slot: int
    guard: list[int]  # tone samples skipped next to the sequence (CFO may move its peak)
    max_cfo: float  # cycles/sample


def sounding(
    bench: Bench, options: Options, shifts: list[int] | None = None, period: int | None = None, guard: int | None = None
) -> Sounding:
    """Transmitter i's burst: `i * slot + shifts[i]` zeros, its tone, its extended sequence; padded
    to `period` when given (the cyclic buffer)."""
    k = len(bench.transmitters)
    fs = bench.sample_rate_hz
    n, lt = options.zc_length, options.tone_samples
    tone = round(TONE_FRACTION * lt) / lt
    max_cfo = options.max_cfo_ppm * 1e-6 * bench.center_freq_hz / fs
    if tone - max_cfo <= 0.01 or tone + max_cfo >= 0.49:
        raise BenchError(
            f"max_cfo_ppm {options.max_cfo_ppm:g} ({max_cfo * fs:.0f} Hz) is too large for a tone at {tone * fs:.0f} Hz "
            f"at {fs:.0f} S/s; lower it (after running `frequency`) or raise the sample rate"
        )
    length = lt + n + 2 * EXTENSION
    slot = length + (options.slot_guard_samples if guard is None else guard)
    shifts = shifts or [0] * k
    sequences, bursts, zc_at, guards = [], {}, [], []
    for i in range(k):
        block, zc = marker(n, marker_root(i, n), EXTENSION)
        start = i * slot + shifts[i]
        size = max(start + length, period or 0)
        burst = np.zeros(size, dtype=np.complex128)
        burst[start : start + lt] = np.exp(2j * np.pi * tone * np.arange(lt))
        burst[start + lt : start + length] = block
        bursts[i] = options.amplitude * burst
        sequences.append(zc)
        zc_at.append(start + lt + EXTENSION)
        # a CFO of k bins moves this sequence's peak by k * |root^-1| samples before it is removed
        guards.append(16 + int(np.ceil(max_cfo * n * marker_inverse(i))))
    return Sounding(tone, sequences, bursts, zc_at, slot, guards, max_cfo)


@dataclass
class Found:
    """One sounding found in a capture: `position` of its sequence (index into the capture,
    fractional), its CFO (cycles/sample) and the tone's SNR (dB)."""

    position: float
    cfo: float
    snr_db: float
    metric: float


def locate(
    y: np.ndarray, snd: Sounding, index: int, options: Options, lo: int, hi: int, period: int | None = None
) -> list[Found]:
    """Transmitter `index`'s soundings in y: its sequence by correlation among lags [lo, hi) (the
    strongest one, or every one at least 3/4 of a cyclic `period` apart), the CFO from the tone before
    each, then the fractional position with the CFO removed."""
    seq = snd.sequences[index]
    lt = options.tone_samples
    guard = snd.guard[index]
    starts, metrics = detect_markers(
        y, seq, lo=lo, hi=hi, strongest_only=period is None, min_distance=3 * (period or 4) // 4
    )
    found: list[Found] = []
    for s, metric in zip(starts, metrics, strict=True):
        a, b = int(s) - EXTENSION - lt + guard, int(s) - EXTENSION - guard
        if a < 0 or b - a < 128:
            continue
        f, _, snr = tone_frequency(y[a:b], snd.tone, snd.max_cfo)
        if snr < options.min_snr_db:
            continue
        cfo = f - snd.tone
        fit = fit_marker(y, int(s), seq, EXTENSION, cfo, search=guard)
        if fit is not None:
            found.append(Found(fit.position, cfo, snr, float(metric)))
    return found


# -- timed bench --------------------------------------------------------------------------------


@dataclass
class Track:
    """One transmitter's measurements on a timed bench: scheduled tx samples, measured offsets,
    their truth (loopback), CFO and SNR."""

    scheduled: list[float] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)
    truth: list[float] = field(default_factory=list)
    cfo_hz: list[float] = field(default_factory=list)
    snr_db: list[float] = field(default_factory=list)
    missed: int = 0

    def predict(self, at: float) -> float:
        """Offset expected at scheduled sample `at` (samples): a line through what was measured."""
        if not self.offsets:
            return 0.0
        if len(self.offsets) == 1:
            return self.offsets[0]
        slope, icpt = np.polyfit(self.scheduled, self.offsets, 1)
        return float(icpt + slope * at)


def measure_timed(bench: Bench, out: ProcedureOutput, options: Options) -> list[Track]:
    """Measure every transmitter `options.measurements` times over `options.duration_s` of bench time
    (timed benches); captures are saved in `out`. Returns one Track per transmitter."""
    k = len(bench.transmitters)
    fs = bench.sample_rate_hz
    step = options.duration_s * fs / (options.measurements - 1)
    # before two measurements give a drift, a transmitter may wander max_cfo_ppm of a step
    wander = int(np.ceil(options.max_cfo_ppm * 1e-6 * step))
    search = max(options.search_samples, wander + 64)
    guard = max(options.slot_guard_samples, wander)
    t0 = bench.now() + bench.lead_samples + 2 * search
    tracks = [Track() for _ in range(k)]
    air = bench.air
    for m in range(options.measurements):
        at = t0 + int(round(m * step))
        preds = [t.predict(at) for t in tracks]
        top = max(preds)
        shifts = [int(round(top - p)) for p in preds]
        snd = sounding(bench, options, shifts, guard=guard)
        arrive = int(round(top))  # every sequence should land `arrive` samples after its slot position
        pre = search - arrive
        n = k * snd.slot + 2 * search
        cap = bench.send_and_capture(snd.bursts, n, pre=pre, at=at)
        y = cap.samples - np.mean(cap.samples)
        notes: list[Annotation] = []
        for i, track in enumerate(tracks):
            expected = pre + snd.zc_at[i] + int(round(preds[i]))
            hits = locate(y, snd, i, options, expected - search, expected + search + 1)
            scheduled = at + snd.zc_at[i]
            if not hits:
                track.missed += 1
                continue
            hit = hits[0]
            track.scheduled.append(float(scheduled))
            track.offsets.append(cap.start + hit.position - scheduled)
            track.cfo_hz.append(hit.cfo * fs)
            track.snr_db.append(hit.snr_db)
            if air is not None:
                link = air.link(bench.air_name(bench.transmitters[i]), bench.air_name(bench.receiver))
                track.truth.append(link.arrival_sample(scheduled) - scheduled)
            first = int(np.floor(hit.position))
            notes.append(Annotation(first - EXTENSION - options.tone_samples, options.tone_samples, "tone", f"tx{i} CFO {hit.cfo * fs:.1f} Hz"))
            notes.append(Annotation(first - EXTENSION, options.zc_length + 2 * EXTENSION, "preamble",
                                    f"tx{i} ZC root {marker_root(i, options.zc_length)}, sequence at {hit.position:.4f}"))
        out.save_capture(
            f"timing_m{m}", cap, bench,
            description=f"timing sounding {m + 1}/{options.measurements}, bursts scheduled at transmitter sample {at}",
            annotations=sorted(notes, key=lambda a: a.sample_start),
            extra={"scheduled_at": at, "elapsed_s": m * step / fs, "zc_at": snd.zc_at, "slot_samples": snd.slot},
        )
    return tracks


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float | None]:
    """(line's value at x[0], slope, rms residual, quadratic coefficient or None) of y against x."""
    dx = x - x[0]
    slope, icpt = np.polyfit(dx, y, 1)
    rms = float(np.sqrt(np.mean((y - icpt - slope * dx) ** 2)))
    quad = float(np.polyfit(dx, y, 2)[0]) if len(x) >= 4 else None
    return float(icpt), float(slope), rms, quad


def _timed_result(bench: Bench, out: ProcedureOutput, options: Options, tracks: list[Track]) -> ProcedureResult:
    fs = bench.sample_rate_hz
    rows: list[dict[str, Any]] = []
    profile: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    series: dict[str, tuple[np.ndarray, np.ndarray, float, float]] = {}
    offset_errors: list[float] = []
    drift_errors: list[float] = []
    for i, (uri, tr) in enumerate(zip(bench.transmitter_uris, tracks, strict=True)):
        if tr.missed:
            notes.append(f"{uri}: {tr.missed} of {options.measurements} soundings not found; check gains, or -o search_samples")
        if len(tr.offsets) < 2:
            rows.append({"transmitter": uri, "measurements": len(tr.offsets)})
            continue
        x, o = np.asarray(tr.scheduled), np.asarray(tr.offsets)
        line0, slope, rms, quad = _fit(x, o)
        row: dict[str, Any] = {
            "transmitter": uri,
            "measurements": len(o),
            "offset_samples": float(o[0]),
            "last_offset_samples": float(o[-1]),
            "drift_ppm": slope * 1e6,
            "drift_samples_per_s": slope * fs,
            "fit_rms_samples": rms,
            "drift_change_ppm_per_s": 2 * quad * fs * 1e6 if quad is not None else None,
            "snr_dB": float(np.median(tr.snr_db)),
        }
        if tr.truth:
            t = np.asarray(tr.truth)
            row["truth_offset_samples"] = float(t[0])
            row["truth_drift_ppm"] = float(np.polyfit(x - x[0], t, 1)[0] * 1e6)  # the same fit of the truth
            row["max_offset_error_samples"] = float(np.max(np.abs(o - t)))
            offset_errors.append(row["max_offset_error_samples"])
            drift_errors.append(abs(row["drift_ppm"] - row["truth_drift_ppm"]))
        rows.append(row)
        # the offset as measured at the first sounding (a crystal warming up bends the line)
        profile[uri] = {"timing_offset_samples": float(o[0]), "timing_drift_ppm": slope * 1e6}
        series[uri] = ((x - x[0]) / fs, o, line0, slope * fs)
    elapsed = options.duration_s
    summary: dict[str, Any] = {
        "mode": "timed: offsets against the scheduled sample",
        "span_s": elapsed,
        "max_abs_drift_ppm": max((abs(r["drift_ppm"]) for r in rows if "drift_ppm" in r), default=None),
    }
    if offset_errors:
        summary["max_offset_error_vs_truth_samples"] = max(offset_errors)
        summary["max_drift_error_vs_truth_ppm"] = max(drift_errors)
    if series:
        _plot_offsets(out.figure_path("timing_offsets"), series, "arrival - scheduled sample, and a straight line",
                      "offset (samples)")
    return ProcedureResult("timing", rows, summary, profile, notes)


# -- cyclic bench -------------------------------------------------------------------------------


def _overlaps(found: list[list[Found]], length: int, period: int) -> bool:
    """Whether the soundings of two transmitters overlap (modulo the buffer period)."""
    firsts = [f[0].position for f in found if f]
    for a in range(len(firsts)):
        for b in range(a + 1, len(firsts)):
            d = (firsts[a] - firsts[b]) % period
            if min(d, period - d) < length:
                return True
    return False


def _cyclic(bench: Bench, out: ProcedureOutput, options: Options) -> ProcedureResult:
    k = len(bench.transmitters)
    fs = bench.sample_rate_hz
    base = sounding(bench, options)
    period = options.cyclic_period_samples or 8 * k * base.slot
    if period < k * base.slot:
        raise BenchError(f"cyclic_period_samples must hold every transmitter's slot: >= {k * base.slot} samples")
    snd = sounding(bench, options, period=period)
    n = int(round(options.cyclic_capture_s * fs))
    if n < 3 * period:
        raise BenchError(f"cyclic_capture_s must cover at least 3 buffers of {period / fs:.4g} s")
    length = options.tone_samples + options.zc_length + 2 * EXTENSION
    notes: list[str] = []
    for attempt in range(options.cyclic_attempts):
        cap = bench.send_and_capture(snd.bursts, n)
        true_end = bench.air.true_time() if bench.air is not None else None
        y = cap.samples - np.mean(cap.samples)
        found = [locate(y, snd, i, options, 0, len(y), period) for i in range(k)]
        if not _overlaps(found, length + 2 * EXTENSION, period):
            break
        notes.append(f"capture {attempt + 1}: two transmitters' soundings overlapped in the cyclic buffers; captured again")
    else:
        notes.append(f"soundings still overlapped after {options.cyclic_attempts} captures: offsets of overlapping transmitters are unreliable")
    annotations = [
        Annotation(int(np.floor(f.position)) - EXTENSION, options.zc_length + 2 * EXTENSION, "preamble",
                   f"tx{i} ZC root {marker_root(i, options.zc_length)}, sequence at {f.position:.4f}")
        for i, fl in enumerate(found) for f in fl
    ]
    out.save_capture(
        "timing_cyclic", cap, bench, description=f"cyclic buffers of {period} samples from every transmitter",
        annotations=sorted(annotations, key=lambda a: a.sample_start)[:2000],
        extra={"period_samples": period, "slot_samples": snd.slot, "zc_at": snd.zc_at},
    )
    rows: list[dict[str, Any]] = []
    profile: dict[str, dict[str, Any]] = {}
    series: dict[str, tuple[np.ndarray, np.ndarray, float, float]] = {}
    fits: list[tuple[float, float] | None] = []
    drift_errors: list[float] = []
    for i, (uri, fl) in enumerate(zip(bench.transmitter_uris, found, strict=True)):
        if len(fl) < 3:
            fits.append(None)
            rows.append({"transmitter": uri, "repetitions": len(fl)})
            notes.append(f"{uri}: found {len(fl)} repetitions (< 3); check gains and that it transmits")
            continue
        pos = np.array([f.position for f in fl])
        j = np.round((pos - pos[0]) / period)
        # a robust line: a deep fade of the first tap moves a repetition by up to a sample (multipath)
        ok = trend_inliers(j, pos, 1e-3)
        spacing, icpt = np.polyfit(j[ok], pos[ok], 1)
        fits.append((float(icpt), float(spacing)))
        drift = float((spacing / period - 1.0) * 1e6)
        row: dict[str, Any] = {
            "transmitter": uri,
            "repetitions": len(fl),
            "drift_ppm": drift,
            "drift_samples_per_s": drift * 1e-6 * fs,
            "fit_rms_samples": float(np.sqrt(np.mean((pos - icpt - spacing * j) ** 2))),
            "offset_vs_first_samples": None,
            "drift_vs_first_ppm": None,
            "snr_dB": float(np.median([f.snr_db for f in fl])),
        }
        if bench.air is not None and true_end is not None:
            truth = _truth_sample_clock_ppm(bench, i, true_end)
            row["truth_drift_ppm"] = truth
            drift_errors.append(abs(drift - truth))
        rows.append(row)
        profile[uri] = {"timing_drift_ppm": drift}
    # offsets relative to the first transmitter: how far apart the buffers run, and how that drifts
    ref = fits[0]
    if ref is not None:
        for i, (row, fl) in enumerate(zip(rows, found, strict=True)):
            if fits[i] is None:
                continue
            pos = np.array([f.position for f in fl])
            jr = (pos - ref[0]) / ref[1]
            d = pos - (ref[0] + ref[1] * np.round(jr)) - (snd.zc_at[i] - snd.zc_at[0])
            rel = np.unwrap((d + period / 2) % period - period / 2, period=period)  # in (-P/2, P/2] at first
            if i == 0:
                rel = np.zeros_like(rel)  # the reference, exactly
            slope, icpt = np.polyfit(pos, rel, 1)
            row["offset_vs_first_samples"] = float(icpt + slope * len(y) / 2)  # at the capture's centre
            row["drift_vs_first_ppm"] = float(slope * 1e6)
            series[bench.transmitter_uris[i]] = (pos / fs, rel, float(icpt), float(slope * fs))
    summary: dict[str, Any] = {
        "mode": "cyclic: offsets relative to the first transmitter, drift from the buffer spacing",
        "buffer_samples": period,
        "span_s": len(y) / fs,
        "max_abs_drift_ppm": max((abs(r["drift_ppm"]) for r in rows if "drift_ppm" in r), default=None),
    }
    if drift_errors:
        summary["max_drift_error_vs_truth_ppm"] = max(drift_errors)
    notes.append(
        "cyclic bench: the offsets between buffers change whenever they restart, so only the drift goes into the "
        "profile; the cyclic round protocol measures the offsets each round"
    )
    if series:
        _plot_offsets(out.figure_path("timing_offsets"), series, "buffer offset relative to the first transmitter",
                      "offset vs first transmitter (samples)")
    return ProcedureResult("timing", rows, summary, profile, notes)


def _truth_sample_clock_ppm(bench: Bench, index: int, true_end: float) -> float:
    """The transmitter's buffer spacing on the receiver (ppm of the period) from the oscillators."""
    assert bench.air is not None
    o_tx = bench.air.oscillator(bench.air_name(bench.transmitters[index]))
    o_rx = bench.air.oscillator(bench.air_name(bench.receiver))
    s_tx, s_rx = float(o_tx.sample_clock_ppm_at(true_end)), float(o_rx.sample_clock_ppm_at(true_end))
    return ((1 + 1e-6 * s_rx) / (1 + 1e-6 * s_tx) - 1) * 1e6


def _plot_offsets(path: Any, series: dict[str, tuple[np.ndarray, np.ndarray, float, float]], title: str, ylabel: str) -> None:
    """Offset against elapsed time per transmitter with its fitted line; residuals below."""
    plt = plots._plt()
    fig, (ax, res) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    for label, (t, o, icpt, rate) in series.items():
        line = ax.plot(t, o, "o", ms=4, label=label)[0]
        tt = np.linspace(t[0], t[-1], 50)
        ax.plot(tt, icpt + rate * tt, "-", lw=1, color=line.get_color())
        res.plot(t, o - (icpt + rate * t), "o-", ms=3, lw=0.8, color=line.get_color())
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    res.set_xlabel("time (s): since the first measurement (timed), in the capture (cyclic)")
    res.set_ylabel("residual (samples)")
    res.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(bench: Bench, out: ProcedureOutput, options: Options) -> ProcedureResult:
    bench.require_transmitters("timing")
    if bench.timed:
        return _timed_result(bench, out, options, measure_timed(bench, out, options))
    return _cyclic(bench, out, options)
