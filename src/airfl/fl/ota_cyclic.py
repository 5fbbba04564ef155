"""The cyclic timing mode: over-the-air rounds on radios without hardware time (stock Plutos).

A stock-firmware Pluto cannot schedule a burst: it can only repeat a buffer forever
(`transmit_cyclic`) and capture "now". Because every client's frame repeats with the same period P,
only the clients' *relative* alignment matters, and a client moves its frame by rotating its
buffer. One round (same interface and `RoundResult` as `OverTheAirRound`, whose modem steps it
reuses: sounding and estimation, truncated inversion, pre-equalised bursts, receive_sum):

1. Frame. Every client's buffer is one period of P samples (samples at the radios' rate):
       [ sounding (cp + R*N) | gap | region | gap ]
   The sounding is the timed round's code-orthogonal pilot (client k uses cyclic shift k, so P does
   not change from round to round). In an *alignment frame* the region holds the client's own
   identification pilot (pseudo-random QPSK); in a *payload frame* it holds the pre-equalised
   aggregation frame (single carrier or OFDM) while the sounding stays un-equalised, so every
   payload capture also re-measures each participant's timing and channel.
2. Align. The clients load alignment frames; the server captures one period "now" (the signal is
   periodic, so any P consecutive samples hold a whole frame, circularly) and finds the frame
   period in it: a circular correlation with each identification pilot says where each client's
   frame starts, whatever the offsets. A reference client (the strongest) fixes the target; once a
   client is within the sounding's window the code-orthogonal sounding gives its integer and
   fractional offset (modem.estimate_channels, exactly as in the timed round). Every client more
   than the tolerance off rotates its buffer by its offset (np.roll, and for single carrier a
   band-limited circular shift for the fraction) and re-loads; repeat until all are within the
   tolerance: a fraction of a sample for single carrier (default 0.1), inside the cyclic prefix for
   OFDM (default 1 sample, at most the 2 samples the FFT window leaves). Clients whose pilot is not
   found (a deep fade) stay silent this round.
3. Feed back from the last alignment capture's sounding, as the timed round: truncated inversion,
   weights, common scale. Single carrier: each participant also advances its payload frame by its
   measured offset (onto the grid); OFDM: it stays where it is and the per-subcarrier channel
   includes its offset. Participants load payload frames, the others an all-zero buffer (which
   keeps their buffer's phase for the next round).
4. Verify and receive. The server captures one period, finds the frame by its preamble and checks
   every participant on the sounding: a channel that changed since the feedback (fading, carrier
   drift; more than `csi_tolerance_db`) is fed back again from this capture; a participant that is
   no longer where its pre-equaliser assumes (single carrier: off the grid by more than the
   tolerance; OFDM: moved by a sample or more) is rotated back and re-loaded. Otherwise it decodes
   (modem.receive_sum / receive_sum_ofdm) unless the sum's own preamble and pilots show that the
   channel changed inside the capture, in which case it listens again.

Restart jitter. Every re-load restarts a buffer. With a seamless swap (the new buffer takes over at
the old one's phase) rotations are exact and the loop converges in one or two captures. If a
re-load moves the buffer by whole samples (`restart_jitter_samples` on the loopback; unknown on
real Plutos), alignment only converges when the jitter is below the tolerance, and a pre-equaliser
computed before a re-load is wrong after any move, for OFDM too: the loop then retries until every
moved client happens to land back, and when `max_iterations` captures have needed a rotation,
`CyclicAlignmentError` says in one sentence how far off the clients still are, how far re-loads
moved buffers beyond the commanded rotation (the measured restart jitter) and what to do.

Frequency. A buffer's repetitions arrive with a phase that advances by 2*pi*cfo*P per period; no
content of a periodic buffer can undo that, so the clients' carriers must agree in hardware. With
`cfo_correction` each client's offset is measured (a cyclic tone per client on the first round;
then the phase advance of its sounding from one period to the next in a two-period alignment
capture) and corrected by retuning its transmit LO (`set_tx_carrier_offset_hz`; a Pluto's
``tx_lo``). Phase noise and drift limit how well this holds between captures (see README).

Diagnostics (`RoundResult.diagnostics`): cyclic_alignment_iterations (captures after which some
client had to be rotated), cyclic_residual_samples (largest offset of a participant in the decoded
capture from where its pre-equaliser assumes it), cyclic_restart_jitter_samples (largest movement
beyond a commanded rotation seen this round), cyclic_csi_refreshes, cyclic_csi_change_db,
cyclic_captures, cyclic_unlocated, cyclic_retunes, common_gain_deviation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from airfl.fl.ota import OtaSettings, OverTheAirRound, RoundResult
from airfl.modem import (
    AggregationLayout,
    ChannelEstimates,
    FrameNotDetectedError,
    SoundingLayout,
    client_burst,
    client_symbols,
    common_scale,
    estimate_channels,
    receive_sum,
    symbol_count,
    truncated_inversion,
    update_statistics,
)
from airfl.modem.aircomp import client_burst_ofdm, expected_ofdm_preamble, peak_clip_level, receive_sum_ofdm
from airfl.modem.cfo import coarse_cfo
from airfl.modem.estimate import fractional_offset
from airfl.modem.frame import PRECURSOR, OfdmAggregationLayout
from airfl.modem.iq import FrontEndCorrection, estimate_dc
from airfl.modem.ofdm import OfdmLayout
from airfl.modem.power import CommonScale, PowerControl, normalise, optimal_threshold, predicted_error
from airfl.modem.sync import detect_preamble
from airfl.modem.tracking import residual_cfo_variance
from airfl.radio import PlutoRadio, Radio, RadioError

SC_TOLERANCE_SAMPLES = 0.1
"""Default single-carrier tolerance (samples): a residual of 0.1 sample costs about -16 dB NMSE."""
OFDM_TOLERANCE_SAMPLES = 1.0
"""Default OFDM tolerance (samples): an offset the receiver's FFT window absorbs (it starts
OfdmLayout.backoff = 2 samples inside the cyclic prefix), so no fractional rotation is needed."""
MIN_ID_LENGTH = 1021
"""Shortest identification pilot (samples): enough correlation gain to find a client 10 dB below
the average among ten others (peak-to-floor about 1021 * 0.1 / 10, 10 dB)."""
CONSISTENT_DEVIATION = 0.1
"""Largest |g - 1| of the sum's complex preamble gain and tracked pilot gains g (1 is what the
pre-equalisers aimed at) for a decoded capture to count as one channel, unless noise alone allows
more: a fading block that changes inside the capture leaves a sum with another gain and phase
(|g - 1| = 0.1 is a -20 dB error)."""
RETUNE_CYCLES = 0.008
"""A client's transmit LO is retuned when its carrier offset would turn it by more than this many
cycles per period: 0.05 rad, 0.1 rad over the two periods between a sounding and the payload capture."""
MAX_RETUNE_CAPTURES = 2
"""Captures per round spent re-measuring after retunes (phase noise makes sub-hertz offsets move)."""
PHASE_SLACK = 0.1
"""Phase (rad) a client may turn over one period beyond what its carrier offset explains (phase
noise) before the two periods of a capture count as two channels."""
SOUND_RATIO = 100.0
"""A client not found by its identification pilot counts as found when its own window of the
sounding holds a response this far above the noise (processing gain included, 20 dB)."""
ID_SEED = 0x1D
"""Seed word of the identification pilots (both ends generate them)."""
LOCATE_RATIO = 25.0
"""A client counts as found when its identification peak exceeds the correlation's mean power by
this factor (noise-like floor: a false peak among 10^4 lags has probability about 1e-7)."""


def pluto_set_tx_lo(radio: PlutoRadio, offset_hz: float) -> None:
    """Move a Pluto's transmit LO to its configured carrier + `offset_hz` (Hz) without touching its
    cyclic buffer (pyadi-iio's ``tx_lo``, whole hertz). Not yet tried on hardware here."""
    try:
        radio.device.tx_lo = int(round(radio.config.center_freq_hz + offset_hz))
    except Exception as exc:
        raise RadioError(f"{radio.name}: setting tx_lo failed: {exc}") from exc


class CyclicAlignmentError(RadioError):
    """The clients could not be aligned in the allowed iterations; str() is one sentence.
    restart_jitter: whether re-loads typically moved buffers by whole samples (a property of the
    radios, so every round would fail: raised) rather than noise or fading (the round fails)."""

    def __init__(self, message: str, restart_jitter: bool = True):
        super().__init__(message)
        self.restart_jitter = restart_jitter


@dataclass(frozen=True)
class CyclicSettings:
    """Knobs of the cyclic mode (samples at the radios' rate).

    tolerance_samples: largest |offset| (samples) of a client from the target at which alignment
        stops; None is 0.1 sample for single carrier and 1 sample for OFDM (inside the cyclic
        prefix: at most the FFT window's back-off of 2 samples).
    max_iterations: captures per round after which some client had to be rotated, before giving up
        (CyclicAlignmentError); the same bound applies to channel refreshes (then the round fails).
    csi_tolerance_db: largest change of a participant's channel, |h_new - h_used|^2 / |h_used|^2 (dB),
        between the capture that fed back and the payload capture.
    min_id_length: shortest identification pilot (samples).
    """

    tolerance_samples: float | None = None
    max_iterations: int = 8
    csi_tolerance_db: float = -15.0
    min_id_length: int = MIN_ID_LENGTH

    def __post_init__(self) -> None:
        if self.tolerance_samples is not None and not self.tolerance_samples > 0:
            raise ValueError(f"tolerance_samples must be > 0 samples, got {self.tolerance_samples}")
        if not 1 <= self.max_iterations <= 1000:
            raise ValueError(f"max_iterations must be in 1..1000, got {self.max_iterations}")
        if not self.csi_tolerance_db < 0:
            raise ValueError(f"csi_tolerance_db must be < 0 dB, got {self.csi_tolerance_db}")
        if self.min_id_length < 31:
            raise ValueError(f"min_id_length must be >= 31 samples, got {self.min_id_length}")


def tolerance_for(settings: OtaSettings, cyclic: CyclicSettings) -> float:
    """The alignment tolerance (samples) in force: the configured one, or the waveform's default."""
    if cyclic.tolerance_samples is not None:
        return float(cyclic.tolerance_samples)
    return SC_TOLERANCE_SAMPLES if settings.waveform == "single_carrier" else OFDM_TOLERANCE_SAMPLES


def circular_advance(x: np.ndarray, samples: float) -> np.ndarray:
    """x advanced by `samples` (any real number) as a periodic signal: y[n] = x(n + samples).
    The integer part is np.roll; the fraction is a band-limited (FFT) shift, exact for a periodic
    band-limited signal (the Nyquist bin of an even length gets the average of both directions)."""
    whole = int(np.floor(samples))
    frac = float(samples - whole)
    y = np.roll(np.asarray(x, dtype=np.complex128), -whole)
    if frac == 0.0:
        return y
    n = len(y)
    f = np.fft.fftfreq(n)
    ramp = np.exp(2j * np.pi * f * frac)
    if n % 2 == 0:
        ramp[n // 2] = np.cos(np.pi * frac)
    return np.fft.ifft(np.fft.fft(y) * ramp)


def _wrap(offset: np.ndarray | float, period: int) -> np.ndarray:
    """Offsets (samples) modulo the period, in (-period/2, period/2]."""
    return -np.mod(-np.asarray(offset, dtype=np.float64) + period / 2.0, period) + period / 2.0


@dataclass(frozen=True)
class CyclicFrame:
    """One period of a cyclic buffer (samples): [sounding | gap | region | gap].

    sounding: the code-orthogonal pilot layout (client k uses shift k); region_start: where the
    identification pilot / aggregation frame starts; id_length: identification pilot length.
    amplitude: the pilots' amplitude, sqrt(tx_power) (full-scale units).
    aggregation: the single-carrier or OFDM aggregation layout carried in payload frames.
    """

    sounding: SoundingLayout
    gap: int
    region: int
    id_length: int
    aggregation: AggregationLayout | OfdmAggregationLayout
    amplitude: float

    @property
    def region_start(self) -> int:
        return self.sounding.burst_length + self.gap

    @property
    def period(self) -> int:
        return self.region_start + self.region + self.gap

    def id_pilot(self, client: int) -> np.ndarray:
        """Client `client`'s identification pilot: a pseudo-random QPSK sequence of unit amplitude,
        seeded by the client index. Unlike a Zadoff-Chu sequence, whose correlation peak moves with a
        carrier offset (a fraction of a bin moves it by up to L/root samples), a random sequence's
        peak stays put and only weakens (sinc of the offset in bins)."""
        rng = np.random.default_rng(np.random.SeedSequence([ID_SEED, self.id_length, client]))
        return np.exp(1j * (np.pi / 2 * rng.integers(0, 4, self.id_length) + np.pi / 4))

    @cached_property
    def id_spectra(self) -> np.ndarray:
        """(K, P) FFTs of every client's identification pilot placed at region_start."""
        refs = np.zeros((self.sounding.n_clients, self.period), dtype=np.complex128)
        for k in range(self.sounding.n_clients):
            refs[k, self.region_start : self.region_start + self.id_length] = self.id_pilot(k)
        return np.fft.fft(refs, axis=1)

    def alignment_frame(self, client: int) -> np.ndarray:
        x = np.zeros(self.period, dtype=np.complex128)
        x[: self.sounding.burst_length] = self.sounding.pilot(client, self.amplitude)
        x[self.region_start : self.region_start + self.id_length] = self.amplitude * self.id_pilot(client)
        return x

    def sounding_frame(self, client: int) -> np.ndarray:
        x = np.zeros(self.period, dtype=np.complex128)
        x[: self.sounding.burst_length] = self.sounding.pilot(client, self.amplitude)
        return x

    def region_frame(self, burst: np.ndarray) -> np.ndarray:
        x = np.zeros(self.period, dtype=np.complex128)
        x[self.region_start : self.region_start + len(burst)] = burst
        return x


def cyclic_frame(settings: OtaSettings, cyclic: CyclicSettings, n_clients: int, n_values: int) -> CyclicFrame:
    """The cyclic frame of a round with `n_clients` client radios and updates of `n_values` values."""
    s = settings
    sounding = SoundingLayout(n_clients, s.sounding_cp, s.sounding_min_shift, s.sounding_min_length, s.sounding_repeats)
    n_symbols = symbol_count(n_values)
    if s.waveform == "ofdm":
        ofdm = OfdmLayout(s.ofdm_fft, s.ofdm_cp, s.ofdm_used, s.ofdm_pilot_every)
        aggregation: AggregationLayout | OfdmAggregationLayout = OfdmAggregationLayout(n_symbols, ofdm)
    else:
        aggregation = AggregationLayout(n_symbols, s.preamble_length, s.pilot_spacing)
    region = max(aggregation.burst_length, cyclic.min_id_length, n_clients + 2)
    gap = max(s.guard_samples, s.sounding_cp + 8)
    return CyclicFrame(sounding, gap, region, region, aggregation, float(np.sqrt(s.tx_power)))


def cyclic_period(settings: OtaSettings, cyclic: CyclicSettings, n_clients: int, n_values: int) -> int:
    """Samples in one period of the cyclic frame (what one capture takes)."""
    return cyclic_frame(settings, cyclic, n_clients, n_values).period


def tone_frequency(y: np.ndarray, block: int = 16) -> tuple[float, float]:
    """Frequency (cycles/sample) of a tone over the whole +-0.5 range and its standard deviation:
    the FFT peak (modem.cfo.coarse_cfo), refined by a least-squares fit of the phase of block sums
    (a periodic tone captured anywhere has no phase jump)."""
    x = np.asarray(y, dtype=np.complex128)
    nu = coarse_cfo(x)
    m = len(x) // block
    z = (x[: m * block] * np.exp(-2j * np.pi * nu * np.arange(m * block))).reshape(m, block).sum(axis=1)
    if m < 3:
        return nu, float("inf")
    centres = (np.arange(m) + 0.5) * block
    phase = np.unwrap(np.angle(z))
    slope, intercept = np.polyfit(centres, phase, 1)
    residual = phase - (slope * centres + intercept)
    sigma_phase = float(np.sqrt(np.sum(residual**2) / (m - 2)))
    sigma = sigma_phase / np.sqrt(np.sum((centres - centres.mean()) ** 2)) / (2 * np.pi)
    return float(nu + slope / (2 * np.pi)), float(sigma)


def circular(y: np.ndarray, start: int, length: int) -> np.ndarray:
    """y[start : start + length] with indices taken modulo len(y) (one period of a periodic signal)."""
    return y[(int(start) + np.arange(length)) % len(y)]


@dataclass
class _Measure:
    """What one alignment capture showed (offsets in samples relative to the target grid)."""

    offsets: dict[int, float]
    located: list[int]
    estimates: ChannelEstimates | None
    fine: set[int] = field(default_factory=set)
    cfo: dict[int, float] = field(default_factory=dict)  # cross-period carrier offset (cycles/sample)
    cfo_sigma: dict[int, float] = field(default_factory=dict)  # its standard deviation
    new_reference: bool = False  # offsets are relative to another client than the last capture's
    changed: bool = False  # the channel changed between the two periods of the capture


@dataclass
class _Feedback:
    """The feedback of one round: who transmits, with what, and the numbers to decode it."""

    pc: PowerControl
    est: ChannelEstimates  # the sounding it was computed from
    ks: list[int]  # the clients the power control was computed over (rows of pc)
    participants: list[int]
    truncated: list[int]
    weights: np.ndarray
    scale: CommonScale | None
    diagnostics: dict[str, float]


class CyclicOverTheAirRound(OverTheAirRound):
    """`OverTheAirRound` for clients that can only repeat a buffer (see the module docstring).

    clients: radios with `transmit_cyclic(samples)` and `stop_transmit()` (PlutoRadio,
    CyclicLoopbackRadio); server: any radio, asked for `receive(n, server.now())` ("now").
    """

    def __init__(
        self,
        clients: Sequence[Radio],
        server: Radio,
        sample_rate_hz: float,
        settings: OtaSettings | None = None,
        cyclic: CyclicSettings | None = None,
    ):
        super().__init__(clients, server, sample_rate_hz, settings)
        for radio in self.clients:
            if not (callable(getattr(radio, "transmit_cyclic", None)) and callable(getattr(radio, "stop_transmit", None))):
                raise ValueError(
                    f"{radio.name} has no cyclic transmit buffer (transmit_cyclic/stop_transmit), so it cannot take part "
                    'in ota.timing_mode = "cyclic"; use "timed" for radios with hardware time'
                )
        self.cyclic = cyclic or CyclicSettings()
        self.tolerance = tolerance_for(self.settings, self.cyclic)
        s = self.settings
        if not (s.waveform == "single_carrier" and s.fractional_timing):
            self.tolerance = max(self.tolerance, 0.5)  # whole-sample rotations leave up to half a sample
        if s.waveform == "single_carrier" and self.tolerance > 0.5:
            raise ValueError(
                f"cyclic tolerance {self.tolerance} samples is too loose for single carrier: it must be a fraction of "
                "a sample (<= 0.5), e.g. 0.1"
            )
        if s.waveform == "ofdm" and self.tolerance > self.ofdm.backoff:
            raise ValueError(
                f"cyclic tolerance {self.tolerance} samples must stay inside the part of the OFDM cyclic prefix the "
                f"receiver's FFT window leaves before each symbol: at most {self.ofdm.backoff} samples"
            )
        n = len(self.clients)
        self.shift = np.zeros(n)  # each client's advance of its frame (samples; circular)
        self.reference: int | None = None
        self.dc: complex | None = None
        self.carrier_hz = np.zeros(n)  # each client's transmit-LO offset in use (Hz)
        self._frame: CyclicFrame | None = None
        self._frame_key: int | None = None
        self._loaded = np.zeros(n, dtype=bool)  # a buffer of ours is running (phase known)
        self._residual: dict[int, float] = {}  # participants' offsets in the last decoded capture

    # -- frame ------------------------------------------------------------------------------
    def frame(self, n_values: int) -> CyclicFrame:
        """The frame for updates of `n_values` values (cached; a new length restarts alignment)."""
        if self._frame is None or self._frame_key != n_values:
            self._frame = cyclic_frame(self.settings, self.cyclic, len(self.clients), n_values)
            self._frame_key = n_values
            self.reference = None
        return self._frame

    @property
    def lag0(self) -> int:
        """Where the target grid puts every client's sounding response (samples into the window)."""
        return self.settings.sounding_cp // 2

    @property
    def fine_window(self) -> int:
        """Largest |offset| (samples) the code-orthogonal sounding measures unambiguously."""
        cp = self.settings.sounding_cp
        return max(1, min(self.lag0, cp - self.lag0) - PRECURSOR)

    # -- radio steps ------------------------------------------------------------------------
    def _load(self, k: int, frame_samples: np.ndarray) -> None:
        buf = circular_advance(frame_samples, float(self.shift[k])) if self.shift[k] else frame_samples
        peak = float(np.max(np.abs(buf)))
        if peak > self.settings.dac_peak:  # a band-limited shift can overshoot a little
            buf = buf * (self.settings.dac_peak / peak)
        self.clients[k].transmit_cyclic(buf)  # type: ignore[attr-defined]
        self._loaded[k] = True

    def _capture(self, frame: CyclicFrame, t: _Tally, two_periods: bool = False) -> np.ndarray:
        """One period captured "now" (two periods and a sounding to measure carrier offsets); raw:
        front-end corrections are applied by the caller."""
        n = 2 * frame.period + frame.sounding.burst_length if two_periods else frame.period
        y = self.server.receive(n, self.server.now())
        t.captures += 1
        t.airtime += n
        return y

    def _listen(self, t: int = 0) -> FrontEndCorrection:  # noqa: ARG002 - cyclic: no sample time
        """Receiver DC offset from a quiet capture, before any of our buffers is running."""
        s = self.settings
        if self.dc is None and s.dc_correction and s.quiet_samples >= 2 and not self._loaded.any():
            dc, _ = estimate_dc(self.server.receive(s.quiet_samples, self.server.now()))
            self.dc = dc
        return FrontEndCorrection(dc=self.dc or 0j)

    def _acquire_cyclic(self, clients: list[int], t: _Tally) -> None:
        """Coarse carrier offset of `clients`, one at a time with a cyclic tone, then retune their LOs."""
        s = self.settings
        length = max(s.acquisition_length, 1024)
        amp = float(np.sqrt(s.tx_power))
        for k in clients:
            radio = self.clients[k]
            radio.transmit_cyclic(np.full(length, amp, dtype=np.complex128))  # type: ignore[attr-defined]
            y = self.server.receive(length, self.server.now())
            radio.stop_transmit()  # type: ignore[attr-defined]
            t.captures += 1
            t.airtime += length
            if self.dc is not None:
                y = y - self.dc
            nu, sigma = tone_frequency(y)
            if abs(nu) > 3 * sigma:  # only a significant offset is worth a retune
                self._retune(k, nu, t)
            self.acquired[k] = True
        self._loaded[clients] = False

    def _retune(self, k: int, cfo: float, t: _Tally) -> None:
        """Move client k's transmit LO against its measured offset `cfo` (cycles/sample)."""
        radio = self.clients[k]
        setter = getattr(radio, "set_tx_carrier_offset_hz", None)
        if setter is None and isinstance(radio, PlutoRadio):
            setter = lambda offset_hz: pluto_set_tx_lo(radio, offset_hz)  # noqa: E731
        if setter is None:
            raise ValueError(
                f"{self.clients[k].name} cannot retune its transmit LO, which the cyclic mode needs to correct carrier "
                "offsets; set ota.cfo_correction = false if the carriers already agree"
            )
        self.carrier_hz[k] -= cfo * self.sample_rate_hz
        setter(float(self.carrier_hz[k]))
        t.retunes += 1

    # -- measurement ------------------------------------------------------------------------
    def _locate(self, y: np.ndarray, frame: CyclicFrame, ks: list[int]) -> tuple[dict[int, int], dict[int, float]]:
        """Frame start (capture index, mod P) and peak-to-mean ratio of each client's identification pilot."""
        spectrum = np.fft.fft(y)
        corr = np.abs(np.fft.ifft(spectrum[None, :] * np.conj(frame.id_spectra[ks]), axis=1)) ** 2
        peaks = np.argmax(corr, axis=1)
        ratio = corr[np.arange(len(ks)), peaks] / np.maximum(corr.mean(axis=1), 1e-300)
        return {k: int(p) for k, p in zip(ks, peaks)}, {k: float(r) for k, r in zip(ks, ratio)}

    def _sound(self, y: np.ndarray, frame: CyclicFrame, start: int) -> ChannelEstimates:
        window = circular(y, start - self.lag0, frame.sounding.burst_length)
        return estimate_channels(window, frame.sounding, frame.amplitude)

    def _fine_offsets(self, est: ChannelEstimates, ks: list[int]) -> dict[int, float]:
        return {k: float(est.delays[k] + est.fractional[k] - self.lag0) for k in ks}

    def _measure_alignment(self, y: np.ndarray, frame: CyclicFrame, ks: list[int]) -> _Measure:
        """Offsets of every located client from its identification pilot and the sounding (and, when
        `y` holds two periods, each one's carrier offset)."""
        period = y[: frame.period]
        starts, ratio = self._locate(period, frame, ks)
        located = [k for k in ks if ratio[k] >= LOCATE_RATIO]
        if not located:
            return _Measure({}, [], None)
        new_reference = self.reference is not None and self.reference not in located
        if self.reference not in located:
            self.reference = max(located, key=lambda k: ratio[k])
        ref = self.reference
        coarse = {k: float(_wrap(starts[k] - starts[ref], frame.period)) for k in located}
        est = self._sound(period, frame, starts[ref])
        fine = self._fine_offsets(est, ks)
        offsets: dict[int, float] = {}
        used_fine: set[int] = set()
        for k in located:
            if abs(coarse[k]) <= self.fine_window and abs(fine[k] - coarse[k]) <= 2.0:
                offsets[k] = fine[k]
                used_fine.add(k)
            else:
                offsets[k] = coarse[k]
        # A client already in place but too weak for its identification pilot (a fade) still shows
        # in its own window of the code-orthogonal sounding, with the sounding's full processing gain.
        gain = frame.amplitude**2 * frame.sounding.length * frame.sounding.repeats / max(est.noise_power, 1e-300)
        for k in ks:
            if k not in offsets and abs(fine[k]) <= self.fine_window and np.abs(est.gains[k]) ** 2 * gain >= SOUND_RATIO:
                offsets[k] = fine[k]
                used_fine.add(k)
        located = [k for k in ks if k in offsets]
        m = _Measure(offsets, located, est, used_fine, new_reference=new_reference)
        if len(y) < 2 * frame.period + frame.sounding.burst_length:
            return m
        # Carrier offsets: the sounding's repeats measure them within +-1/(2N) cycles/sample (coarsely);
        # the same sounding one period later measures the phase advance over P samples, to a small
        # fraction of a hertz. If the channel changed in between (block fading), neither is trusted.
        sounding = frame.sounding
        start = (starts[ref] - self.lag0) % frame.period
        later = estimate_channels(y[start + frame.period : start + frame.period + sounding.burst_length], sounding,
                                  frame.amplitude)
        p = frame.period
        snr = np.abs(est.gains) ** 2 * frame.amplitude**2 / max(est.noise_power, 1e-300)
        repeat_sigma = np.sqrt(residual_cfo_variance(sounding.length, sounding.repeats, snr))
        for k in used_fine:
            g0, g1 = complex(est.gains[k]), complex(later.gains[k])
            turn = g1 * np.conj(g0) * np.exp(-2j * np.pi * est.cfo[k] * p)
            if (abs(g0) == 0 or abs(20 * np.log10(max(abs(g1), 1e-300) / abs(g0))) > 1.0
                    or abs(np.angle(turn)) > 2 * np.pi * p * 3 * repeat_sigma[k] + PHASE_SLACK):
                m.changed = True  # more than the noise and the repeats' uncertainty allow: not one channel
                continue
            if 3 * repeat_sigma[k] * p > 0.25:
                continue  # too weak to unwrap the phase advance over a period
            m.cfo[k] = float(est.cfo[k] + np.angle(turn) / (2 * np.pi * p))
            m.cfo_sigma[k] = float(1.0 / np.sqrt(snr[k] * sounding.length * sounding.repeats) / (2 * np.pi * p))
        return m

    def _may_take_part(self, m: _Measure, k: int) -> bool:
        """Whether client k's sounded gain is above a fixed truncation threshold (so its alignment
        matters this round); always True without a fixed threshold."""
        s = self.settings
        if m.estimates is None or s.truncation != "fixed" or s.truncation_threshold_db is None:
            return True
        gain2 = np.abs(m.estimates.gains[m.located]) ** 2
        return bool(abs(m.estimates.gains[k]) ** 2 >= np.mean(gain2) * 10 ** (s.truncation_threshold_db / 10))

    # -- feedback ---------------------------------------------------------------------------
    def _channel(self, est: ChannelEstimates, ks: list[int]) -> np.ndarray:
        """Each client's channel on the target grid, as its payload will see it: single carrier, its
        gain (the payload is advanced by the measured offset, `_payload_advance`); OFDM, its
        per-subcarrier response including where it sits (the payload is not moved again)."""
        if self.settings.waveform != "ofdm":
            return est.gains[ks]
        lags = est.response_lags
        return np.stack([
            self.ofdm.response_at(est.response[k][None, :], lags + (est.delays[k] - self.lag0))[0] for k in ks
        ])

    def _payload_advance(self, est: ChannelEstimates, k: int) -> float:
        """The advance (samples) a participant applies with its payload frame: single carrier, its
        measured offset (the fraction too with fractional_timing); OFDM, none (the channel has it)."""
        s = self.settings
        if not s.timing_correction or s.waveform == "ofdm":
            return 0.0
        offset = float(est.delays[k] + est.fractional[k] - self.lag0)
        return offset if s.fractional_timing else float(round(offset))

    def _rotation(self, offset: float) -> float:
        """How far a client measured `offset` samples off rotates (fraction only for single carrier
        with fractional_timing)."""
        s = self.settings
        if s.waveform == "single_carrier" and s.fractional_timing:
            return offset
        return float(round(offset))

    def _feedback(self, est: ChannelEstimates, ks: list[int], updates: Sequence[np.ndarray], w_all: np.ndarray) -> _Feedback:
        """Truncated inversion and weights over clients `ks` (as OverTheAirRound.run, step 3)."""
        s = self.settings
        channel = self._channel(est, ks)
        n_fft = self.ofdm.n_fft if s.waveform == "ofdm" else 1
        gain2 = np.abs(channel) ** 2
        w_valid = w_all[ks] / w_all[ks].sum()
        scale_all = common_scale([update_statistics(updates[k]) for k in ks], w_valid)
        spread = float(np.mean([np.var(np.asarray(updates[k], dtype=np.float64)) for k in ks]))
        if s.truncation == "full" or s.truncation_threshold_db is None:
            threshold = 0.0
        elif s.truncation == "optimal":
            threshold = optimal_threshold(gain2, w_valid, s.tx_power, est.noise_power, scale_all.scale, spread, n_fft)
        else:
            threshold = float(np.mean(gain2)) * 10.0 ** (s.truncation_threshold_db / 10.0)
        pc = truncated_inversion(channel, s.tx_power, threshold, n_fft)
        noise_err, bias_err = predicted_error(
            gain2, w_valid, s.tx_power, est.noise_power, scale_all.scale, spread, threshold, n_fft
        )
        participants = [k for j, k in enumerate(ks) if pc.participants[j]]
        truncated = [k for j, k in enumerate(ks) if not pc.participants[j]]
        weights = np.zeros(len(self.clients))
        scale = None
        if participants and w_all[participants].sum() > 0:
            weights[participants] = w_all[participants] / w_all[participants].sum()
            scale = common_scale([update_statistics(updates[k]) for k in participants], weights[participants])
        diagnostics = {
            "threshold_rel_db": float(10 * np.log10(threshold / np.mean(gain2))) if threshold > 0 else float("-inf"),
            "predicted_noise": noise_err,
            "predicted_bias": bias_err,
        }
        return _Feedback(pc, est, list(ks), participants, truncated, weights, scale, diagnostics)

    def _payload_frames(
        self, fb: _Feedback, frame: CyclicFrame, updates: Sequence[np.ndarray]
    ) -> tuple[dict[int, np.ndarray], float, int]:
        """Each participant's payload frame (sounding + pre-equalised aggregation frame), after the
        common DAC back-off; returns (frames, back-off, clipped values)."""
        s = self.settings
        clip = peak_clip_level(s.tx_power, s.dac_peak) if s.peak_policy == "clip" else None
        index = {k: j for j, k in enumerate(fb.ks)}
        sounding: dict[int, np.ndarray] = {}
        payload: dict[int, np.ndarray] = {}
        clipped = 0
        for k in fb.participants:
            if clip is not None:
                clipped += int(np.sum(np.abs(normalise(updates[k], float(fb.weights[k]), fb.scale)) > clip))
            symbols = client_symbols(updates[k], float(fb.weights[k]), fb.scale, clip)  # type: ignore[arg-type]
            j = index[k]
            if s.waveform == "ofdm":
                burst = client_burst_ofdm(symbols, fb.pc.precoders[j], frame.aggregation)  # type: ignore[arg-type]
            else:
                burst = client_burst(symbols, complex(fb.pc.precoders[j]), frame.aggregation)  # type: ignore[arg-type]
            sounding[k] = frame.sounding_frame(k)
            payload[k] = frame.region_frame(burst)
        peak = max(
            float(np.max(np.abs(circular_advance(payload[k], float(self.shift[k]))))) for k in fb.participants
        )
        backoff = min(1.0, s.dac_peak / peak) if peak > 0 else 1.0
        return {k: sounding[k] + backoff * payload[k] for k in fb.participants}, backoff, clipped

    # -- the round --------------------------------------------------------------------------
    def run(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> RoundResult:
        """One round over all clients; updates[k] goes through self.clients[k]."""
        s = self.settings
        w_all, n_values, valid, result = self._start(updates, weights)
        if not valid:
            return result
        frame = self.frame(n_values)
        t = _Tally()
        self._listen()
        if s.cfo_correction and s.acquisition != "off":
            need = [k for k in valid if not self.acquired[k]]
            if need:
                self._acquire_cyclic(need, t)
        silent = np.zeros(frame.period, dtype=np.complex128)
        for k in result.rejected:
            self._load(k, silent)
        fe = FrontEndCorrection(dc=self.dc or 0j)

        # Start from the previous round's residuals: a re-load that moves a buffer shows as jitter.
        expected = {k: r for k, r in self._residual.items() if k in valid}
        for k in valid:
            self._load(k, frame.alignment_frame(k))
        state = "align"
        located: list[int] = []
        est: ChannelEstimates | None = None
        fb: _Feedback | None = None
        frames: dict[int, np.ndarray] = {}
        assumed: dict[int, float] = {}  # where each participant's pre-equaliser assumes it (offset, samples)
        eta = 0.0
        while True:
            if state == "align":
                # 2. Identification pilots and sounding: rotate until every located client is within
                # the tolerance (and, with cfo_correction, its carrier agrees with the server's).
                raw = self._capture(frame, t, two_periods=s.cfo_correction)
                fe = self._update_iq(raw, FrontEndCorrection(dc=self.dc or 0j))
                m = self._measure_alignment(fe.apply(raw), frame, valid)
                if m.changed and t.unsettled < self.cyclic.max_iterations:
                    t.unsettled += 1  # the channel changed during the capture: measure again
                    continue
                if not m.new_reference:
                    t.note_jitter(expected, m.offsets)
                expected = {}
                off = [k for k in m.located if abs(m.offsets[k]) > self.tolerance] if s.timing_correction else []
                far = [k for k in off if k not in m.fine or abs(m.offsets[k]) > self.fine_window]
                # a client in a fade deep enough to be truncated stays silent: only far ones matter
                off = [k for k in off if k in far or self._may_take_part(m, k)]
                if far:
                    off = far  # first bring everybody into the sounding's window: far clients spill into it
                # a carrier offset that would turn a client by more than ~0.1 rad between this capture
                # and the payload's (about two periods later), if it is significant
                limit = RETUNE_CYCLES / frame.period
                retune = [k for k, nu in m.cfo.items() if abs(nu) > max(limit, 3 * m.cfo_sigma[k])]
                if retune and not off and t.retune_captures >= MAX_RETUNE_CAPTURES:
                    retune = []  # phase noise or drift keeps them moving: go on with what is left
                if m.located and not off and not retune:
                    located, est = m.located, m.estimates
                    t.unlocated = len(valid) - len(located)
                    state = "feedback"
                    continue
                if off or not m.located:
                    t.iterations += 1
                    if t.iterations > self.cyclic.max_iterations:
                        stuck = {k: m.offsets[k] for k in off} if off else {k: float("nan") for k in valid}
                        return self._give_up(self._alignment_error(m, stuck, t, frame, self.tolerance), result, t, fe)
                else:
                    t.retune_captures += 1
                for k in off:
                    turn = self._rotation(m.offsets[k]) if k in m.fine else float(round(m.offsets[k]))
                    self.shift[k] += turn
                    expected[k] = m.offsets[k] - turn
                    self._load(k, frame.alignment_frame(k))
                for k in retune:
                    self._retune(k, m.cfo[k], t)
                continue

            if state == "feedback":
                # 3. Truncated inversion from the latest sounding; payload frames (single carrier:
                # advanced onto the grid; OFDM: where they are, the channel includes it).
                assert est is not None
                fb = self._feedback(est, located, updates, w_all)
                result.participants = fb.participants
                result.truncated = fb.truncated + [k for k in valid if k not in located]
                result.channels = est
                result.noise_power = est.noise_power
                result.diagnostics.update(fb.diagnostics)
                if not fb.participants:
                    result.failure = "every client was in a deep fade (below the truncation threshold); nobody transmitted"
                    return self._finish(result, t, fe)
                if fb.scale is None:
                    result.failure = "every participant has weight 0; nothing was transmitted"
                    return self._finish(result, t, fe)
                result.weights = fb.weights
                assumed = {}
                for k in fb.participants:
                    turn = self._payload_advance(est, k)
                    self.shift[k] += turn
                    assumed[k] = float(est.delays[k] + est.fractional[k] - self.lag0) - turn
                expected = dict(assumed)
                frames, backoff, clipped = self._payload_frames(fb, frame, updates)
                eta = fb.pc.eta * backoff**2
                result.eta = eta
                result.diagnostics["papr_backoff_db"] = float(-20 * np.log10(backoff))
                result.diagnostics["clipped_values"] = float(clipped)
                for k in valid:
                    # located clients that stay silent still sound, so a refresh can bring them back
                    self._load(k, frames.get(k, frame.sounding_frame(k) if k in located else silent))
                state = "verify"
                continue

            # 4. Payload capture: find the frame, check every participant is where its pre-equaliser
            # assumes it and its channel has not changed, then decode.
            assert fb is not None and est is not None
            y = fe.apply(self._capture(frame, t))
            try:
                origin, metric = self._find_frame(y, frame, fb, eta)
            except FrameNotDetectedError as exc:
                # No coherent preamble: the channel changed under the pre-equalisers (or a client moved
                # far); sound again from the identification pilots.
                t.refreshes += 1
                if t.refreshes > self.cyclic.max_iterations:
                    result.failure = str(exc)
                    return self._finish(result, t, fe)
                for k in valid:
                    self._load(k, frame.alignment_frame(k))
                state, expected = "align", {}
                continue
            now = self._sound(y, frame, origin)
            offsets = self._fine_offsets(now, fb.participants)
            change = self._channel_change(fb, now)
            result.diagnostics["cyclic_csi_change_db"] = float(10 * np.log10(max(change, 1e-30)))
            if change > 10 ** (self.cyclic.csi_tolerance_db / 10):
                # The channel itself changed (fading, drift) since the feedback: feed back again from this
                # capture, whose un-equalised sounding measured every located client (the shortest way
                # back: a re-sounding on alignment frames would take a longer capture and more re-loads).
                t.refreshes += 1
                if t.refreshes > self.cyclic.max_iterations:
                    result.failure = (
                        f"the channel changed between every two captures ({10 * np.log10(change):.1f} dB at the last, "
                        f"tolerance {self.cyclic.csi_tolerance_db:g} dB) in {t.refreshes} tries: fading faster than a "
                        f"cyclic round of a few {frame.period}-sample captures, or carrier offsets and phase noise "
                        "that turn the clients between captures (check client_cfo_hz)"
                    )
                    return self._finish(result, t, fe)
                est, expected = now, {}
                state = "feedback"
                continue
            t.note_jitter(expected, offsets)
            expected = {}
            if s.timing_correction:
                if s.waveform == "single_carrier":  # the grid: within the tolerance
                    moved = {k: offsets[k] for k in fb.participants if abs(offsets[k]) > self.tolerance}
                else:  # OFDM: where the channel was measured, to the sample
                    moved = {k: offsets[k] - assumed[k] for k in fb.participants if abs(offsets[k] - assumed[k]) > 0.5}
                if moved:
                    t.iterations += 1
                    if t.iterations > self.cyclic.max_iterations:
                        limit = self.tolerance if s.waveform == "single_carrier" else 0.5
                        error = self._alignment_error(_Measure(offsets, fb.participants, now), moved, t, frame, limit)
                        return self._give_up(error, result, t, fe)
                    if any(abs(offsets[k]) > self.fine_window for k in moved):
                        # out of the sounding's window: back to the identification pilots
                        for k in valid:
                            self._load(k, frame.alignment_frame(k))
                        state = "align"
                        continue
                    for k, d in moved.items():
                        turn = self._rotation(d)
                        self.shift[k] += turn
                        expected[k] = offsets[k] - turn
                        self._load(k, frames[k])
                    continue
            self._residual = {k: offsets[k] for k in fb.participants}
            result.diagnostics["cyclic_residual_samples"] = float(
                max(abs(offsets[k] - (assumed[k] if s.waveform == "ofdm" else 0.0)) for k in fb.participants)
            )
            result.channels = now
            decoded = self._decode(result, y, frame, fb, eta, origin, metric, now, n_values, t, fe)
            if decoded is not None:
                return decoded
            # The sum's own preamble and pilots say the channel changed inside this capture (a fading
            # block boundary between the sounding and the payload): listen again.
            t.refreshes += 1
            if t.refreshes > self.cyclic.max_iterations:
                result.failure = (
                    f"the channel changed inside every capture in {t.refreshes} tries: its coherence time is shorter "
                    f"than one {frame.period}-sample period"
                )
                return self._finish(result, t, fe)

    # -- receive helpers ----------------------------------------------------------------------
    def _find_frame(self, y: np.ndarray, frame: CyclicFrame, fb: _Feedback, eta: float) -> tuple[int, float]:
        """Where the aggregation frame's grid starts in a payload capture (index of frame sample 0,
        mod P), from the participants' coherent preamble; and the detection metric."""
        agg = frame.aggregation
        if isinstance(agg, OfdmAggregationLayout):
            counts = fb.pc.active[fb.pc.participants].sum(axis=0)
            reference = expected_ofdm_preamble(agg, eta, counts)
        else:
            reference = agg.preamble
        extended = circular(y, 0, frame.period + len(reference) - 1)
        detection = detect_preamble(extended, reference, self.settings.false_alarm_probability)
        if not detection.detected:
            raise FrameNotDetectedError(
                f"no preamble in the cyclic capture (best metric {detection.metric:.3g} at sample "
                f"{detection.index}, threshold {detection.threshold:.3g})"
            )
        return (detection.index - frame.region_start) % frame.period, float(detection.metric)

    def _channel_change(self, fb: _Feedback, now: ChannelEstimates) -> float:
        """Largest relative change |h_now - h_used|^2 / |h_used|^2 of a participant's channel since
        the feedback, wherever it sits (OFDM: the response around its own delay, averaged over the
        used subcarriers; a whole-sample move is a timing matter, checked apart)."""
        ks = fb.participants
        if self.settings.waveform == "ofdm":
            used = self.ofdm.response_at(fb.est.response[ks], fb.est.response_lags)
            current = self.ofdm.response_at(now.response[ks], now.response_lags)
        else:
            used, current = fb.est.gains[ks][:, None], now.gains[ks][:, None]
        err = np.mean(np.abs(current - used) ** 2, axis=1) / np.maximum(np.mean(np.abs(used) ** 2, axis=1), 1e-300)
        return float(np.max(err))

    def _decode(self, result: RoundResult, y: np.ndarray, frame: CyclicFrame, fb: _Feedback, eta: float,
                origin: int, metric: float, now: ChannelEstimates, n_values: int, t: _Tally,
                fe: FrontEndCorrection) -> RoundResult | None:
        """Decode the aggregation frame of a verified capture; None when the sum's preamble or pilots
        arrive with a gain the pre-equalisers did not aim at (the channel changed inside the capture)."""
        s = self.settings
        agg = frame.aggregation
        window = circular(y, origin + frame.region_start - s.guard_samples, agg.burst_length + 2 * s.guard_samples)
        w = fb.weights
        try:
            if isinstance(agg, OfdmAggregationLayout):
                active_f = fb.pc.active[fb.pc.participants]
                carrier_w = (w[fb.participants][:, None] * active_f).sum(axis=0)
                carrier_n = active_f.sum(axis=0)
                estimate, report = receive_sum_ofdm(
                    window, agg, eta, fb.scale, n_values, carrier_w, carrier_n, s.false_alarm_probability  # type: ignore[arg-type]
                )
                result.value_weights = self._value_weights(fb.pc.active, fb.ks, w, n_values)
                data_w = carrier_w[self.ofdm.data_slots]
                inv_w2 = np.where(data_w > 0, 1.0 / np.where(data_w > 0, data_w, 1.0) ** 2, 0.0).mean()
            else:
                estimate, report = receive_sum(
                    window, agg, eta, fb.scale, n_values, 1.0, len(fb.participants), s.false_alarm_probability  # type: ignore[arg-type]
                )
                inv_w2 = 1.0
        except FrameNotDetectedError as exc:
            result.failure = str(exc)
            return self._finish(result, t, fe)
        deviation = max([abs(report.alignment - 1.0), *np.abs(np.asarray(report.common_gain) - 1.0)])
        # what noise alone would give: a gain averaged over about 12 pilots of amplitude sqrt(eta) * n
        noise_deviation = float(np.sqrt(now.noise_power / (eta * len(fb.participants) ** 2 * 12)))
        if deviation > max(CONSISTENT_DEVIATION, 4 * noise_deviation):
            return None
        result.diagnostics["common_gain_deviation"] = float(deviation)
        result.estimate = estimate
        result.detection_metric = report.detection.metric
        result.alignment = report.alignment
        result.noise_power = now.noise_power
        result.error_variance_theory = now.noise_power / (2.0 * eta) * fb.scale.scale**2 * inv_w2  # type: ignore[attr-defined]
        result.diagnostics.update(
            timing_error=float(report.detection.index - s.guard_samples),
            residual_cfo_hz=float(report.residual_cfo * self.sample_rate_hz),
            pilot_snr_db=float(report.pilot_snr_db),
            lost_values=float(report.lost_values),
            frame_metric=metric,
        )
        return self._finish(result, t, fe)

    def _finish(self, result: RoundResult, t: _Tally, fe: FrontEndCorrection) -> RoundResult:
        """Fill what every round reports, delivered or not."""
        result.airtime_samples = int(t.airtime)
        result.frontend = fe
        result.diagnostics.update(
            dc_dbfs=float(20 * np.log10(abs(fe.dc))) if fe.dc else float("-inf"),
            image_rejection_db=fe.image_rejection_db,
            cyclic_alignment_iterations=float(t.iterations),
            cyclic_csi_refreshes=float(t.refreshes),
            cyclic_captures=float(t.captures),
            cyclic_retunes=float(t.retunes),
            cyclic_unlocated=float(t.unlocated),
            cyclic_restart_jitter_samples=float(max(t.jitter)) if t.jitter else 0.0,
        )
        if result.channels is not None:
            est = result.channels
            result.client_cfo_hz = {
                k: float(-self.carrier_hz[k] + est.cfo[k] * self.sample_rate_hz) for k in result.participants
            }
        result.client_delay = {k: float(-self.shift[k]) for k in result.participants}
        return result

    def _alignment_error(self, m: _Measure, off: dict[int, float], t: _Tally, frame: CyclicFrame,
                         limit: float) -> CyclicAlignmentError:
        """The one-sentence error when alignment runs out of iterations; `off` maps each client still
        out of place to how far (samples), `limit` is how far it may be."""
        n = self.cyclic.max_iterations
        if not m.located:
            return CyclicAlignmentError(
                f"cyclic alignment found no client's identification pilot in {t.captures} captures of {frame.period} "
                "samples: check that the clients transmit on the server's carrier and sample rate and that the receive "
                "level is well above the noise (hil_setup.md, 'No detection')"
            )
        worst = max((abs(v) for v in off.values()), default=float("nan"))
        head = (f"cyclic alignment did not converge in {n} iterations: {len(off)} client(s) still up to {worst:.2f} "
                f"samples from where they must be (tolerance {limit:g} samples)")
        jitter = max(t.jitter, default=0.0)
        if t.jitter and float(np.median(t.jitter)) >= 0.5:  # typical re-loads move whole samples
            return CyclicAlignmentError(
                f"{head} and re-loading a buffer moved it by up to {jitter:.2f} samples "
                f"({np.sqrt(np.mean(np.square(t.jitter))):.2f} rms) beyond the commanded rotation (the restart jitter); "
                "rotations only converge when a re-load keeps the buffer's phase to within the tolerance, so measure the "
                "radios' restart jitter and make the buffer swap seamless (hil_setup.md), or raise "
                "ota.cyclic_max_iterations to wait for re-loads that land in place"
            )
        median = float(np.median(t.jitter)) if t.jitter else 0.0
        return CyclicAlignmentError(
            f"{head}, but a re-load typically moved a buffer by only {median:.2f} samples beyond the commanded rotation "
            f"(at most {jitter:.2f}), so this is measurement noise, fading or sample-clock drift between captures rather "
            "than a restart jitter; raise ota.cyclic_tolerance_samples, the SNR or ota.cyclic_max_iterations",
            restart_jitter=False,
        )

    def _give_up(self, error: CyclicAlignmentError, result: RoundResult, t: _Tally,
                 fe: FrontEndCorrection) -> RoundResult:
        """Raise a restart-jitter error (every round would fail); fail only this round otherwise."""
        if error.restart_jitter:
            raise error
        result.failure = str(error)
        result.estimate = None
        return self._finish(result, t, fe)


@dataclass
class _Tally:
    """Counts of one cyclic round."""

    captures: int = 0
    airtime: float = 0.0
    iterations: int = 0
    refreshes: int = 0
    retunes: int = 0
    retune_captures: int = 0
    unsettled: int = 0
    unlocated: int = 0
    jitter: list[float] = field(default_factory=list)

    def note_jitter(self, expected: dict[int, float], measured: dict[int, float]) -> None:
        """A re-loaded client's offset beyond what its commanded rotation left (samples)."""
        for k, e in expected.items():
            if k in measured:
                self.jitter.append(abs(measured[k] - e))


def measure_restart_jitter(
    reference: Radio, moving: Radio, server: Radio, reloads: int = 20, period: int = 4001, amplitude: float = 0.3
) -> np.ndarray:
    """How far each re-load of a cyclic buffer moves it (samples): the number the cyclic mode's
    convergence depends on, measured on the radios themselves.

    `reference` repeats one buffer throughout; `moving` re-loads the same buffer `reloads` times;
    after each load `server` captures one period "now" and locates both buffers (each its own
    pseudo-random QPSK pilot filling the period) to about 0.05 sample. Returns the change of
    the moving buffer's offset from the reference between consecutive loads (`reloads` values):
    all ~0 for a seamless swap; whole samples for a restart jitter; a steady slope is the two
    radios' sample-clock offset (calibrate xo_correction), not jitter. Both transmitters are
    stopped at the end.
    """
    if reloads < 1 or period < 64:
        raise ValueError(f"need reloads >= 1 and period >= 64 samples, got {reloads} and {period}")
    pilots = [
        np.exp(1j * (np.pi / 2 * np.random.default_rng(np.random.SeedSequence([ID_SEED, period, k])).integers(0, 4, period)
                     + np.pi / 4))
        for k in (0, 1)
    ]
    spectra = [np.conj(np.fft.fft(p)) for p in pilots]

    def offset() -> float:
        y = np.fft.fft(server.receive(period, server.now()))
        at = []
        for spectrum in spectra:
            c = np.fft.ifft(y * spectrum)
            i = int(np.argmax(np.abs(c)))
            at.append(i + float(fractional_offset(c[i - 1], c[i], c[(i + 1) % period])))
        return float(_wrap(at[1] - at[0], period))

    try:
        reference.transmit_cyclic(amplitude * pilots[0])  # type: ignore[attr-defined]
        moving.transmit_cyclic(amplitude * pilots[1])  # type: ignore[attr-defined]
        offsets = [offset()]
        for _ in range(reloads):
            moving.transmit_cyclic(amplitude * pilots[1])  # type: ignore[attr-defined]
            offsets.append(offset())
    finally:
        for radio in (moving, reference):
            try:
                radio.stop_transmit()  # type: ignore[attr-defined]
            except RadioError:
                pass
    return np.diff(np.asarray(offsets))
