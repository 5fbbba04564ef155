"""The over-the-air round: listen, acquire, sound, feed back, transmit together, receive.

This is the one place that drives radios with the modem. One round, for the clients whose updates
are finite (times in samples of the server's clock; each step is scheduled after the previous one
has been received and processed, as the control plane would):

0. Listen: the server captures a quiet interval: its DC offset and noise floor.
1. Acquire (first round, or every round if asked): each client sends an unmodulated tone and a
   Zadoff-Chu marker in its own slot, the slots acquisition_search_samples apart on either side, so a
   client may arrive that many samples early or late (sample clocks that ran apart over a minute, a
   host that started its stream late). In each slot the FFT peak gives the client's carrier
   frequency offset over the whole +-fs/2 range (coarse CFO); with it removed, the marker's
   normalised correlation (modem.sync) gives its integer timing offset, from which its timing
   advance is initialised so that the sounding lands inside the cyclic prefix; the tone just before
   the marker then gives the CFO again, over exactly its span.
2. Sound: every client sends its cyclic-shift pilot (two periods) at t_s, advanced by its timing
   advance and corrected by its current CFO estimate (an NCO whose phase is referred to t_s). The
   server estimates each client's gain, integer and fractional delay, residual CFO and noise. A
   client whose pilot is not found inside its window (modem.sync.sounding_found: its offset jumped
   beyond the cyclic prefix, or a deep fade) is acquired again and everybody sounds once more; one
   still not found stays silent this round (RoundResult.lost) and is acquired again next round.
3. Feed back (control plane): each client's CFO correction and timing advance are updated;
   truncated inversion (threshold fixed, optimal, or none) picks who transmits (per subcarrier for
   OFDM) and the pre-equalisers; weights are renormalised over the participants; the clients'
   two scalars (mean, variance) give the common scale.
4. Transmit together: participant k sends its pre-equalised frame (single carrier with pilots, or
   OFDM), CFO-corrected, fractionally and integer advanced, so all arrive aligned at t_1. If any
   burst would exceed the DAC's full scale, every pre-equaliser is scaled down together (eta too).
   With max_segment_samples > 0 the frame goes out in segments: each client's own oscillator keeps
   wandering after the sounding (Wiener phase noise, residual CFO), and no pilot in the sum can see
   one client's rotation, so the server measures it and each client removes it before sending:
   for the first segment from the sounding's last period, for every later one from a phase
   re-sounding (one pilot period) in a gap before it. The receiver splices the gaps out.
5. Receive: detect the preamble, track the common phase with the pilots, divide by sqrt(eta),
   de-normalise.

Persistent state across rounds: each client's CFO correction and timing advance (so sample-clock
drift and CFO drift are tracked), and the receiver's IQ-imbalance moments.

Rounds start on a frame grid (multiples of frame_period_s) so that, on an air with block fading
aligned to the same grid, the round sees one channel when it is shorter than the coherence time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

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
from airfl.modem.aircomp import client_burst_ofdm, peak_clip_level, receive_sum_ofdm
from airfl.modem.cfo import coarse_cfo, correct
from airfl.modem.frame import OfdmAggregationLayout
from airfl.modem.iq import FrontEndCorrection, estimate_dc
from airfl.modem.ofdm import OfdmLayout
from airfl.modem.power import normalise, optimal_threshold, predicted_error
from airfl.modem.sequences import zadoff_chu
from airfl.modem.sync import detect_preamble, sounding_found
from airfl.modem.timing import PAD, retime
from airfl.modem.tracking import CfoTracker, residual_cfo_variance
from airfl.radio import Radio

Waveform = Literal["single_carrier", "ofdm"]
Truncation = Literal["fixed", "optimal", "full"]
Acquisition = Literal["first_round", "every_round", "off"]


@dataclass(frozen=True)
class OtaSettings:
    """Knobs of the round protocol (samples are at the radios' sample rate).

    tx_power: per-client transmit power limit P (full-scale units squared per complex sample).
    waveform: "single_carrier" (flat channels) or "ofdm" (per-subcarrier pre-equalisation).
    truncation: "fixed" (silent below truncation_threshold_db relative to the mean |h|^2 of the
        clients sounded this round), "optimal" (threshold minimising predicted noise + truncation
        bias) or "full" (full inversion, everybody transmits).
    truncation_threshold_db: see truncation; None is the same as truncation="full".
    sounding_cp / sounding_min_shift / sounding_min_length / sounding_repeats: pilot layout
        (modem.frame); two or more repeats measure each client's residual CFO.
    preamble_length: Zadoff-Chu preamble of the single-carrier frame (samples, odd).
    pilot_spacing: single carrier: a pilot before every this many data symbols (0: none).
    ofdm_fft / ofdm_cp / ofdm_used / ofdm_pilot_every: OFDM numerology (modem.ofdm).
    acquisition: when clients are acquired (coarse CFO and integer timing offset): "first_round"
        (and again whenever a client's sounding is lost), "every_round", or "off" (never: every
        client's offset must already lie within the sounding's cyclic prefix).
    acquisition_length: samples of each client's acquisition tone (coarse CFO).
    acquisition_search_samples: largest timing offset (samples, early or late) acquisition finds;
        each client's slot is its tone, a Zadoff-Chu marker of ACQUISITION_MARKER_LENGTH samples
        and twice this margin (`acquisition_pitch`), all counted as airtime.
    quiet_samples: quiet interval for the DC offset and noise floor (0: skip).
    guard_samples: extra samples the receiver captures on each side of the aggregation frame.
    lead_samples: scheduling margin between steps (processing time, samples).
    frame_period_s: rounds start at multiples of this on the radio clock (s).
    false_alarm_probability: preamble detection threshold, per lag, on noise alone.
    dac_peak: largest |x| a transmitter may send (full scale = 1); bursts that would still exceed
        it are scaled down, all together (eta with them).
    peak_policy: "clip" limits each normalised value so a single-carrier burst cannot exceed
        dac_peak (a few outliers are clipped, counted in diagnostics["clipped_values"]); "backoff"
        sends every value and scales all bursts down instead (costs SNR when updates have heavy tails).
    center_freq_hz / sample_clock_locked: the carrier (Hz), and whether the radios derive their sample
        clock from the carrier reference (AD9361: yes), so a client's sample-clock error relative to
        the receiver is its CFO / center_freq_hz and can be pre-compensated by re-timing its burst.
    cfo_correction / sco_correction / timing_correction / fractional_timing / dc_correction /
        rx_iq_correction: switch each correction (tests switch them off to show what goes wrong).
    max_segment_samples: 0 (default) sends the aggregation frame in one piece. Otherwise the frame
        is split into the fewest segments of at most this many samples (OFDM: whole OFDM symbols,
        at least one), and every segment after the first is preceded by a phase re-sounding: the
        participants send one period of their sounding pilot, the server measures each one's phase
        drift since the sounding (its own oscillator's phase noise and residual CFO, which no pilot
        in the sum can see) and feeds back a phase correction that the client applies to the next
        segment; the first segment gets its correction from the sounding's last period (no
        airtime), so any value > 0 also helps a frame that fits one segment. Each extra segment costs a gap in the frame: PAD samples of the previous segment's
        tail, the re-sounding (sounding_cp + N samples, N the sounding pilot length), lead_samples
        for the server to measure and feed back, and the largest timing advance plus PAD for the next
        segment's head (~560 samples for 10 clients with sounding_cp=24, sounding_min_shift=40). The
        gaps count in airtime_samples; diagnostics give segments, segment_overhead_samples,
        resounding_samples and segment_phase_rms_deg (the phase drift the re-soundings measured).
    """

    tx_power: float = 0.1
    waveform: Waveform = "single_carrier"
    truncation: Truncation = "fixed"
    truncation_threshold_db: float | None = -10.0
    sounding_cp: int = 16
    sounding_min_shift: int = 32
    sounding_min_length: int = 251
    sounding_repeats: int = 4
    preamble_length: int = 127
    pilot_spacing: int = 32
    ofdm_fft: int = 64
    ofdm_cp: int = 16
    ofdm_used: int = 52
    ofdm_pilot_every: int = 13
    acquisition: Acquisition = "first_round"
    acquisition_length: int = 256
    acquisition_search_samples: int = 256
    quiet_samples: int = 256
    guard_samples: int = 32
    lead_samples: int = 64
    frame_period_s: float = 0.02
    false_alarm_probability: float = 1e-6
    dac_peak: float = 1.0
    peak_policy: Literal["clip", "backoff"] = "backoff"
    center_freq_hz: float = 2.4e9
    sample_clock_locked: bool = True
    cfo_correction: bool = True
    sco_correction: bool = True
    timing_correction: bool = True
    fractional_timing: bool = True
    dc_correction: bool = True
    rx_iq_correction: bool = False
    max_segment_samples: int = 0


@dataclass
class RoundResult:
    """Everything one round measured. `estimate` is None when the round delivered nothing."""

    estimate: np.ndarray | None
    weights: np.ndarray  # renormalised aggregation weights per client (0 for non-participants)
    participants: list[int]
    rejected: list[int]  # non-finite updates: never transmitted
    truncated: list[int]  # deep fade: stayed silent this round
    eta: float
    noise_power: float  # estimated at sounding (full-scale units squared per sample)
    error_variance_theory: float | None  # per real value, from the estimated eta and noise power
    channels: ChannelEstimates | None
    airtime_samples: int
    detection_metric: float | None = None
    alignment: complex | None = None
    failure: str | None = None
    timing: dict[str, int] = field(default_factory=dict)
    diagnostics: dict[str, float] = field(default_factory=dict)
    client_cfo_hz: dict[int, float] = field(default_factory=dict)
    client_delay: dict[int, float] = field(default_factory=dict)
    value_weights: np.ndarray | None = None  # (clients, n_values) OFDM: weight of each client per value
    frontend: FrontEndCorrection | None = None  # the receiver's DC and IQ-image estimates this round
    lost: list[int] = field(default_factory=list)  # sounding not found even after re-acquisition: silent
    # What the server received, as it came off the radio (before any correction), for recordings
    # (calibration's end_to_end saves them as SigMF): name -> (server sample of the first sample,
    # samples). "sounding": the sounding burst; "payload": the aggregation frame with its guards.
    captures: dict[str, tuple[int, np.ndarray]] = field(default_factory=dict)

    def exact_target(self, updates: Sequence[np.ndarray]) -> np.ndarray:
        """The exact aggregate this round's estimate stands for: per value, the weighted mean over
        the clients that carried it (all participants on single carrier)."""
        if self.value_weights is None:
            return sum(self.weights[k] * np.asarray(updates[k], dtype=np.float64) for k in self.participants)
        stacked = np.stack([np.asarray(updates[k], dtype=np.float64) for k in self.participants])
        vw = self.value_weights[self.participants]
        total = vw.sum(axis=0)
        safe = np.where(total > 0, total, 1.0)
        return np.where(total > 0, (vw * stacked).sum(axis=0) / safe, 0.0)


ACQUISITION_MARKER_LENGTH = 127
"""Samples of the acquisition marker: the Zadoff-Chu sequence of root 1 (whose correlation peak a
residual CFO moves least: nu * length samples for nu cycles/sample), after the tone in every slot."""


def acquisition_pitch(settings: OtaSettings) -> int:
    """Samples from one client's acquisition slot to the next: the tone (acquisition_length), the
    marker (ACQUISITION_MARKER_LENGTH) and acquisition_search_samples on either side, so that a
    client arriving that early or late stays inside its own slot."""
    return settings.acquisition_length + ACQUISITION_MARKER_LENGTH + 2 * settings.acquisition_search_samples


def acquisition_samples(n_clients: int, settings: OtaSettings) -> int:
    """Airtime (samples) of acquiring `n_clients` clients: the receiver's window over their slots."""
    return n_clients * acquisition_pitch(settings)


def split_finite(updates: Sequence[np.ndarray]) -> tuple[list[int], list[int]]:
    """Indices of finite updates, and of updates holding NaN or Inf (which are never transmitted)."""
    ok: list[int] = []
    bad: list[int] = []
    for k, g in enumerate(updates):
        (ok if np.all(np.isfinite(g)) else bad).append(k)
    return ok, bad


def segment_cuts(frame_length: int, max_segment: int, unit: int = 1, first_min: int = 0) -> list[int]:
    """Where to split a frame of `frame_length` samples into the fewest segments of at most
    `max_segment` samples, cutting only at multiples of `unit` samples (OFDM: the symbol length) and
    not before `first_min` (the first segment keeps the whole preamble). Segments come out as equal
    as the units allow. Returns the cut positions (samples from the frame start, increasing); [] for
    one segment (also when max_segment <= 0).
    """
    if max_segment <= 0 or frame_length <= max_segment:
        return []
    units = -(-frame_length // unit)
    per = max(1, max_segment // unit)
    count = -(-units // per)
    cuts = sorted({int(round(i * units / count)) * unit for i in range(1, count)})
    return [c for c in cuts if first_min <= c < frame_length]


def segment_overhead_samples(n_clients: int, frame_length: int, settings: OtaSettings) -> int:
    """Upper estimate of the samples the re-soundings add to an aggregation frame of `frame_length`
    samples (0 with max_segment_samples = 0 or when the frame fits one segment), for planning: per
    extra segment the re-sounding (sounding_cp + N), lead_samples, 2 * PAD and up to two cyclic
    prefixes of timing advance. The exact figure of a round is its
    diagnostics["segment_overhead_samples"]."""
    s = settings
    unit = s.ofdm_fft + s.ofdm_cp if s.waveform == "ofdm" else 1
    cuts = segment_cuts(frame_length, s.max_segment_samples, unit, unit if s.waveform == "ofdm" else s.preamble_length + 1)
    resound = SoundingLayout(n_clients, s.sounding_cp, s.sounding_min_shift, s.sounding_min_length, 1).burst_length
    return len(cuts) * (resound + s.lead_samples + 2 * PAD + 2 * s.sounding_cp)


def _with_gaps(burst: np.ndarray, cuts: list[int], gap: int) -> np.ndarray:
    """`burst` with `gap` zero samples inserted before each position in `cuts`."""
    pieces = np.split(np.asarray(burst, dtype=np.complex128), cuts)
    out = [pieces[0]]
    for piece in pieces[1:]:
        out += [np.zeros(gap, dtype=np.complex128), piece]
    return np.concatenate(out)


def segment_phases(taps: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each participant's phase drift (rad) since the sounding, relative to the participants' mean.

    taps, reference: (participants, width) responses from a re-sounding and from the round's
    sounding, in the same correlation bins. The drift of client k is the phase of
    sum_w taps[k, w] * conj(reference[k, w]) (every tap weighted by its energy). The part common to
    all participants (the receiver's own phase noise, a residual common CFO) is left to the pilots
    in the payload, so it is removed (mean of the unit phasors), and the common phase the pilots
    track stays continuous from one segment to the next.
    """
    theta = np.angle(np.sum(taps * np.conj(reference), axis=1))
    common = np.angle(np.sum(np.exp(1j * theta)))
    return np.angle(np.exp(1j * (theta - common)))


class OverTheAirRound:
    """Runs analog aggregation rounds over `clients` (transmitters) and `server` (receiver)."""

    def __init__(
        self, clients: Sequence[Radio], server: Radio, sample_rate_hz: float, settings: OtaSettings | None = None
    ):
        if not clients:
            raise ValueError("an over-the-air round needs at least one client radio")
        self.clients = list(clients)
        self.server = server
        self.sample_rate_hz = sample_rate_hz
        self.settings = settings or OtaSettings()
        if self.settings.max_segment_samples < 0:
            raise ValueError(
                f"max_segment_samples must be >= 0 (0: one segment), got {self.settings.max_segment_samples}"
            )
        if not self.settings.sounding_cp <= self.settings.acquisition_search_samples <= 1_000_000:
            raise ValueError(
                f"acquisition_search_samples must be between sounding_cp ({self.settings.sounding_cp}) and 1000000 "
                f"samples (the largest timing offset acquisition finds), got {self.settings.acquisition_search_samples}"
            )
        self.frame_period = max(1, int(round(self.settings.frame_period_s * sample_rate_hz)))
        n = len(self.clients)
        self.cfo = np.zeros(n)  # each client's CFO correction in use (cycles/sample)
        self.tracker = CfoTracker(n)
        # The part of the offsets every client shares (the receiver's own oscillator, and its phase
        # noise during sounding) is corrected at the receiver, by one tracker of its own: per-client
        # filters with different gains would turn a common jitter into differences between clients,
        # which no pilot in the sum can see.
        self.common = 0.0
        self.common_tracker = CfoTracker(1)
        self.acquired = np.zeros(n, dtype=bool)
        self.advance = np.zeros(n, dtype=np.int64)  # each client's timing advance at sounding (samples)
        self.target_lag = self.settings.sounding_cp // 2 if self.settings.timing_correction else 0
        self._iq_moments = np.zeros(2, dtype=np.complex128)  # running E[y^2], E[|y|^2]
        self.ofdm = OfdmLayout(
            self.settings.ofdm_fft, self.settings.ofdm_cp, self.settings.ofdm_used, self.settings.ofdm_pilot_every
        )

    def _next_frame(self, earliest: int) -> int:
        return -(-earliest // self.frame_period) * self.frame_period

    def _sounding_layout(self, n_sounded: int) -> SoundingLayout:
        s = self.settings
        return SoundingLayout(n_sounded, s.sounding_cp, s.sounding_min_shift, s.sounding_min_length, s.sounding_repeats)

    def _after_acquisition(self, t: int, max_adv: int, n_sounded: int, n_values: int) -> int:
        """Where the sounding's schedule starts (server sample, before max_adv) after an acquisition
        that ended at t: at t, or at the next frame boundary when the sounding and the payload (upper
        estimate, samples) would fit in one frame but not in the rest of this one. Acquisition does
        not need the channel the payload meets; the sounding does, so on an air whose fading blocks
        follow the frame grid, the extra slots of an acquisition must not push the payload into the
        next block."""
        s = self.settings
        n_symbols = symbol_count(n_values)
        if s.waveform == "ofdm":
            frame_length = OfdmAggregationLayout(n_symbols, self.ofdm).burst_length
        else:
            frame_length = AggregationLayout(n_symbols, s.preamble_length, s.pilot_spacing).burst_length
        sounding = self._sounding_layout(n_sounded)
        rest = (max_adv + sounding.burst_length + s.lead_samples + max_adv + 3 * PAD + frame_length
                + segment_overhead_samples(n_sounded, frame_length, s) + s.guard_samples)
        end_of_frame = self._next_frame(t + 1)
        if t + rest > end_of_frame and rest <= self.frame_period:
            return end_of_frame
        return t

    # -- steps ------------------------------------------------------------------------------
    def _listen(self, t: int) -> FrontEndCorrection:
        s = self.settings
        if s.quiet_samples < 2 or not s.dc_correction:
            return FrontEndCorrection()
        dc, _ = estimate_dc(self.server.receive(s.quiet_samples, t))
        return FrontEndCorrection(dc=dc)

    def _acquire(self, t: int, clients: list[int], fe: FrontEndCorrection, result: RoundResult) -> int:
        """Acquire `clients`: coarse CFO and integer timing offset from a tone and a marker each, in
        slots `acquisition_pitch` samples apart from server sample t; returns the samples used.

        Client j's burst (tone of acquisition_length samples, then the marker, amplitude sqrt(P)) is
        scheduled acquisition_search_samples (S) into its slot, advanced by its current timing
        advance, so it arrives anywhere within +-S of that and still inside the slot. Per slot: the
        FFT peak of the whole slot gives a first CFO (the tone dominates the marker's flat spectrum);
        with it removed, the marker's normalised correlation (modem.sync.detect_preamble at the
        round's false-alarm rate) over lags -S..S gives the lag of the arrival; the tone's span before
        the marker, less its first sounding_cp samples (the delay spread), gives the CFO again (as
        precise as a tone alone in its slot). With timing_correction the timing advance becomes the
        measured arrival minus target_lag, so the sounding lands inside the cyclic prefix. A client
        whose marker is not detected keeps its advance and is tried again at the next acquisition.
        """
        s = self.settings
        search = s.acquisition_search_samples
        pitch = acquisition_pitch(s)
        amp = float(np.sqrt(s.tx_power))
        marker = zadoff_chu(ACQUISITION_MARKER_LENGTH, 1)
        burst = amp * np.concatenate([np.ones(s.acquisition_length, dtype=np.complex128), marker])
        for j, k in enumerate(clients):
            self.clients[k].transmit(burst, t + j * pitch + search - int(self.advance[k]))
        window = fe.apply(self.server.receive(len(clients) * pitch, t))
        nominal = search + s.acquisition_length  # where each marker starts in its slot when on time
        span = s.acquisition_length - s.sounding_cp
        offsets = np.zeros(len(clients))
        lags: list[int] = []
        for j, k in enumerate(clients):
            slot = window[j * pitch : (j + 1) * pitch]
            rough = coarse_cfo(slot)
            found = detect_preamble(
                correct(slot[nominal - search :], rough), marker, s.false_alarm_probability
            )  # lags -S..S: the slot ends S samples after the marker's nominal end
            lag = found.index - search if found.detected else 0
            start = nominal + lag - s.acquisition_length + s.sounding_cp
            offsets[j] = coarse_cfo(slot[start : start + span])
            if found.detected:
                self.acquired[k] = True
                lags.append(abs(lag))
                if s.timing_correction:
                    self.advance[k] = int(self.advance[k]) + lag - self.target_lag
            else:
                self.acquired[k] = False
        # the coarse estimate is good to a small fraction of an FFT bin (1/span cycles/sample)
        self.tracker.set(clients, offsets, np.full(len(clients), (0.1 / span) ** 2), t / self.sample_rate_hz)
        d = result.diagnostics
        d["acquired"] = d.get("acquired", 0.0) + float(len(lags))
        d["acquisition_missed"] = d.get("acquisition_missed", 0.0) + float(len(clients) - len(lags))
        d["acquisition_lag_max"] = max([d.get("acquisition_lag_max", 0.0), *map(float, lags)])
        return len(clients) * pitch

    def _cfo_uncertain(self, k: int, t: int, n_sounded: int) -> bool:
        """Whether client k's tracked CFO, predicted to server sample t, is too uncertain for the
        sounding: the sounding measures a residual unambiguously within +-1/(2N) cycles/sample (N
        its pilot length), so a predicted standard deviation above 1/(6N) (after a long pause, the
        drift rate's uncertainty times the time since the last round) calls for a coarse CFO again."""
        s = self.settings
        if not s.cfo_correction or np.isnan(self.tracker.time[k]):
            return False
        p = self.tracker.p[k]
        if not np.isfinite(p[0, 0]):
            return True
        dt = t / self.sample_rate_hz - float(self.tracker.time[k])
        variance = p[0, 0] + 2 * dt * p[0, 1] + dt * dt * p[1, 1] + self.tracker.q * dt**4 / 4
        n = self._sounding_layout(n_sounded).length
        return bool(np.sqrt(max(variance, 0.0)) > 1.0 / (6 * n))

    def _update_iq(self, samples: np.ndarray, fe: FrontEndCorrection) -> FrontEndCorrection:
        if not self.settings.rx_iq_correction:
            return fe
        y = samples - fe.dc
        self._iq_moments += np.array([np.sum(y * y), np.sum(np.abs(y) ** 2)])
        beta = self._iq_moments[0] / (2 * self._iq_moments[1].real) if self._iq_moments[1].real > 0 else 0j
        return FrontEndCorrection(dc=fe.dc, beta=complex(beta))

    def _start(
        self, updates: Sequence[np.ndarray], weights: Sequence[float]
    ) -> tuple[np.ndarray, int, list[int], RoundResult]:
        """Check a round's inputs (one sentence per mistake) and open its result: (weights, values
        per update, clients with finite updates, the result, failed already if none is finite)."""
        if len(updates) != len(self.clients) or len(weights) != len(self.clients):
            raise ValueError(
                f"got {len(updates)} updates and {len(weights)} weights for {len(self.clients)} client radios"
            )
        w_all = np.asarray(weights, dtype=np.float64)
        if not (np.all(np.isfinite(w_all)) and np.all(w_all >= 0) and w_all.sum() > 0):
            raise ValueError("aggregation weights must be finite, >= 0 and not all zero")
        n_values = int(np.asarray(updates[0]).size)
        if any(np.asarray(g).size != n_values for g in updates):
            raise ValueError("every client's update must have the same length; nothing was transmitted")
        valid, rejected = split_finite(updates)
        result = RoundResult(None, np.zeros(len(updates)), [], rejected, [], 0.0, 0.0, None, None, 0)
        if not valid:
            result.failure = "every update was non-finite; nothing was transmitted"
        return w_all, n_values, valid, result

    def run(self, updates: Sequence[np.ndarray], weights: Sequence[float]) -> RoundResult:
        """One round over all clients; updates[k] goes through self.clients[k]."""
        s = self.settings
        w_all, n_values, valid, result = self._start(updates, weights)
        if not valid:
            return result

        # 0-1. Listen, acquire.
        amp = float(np.sqrt(s.tx_power))
        max_adv = int(max(self.advance[valid].max(), 0))
        t = self._next_frame(self.server.now() + s.lead_samples + max_adv)
        round_start = t
        fe = self._listen(t)
        t += max(s.quiet_samples, 0) + s.lead_samples
        acquiring = s.acquisition != "off" and (s.cfo_correction or s.timing_correction)
        need = [k for k in valid if acquiring and (s.acquisition == "every_round" or not self.acquired[k]
                                                   or self._cfo_uncertain(k, t, len(valid)))]
        if need:
            used = self._acquire(t + max_adv, need, fe, result)
            result.airtime_samples += used
            t += used + s.lead_samples + max_adv
            max_adv = int(max(self.advance[valid].max(), 0))  # the advances acquisition set
            t = self._after_acquisition(t, max_adv, len(valid), n_values)

        # 2. Sound (CFO-corrected, advanced); NCO phases are referred to t_s. A client whose pilot is
        # not found in its window is acquired again and everybody sounds once more.
        sounding = SoundingLayout(
            len(valid), s.sounding_cp, s.sounding_min_shift, s.sounding_min_length, s.sounding_repeats
        )
        # With acquisition on, only acquired clients sound: one whose marker was not found might
        # arrive anywhere, and its pilot in another client's window would spoil that one's estimates.
        checking = acquiring and s.timing_correction
        est: ChannelEstimates | None = None
        for attempt in range(2):
            t_s = t + max_adv
            sounders = [j for j, k in enumerate(valid) if not checking or self.acquired[k]]
            found = np.zeros(len(valid), dtype=bool)
            if sounders:
                if s.cfo_correction:
                    self.cfo[valid] = self.tracker.predict(valid, t_s / self.sample_rate_hz)
                    if np.isfinite(self.common_tracker.p[0, 0, 0]):
                        self.common = float(self.common_tracker.predict([0], t_s / self.sample_rate_hz)[0])
                applied = self.cfo[valid].copy()
                common_applied = self.common
                for j in sounders:
                    k = valid[j]
                    pilot = sounding.pilot(j, amp)
                    start = t_s - int(self.advance[k])
                    self.clients[k].transmit(correct(pilot, self.cfo[k], start - t_s), start)
                raw = self.server.receive(sounding.burst_length, t_s)
                result.captures["sounding"] = (t_s, raw)
                fe = self._update_iq(raw, fe)
                result.frontend = fe
                est = estimate_channels(correct(fe.apply(raw), common_applied, 0.0), sounding, amp)
                result.airtime_samples += sounding.burst_length
                heard_now = sounding_found(est, sounding, amp, s.false_alarm_probability) if checking else True
                found[sounders] = np.broadcast_to(heard_now, found.shape)[sounders]
            lost = [k for j, k in enumerate(valid) if not found[j]]
            if not lost or attempt == 1:
                break
            t = (t_s + sounding.burst_length if sounders else t) + s.lead_samples
            used = self._acquire(t + max_adv, lost, fe, result)
            result.airtime_samples += used
            result.diagnostics["reacquired"] = float(len(lost))
            t += used + s.lead_samples + max_adv
            max_adv = int(max(self.advance[valid].max(), 0))
            t = self._after_acquisition(t, max_adv, len(valid), n_values)
        result.lost = lost
        result.diagnostics["lost"] = float(len(lost))
        for k in lost:
            self.acquired[k] = False  # acquired again next round
        rows_found = [j for j in range(len(valid)) if found[j]]
        if est is None or not rows_found:
            result.truncated = list(valid)
            result.failure = (
                f"no client's sounding was found inside its {s.sounding_cp}-sample cyclic prefix, even after acquiring "
                f"them again (timing offsets beyond acquisition_search_samples = {s.acquisition_search_samples} "
                "samples, or every client in a deep fade); no aggregation frame was sent"
            )
            if est is not None:
                result.channels, result.noise_power = est, est.noise_power
            return result
        result.channels = est
        result.noise_power = est.noise_power

        # 3. Feed back: CFO, timing advance, power control, weights, common scale (the trackers and
        # advances learn only from the clients whose pilots were found).
        heard = [valid[j] for j in rows_found]
        if s.cfo_correction:
            snr = s.tx_power * np.abs(est.gains[rows_found]) ** 2 / max(est.noise_power, 1e-30)
            variance = residual_cfo_variance(sounding.length, s.sounding_repeats, snr)
            inverse = 1.0 / variance
            shared = float(np.sum(est.cfo[rows_found] * inverse) / np.sum(inverse))  # common part of the residuals
            self.common = float(
                self.common_tracker.update([0], np.array([common_applied + shared]), np.array([1.0 / np.sum(inverse)]))[0]
            )
            self.cfo[heard] = self.tracker.update(heard, applied[rows_found] + est.cfo[rows_found] - shared, variance)
        sounded_advance = {k: int(self.advance[k]) for k in valid}  # the advance the sounding was sent with
        arrival = {k: int(self.advance[k]) + int(est.delays[j]) for j, k in enumerate(valid)}
        frac = {k: float(est.fractional[j]) for j, k in enumerate(valid)}
        if s.timing_correction:
            for k in heard:
                self.advance[k] = arrival[k] - self.target_lag
        result.client_cfo_hz = {k: float((self.cfo[k] + self.common) * self.sample_rate_hz) for k in heard}
        result.client_delay = {k: arrival[k] + frac[k] for k in heard}

        ofdm = s.waveform == "ofdm"
        if ofdm:
            channel = self.ofdm.response_at(est.response, est.response_lags)
            n_fft = self.ofdm.n_fft
        else:
            channel = est.gains
            n_fft = 1
        if lost:  # a lost client's estimates are noise: it stays silent (|h| = 0 never transmits)
            channel = np.where(found.reshape((-1,) + (1,) * (channel.ndim - 1)), channel, 0.0)
        gain2 = np.abs(channel) ** 2
        mean_gain2 = float(np.mean(gain2[rows_found]))  # over the clients heard
        w_valid = w_all[valid] / w_all[valid].sum()
        scale_all = common_scale([update_statistics(updates[k]) for k in valid], w_valid)
        spread = float(np.mean([np.var(np.asarray(updates[k], dtype=np.float64)) for k in valid]))
        if s.truncation == "full" or s.truncation_threshold_db is None:
            threshold = 0.0
        elif s.truncation == "optimal":
            threshold = optimal_threshold(
                gain2, w_valid, s.tx_power, est.noise_power, scale_all.scale, spread, n_fft
            )
        else:
            threshold = mean_gain2 * 10.0 ** (s.truncation_threshold_db / 10.0)
        pc = truncated_inversion(channel, s.tx_power, threshold, n_fft)
        noise_err, bias_err = predicted_error(
            gain2, w_valid, s.tx_power, est.noise_power, scale_all.scale, spread, threshold, n_fft
        )
        result.diagnostics.update(
            threshold_rel_db=float(10 * np.log10(threshold / mean_gain2)) if threshold > 0 else float("-inf"),
            predicted_noise=noise_err,
            predicted_bias=bias_err,
            dc_dbfs=float(20 * np.log10(abs(fe.dc))) if fe.dc else float("-inf"),
            image_rejection_db=fe.image_rejection_db,
        )
        participants = pc.participants
        active = [k for j, k in enumerate(valid) if participants[j]]
        result.participants = active
        result.truncated = [k for j, k in enumerate(valid) if not participants[j]]
        result.eta = pc.eta
        if not active:
            result.failure = "every client was in a deep fade (below the truncation threshold); nobody transmitted"
            return result
        if w_all[active].sum() <= 0:
            result.failure = "every participant has weight 0; nothing was transmitted"
            return result
        w = np.zeros(len(updates))
        w[active] = w_all[active] / w_all[active].sum()
        result.weights = w
        scale = common_scale([update_statistics(updates[k]) for k in active], w[active])
        n_symbols = symbol_count(n_values)
        clip = peak_clip_level(s.tx_power, s.dac_peak) if s.peak_policy == "clip" else None
        clipped = 0
        for k in active:
            if clip is not None:
                clipped += int(np.sum(np.abs(normalise(updates[k], float(w[k]), scale)) > clip))
        result.diagnostics["clipped_values"] = float(clipped)

        # 4. Build every participant's burst, then limit the peak, then transmit together.
        jobs: list[tuple[int, np.ndarray, float]] = []  # (client, burst, fractional delay to apply)
        if ofdm:
            layout_o = OfdmAggregationLayout(n_symbols, self.ofdm)
            for j, k in enumerate(valid):
                if participants[j]:
                    burst = client_burst_ofdm(client_symbols(updates[k], float(w[k]), scale, clip), pc.precoders[j], layout_o)
                    jobs.append((k, burst, 0.0))
            frame_length = layout_o.burst_length
        else:
            layout = AggregationLayout(n_symbols, s.preamble_length, s.pilot_spacing)
            for j, k in enumerate(valid):
                if participants[j]:
                    burst = client_burst(client_symbols(updates[k], float(w[k]), scale, clip), pc.precoders[j], layout)
                    delay = -frac[k] if s.fractional_timing and s.timing_correction else 0.0
                    jobs.append((k, burst, delay))
            frame_length = layout.burst_length
        t_1 = t_s + sounding.burst_length + s.lead_samples + max(
            [arrival[k] - self.target_lag for k in active] + [0]
        ) + PAD
        lead = {k: (arrival[k] if s.timing_correction else self.target_lag) for k in active}
        # Segments (max_segment_samples): cut the frame and leave a gap before every segment after
        # the first for a phase re-sounding and its feedback. Gaps are inserted as zeros before
        # re-timing, so each client's clock stretch is applied over the whole span, gaps included.
        unit = self.ofdm.symbol_length if ofdm else 1
        cuts = segment_cuts(frame_length, s.max_segment_samples, unit, unit if ofdm else s.preamble_length + 1)
        resound = SoundingLayout(len(valid), s.sounding_cp, s.sounding_min_shift, s.sounding_min_length, 1)
        overhang = PAD + max([sounded_advance[k] - lead[k] for k in active] + [0])
        gap = 0
        if cuts:
            gap = overhang + resound.burst_length + max(
                lead[k] + PAD + max(s.lead_samples, -sounded_advance[k]) for k in active
            )
        holes = [c + i * gap for i, c in enumerate(cuts)]  # gap starts, in the frame with gaps
        span = frame_length + len(cuts) * gap
        if cuts:
            jobs = [(k, _with_gaps(x, cuts, gap), delay) for k, x, delay in jobs]
        # Re-time every burst: fractional advance, the clock drift since sounding, and the stretch of
        # its sample clock relative to the receiver's (locked clocks: CFO / carrier).
        retimed = []
        for k, x, delay in jobs:
            stretch = 0.0
            if s.sco_correction and s.sample_clock_locked and s.cfo_correction:
                stretch = float((self.cfo[k] + self.common) * self.sample_rate_hz / s.center_freq_hz)
                delay += stretch * (t_1 - lead[k] - t_s)
            if delay != 0.0 or stretch != 0.0:
                retimed.append((k, retime(x, delay, stretch), PAD))
            else:
                retimed.append((k, x, 0))
        jobs = retimed
        peak = max(float(np.max(np.abs(x))) for _, x, _ in jobs)
        backoff = min(1.0, s.dac_peak / peak) if peak > 0 else 1.0
        eta = pc.eta * backoff**2
        result.eta = eta
        result.diagnostics["papr_backoff_db"] = float(-20 * np.log10(backoff))
        change = {k: float(self.cfo[k] - applied[j]) for j, k in enumerate(valid)}
        rate = {k: float(self.tracker.x[k, 1]) / self.sample_rate_hz for k in active}

        def nco(k: int, x: np.ndarray, at: int) -> np.ndarray:
            """Client k's carrier correction of samples sent from `at` (its clock). The NCO phase is
            referred to t_s at the transmitter; the sounding saw the old correction through the link's
            lag T_k, so the changed one needs exp(-j 2 pi change T_k) on top. The tracked drift
            (cycles/sample per second) bends the NCO into a chirp."""
            if not s.cfo_correction:
                return x
            return correct(x, self.cfo[k], at - t_s, rate[k]) * np.exp(-2j * np.pi * change[k] * result.client_delay[k])

        bursts = {k: x * backoff for k, x, _ in jobs}
        starts = {k: t_1 - lead[k] - pad for k, _, pad in jobs}
        # piece i of a burst: from the end of gap i-1 (its re-timed head starts PAD early) to the start
        # of gap i (plus the re-timed tail)
        pieces = {
            k: list(zip([0] + [h + gap for h in holes], [2 * pad + h for h in holes] + [len(x)])) for k, x, pad in jobs
        }
        correction = {k: 0.0 for k in active}  # phase (rad) each client takes off its current segment
        rows = [j for j in range(len(valid)) if participants[j]]  # sounding rows of the participants
        drift: list[np.ndarray] = []  # per-client phase drift each (re-)sounding measured (rad)
        if s.max_segment_samples > 0:
            # The first segment's phase reference: the sounding's last period (the last cp + N samples
            # hold a whole cyclic period), closer to the payload than the mean over all periods that
            # the gains are referred from. It was sent with the old NCO; the payload's NCO differs by
            # `change`, which has turned client k by -2 pi change t_last by then.
            last = sounding.burst_length - resound.burst_length
            y = correct(fe.apply(raw[last:]), common_applied, last)
            t_last = last + sounding.cp + (sounding.length - 1) / 2.0
            turn = np.exp(-2j * np.pi * np.array([change[k] for k in active]) * t_last)
            theta = segment_phases(estimate_channels(y, resound, amp).taps[rows] * turn[:, None], est.taps[rows])
            drift.append(theta)
            correction.update({k: float(theta[n]) for n, k in enumerate(active)})

        def send(segment: int) -> None:
            for k in active:
                lo, hi = pieces[k][segment]
                x = nco(k, bursts[k][lo:hi], starts[k] + lo)
                if correction[k]:
                    x = x * np.exp(-1j * correction[k])
                self.clients[k].transmit(x, starts[k] + lo)

        # 4-5. Transmit together and receive; between segments, re-sound and feed back phases.
        send(0)
        common_rate = float(self.common_tracker.x[0, 1]) / self.sample_rate_hz
        parts: list[np.ndarray] = []  # received pieces, gaps included, in time order
        cursor = t_1 - s.guard_samples
        for i, h in enumerate(holes):
            t_r = t_1 + h + overhang
            for j, k in zip(rows, active):
                at = t_r - sounded_advance[k]  # sent like the sounding, through the payload's NCO
                self.clients[k].transmit(nco(k, resound.pilot(j, amp), at), at)
            parts.append(self.server.receive(t_r - cursor, cursor))
            raw_r = self.server.receive(resound.burst_length, t_r)
            parts.append(raw_r)
            cursor = t_r + resound.burst_length
            y = fe.apply(raw_r)
            if s.cfo_correction:
                y = correct(y, self.common, t_r - t_s, common_rate)
            theta = segment_phases(estimate_channels(y, resound, amp).taps[rows], est.taps[rows])
            drift.append(theta)
            correction.update({k: float(theta[n]) for n, k in enumerate(active)})
            send(i + 1)
        parts.append(self.server.receive(t_1 + span + s.guard_samples - cursor, cursor))
        result.airtime_samples += span
        result.timing = {"sounding_at": t_s, "payload_at": t_1}
        result.diagnostics["round_samples"] = float(t_1 + span - round_start)
        result.diagnostics.update(
            segments=float(len(cuts) + 1),
            segment_overhead_samples=float(len(cuts) * gap),
            resounding_samples=float(len(cuts) * resound.burst_length),
            segment_phase_rms_deg=float(np.degrees(np.sqrt(np.mean(np.square(drift))))) if drift else 0.0,
        )

        received = np.concatenate(parts)
        result.captures["payload"] = (t_1 - s.guard_samples, received)
        window = fe.apply(received)
        if s.cfo_correction:
            window = correct(window, self.common, t_1 - s.guard_samples - t_s, common_rate)
        if holes:  # splice the gaps out: the frame as if it had been sent in one piece
            keep = np.ones(len(window), dtype=bool)
            for h in holes:
                keep[s.guard_samples + h : s.guard_samples + h + gap] = False
            window = window[keep]
        try:
            if ofdm:
                active_f = pc.active[participants]  # (n_active, n_used)
                w_act = w[active]
                carrier_w = (w_act[:, None] * active_f).sum(axis=0)
                carrier_n = active_f.sum(axis=0)
                estimate, report = receive_sum_ofdm(
                    window, layout_o, eta, scale, n_values, carrier_w, carrier_n, s.false_alarm_probability
                )
                result.value_weights = self._value_weights(pc.active, valid, w, n_values)
                data_w = carrier_w[self.ofdm.data_slots]
                inv_w2 = np.where(data_w > 0, 1.0 / np.where(data_w > 0, data_w, 1.0) ** 2, 0.0).mean()
            else:
                estimate, report = receive_sum(
                    window, layout, eta, scale, n_values, 1.0, len(active), s.false_alarm_probability
                )
                inv_w2 = 1.0
        except FrameNotDetectedError as exc:
            result.failure = str(exc)
            return result
        result.estimate = estimate
        result.detection_metric = report.detection.metric
        result.alignment = report.alignment
        result.error_variance_theory = est.noise_power / (2.0 * eta) * scale.scale**2 * inv_w2
        result.diagnostics.update(
            timing_error=float(report.detection.index - s.guard_samples),
            residual_cfo_hz=float(report.residual_cfo * self.sample_rate_hz),
            pilot_snr_db=float(report.pilot_snr_db),
            lost_values=float(report.lost_values),
        )
        return result

    def _value_weights(self, active: np.ndarray, valid: list[int], w: np.ndarray, n_values: int) -> np.ndarray:
        """(clients, n_values) weight of each client in each value (OFDM: 0 where it was silent)."""
        o = self.ofdm
        n_sym = symbol_count(n_values)
        carrier_of_symbol = np.resize(np.arange(o.n_data), n_sym)
        carrier_of_value = np.repeat(carrier_of_symbol, 2)[:n_values]
        out = np.zeros((len(self.clients), n_values))
        for j, k in enumerate(valid):
            on = active[j][o.data_slots]
            out[k] = w[k] * on[carrier_of_value]
        return out
