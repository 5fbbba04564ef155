"""Per-client channel estimation from the code-orthogonal sounding frame.

The receiver drops the cyclic prefix and correlates each period of the received pilot circularly
with the base Zadoff-Chu sequence (one FFT each way). Because the sequence's periodic
autocorrelation is a perfect impulse, bin m holds sum_k h_k[m - k*shift]: client k's impulse
response appears in its own window, and bins outside every window hold only noise (variance
noise_power/N), which gives the noise estimate.

Per client the window gives: the integer delay (strongest bin), the fractional delay (from the
ratio of the strongest bin to its larger neighbour: for a band-limited delay the response is a
sinc, and sinc(1 - f)/sinc(f) = f/(1 - f)), the whole tap vector (for OFDM's per-subcarrier
channel), and, when the pilot has two or more periods, the carrier frequency offset from the
phase advance of the response from one period to the next (unambiguous within +-1/(2N) cycles per
sample). Gains are referred to local time 0 = the scheduled start of the sounding burst, with the
measured CFO removed, so that a transmitter that corrects that CFO with a phase reference at the
same instant arrives with exactly that gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from airfl.modem.frame import PRECURSOR, SoundingLayout


@dataclass(frozen=True)
class ChannelEstimates:
    """What the receiver learnt from one sounding.

    gains: complex gain per client at local time 0 (unit-amplitude pilot => this is h_k), after
        removing the fractional-delay loss (the gain a fractionally aligned transmission sees).
    delays: integer delay per client (samples), from the scheduled sounding time.
    fractional: fractional part of each delay (samples, in [-0.5, 0.5]); total = delays + fractional.
    cfo: residual carrier frequency offset per client (cycles per sample; 0 when repeats == 1).
    taps: per client, the impulse response in bins delays-PRECURSOR .. cp (index 0 = lag -PRECURSOR),
        referred to local time 0 like `gains`.
    response / response_lags: per client, a wider window of the response (K, W) at lags
        response_lags (samples) relative to its integer delay: for per-subcarrier channels.
    noise_power: complex noise power per sample (same units as the samples squared).
    snr_db: per-client receive SNR for a unit-power transmission, 10*log10(|h_k|^2/noise_power).
    """

    gains: np.ndarray
    delays: np.ndarray
    noise_power: float
    snr_db: np.ndarray
    fractional: np.ndarray
    cfo: np.ndarray
    taps: np.ndarray
    response: np.ndarray | None = None
    response_lags: np.ndarray | None = None


def fractional_offset(left: np.ndarray, peak: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Sub-sample position of a sinc-shaped response from its peak bin and the two neighbours.

    Returns f in [-0.5, 0.5]: the true peak lies at peak_index + f. For an ideal sinc,
    sinc(1-f)/sinc(f) = f/(1-f) and sinc(1+f)/sinc(f) = -f/(1+f), so q = Re((R - L)/P) = 2f/(1-f^2)
    and f = (sqrt(1+q^2) - 1)/q: exact, and continuous through f = 0 (choosing the larger
    neighbour instead jumps by 2|f| when noise or a neighbour's tail flips which side is larger).
    """
    p = np.asarray(peak, dtype=np.complex128)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.real((np.asarray(right) - np.asarray(left)) / p)
        q = np.where(np.abs(p) > 0, q, 0.0)
        f = np.where(np.abs(q) > 1e-12, (np.sqrt(1.0 + q * q) - 1.0) / q, q / 2.0)
    return np.clip(f, -0.5, 0.5)


def _sinc_gain(f: np.ndarray) -> np.ndarray:
    return np.sinc(f)


def estimate_channels(
    window: np.ndarray, layout: SoundingLayout, pilot_amplitude: float = 1.0
) -> ChannelEstimates:
    """Estimate every client's gain, delay (integer and fractional), CFO and taps from the sounding.

    window: the received samples starting exactly at the scheduled sounding time, at least
        layout.burst_length long.
    pilot_amplitude: the amplitude each client sent its pilot with (estimates are divided by it).
    """
    n = layout.length
    rx = np.asarray(window, dtype=np.complex128)
    if len(rx) < layout.burst_length:
        raise ValueError(f"sounding window has {len(rx)} samples; it needs cp + N*repeats = {layout.burst_length}")
    periods = rx[layout.cp : layout.cp + layout.repeats * n].reshape(layout.repeats, n)
    base_f = np.conj(np.fft.fft(layout.base))
    corr = np.fft.ifft(np.fft.fft(periods, axis=1) * base_f[None, :], axis=1) / n  # (repeats, N)

    k = layout.n_clients
    starts = np.arange(k) * layout.shift
    width = layout.cp + 1 + PRECURSOR
    index = (starts[:, None] - PRECURSOR + np.arange(width)[None, :]) % n  # (K, width)
    noise_mask = np.ones(n, dtype=bool)
    noise_mask[(starts[:, None] - PRECURSOR + np.arange(width + 1)[None, :]) % n] = False

    # CFO from the phase advance between consecutive periods, weighted by every tap's energy.
    if layout.repeats >= 2:
        windows = corr[:, index]  # (repeats, K, width)
        advance = np.sum(windows[1:] * np.conj(windows[:-1]), axis=(0, 2))
        cfo = np.angle(advance) / (2 * np.pi * n)
    else:
        cfo = np.zeros(k)
    # Refer every period to local time 0: period r's correlation carries the CFO phase accumulated
    # at its centre, cp + r*N + (N-1)/2 samples after the burst start.
    centres = layout.cp + np.arange(layout.repeats) * n + (n - 1) / 2.0
    derotate = np.exp(-2j * np.pi * cfo[None, :] * centres[:, None])  # (repeats, K)
    taps = np.mean(corr[:, index] * derotate[:, :, None], axis=0) / pilot_amplitude  # (K, width)

    peak = np.argmax(np.abs(taps), axis=1)
    rows = np.arange(k)
    # neighbours of the peak, reaching one bin outside the window at its edges
    edge_index = (starts[:, None] - PRECURSOR + np.stack([peak - 1, peak + 1], axis=1)) % n
    edges = np.mean(corr[:, edge_index] * derotate[:, :, None], axis=0) / pilot_amplitude
    frac = fractional_offset(edges[:, 0], taps[rows, peak], edges[:, 1])
    gains = taps[rows, peak] / _sinc_gain(frac)
    delays = (peak - PRECURSOR).astype(np.int64)
    # A CFO of nu cycles/sample moves a root-1 Zadoff-Chu correlation peak by -nu*N samples (its
    # delay-Doppler coupling): the shape in the bins is what it is (gains above use it), but the
    # physical delay is the apparent one plus nu*N.
    apparent = frac
    frac = apparent + cfo * n

    # Wide response for frequency-selective use (OFDM): a fractional delay, or the converters'
    # band edge, spreads a response into slowly decaying tails that the cp-long window above cuts;
    # this window spans most of the client's share of the correlation, centred on its delay.
    half = max(PRECURSOR + 1, (layout.shift - layout.cp // 2) // 2)
    lags = np.arange(-half, half + 1)
    wide_index = (starts[:, None] + delays[:, None] + lags[None, :]) % n
    # The transmitters' LO leakage (a DC offset while they send) correlates with the sequence into
    # the same value in every bin of every period; over a wide window that constant becomes a bump
    # on the subcarriers next to DC. Measure it on the noise-only bins, averaged over the periods
    # (a client's leakage under residual CFO rotates between periods, a DC does not), and remove it.
    dc_bias = complex(corr[:, noise_mask].mean()) if layout.repeats >= 2 and noise_mask.any() else 0j
    wide = np.einsum("rkw,rk->kw", corr[:, wide_index] - dc_bias, derotate) / (layout.repeats * pilot_amplitude)

    noise_bins = corr[:, noise_mask]
    noise_power = float(n * np.mean(np.abs(noise_bins) ** 2)) if noise_bins.size else 0.0

    with np.errstate(divide="ignore"):
        snr_db = 10 * np.log10(np.abs(gains) ** 2 / noise_power) if noise_power > 0 else np.full(k, np.inf)
    return ChannelEstimates(
        gains=gains, delays=delays, noise_power=noise_power, snr_db=snr_db, fractional=frac, cfo=cfo, taps=taps,
        response=wide,
        response_lags=lags,
    )
