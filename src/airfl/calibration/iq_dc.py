"""IQ imbalance and DC offset of the receiver and of each transmitter, told apart.

Model (radio/frontend.py; the profile stores values in this convention): a chain with amplitude
imbalance g (dB) and phase skew phi (deg) maps x to mu*x + nu*conj(x), i.e. I' = I and
Q' = G (Q cos phi - I sin phi), G = 10^(g/20); a tone at f gets an image at -f, |nu/mu|^2 below it.
The transmitter adds its DC (LO leakage) before its gain, the receiver adds its DC at the ADC.
DC values are complex, in full-scale units at the converter (the DAC for TX, the ADC for RX), shown
in dBFS as 20*log10|dc|.

The difficulty is separating the two ends: a tone sent through TX and RX imbalance shows one image,
the sum of both. The procedure therefore measures the receiver first, with nothing transmitted:

1. Receiver, from its own thermal noise (`n_quiet` samples, every transmitter silent). RX DC is the
   mean. Thermal noise enters before the mixer and is proper (circular: E[I^2] = E[Q^2],
   E[IQ] = 0), so any impropriety after removing the mean is the RX mixer's:
       G^2 = E[Q'^2] / E[I'^2],    sin(phi) = -E[I'Q'] / sqrt(E[I'^2] E[Q'^2]).
   Standard errors are 8.7/sqrt(N) dB and 1/sqrt(N) rad (0.017 dB and 0.11 deg at 2^18 samples),
   independent of the carrier offset. It needs the thermal noise to dominate the ADC's floor
   (noise_floor's recommended gain does that; a note flags it otherwise).
2. Each transmitter, from a tone x = A exp(j w0 n) (preamble first, to find it) received through the
   receiver corrected by step 1. What arrives is
       h(n) e^{j Dn} [ mu_t A e^{j w0 n} + nu_t A e^{-j w0 n} + d_t ] + noise
   where h(n) is the channel and D the carrier offset. The tone, its TX image and the LO leakage
   share h(n) and D, so their ratios do not depend on the channel: in each segment of
   `segment_samples` (an integer number of tone periods, so the three are orthogonal) the receiver
   fits their complex amplitudes a1, a2, a0 by least squares at w0 + D, -w0 + D and D (plus a slope
   term on the tone that absorbs drift of D within the segment), with n counted on the
   transmitter's clock from the detected preamble. Then
       nu_t / mu_t = a2 / a1,        d_t = (a0 / a1) * mu_t * A,
   and mu_t + conj(nu_t) = 1 gives mu_t = (1 - conj(rho)) / (1 - |rho|^2), G e^{-j phi} = 2 mu_t - 1.
   Segments that straddle a change of the channel (a fading block, someone walking past) leave a
   large residual and are dropped (residual > 2x the median); the rest are combined with weights
   |a1|^2. A residual RX image would sit at -w0 - D, away from the TX image at -w0 + D unless D ~ 0,
   where it adds at most the RX estimate's error. A small w0 (default ~2 kHz) keeps the sub-sample
   timing uncertainty (phase error 2 w0 tau on the image ratio) negligible.
3. Check: the transmitter sends the tone pre-corrected with its estimate (x' = T^-1(x - d_t)), the
   receiver corrects with its own; the residual image and LO leakage (dBc) are what a run would
   see. This check needs no truth, so it is the number to trust on real radios.

The preamble is found by correlation after removing the carrier offset the tone shows (the
strongest line once the mean is removed), so the bursts are found the same way on a timed bench
and on a cyclic bench (stock Pluto), where the tone repeats from an unknown offset; nothing depends
on where the capture started. On real radios the TX LO leaks even when the buffer is silent: it
then appears in the quiet capture at the carrier offset D and averages out of the RX DC over many
cycles of D (keep n_quiet >> sample_rate / |D|). The model is frequency-flat (one mu, nu per
chain), like the loopback's; a receiver whose imbalance changes across the band (analog filter
mismatch, wide bandwidths) gets its band average from the noise and its value at w0 from the tone.
The profile's values describe the chains at the gains used here (an AD9361's tracking calibrations
may change them with gain or temperature: re-run after changing either).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from airfl.calibration import plots
from airfl.calibration.bench import Bench, Capture
from airfl.calibration.locate import BurstPosition, clipped_fraction, locate_burst, short_name, strongest_tone
from airfl.calibration.output import ProcedureOutput, ProcedureResult
from airfl.modem.sequences import zadoff_chu
from airfl.radio.frontend import iq_coefficients
from airfl.radio.recording import Annotation

SUMMARY = "IQ imbalance (dB, deg) and DC offset of the receiver and of each transmitter, told apart"

PREAMBLE_LENGTH = 127
PREAMBLE_ROOT = 5
GUARD = 64  # samples of silence after the preamble and after the tone; also the tone's settling margin


@dataclass(frozen=True)
class Options:
    """n_quiet: samples of receiver noise for RX DC and IQ (standard errors 8.7/sqrt(n) dB, 1/sqrt(n) rad).
    tone_offset_hz: frequency of the test tone (Hz), snapped to a whole number of periods per segment.
    segment_samples: samples per least-squares segment; n_segments: segments in the tone.
    tone_amplitude: tone amplitude at the DAC (full-scale units); lowered by 6 dB steps if the ADC clips.
    tx_gain_db: transmit gain for the tone (dB, <= 0); None keeps each transmitter's current gain.
    rx_gain_db: receive gain for every capture (dB); None keeps the bench's.
    verify: send a pre-corrected tone and report the residual image and LO leakage."""

    n_quiet: int = 1 << 18
    tone_offset_hz: float = 2000.0
    segment_samples: int = 4096
    n_segments: int = 16
    tone_amplitude: float = 0.25
    tx_gain_db: float | None = None
    rx_gain_db: float | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        if self.n_quiet < 4096:
            raise ValueError(f"n_quiet must be >= 4096 samples for a usable RX IQ estimate, got {self.n_quiet}")
        if self.segment_samples < 256:
            raise ValueError(f"segment_samples must be >= 256, got {self.segment_samples}")
        if self.n_segments < 3:
            raise ValueError(f"n_segments must be >= 3 (bad segments are voted out), got {self.n_segments}")
        if not 0.0 < self.tone_amplitude <= 0.7:
            raise ValueError(f"tone_amplitude must be in (0, 0.7] full-scale units (room for DC and image), got {self.tone_amplitude}")
        if not math.isfinite(self.tone_offset_hz) or self.tone_offset_hz == 0:
            raise ValueError(f"tone_offset_hz must be a finite non-zero frequency (Hz), got {self.tone_offset_hz}")
        if self.tx_gain_db is not None and self.tx_gain_db > 0:
            raise ValueError(f"tx_gain_db must be <= 0 dB (an attenuation), got {self.tx_gain_db}")


# -- the receiver ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IqEstimate:
    """IQ imbalance of one chain: amplitude (dB), phase skew (deg), and its (mu, nu)."""

    gain_db: float
    phase_deg: float

    @property
    def coefficients(self) -> tuple[complex, complex]:
        return iq_coefficients(self.gain_db, self.phase_deg)

    @property
    def image_dbc(self) -> float:
        """Image of a tone relative to the tone, 10*log10|nu/mu|^2 (dBc; -inf when balanced)."""
        mu, nu = self.coefficients
        return 10 * math.log10(abs(nu / mu) ** 2) if nu != 0 else float("-inf")


def rx_from_noise(quiet: np.ndarray) -> tuple[complex, IqEstimate, float]:
    """(RX DC, RX IQ imbalance, noise power) from samples received while nobody transmits.

    The noise is proper before the mixer, so the rails' second moments give G and phi directly.
    """
    y = np.asarray(quiet, dtype=np.complex128)
    dc = complex(np.mean(y))
    z = y - dc
    ii = float(np.mean(z.real * z.real))
    qq = float(np.mean(z.imag * z.imag))
    iq = float(np.mean(z.real * z.imag))
    if ii <= 0 or qq <= 0:
        return dc, IqEstimate(0.0, 0.0), 0.0
    gain_db = 10 * math.log10(qq / ii)
    phase_deg = math.degrees(math.asin(max(-1.0, min(1.0, -iq / math.sqrt(ii * qq)))))
    return dc, IqEstimate(gain_db, phase_deg), ii + qq


def undo_iq(y: np.ndarray, iq: IqEstimate) -> np.ndarray:
    """Invert y = mu*x + nu*conj(x): x = (conj(mu)*y - nu*conj(y)) / (|mu|^2 - |nu|^2)."""
    mu, nu = iq.coefficients
    return (np.conj(mu) * y - nu * np.conj(y)) / (abs(mu) ** 2 - abs(nu) ** 2)


def correct_rx(samples: np.ndarray, dc: complex, iq: IqEstimate) -> np.ndarray:
    """Remove the receiver's DC (added at the ADC, so first) and then its IQ imbalance."""
    return undo_iq(np.asarray(samples, dtype=np.complex128) - dc, iq)


# -- a transmitter -----------------------------------------------------------------------------------


def iq_from_image_ratio(rho: complex) -> IqEstimate:
    """The (gain dB, phase deg) whose nu/mu is `rho`, using mu + conj(nu) = 1 of the model."""
    mu = (1 - np.conj(rho)) / (1 - abs(rho) ** 2)
    w = 2 * mu - 1  # G e^{-j phi}
    return IqEstimate(float(20 * math.log10(abs(w))), float(-math.degrees(np.angle(w))))


@dataclass(frozen=True)
class ToneFit:
    """What one received tone told about its transmitter.

    rho: TX image over tone (nu_t/mu_t). dc_over_tone: LO leakage over tone (d_t / (mu_t A)).
    cfo: carrier offset (cycles/sample). tone: complex tone amplitude per segment (a1).
    used: which segments were kept. residual: residual power per segment (full-scale units^2).
    """

    rho: complex
    dc_over_tone: complex
    cfo: float
    tone: np.ndarray
    used: np.ndarray
    residual: np.ndarray
    snr_db: float


def tone_frequency(sample_rate_hz: float, offset_hz: float, segment_samples: int) -> tuple[float, int]:
    """The tone (cycles/sample) nearest `offset_hz` with a whole number k != 0 of periods per segment."""
    k = int(round(offset_hz / sample_rate_hz * segment_samples))
    if k == 0:
        k = 1 if offset_hz > 0 else -1
    k = max(-segment_samples // 4, min(segment_samples // 4, k))
    return k / segment_samples, k


def tone_burst(amplitude: float, f0: float, n_tone: int) -> np.ndarray:
    """[preamble | guard | tone of n_tone samples | guard] at `amplitude` (full-scale units)."""
    n = np.arange(n_tone)
    return np.concatenate(
        [
            amplitude * zadoff_chu(PREAMBLE_LENGTH, PREAMBLE_ROOT),
            np.zeros(GUARD, dtype=np.complex128),
            amplitude * np.exp(2j * np.pi * f0 * n),
            np.zeros(GUARD, dtype=np.complex128),
        ]
    )


def fit_tone(y: np.ndarray, tone_start: int, f0: float, segment_samples: int, n_segments: int) -> ToneFit:
    """Fit tone, TX image and LO leakage per segment (see the module docstring, step 2).

    y: RX-corrected capture; tone_start: index of the tone's first sample (n = 0 on the TX clock).
    The first and last GUARD/2 samples of the tone are skipped (filter and delay transients).
    """
    first = tone_start + GUARD // 2
    span = y[first : first + segment_samples * n_segments]
    if len(span) < segment_samples * n_segments:
        raise ValueError("the capture ends before the tone does")
    cfo = strongest_tone(span) - f0
    cfo = (cfo + 0.5) % 1.0 - 0.5
    a1 = np.empty(n_segments, dtype=np.complex128)
    a2 = np.empty(n_segments, dtype=np.complex128)
    a0 = np.empty(n_segments, dtype=np.complex128)
    residual = np.empty(n_segments)
    m_local = np.arange(segment_samples)
    t = (m_local - (segment_samples - 1) / 2) / segment_samples
    for s in range(n_segments):
        m = first + s * segment_samples + m_local  # capture index
        n_tx = m - tone_start  # transmitter's tone index
        rot = np.exp(2j * np.pi * cfo * m)
        e1 = np.exp(2j * np.pi * f0 * n_tx) * rot
        e2 = np.exp(-2j * np.pi * f0 * n_tx) * rot
        cols = np.stack([e1, t * e1, e2, rot], axis=1)
        seg = y[m]
        coef, *_ = np.linalg.lstsq(cols, seg, rcond=None)
        a1[s], a2[s], a0[s] = coef[0], coef[2], coef[3]
        residual[s] = float(np.mean(np.abs(seg - cols @ coef) ** 2))
    used = residual <= 2.0 * np.median(residual)
    w = np.abs(a1[used]) ** 2
    rho = complex(np.sum(a2[used] * np.conj(a1[used])) / np.sum(w))
    dc_ratio = complex(np.sum(a0[used] * np.conj(a1[used])) / np.sum(w))
    snr = float(np.mean(w) / np.mean(residual[used])) if np.mean(residual[used]) > 0 else float("inf")
    return ToneFit(rho, dc_ratio, float(cfo), a1, used, residual, 10 * math.log10(snr) if snr > 0 else float("-inf"))


def precorrect(x: np.ndarray, iq: IqEstimate, dc: complex) -> np.ndarray:
    """The burst to send so that a chain with this IQ imbalance and DC emits x: T^-1(x - dc)."""
    return undo_iq(np.asarray(x, dtype=np.complex128) - dc, iq)


def normalised_tone(y: np.ndarray, tone_start: int, fit: ToneFit, segment_samples: int, smooth: int = 16) -> np.ndarray:
    """For the constellation: the tone region de-rotated by the carrier offset, averaged over
    `smooth` samples (the tone moves little in that time; the noise drops), and divided by each kept
    segment's tone amplitude: a unit circle for a perfect chain, an ellipse (image) shifted by the
    LO leakage otherwise."""
    out = []
    first = tone_start + GUARD // 2
    kernel = np.ones(smooth) / smooth
    for s in np.flatnonzero(fit.used):
        m = first + s * segment_samples + np.arange(segment_samples)
        z = np.convolve(y[m] * np.exp(-2j * np.pi * fit.cfo * m), kernel, mode="valid")
        out.append(z[::smooth] / fit.tone[s])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.complex128)


def tone_view(y: np.ndarray, f0: float, cfo: float, sample_rate_hz: float) -> tuple[np.ndarray, float, str]:
    """The tone region zoomed for a spectrum plot: around the carrier when the carrier offset is
    small (tone, TX image and LO leakage near +-f0 + D and D, RX image and DC at -f0 - D and 0 all
    show), else with the offset D removed and zoomed on the transmitter's side (tone at +f0, TX image
    at -f0, LO leakage at 0). Returns (samples, rate Hz, what the frequency axis is)."""
    if abs(cfo) <= 4 * abs(f0):
        z, rate = zoom(y, sample_rate_hz, 2.0 * (abs(f0) + abs(cfo)) * sample_rate_hz)
        return z, rate, "around the receiver's carrier"
    derotated = np.asarray(y) * np.exp(-2j * np.pi * cfo * np.arange(len(y)))
    z, rate = zoom(derotated, sample_rate_hz, 4.0 * abs(f0) * sample_rate_hz)
    return z, rate, f"carrier offset {cfo * sample_rate_hz:.0f} Hz removed"


def zoom(y: np.ndarray, sample_rate_hz: float, span_hz: float) -> tuple[np.ndarray, float]:
    """Low-pass and decimate `y` (scipy.signal.resample_poly) so its spectrum spans about +-span_hz:
    the tone, its images and the DC sit within a few kHz of the carrier. Returns (samples, rate Hz)."""
    from scipy.signal import resample_poly  # noqa: PLC0415

    factor = max(1, int(sample_rate_hz / (2.5 * span_hz)))
    if factor == 1:
        return np.asarray(y), sample_rate_hz
    return resample_poly(np.asarray(y, dtype=np.complex128), 1, factor), sample_rate_hz / factor


def db(x: float) -> float:
    return float(10 * math.log10(x)) if x > 0 else float("-inf")


def dc_dbfs(dc: complex) -> float:
    return db(abs(dc) ** 2)


def _capture_tone(
    bench: Bench, index: int, burst: np.ndarray, f0: float, adc_bits: int | None
) -> tuple[Capture, BurstPosition | None, float]:
    """Send the tone burst and capture a window holding one complete copy (two periods if cyclic);
    find it by its preamble after removing the carrier offset the tone shows."""
    n = len(burst) + 256 if bench.timed else 2 * len(burst) + 256
    cap = bench.send_and_capture({index: burst}, n, pre=128)
    cfo = strongest_tone(cap.samples) - f0
    where = locate_burst(cap, burst[:PREAMBLE_LENGTH], len(burst), cfo=(cfo + 0.5) % 1.0 - 0.5)
    return cap, where, clipped_fraction(cap.samples, adc_bits)


def run(bench: Bench, out: ProcedureOutput, options: Options) -> ProcedureResult:
    original_rx = bench.config.rx_gain_db
    original_tx = list(bench.tx_gains_db)
    adc_bits = bench.receiver.capabilities.adc_bits
    f0, _ = tone_frequency(bench.sample_rate_hz, options.tone_offset_hz, options.segment_samples)
    n_tone = options.segment_samples * options.n_segments + GUARD
    rows: list[dict[str, object]] = []
    notes: list[str] = []
    profile: dict[str, dict[str, object]] = {}
    summary: dict[str, object] = {"tone_offset_hz": f0 * bench.sample_rate_hz}
    air = bench.air
    truth_rows: list[tuple[str, float, float]] = []  # (label, gain dB, phase deg) per chain, emulated only
    if not bench.transmitters:
        notes.append("no transmitter on the bench: only the receiver was measured (add --tx URI for TX IQ and LO leakage)")
    try:
        if options.rx_gain_db is not None:
            bench.set_rx_gain(options.rx_gain_db)
        # 1. The receiver, from its noise.
        quiet = bench.listen(options.n_quiet)
        rx_dc, rx_iq, noise = rx_from_noise(quiet.samples)
        out.save_capture(
            "rx_quiet",
            quiet,
            bench,
            description="receiver noise, transmitters silent: RX DC (mean) and RX IQ (noise impropriety)",
            annotations=[Annotation(0, len(quiet.samples), "noise", "every transmitter silent")],
            extra={"rx_gain_db": bench.config.rx_gain_db},
        )
        q_floor = (2.0 / (1 << adc_bits)) ** 2 / 6.0 if adc_bits else 0.0
        if q_floor > 0 and noise < 10 * q_floor:
            notes.append(
                f"the receiver noise ({db(noise):.1f} dBFS) is within 10 dB of the ADC floor ({db(q_floor):.1f} dBFS): "
                "the RX IQ estimate is diluted towards 0; raise the rx gain (noise_floor recommends one)"
            )
        row: dict[str, object] = {
            "radio": short_name(bench.receiver_uri),
            "chain": "rx",
            "gain_dB": rx_iq.gain_db,
            "phase_deg": rx_iq.phase_deg,
            "image_dBc": rx_iq.image_dbc,
            "dc_dBFS": dc_dbfs(rx_dc),
            "dc_deg": math.degrees(np.angle(rx_dc)),
            "image_after_dBc": None,  # (the check after correction is a transmitter's)
            "lo_after_dBc": None,
        }
        summary["rx_noise_dbfs"] = db(noise)
        if air is not None:
            fe = air.frontend(bench.air_name(bench.receiver))
            row |= {
                "true_gain_dB": fe.rx_iq_gain_db,
                "true_phase_deg": fe.rx_iq_phase_deg,
                "true_dc_dBFS": dc_dbfs(fe.rx_dc),
                "true_dc_deg": math.degrees(np.angle(fe.rx_dc)) if fe.rx_dc != 0 else None,
            }
            truth_rows.append(("rx " + short_name(bench.receiver_uri), fe.rx_iq_gain_db, fe.rx_iq_phase_deg))
        rows.append(row)
        profile[bench.receiver_uri] = {
            "rx_iq": {"gain_db": rx_iq.gain_db, "phase_deg": rx_iq.phase_deg},
            "rx_dc": (rx_dc.real, rx_dc.imag),
        }
        estimates: list[tuple[str, IqEstimate]] = [("rx " + short_name(bench.receiver_uri), rx_iq)]

        # 2. Each transmitter, from a tone through the corrected receiver.
        for i, uri in enumerate(bench.transmitter_uris):
            label = short_name(uri)
            if options.tx_gain_db is not None:
                bench.set_tx_gain(i, options.tx_gain_db)
            amplitude = options.tone_amplitude
            for _attempt in range(4):
                burst = tone_burst(amplitude, f0, n_tone)
                cap, where, clipped = _capture_tone(bench, i, burst, f0, adc_bits)
                if clipped == 0 or amplitude < 0.01:
                    break
                amplitude /= 2.0
            if where is None:
                notes.append(f"{uri}: tone burst not found in the capture (too weak?); raise its tx gain or the rx gain")
                rows.append({"radio": label, "chain": "tx"})
                continue
            if clipped > 0:
                notes.append(f"{uri}: {100 * clipped:.2g}% of the samples clipped at the ADC even at tone amplitude {amplitude:.3g}; lower the rx gain")
            tone_start = where.index + PREAMBLE_LENGTH + GUARD
            y = correct_rx(cap.samples, rx_dc, rx_iq)
            fit = fit_tone(y, tone_start, f0, options.segment_samples, options.n_segments)
            tx_iq = iq_from_image_ratio(fit.rho)
            mu_t, _ = tx_iq.coefficients
            tx_dc = complex(fit.dc_over_tone * mu_t * amplitude)
            out.save_capture(
                f"tx_tone_{label}",
                cap,
                bench,
                description=f"tone at {f0 * bench.sample_rate_hz:.1f} Hz from {uri}, amplitude {amplitude:.3g}: TX image and LO leakage",
                annotations=[
                    Annotation(where.index, PREAMBLE_LENGTH, "preamble", f"Zadoff-Chu root {PREAMBLE_ROOT} ({where.how})"),
                    Annotation(tone_start, n_tone - GUARD, "tone", f"{f0 * bench.sample_rate_hz:.1f} Hz, amplitude {amplitude:.3g}"),
                ],
                extra={"transmitter": uri, "tone_amplitude": amplitude, "tone_cycles_per_sample": f0,
                       "tx_gain_db": bench.tx_gains_db[i], "rx_gain_db": bench.config.rx_gain_db},
            )
            row = {
                "radio": label,
                "chain": "tx",
                "gain_dB": tx_iq.gain_db,
                "phase_deg": tx_iq.phase_deg,
                "image_dBc": tx_iq.image_dbc,
                "dc_dBFS": dc_dbfs(tx_dc),
                "dc_deg": math.degrees(np.angle(tx_dc)),
                "image_after_dBc": None,
                "lo_after_dBc": None,
            }
            summary[f"{label}.cfo_hz"] = fit.cfo * bench.sample_rate_hz
            summary[f"{label}.segments_used"] = int(np.count_nonzero(fit.used))
            summary[f"{label}.tone_snr_db"] = fit.snr_db
            summary[f"{label}.lo_leak_dbc"] = db(abs(fit.dc_over_tone) ** 2)
            # 3. Check: the pre-corrected tone through the corrected receiver.
            if options.verify:
                burst_pc = np.concatenate([burst[: PREAMBLE_LENGTH + GUARD], precorrect(burst[PREAMBLE_LENGTH + GUARD :], tx_iq, tx_dc)])
                burst_pc[-GUARD:] = 0.0
                cap2, where2, _ = _capture_tone(bench, i, burst_pc, f0, adc_bits)
                if where2 is not None:
                    start2 = where2.index + PREAMBLE_LENGTH + GUARD
                    y2 = correct_rx(cap2.samples, rx_dc, rx_iq)
                    fit2 = fit_tone(y2, start2, f0, options.segment_samples, options.n_segments)
                    row["image_after_dBc"] = db(abs(fit2.rho) ** 2)
                    row["lo_after_dBc"] = db(abs(fit2.dc_over_tone) ** 2)
                    out.save_capture(
                        f"tx_tone_corrected_{label}",
                        cap2,
                        bench,
                        description=f"the same tone from {uri}, pre-corrected with the TX estimate: residual image and LO leakage",
                        annotations=[
                            Annotation(where2.index, PREAMBLE_LENGTH, "preamble", f"Zadoff-Chu root {PREAMBLE_ROOT} ({where2.how})"),
                            Annotation(start2, n_tone - GUARD, "tone", "pre-corrected"),
                        ],
                        extra={"transmitter": uri, "tone_amplitude": amplitude, "tone_cycles_per_sample": f0,
                               "tx_iq": [tx_iq.gain_db, tx_iq.phase_deg], "tx_dc": [tx_dc.real, tx_dc.imag]},
                    )
                    z2, rate2, axis = tone_view(y2[start2 : start2 + n_tone - GUARD], f0, fit.cfo, bench.sample_rate_hz)
                    plots.spectrum(
                        out.figure_path(f"iq_spectrum_after_{label}"), z2, rate2,
                        f"{label}: pre-corrected tone, corrected receiver ({axis})", nfft=min(len(z2), 2048),
                    )
                    plots.constellation(
                        out.figure_path(f"iq_constellation_after_{label}"),
                        normalised_tone(y2, start2, fit2, options.segment_samples),
                        f"{label}: tone after correction (normalised)",
                        reference=np.exp(2j * np.pi * np.arange(64) / 64),
                    )
                else:
                    notes.append(f"{uri}: the pre-corrected tone was not found; no check")
            z1, rate1, axis = tone_view(cap.samples[tone_start : tone_start + n_tone - GUARD], f0, fit.cfo, bench.sample_rate_hz)
            plots.spectrum(
                out.figure_path(f"iq_spectrum_before_{label}"), z1, rate1,
                f"{label}: tone, images and DC as received ({axis})", nfft=min(len(z1), 2048),
            )
            plots.constellation(
                out.figure_path(f"iq_constellation_before_{label}"),
                normalised_tone(cap.samples, tone_start, fit, options.segment_samples),
                f"{label}: tone before correction (normalised)",
                reference=np.exp(2j * np.pi * np.arange(64) / 64),
            )
            if air is not None:
                fe = air.frontend(bench.air_name(bench.transmitters[i]))
                row |= {
                    "true_gain_dB": fe.tx_iq_gain_db,
                    "true_phase_deg": fe.tx_iq_phase_deg,
                    "true_dc_dBFS": dc_dbfs(fe.tx_dc),
                    "true_dc_deg": math.degrees(np.angle(fe.tx_dc)) if fe.tx_dc != 0 else None,
                }
                truth_rows.append(("tx " + label, fe.tx_iq_gain_db, fe.tx_iq_phase_deg))
            if fit.used.sum() < max(3, options.n_segments // 2):
                notes.append(f"{uri}: only {int(fit.used.sum())} of {options.n_segments} segments were steady; the link changed during the tone")
            rows.append(row)
            estimates.append(("tx " + label, tx_iq))
            profile[uri] = {
                "tx_iq": {"gain_db": tx_iq.gain_db, "phase_deg": tx_iq.phase_deg},
                "tx_dc": (tx_dc.real, tx_dc.imag),
            }
    finally:
        bench.set_rx_gain(original_rx)
        for i, g in enumerate(original_tx):
            if bench.tx_gains_db[i] != g:
                bench.set_tx_gain(i, g)

    summary["rx_iq_gain_db"] = rx_iq.gain_db
    summary["rx_iq_phase_deg"] = rx_iq.phase_deg
    summary["rx_dc_dbfs"] = dc_dbfs(rx_dc)
    if air is not None:
        done = [r for r in rows if "true_gain_dB" in r and "gain_dB" in r]
        err_gain = [abs(r["gain_dB"] - r["true_gain_dB"]) for r in done]
        err_phase = [abs(r["phase_deg"] - r["true_phase_deg"]) for r in done]
        err_dc = [abs(r["dc_dBFS"] - r["true_dc_dBFS"]) for r in done if math.isfinite(r["true_dc_dBFS"])]
        summary["max_iq_gain_error_db"] = max(err_gain) if err_gain else None
        summary["max_iq_phase_error_deg"] = max(err_phase) if err_phase else None
        summary["max_dc_error_db"] = max(err_dc) if err_dc else None
    labels = [name for name, _ in estimates]
    truth_gain = [t[1] for t in truth_rows] if air is not None else None
    truth_phase = [t[2] for t in truth_rows] if air is not None else None
    plots.estimate_vs_truth(
        out.figure_path("iq_gain"), labels, [e.gain_db for _, e in estimates], truth_gain, "amplitude imbalance (dB)",
        "IQ amplitude imbalance per chain",
    )
    plots.estimate_vs_truth(
        out.figure_path("iq_phase"), labels, [e.phase_deg for _, e in estimates], truth_phase, "phase skew (deg)",
        "IQ phase skew per chain",
    )
    return ProcedureResult("iq_dc", rows, summary, profile, notes)
