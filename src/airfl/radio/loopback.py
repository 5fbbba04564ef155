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


def _clock_tolerance(t: float) -> float:
    """Slack (samples) for comparing clock readings computed in floating point."""
    return 1e-7 + 1e-12 * abs(t)


class LoopbackAir:
    """Several emulated radios sharing one medium and one physical (true) clock."""

    def __init__(self, config: AirConfig | None = None):
        self.config = config or AirConfig()
        self._true_now = 0.0
        self._bursts: list[_Burst] = []
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

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RadioError(f"loopback radio {self._name!r} is closed; open it again with open_radio()")
