"""The loopback air: emulated radios on one physical clock, summed by an emulated channel.

It behaves like timed hardware. A transmit schedules a burst at a sample time; a receive returns a
window at a sample time and moves the air's clock to the window's end; asking for a time that has
already passed raises `LateCommandError`, exactly as a USRP reports a late command. Bursts that
overlap at a receiver add up, each through its own link (`channel.LinkModel`), then the receiver
adds complex white Gaussian noise and applies its front end. Everything random is drawn from the
air's seed.

Clocks: the air keeps *true time* (samples of the nominal rate). Each radio counts samples on its
own clock (`oscillator.Oscillator`), which runs fast or slow by its sample-clock error; `now()`,
`transmit(at_sample)` and `receive(at_sample)` of a radio are in that radio's clock, and lateness is
checked in true time. With no oscillator impairment every clock is the true clock.

Order of operations (DESIGN.md section 3):
    TX (at transmit):  IQ imbalance -> DC -> DAC clip (counted) -> tx gain (RadioConfig.tx_gain_db <= 0)
    each link:         delay + SCO resampling -> multipath / block fading -> CFO and phase noise
    RX (at receive):   sum over bursts -> thermal noise (noise_power, at the receiver input)
                       -> IQ imbalance -> rx gain (RadioConfig.rx_gain_db) -> DC -> ADC clip + quantise
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from airfl.radio.base import Capabilities, LateCommandError, RadioConfig, RadioError, as_baseband
from airfl.radio.channel import DEFAULT_CENTER_FREQ_HZ, ChannelConfig, LinkModel
from airfl.radio.frontend import Frontend
from airfl.radio.multipath import exponential_pdp
from airfl.radio.oscillator import Oscillator
from airfl.radio.seeding import TAG_NOISE, seeded_rng, stable_id

LOOPBACK_MAX_RATE_HZ = 61.44e6


@dataclass(frozen=True)
class AirConfig:
    """The emulated medium: its seed, its nominal sample clock (Hz), its carrier (Hz) and the physics
    of its links. The carrier sets the carrier frequency offsets of `ChannelConfig.oscillator`."""

    seed: int = 0
    sample_rate_hz: float = 1e6
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    center_freq_hz: float = DEFAULT_CENTER_FREQ_HZ

    def __post_init__(self) -> None:
        if not 0 < self.sample_rate_hz <= LOOPBACK_MAX_RATE_HZ:
            raise ValueError(
                f"sample_rate_hz must be in (0, {LOOPBACK_MAX_RATE_HZ:g}] Hz, got {self.sample_rate_hz}"
            )
        if not (math.isfinite(self.center_freq_hz) and self.center_freq_hz > 0):
            raise ValueError(f"center_freq_hz must be a finite carrier > 0 Hz, got {self.center_freq_hz}")


@dataclass
class _Burst:
    tx: str
    start: int  # on the transmitter's clock
    samples: np.ndarray  # after the transmitter's front end
    true_end: float  # true time after which it can no longer reach any receiver


@dataclass
class _Cyclic:
    """A buffer repeating forever from one transmitter (a stock Pluto's cyclic DMA), as one span.

    Sample n of the transmitter's clock carries samples[(n - origin) % len(samples)] for true times
    in [true_start, true_stop); nothing is materialised beyond the windows that hear it.
    carrier_offset_hz / carrier_phase: a retuned transmit LO (Hz from the radio's own carrier) and
    the phase (rad) it adds at true time 0, applied continuously in true time (0: none).
    """

    tx: str
    samples: np.ndarray  # one period, after the transmitter's front end
    origin: int  # on the transmitter's clock
    true_start: float
    true_stop: float = math.inf
    carrier_offset_hz: float = 0.0
    carrier_phase: float = 0.0


def _clock_tolerance(t: float) -> float:
    """Slack (samples) for comparing clock readings computed in floating point."""
    return 1e-7 + 1e-12 * abs(t)


class LoopbackAir:
    """Several emulated radios sharing one medium and one physical (true) clock."""

    def __init__(self, config: AirConfig | None = None):
        self.config = config or AirConfig()
        self._true_now = 0.0
        self._bursts: list[_Burst] = []
        self._cyclic: list[_Cyclic] = []
        #: true time (samples) of the latest host operation of an untimed radio (radio/cyclic.py)
        self.host_time = 0.0
        self._links: dict[tuple[str, str], LinkModel] = {}
        self._radios: dict[str, LoopbackRadio] = {}
        self._oscillators: dict[str, Oscillator] = {}
        self._frontends: dict[str, Frontend] = {}
        self._noise_rngs: dict[str, np.random.Generator] = {}
        self._dac_over: dict[str, int] = {}
        self._adc_clipped: dict[str, int] = {}
        self.samples_transmitted = 0
        c = self.config.channel
        # How long after its last sample a burst can still be heard (samples): delay, taps, interpolator.
        self._reach = (
            c.max_delay_samples + 1 + len(exponential_pdp(c.rms_delay_spread_ns * 1e-9, self.config.sample_rate_hz))
            + c.resampler_half_length + 2
        )

    @property
    def sample_rate_hz(self) -> float:
        return self.config.sample_rate_hz

    def now(self) -> int:
        """The air's true clock (samples), rounded up: the end of the latest window any receiver captured."""
        return math.ceil(self._true_now - _clock_tolerance(self._true_now))

    def true_time(self) -> float:
        """The air's true clock (samples, fractional when radio clocks are offset)."""
        return self._true_now

    def radio(self, name: str) -> LoopbackRadio:
        """The radio called `name` on this air, created on first use (or anew after close())."""
        if not name:
            raise ValueError("a loopback radio needs a non-empty name, e.g. 'client0' or 'server'")
        if name not in self._radios or self._radios[name].closed:
            self._radios[name] = LoopbackRadio(self, name)
        return self._radios[name]

    # -- truth (for tests and calibration) -------------------------------------------------
    def oscillator(self, name: str) -> Oscillator:
        """Radio `name`'s reference oscillator: ppm_at(t), drift, linewidth, its sample clock."""
        osc = self._oscillators.get(name)
        if osc is None:
            osc = self._oscillators[name] = Oscillator(
                self.config.channel.oscillator, name, self.config.seed, self.sample_rate_hz, self.config.center_freq_hz
            )
        return osc

    def frontend(self, name: str) -> Frontend:
        """Radio `name`'s front end: IQ imbalance (tx/rx gain dB, phase deg, mu, nu), DC offsets, ADC bits."""
        fe = self._frontends.get(name)
        if fe is None:
            fe = self._frontends[name] = Frontend(self.config.channel.frontend, name, self.config.seed)
        return fe

    def link(self, tx: str, rx: str) -> LinkModel:
        """The link model from radio `tx` to radio `rx` (also the truth tests compare against)."""
        key = (tx, rx)
        if key not in self._links:
            self._links[key] = LinkModel(
                self.config.channel,
                self.config.sample_rate_hz,
                self.config.seed,
                tx,
                rx,
                center_freq_hz=self.config.center_freq_hz,
                tx_oscillator=self.oscillator(tx),
                rx_oscillator=self.oscillator(rx),
            )
        return self._links[key]

    def clipped_samples(self, name: str) -> int:
        """Transmitted samples of radio `name` whose I or Q exceeded the DAC's full scale (clipped when
        FrontendConfig.dac_clipping is on; counted either way)."""
        return self._dac_over.get(name, 0)

    def adc_clipped_samples(self, name: str) -> int:
        """Received samples of radio `name` whose I or Q clipped at the ADC (needs FrontendConfig.adc_bits)."""
        return self._adc_clipped.get(name, 0)

    def set_noise_power(self, noise_power: float) -> None:
        """Change the receiver noise power (full-scale units squared per complex sample)."""
        if noise_power < 0:
            raise ValueError(f"noise_power must be >= 0, got {noise_power}")
        self.config = replace(self.config, channel=replace(self.config.channel, noise_power=noise_power))
        for link in self._links.values():
            link.config = self.config.channel

    # -- clocks ----------------------------------------------------------------------------
    def local_now(self, name: str) -> int:
        """Radio `name`'s clock (samples) at the air's true time, rounded up."""
        local = float(self.oscillator(name).local_time(self._true_now))
        return math.ceil(local - _clock_tolerance(local))

    def _check_on_time(self, name: str, what: str, at_sample: int) -> None:
        local = float(self.oscillator(name).local_time(self._true_now))
        if at_sample < local - _clock_tolerance(local):
            raise LateCommandError(
                f"radio {name!r} asked to {what} at sample {at_sample}, but its clock is already at "
                f"{math.ceil(local - _clock_tolerance(local))}; schedule {'bursts' if what == 'transmit' else 'receive windows'} in the future"
            )

    # -- used by LoopbackRadio -------------------------------------------------------------
    def _schedule(self, tx: str, samples: np.ndarray, at_sample: int, tx_gain_db: float = 0.0) -> None:
        self._check_on_time(tx, "transmit", at_sample)
        out, n_over = self.frontend(tx).transmit(samples, tx_gain_db)
        if n_over:
            self._dac_over[tx] = self._dac_over.get(tx, 0) + n_over
        end = float(self.oscillator(tx).true_time(at_sample + len(samples))) + self._reach
        self._bursts.append(_Burst(tx, int(at_sample), out, end))
        self.samples_transmitted += len(samples)

    def _capture(self, rx: str, n_samples: int, at_sample: int, rx_gain_db: float = 0.0) -> np.ndarray:
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        self._check_on_time(rx, "receive from", at_sample)
        out = np.zeros(n_samples, dtype=np.complex128)
        win_end = at_sample + n_samples
        for burst in self._bursts:
            if burst.tx == rx:
                continue  # a radio does not hear itself
            got = self.link(burst.tx, rx).propagate(burst.samples, burst.start, at_sample, win_end)
            if got is not None:
                lo, seg = got
                out[lo - at_sample : lo - at_sample + len(seg)] += seg
        for span in self._cyclic:
            if span.tx != rx:
                self._add_cyclic(span, rx, out, at_sample)
        noise_power = self.config.channel.noise_power
        if noise_power > 0:
            rng = self._noise_rngs.get(rx)
            if rng is None:
                rng = self._noise_rngs[rx] = seeded_rng(self.config.seed, stable_id(rx), TAG_NOISE)
            noise = rng.standard_normal((2, n_samples))
            out += np.sqrt(noise_power / 2.0) * (noise[0] + 1j * noise[1])
        out, n_clipped = self.frontend(rx).receive(out, rx_gain_db)
        if n_clipped:
            self._adc_clipped[rx] = self._adc_clipped.get(rx, 0) + n_clipped
        self._true_now = max(self._true_now, float(self.oscillator(rx).true_time(win_end)))
        self._prune()
        return out

    def _prune(self) -> None:
        self._bursts = [b for b in self._bursts if b.true_end > self._true_now]
        self._cyclic = [c for c in self._cyclic if c.true_stop + self._reach > self._true_now]

    # -- cyclic buffers (used by radio/cyclic.py) ---------------------------------------------
    def _start_cyclic(self, tx: str, samples: np.ndarray, origin: int, true_start: float, tx_gain_db: float = 0.0,
                      carrier_offset_hz: float = 0.0, carrier_phase: float = 0.0) -> _Cyclic:
        """Repeat `samples` from radio `tx` from true time `true_start` on (a running buffer of `tx`
        stops there). The front end is applied once to the period (DAC overs counted once)."""
        self._stop_cyclic(tx, true_start)
        out, n_over = self.frontend(tx).transmit(samples, tx_gain_db)
        if n_over:
            self._dac_over[tx] = self._dac_over.get(tx, 0) + n_over
        span = _Cyclic(tx, out, int(origin), float(true_start), math.inf, float(carrier_offset_hz), float(carrier_phase))
        self._cyclic.append(span)
        self.samples_transmitted += len(samples)
        return span

    def _retune_cyclic(self, tx: str, true_time: float, carrier_offset_hz: float, carrier_phase: float) -> _Cyclic | None:
        """Radio `tx`'s running buffer goes on unchanged from true time `true_time`, with a new
        transmit-LO offset (Hz) and phase (rad); returns the new span (None if nothing runs)."""
        running = [c for c in self._cyclic if c.tx == tx and c.true_stop == math.inf]
        if not running:
            return None
        old = running[0]
        old.true_stop = max(float(true_time), old.true_start)
        span = _Cyclic(tx, old.samples, old.origin, old.true_stop, math.inf, float(carrier_offset_hz), float(carrier_phase))
        self._cyclic.append(span)
        return span

    def _stop_cyclic(self, tx: str, true_time: float) -> None:
        """End radio `tx`'s running cyclic buffer at true time `true_time` (samples), if it has one."""
        for span in self._cyclic:
            if span.tx == tx and span.true_stop == math.inf:
                span.true_stop = max(float(true_time), span.true_start)

    def _add_cyclic(self, span: _Cyclic, rx: str, out: np.ndarray, win_lo: int) -> None:
        """Add what a cyclic buffer contributes to rx samples [win_lo, win_lo + len(out)): the
        periodic signal over just the transmitter samples that can reach the window, sent through
        the link like a burst (every impairment applies)."""
        link = self.link(span.tx, rx)
        tx_osc, rx_osc = link.tx_oscillator, link.rx_oscillator
        win_hi = win_lo + len(out)
        t_lo, t_hi = (float(rx_osc.true_time(n)) for n in (win_lo, win_hi))
        first = max(float(tx_osc.local_time(t_lo - link.total_delay)) - self._reach,
                    float(tx_osc.local_time(span.true_start)))
        last = min(float(tx_osc.local_time(t_hi - link.total_delay)) + self._reach,
                   float(tx_osc.local_time(span.true_stop)) if math.isfinite(span.true_stop) else math.inf)
        a, b = math.ceil(first - _clock_tolerance(first)), math.ceil(last - _clock_tolerance(last))
        if b <= a:
            return
        n = np.arange(a, b, dtype=np.int64)
        got = link.propagate(span.samples[(n - span.origin) % len(span.samples)], a, win_lo, win_hi)
        if got is None:
            return
        lo, seg = got
        if span.carrier_offset_hz:
            t = rx_osc.true_time(np.arange(lo, lo + len(seg), dtype=np.float64))
            seg = seg * np.exp(1j * (span.carrier_phase + 2 * np.pi * span.carrier_offset_hz / self.sample_rate_hz * t))
        out[lo - win_lo : lo - win_lo + len(seg)] += seg


class LoopbackRadio:
    """An emulated radio on a `LoopbackAir`: timed transmit and receive on its own clock, full duplex."""

    def __init__(self, air: LoopbackAir, name: str):
        self._air = air
        self._name = name
        self._config = RadioConfig(sample_rate_hz=air.sample_rate_hz)
        self._closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def air(self) -> LoopbackAir:
        return self._air

    @property
    def config(self) -> RadioConfig:
        return self._config

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            name=f"loopback:{self._name}",
            timed_tx=True,
            timed_rx=True,
            cyclic_tx=False,
            full_duplex=True,
            max_sample_rate_hz=LOOPBACK_MAX_RATE_HZ,
            adc_bits=self._air.config.channel.frontend.adc_bits,
        )

    def configure(self, config: RadioConfig) -> None:
        """Accept the air's sample rate (the clock is the air's), any carrier (the air's
        `center_freq_hz` sets CFOs), tx_gain_db <= 0 dB (an attenuation, as on the AD936x) and a
        finite rx_gain_db; the gains scale what this radio sends and receives from then on."""
        self._check_open()
        if config.sample_rate_hz != self._air.sample_rate_hz:
            raise RadioError(
                f"loopback radio {self._name!r} runs on its air's clock of {self._air.sample_rate_hz:g} Hz; "
                f"it cannot be set to {config.sample_rate_hz:g} Hz (configure the air instead)"
            )
        if not (math.isfinite(config.tx_gain_db) and config.tx_gain_db <= 0.0):
            raise RadioError(
                f"loopback radio {self._name!r}: tx_gain_db {config.tx_gain_db} dB must be <= 0 dB "
                "(the TX gain is an attenuation: 0 dB is full scale, as on the AD936x)"
            )
        if not math.isfinite(config.rx_gain_db):
            raise RadioError(f"loopback radio {self._name!r}: rx_gain_db must be finite, got {config.rx_gain_db}")
        self._config = config

    def now(self) -> int:
        """This radio's sample clock (samples) at the air's current true time."""
        return self._air.local_now(self._name)

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        self._check_open()
        self._air._schedule(self._name, as_baseband(samples), int(at_sample), self._config.tx_gain_db)

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        self._check_open()
        return self._air._capture(self._name, int(n_samples), int(at_sample), self._config.rx_gain_db)

    # -- reference correction (the AD9361's xo_correction, as on PlutoRadio) -----------------
    def has_xo_correction(self) -> bool:
        """Emulated radios can always correct their reference."""
        return True

    def xo_correction(self) -> int:
        """The reference frequency this radio is told it has (Hz; nominal 40e6)."""
        return int(round(self._air.oscillator(self._name).reference_hz))

    def set_xo_correction(self, reference_hz: int) -> None:
        """Tell this radio its reference runs at `reference_hz` (Hz, nominally 40e6), from the air's
        current true time on: its carrier and locked sample clock scale by 40e6 / reference_hz,
        phase-continuously (oscillator.Oscillator.set_reference_hz). Within +-200 ppm of 40 MHz."""
        self._check_open()
        osc = self._air.oscillator(self._name)
        try:
            osc.set_reference_hz(float(reference_hz), self._air.true_time())
        except ValueError as exc:
            raise RadioError(f"loopback radio {self._name!r}: {exc}") from exc
        for burst in self._air._bursts:  # bursts already scheduled now leave on the corrected clock
            if burst.tx == self._name:
                burst.true_end = float(osc.true_time(burst.start + len(burst.samples))) + self._air._reach

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RadioError(f"loopback radio {self._name!r} is closed; open it again with open_radio()")
