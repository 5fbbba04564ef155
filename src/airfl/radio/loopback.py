"""The loopback air: emulated radios on one shared sample clock, summed by an emulated channel.

It behaves like timed hardware. A transmit schedules a burst at a sample time; a receive returns a
window at a sample time and moves the clock to the window's end; asking for a time that has already
passed raises `LateCommandError`, exactly as a USRP reports a late command. Bursts that overlap at a
receiver add up, each through its own link (`channel.LinkModel`), then the receiver adds complex
white Gaussian noise. Everything random is drawn from the air's seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from airfl.radio.base import Capabilities, LateCommandError, RadioConfig, RadioError, as_baseband
from airfl.radio.channel import ChannelConfig, LinkModel, seeded_rng, stable_id

LOOPBACK_MAX_RATE_HZ = 61.44e6


@dataclass(frozen=True)
class AirConfig:
    """The emulated medium: its seed, its sample clock (Hz) and the physics of its links."""

    seed: int = 0
    sample_rate_hz: float = 1e6
    channel: ChannelConfig = field(default_factory=ChannelConfig)

    def __post_init__(self) -> None:
        if not 0 < self.sample_rate_hz <= LOOPBACK_MAX_RATE_HZ:
            raise ValueError(
                f"sample_rate_hz must be in (0, {LOOPBACK_MAX_RATE_HZ:g}] Hz, got {self.sample_rate_hz}"
            )


@dataclass
class _Burst:
    tx: str
    start: int
    samples: np.ndarray

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


class LoopbackAir:
    """Several emulated radios sharing one sample clock and one medium."""

    def __init__(self, config: AirConfig | None = None):
        self.config = config or AirConfig()
        self._now = 0
        self._bursts: list[_Burst] = []
        self._links: dict[tuple[str, str], LinkModel] = {}
        self._radios: dict[str, LoopbackRadio] = {}
        self._noise_rngs: dict[str, np.random.Generator] = {}
        self.samples_transmitted = 0

    @property
    def sample_rate_hz(self) -> float:
        return self.config.sample_rate_hz

    def now(self) -> int:
        """The shared clock (samples): the end of the latest window any receiver has captured."""
        return self._now

    def radio(self, name: str) -> LoopbackRadio:
        """The radio called `name` on this air, created on first use (or anew after close())."""
        if not name:
            raise ValueError("a loopback radio needs a non-empty name, e.g. 'client0' or 'server'")
        if name not in self._radios or self._radios[name].closed:
            self._radios[name] = LoopbackRadio(self, name)
        return self._radios[name]

    def link(self, tx: str, rx: str) -> LinkModel:
        """The link model from radio `tx` to radio `rx` (also the truth tests compare against)."""
        key = (tx, rx)
        if key not in self._links:
            self._links[key] = LinkModel(
                self.config.channel, self.config.sample_rate_hz, self.config.seed, tx, rx
            )
        return self._links[key]

    def set_noise_power(self, noise_power: float) -> None:
        """Change the receiver noise power (full-scale units squared per complex sample)."""
        if noise_power < 0:
            raise ValueError(f"noise_power must be >= 0, got {noise_power}")
        self.config = replace(self.config, channel=replace(self.config.channel, noise_power=noise_power))
        for link in self._links.values():
            link.config = self.config.channel

    # -- used by LoopbackRadio -------------------------------------------------------------
    def _schedule(self, tx: str, samples: np.ndarray, at_sample: int) -> None:
        if at_sample < self._now:
            raise LateCommandError(
                f"radio {tx!r} asked to transmit at sample {at_sample}, but the air clock is already at "
                f"{self._now}; schedule bursts in the future"
            )
        self._bursts.append(_Burst(tx, int(at_sample), samples))
        self.samples_transmitted += len(samples)

    def _capture(self, rx: str, n_samples: int, at_sample: int) -> np.ndarray:
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        if at_sample < self._now:
            raise LateCommandError(
                f"radio {rx!r} asked to receive from sample {at_sample}, but the air clock is already at "
                f"{self._now}; receive windows must start in the future"
            )
        out = np.zeros(n_samples, dtype=np.complex128)
        win_end = at_sample + n_samples
        for burst in self._bursts:
            if burst.tx == rx:
                continue  # a radio does not hear itself
            link = self.link(burst.tx, rx)
            arrive = burst.start + link.delay_samples
            lo = max(arrive, at_sample)
            hi = min(arrive + len(burst.samples), win_end)
            if hi <= lo:
                continue
            times = np.arange(lo, hi, dtype=np.int64)
            out[lo - at_sample : hi - at_sample] += link.gain_at(times) * burst.samples[lo - arrive : hi - arrive]
        noise_power = self.config.channel.noise_power
        if noise_power > 0:
            rng = self._noise_rngs.get(rx)
            if rng is None:
                rng = self._noise_rngs[rx] = seeded_rng(self.config.seed, stable_id(rx), 3)
            noise = rng.standard_normal((2, n_samples))
            out += np.sqrt(noise_power / 2.0) * (noise[0] + 1j * noise[1])
        self._now = win_end
        self._prune()
        return out

    def _prune(self) -> None:
        horizon = self._now - self.config.channel.max_delay_samples - 1
        self._bursts = [b for b in self._bursts if b.end > horizon]


class LoopbackRadio:
    """An emulated radio on a `LoopbackAir`: timed transmit and receive, full duplex."""

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
    def capabilities(self) -> Capabilities:
        return Capabilities(
            name=f"loopback:{self._name}",
            timed_tx=True,
            timed_rx=True,
            cyclic_tx=False,
            full_duplex=True,
            max_sample_rate_hz=LOOPBACK_MAX_RATE_HZ,
        )

    def configure(self, config: RadioConfig) -> None:
        self._check_open()
        if config.sample_rate_hz != self._air.sample_rate_hz:
            raise RadioError(
                f"loopback radio {self._name!r} runs on its air's clock of {self._air.sample_rate_hz:g} Hz; "
                f"it cannot be set to {config.sample_rate_hz:g} Hz (configure the air instead)"
            )
        self._config = config

    def now(self) -> int:
        return self._air.now()

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        self._check_open()
        self._air._schedule(self._name, as_baseband(samples), int(at_sample))

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        self._check_open()
        return self._air._capture(self._name, int(n_samples), int(at_sample))

    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RadioError(f"loopback radio {self._name!r} is closed; open it again with open_radio()")
