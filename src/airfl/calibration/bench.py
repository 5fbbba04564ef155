"""The bench a calibration procedure measures: one receiving radio and its transmitters.

A procedure never cares whether the radios are real or emulated. It asks the bench to send bursts
and capture a window that contains them (`Bench.send_and_capture`), to listen to silence, or to
change a gain; the bench does it the way the radios can:

    timed   (loopback, SoapySDR with hardware time): every burst is scheduled at one future sample
            time `at` and the receiver captures from `at - pre`; `Capture.burst_at` says where the
            bursts start in the window (exactly, up to the link's own delay).
    cyclic  (stock-firmware Plutos): each transmitter repeats its burst in a cyclic buffer and the
            receiver captures "now"; the bursts sit at unknown offsets, so `Capture.burst_at` is None
            and procedures find them by correlation (they repeat with the burst length).

On the loopback the bench also exposes the truth (`Bench.air`, `Bench.air_name`), so tests can
check a procedure's answer against what the emulated air applied.

Radios are named by URI (radio/uri.py). For emulated radios the air's physics comes from a preset
(`AIR_PRESETS`: "ideal", "lab", "lab_uncalibrated", "cabled") and a seed, chosen on the command line with
`--air` and `--seed`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import numpy as np

from airfl.radio.base import Radio, RadioConfig, RadioError
from airfl.radio.channel import ChannelConfig
from airfl.radio.loopback import AirConfig, LoopbackAir, LoopbackRadio
from airfl.radio.presets import lab_impairments, uncalibrated_lab_impairments
from airfl.radio.uri import loopback_air, open_radio

DEFAULT_NOISE_POWER = 1e-4
"""Receiver noise power of emulated airs (full-scale units^2 per complex sample at the receiver
input, -40 dBFS): the lab preset's operating point (radio/presets.py)."""

CABLED_TX_SATURATION = 0.8
"""Output saturation (full-scale units) of the `cabled` preset's transmitters (Rapp, p = 2): the
compression a transmit-linearity sweep should find (P1dB about 1.4 dB below full scale)."""


def cabled_impairments(noise_power: float) -> ChannelConfig:
    """A conducted bench: the lab radios (oscillators, front ends, ADC) over cables and attenuators,
    so no fading and no multipath, and transmitters that compress near full scale."""
    lab = lab_impairments(noise_power=noise_power, fading="none", rms_delay_spread_ns=0.0)
    return replace(lab, frontend=replace(lab.frontend, tx_saturation=CABLED_TX_SATURATION))


AIR_PRESETS: dict[str, Callable[[float], ChannelConfig]] = {
    "ideal": lambda noise: ChannelConfig(fading="none", noise_power=noise),
    "lab": lambda noise: lab_impairments(noise_power=noise),
    "lab_uncalibrated": lambda noise: uncalibrated_lab_impairments(noise_power=noise),
    "cabled": cabled_impairments,
}
"""Physics of the emulated air for loopback URIs: name -> ChannelConfig for a noise power.
ideal: no impairment but the noise (unit gain, no fading). lab: every impairment of a radiated
bench of calibrated Plutos (radio/presets.py). lab_uncalibrated: the same at +-25 ppm. cabled:
a conducted bench (`cabled_impairments`): no fading or multipath, transmitters that compress."""

DEFAULT_LEAD_SAMPLES = 2048
"""How far ahead (samples) timed bursts are scheduled: room for a host to queue them."""


class BenchError(ValueError):
    """The bench cannot be set up as asked; str(error) is one sentence for the user."""


@dataclass
class Capture:
    """A received window and where the bursts in it were sent.

    samples: complex baseband from the receiver (full-scale units).
    start: the receiver's sample time of samples[0] (samples; its own clock).
    burst_at: index into `samples` where the bursts were scheduled to start (timed benches), or
        None when the bursts repeat at unknown offsets (cyclic benches).
    period: the repetition period (samples) of cyclic bursts, else None.
    """

    samples: np.ndarray
    start: int
    burst_at: int | None
    period: int | None = None


@dataclass
class Bench:
    """One receiver and its transmitters, configured alike (sample rate, carrier)."""

    receiver: Radio
    transmitters: list[Radio]
    config: RadioConfig
    receiver_uri: str
    transmitter_uris: list[str]
    lead_samples: int = DEFAULT_LEAD_SAMPLES
    tx_gains_db: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.tx_gains_db:
            self.tx_gains_db = [self.config.tx_gain_db] * len(self.transmitters)

    # -- what the bench is ------------------------------------------------------------------
    @property
    def timed(self) -> bool:
        """Whether every radio can schedule bursts and windows at a sample time."""
        radios = [self.receiver, *self.transmitters]
        return all(r.capabilities.timed_rx and r.capabilities.timed_tx for r in radios)

    @property
    def sample_rate_hz(self) -> float:
        return self.config.sample_rate_hz

    @property
    def center_freq_hz(self) -> float:
        return self.config.center_freq_hz

    @property
    def air(self) -> LoopbackAir | None:
        """The emulated air every radio is on (truth for tests), or None on real radios."""
        radios = [self.receiver, *self.transmitters]
        if all(isinstance(r, LoopbackRadio) for r in radios):
            airs = {id(r.air) for r in radios}  # type: ignore[union-attr]
            if len(airs) == 1:
                return self.receiver.air  # type: ignore[union-attr]
        return None

    @staticmethod
    def air_name(radio: Radio) -> str:
        """The name a loopback radio has on its air (its truth accessors take it)."""
        return radio.name

    def hardware(self, radio: Radio) -> str:
        """A description of the radio for SigMF's core:hw field."""
        return radio.capabilities.name

    def require_transmitters(self, procedure: str, at_least: int = 1) -> None:
        if len(self.transmitters) < at_least:
            raise BenchError(
                f"{procedure} needs at least {at_least} transmitter(s): add --tx URI (e.g. --tx loopback://bench/client0)"
            )

    # -- settings ---------------------------------------------------------------------------
    def set_rx_gain(self, gain_db: float) -> None:
        """Set the receiver's gain (dB)."""
        self.config = replace(self.config, rx_gain_db=float(gain_db))
        self.receiver.configure(replace(self.config, tx_gain_db=0.0))

    def set_tx_gain(self, index: int, gain_db: float) -> None:
        """Set transmitter `index`'s gain (dB, <= 0: an attenuation)."""
        self.tx_gains_db[index] = float(gain_db)
        self.transmitters[index].configure(replace(self.config, tx_gain_db=float(gain_db)))

    # -- measuring --------------------------------------------------------------------------
    def now(self) -> int:
        """The latest clock reading of any radio on the bench (samples)."""
        return max(r.now() for r in (self.receiver, *self.transmitters))

    def listen(self, n_samples: int) -> Capture:
        """Capture `n_samples` with every transmitter silent."""
        at = self.now() + (self.lead_samples if self.timed else 0)
        return Capture(self.receiver.receive(n_samples, at), at, None)

    def send_and_capture(
        self,
        bursts: Mapping[int, np.ndarray],
        n_samples: int,
        *,
        pre: int = 64,
        at: int | None = None,
    ) -> Capture:
        """Send each transmitter's burst (index -> samples, full-scale units) and capture a window.

        Timed bench: the bursts leave together at sample `at` (default: now + lead) and the window
        of `n_samples` starts `pre` samples earlier. Cyclic bench: each burst is zero-padded to the
        longest, repeated from a cyclic buffer, `n_samples` are captured now, then transmission stops.
        """
        if not bursts:
            raise ValueError("send_and_capture needs at least one burst")
        for i in bursts:
            if not 0 <= i < len(self.transmitters):
                raise ValueError(f"no transmitter {i} on this bench (it has {len(self.transmitters)})")
        if self.timed:
            t = self.now() + self.lead_samples + pre if at is None else int(at)
            if t - pre < self.receiver.now():
                raise RadioError(f"send_and_capture: window start {t - pre} has already passed; use a later `at`")
            for i, x in bursts.items():
                self.transmitters[i].transmit(np.asarray(x), t)
            return Capture(self.receiver.receive(n_samples, t - pre), t - pre, pre)
        period = max(len(x) for x in bursts.values())
        started: list[Radio] = []
        try:
            for i, x in bursts.items():
                radio = self.transmitters[i]
                cyclic = getattr(radio, "transmit_cyclic", None)
                if cyclic is None:
                    raise BenchError(
                        f"{radio.name} has neither hardware time nor a cyclic transmit buffer; use a timed or cyclic radio"
                    )
                buf = np.zeros(period, dtype=np.complex128)
                buf[: len(x)] = x
                cyclic(buf)
                started.append(radio)
            start = self.receiver.now()
            samples = self.receiver.receive(n_samples, start)
        finally:
            for radio in started:
                radio.stop_transmit()  # type: ignore[attr-defined]
        return Capture(samples, start, None, period)

    def close(self) -> None:
        """Close every radio (safe to call twice)."""
        for r in (self.receiver, *self.transmitters):
            r.close()


def open_bench(
    receiver_uri: str,
    transmitter_uris: Sequence[str] = (),
    *,
    sample_rate_hz: float = 1e6,
    center_freq_hz: float = 2.44e9,
    rx_gain_db: float = 0.0,
    tx_gain_db: float = 0.0,
    air: str = "lab",
    seed: int = 0,
    noise_power: float = DEFAULT_NOISE_POWER,
) -> Bench:
    """Open and configure the radios named by URI. For loopback URIs, their air is created with the
    preset `air` (AIR_PRESETS), `seed`, `noise_power` (full-scale units^2) and the carrier."""
    uris = [receiver_uri, *transmitter_uris]
    if len(set(uris)) != len(uris):
        raise BenchError("each radio may appear once: the receiver and every --tx must be different URIs")
    loopback_airs = {urlsplit(u).netloc or "default" for u in uris if urlsplit(u).scheme.lower() == "loopback"}
    if loopback_airs:
        if air not in AIR_PRESETS:
            raise BenchError(f"unknown air preset {air!r}; choose one of {', '.join(AIR_PRESETS)}")
        if noise_power < 0:
            raise BenchError(f"noise_power must be >= 0 (full-scale units^2), got {noise_power}")
        channel = AIR_PRESETS[air](noise_power)
        for name in loopback_airs:
            loopback_air(name, AirConfig(seed=seed, sample_rate_hz=sample_rate_hz, channel=channel, center_freq_hz=center_freq_hz))
    opened: list[Radio] = []
    try:
        for uri in uris:
            opened.append(open_radio(uri))
        config = RadioConfig(sample_rate_hz=sample_rate_hz, center_freq_hz=center_freq_hz, rx_gain_db=rx_gain_db)
        opened[0].configure(config)
        for radio in opened[1:]:
            radio.configure(replace(config, tx_gain_db=tx_gain_db))
    except (ValueError, RadioError) as exc:
        for radio in opened:
            radio.close()
        raise BenchError(str(exc)) from exc
    except BaseException:
        for radio in opened:
            radio.close()
        raise
    return Bench(opened[0], opened[1:], replace(config, tx_gain_db=tx_gain_db), receiver_uri, list(transmitter_uris))
