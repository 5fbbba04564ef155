"""A loopback radio that behaves like a stock-firmware ADALM-Pluto: no hardware time, cyclic transmit.

Open one with ``loopback://AIR/RADIO?mode=cyclic`` (radio/uri.py) or `CyclicLoopbackRadio(air, name)`.
It lives on a `LoopbackAir` like any loopback radio (same links, clocks, front ends, noise; every
impairment applies), but its interface is `PlutoRadio`'s (radio/pluto.py):

* ``capabilities``: timed_tx = timed_rx = False, cyclic_tx = True.
* ``transmit_cyclic(x)`` loads `x` into a cyclic buffer that repeats on the air until
  ``stop_transmit()``; nothing is materialised beyond the receive windows that hear it
  (`LoopbackAir._add_cyclic`). ``transmit(x, at_sample)`` sends once, and only "now"
  (``at_sample == now()``); any other time raises, as on a Pluto.
* ``now()`` is a software count of the samples `receive()` has delivered, not a clock;
  ``receive(n, at_sample)`` captures ``(at_sample - now()) + n`` contiguous samples starting after
  a host latency and returns the last `n` (the Pluto's semantics).

Host timing (all drawn from the air's seed and the radio's name, so runs repeat exactly):

* Every host operation (loading or stopping a buffer, starting a capture) takes effect after a
  latency uniform in [0, `max_host_latency_s`], one after the other on one host timeline
  (`LoopbackAir.host_time`): a capture never starts before the buffers loaded before it are on
  the air.
* A buffer loaded on a stopped radio starts at an arbitrary phase: its first sample leaves after the
  latency plus a uniform draw in [0, len(x)) samples. Independently started buffers therefore sit
  at unknown offsets from one another, which is what the cyclic timing mode has to measure.
* Re-loading a running buffer (to rotate it, or to swap the frame) is the open question of real
  Plutos: libiio destroys the old buffer and the DMA restarts when the new one arrives, at a
  host-dependent time. Modelled as a *restart jitter*: the new buffer keeps the old buffer's phase
  (sample 0 where the old one's sample 0 would have been, a "seamless swap") moved by an integer
  number of transmitter samples drawn uniformly from [-J, J], J = `restart_jitter_samples`.
  J = 0 is a seamless swap. The DMA restarts on a DAC clock edge, so the jitter is whole samples.
  Set J to the buffer length or more for a restart at an arbitrary phase. Which J a real Pluto has
  has not been measured here (hil_setup.md says how to measure it).
* `set_tx_carrier_offset_hz` retunes the transmit LO (a Pluto's ``tx_lo``) without stopping the
  buffer; the carrier moves from then on, with an arbitrary phase step (the synthesiser relocks).
  `configure()` stops a running buffer, as PlutoRadio.configure() destroys its buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from airfl.radio.base import (
    Capabilities,
    RadioConfig,
    RadioError,
    as_baseband,
    check_transmit_now,
    untimed_window,
)
from airfl.radio.loopback import LOOPBACK_MAX_RATE_HZ, LoopbackAir, LoopbackRadio, _Cyclic
from airfl.radio.seeding import seeded_rng, stable_id

# Stream tags of cyclic-mode draws (seeding.py's tags are small integers; these stay clear of them).
TAG_HOST_LATENCY = 40
TAG_RESTART = 41
TAG_LO_PHASE = 42


@dataclass(frozen=True)
class CyclicOptions:
    """How a cyclic-mode loopback radio's host behaves (also accepted as URI query keys).

    restart_jitter_samples: J (transmitter samples, >= 0): a re-loaded running buffer restarts at the
        old buffer's phase moved by a uniform integer draw in [-J, J]; 0 is a seamless swap.
    max_host_latency_s: each host operation takes effect after a uniform latency in [0, this] (s).
    """

    restart_jitter_samples: int = 0
    max_host_latency_s: float = 1e-3

    def __post_init__(self) -> None:
        if self.restart_jitter_samples < 0:
            raise ValueError(f"restart_jitter_samples must be >= 0 samples, got {self.restart_jitter_samples}")
        if not (math.isfinite(self.max_host_latency_s) and 0.0 <= self.max_host_latency_s <= 10.0):
            raise ValueError(f"max_host_latency_s must be in [0, 10] s, got {self.max_host_latency_s}")


class CyclicLoopbackRadio(LoopbackRadio):
    """A loopback radio with a stock Pluto's interface (see the module docstring)."""

    def __init__(self, air: LoopbackAir, name: str, options: CyclicOptions | None = None):
        super().__init__(air, name)
        self.options = options or CyclicOptions()
        seed, rid = air.config.seed, stable_id(name)
        self._latency_rng = seeded_rng(seed, rid, TAG_HOST_LATENCY)
        self._restart_rng = seeded_rng(seed, rid, TAG_RESTART)
        self._lo_rng = seeded_rng(seed, rid, TAG_LO_PHASE)
        self._count = 0
        self._span: _Cyclic | None = None
        self._carrier_offset_hz = 0.0
        self._carrier_phase = 0.0
        self.restarts = 0  # re-loads of a running buffer (each one a jitter draw)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            name=f"loopback-cyclic:{self.name}",
            timed_tx=False,
            timed_rx=False,
            cyclic_tx=True,
            full_duplex=True,
            max_sample_rate_hz=LOOPBACK_MAX_RATE_HZ,
            adc_bits=self.air.config.channel.frontend.adc_bits,
        )

    # -- host timeline ---------------------------------------------------------------------
    def _host_step(self) -> float:
        """True time (samples) at which the next host operation takes effect; advances the host."""
        air = self.air
        latency = self._latency_rng.uniform(0.0, self.options.max_host_latency_s) * air.sample_rate_hz
        air.host_time = max(air.host_time, air.true_time()) + latency
        return air.host_time

    def _local_at(self, true_time: float) -> int:
        """This radio's first clock sample at or after true time `true_time`."""
        local = float(self.air.oscillator(self.name).local_time(true_time))
        return math.ceil(local - 1e-7 - 1e-12 * abs(local))

    # -- settings --------------------------------------------------------------------------
    def configure(self, config: RadioConfig) -> None:
        """As LoopbackRadio.configure; a running cyclic buffer stops (a Pluto destroys its buffers)."""
        super().configure(config)
        self._stop()

    def set_tx_carrier_offset_hz(self, offset_hz: float) -> None:
        """Move the transmit LO to the radio's carrier + `offset_hz` (Hz) without stopping a running
        buffer (a Pluto's ``tx_lo``); the carrier phase steps to an arbitrary value (relock)."""
        self._check_open()
        if not math.isfinite(offset_hz) or abs(offset_hz) > self.air.sample_rate_hz / 2:
            raise RadioError(f"{self.name}: transmit LO offset {offset_hz} Hz must be finite and within +-fs/2")
        self._carrier_offset_hz = float(offset_hz)
        self._carrier_phase = float(self._lo_rng.uniform(-np.pi, np.pi))
        if self._span is not None:
            self._span = self.air._retune_cyclic(self.name, self._host_step(), self._carrier_offset_hz, self._carrier_phase)

    @property
    def tx_carrier_offset_hz(self) -> float:
        """The transmit LO's offset from the radio's carrier (Hz) set by set_tx_carrier_offset_hz."""
        return self._carrier_offset_hz

    # -- samples ---------------------------------------------------------------------------
    def now(self) -> int:
        """Samples receive() has delivered so far (a software count, as PlutoRadio.now())."""
        self._check_open()
        return self._count

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Send `samples` once, "now" (after a host latency); `at_sample` must equal now()."""
        self._check_open()
        check_transmit_now(self.name, int(at_sample), self._count)
        x = _checked(samples)
        if x.size:
            start = self._local_at(self._host_step())
            self.air._schedule(self.name, x, start, self.config.tx_gain_db)

    def transmit_cyclic(self, samples: np.ndarray) -> None:
        """Repeat `samples` (full-scale units) forever, replacing any running buffer (see the module
        docstring for where the new buffer starts)."""
        self._check_open()
        x = _checked(samples)
        if x.size == 0:
            raise ValueError("a cyclic buffer needs at least one sample")
        at = self._host_step()
        if self._span is None:
            origin = self._local_at(at) + int(self._restart_rng.integers(0, len(x)))
        else:
            jitter = self.options.restart_jitter_samples
            origin = self._span.origin + (int(self._restart_rng.integers(-jitter, jitter + 1)) if jitter else 0)
            self.restarts += 1
        self._span = self.air._start_cyclic(
            self.name, x, origin, at, self.config.tx_gain_db, self._carrier_offset_hz, self._carrier_phase
        )

    def stop_transmit(self) -> None:
        """Stop the cyclic buffer (after a host latency)."""
        self._check_open()
        self._stop()

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """Capture samples [at_sample, at_sample + n) of the software count: one contiguous window
        that starts after a host latency (see the module docstring)."""
        self._check_open()
        skip, total = untimed_window(self.name, int(n_samples), int(at_sample), self._count)
        if total == 0:
            return np.zeros(0, dtype=np.complex128)
        start = max(self._local_at(self._host_step()), self.air.local_now(self.name))
        window = self.air._capture(self.name, total, start, self.config.rx_gain_db)
        self.air.host_time = max(self.air.host_time, self.air.true_time())
        self._count += total
        return window[skip:]

    def close(self) -> None:
        """Stop a running buffer and close the radio (safe to call twice)."""
        if not self.closed:
            self._stop()
        super().close()

    # -- truth (tests) ---------------------------------------------------------------------
    @property
    def cyclic_origin(self) -> int | None:
        """Transmitter-clock sample at which the running buffer's sample 0 leaves (any repetition;
        test truth), or None when nothing repeats."""
        return None if self._span is None else self._span.origin

    @property
    def cyclic_length(self) -> int | None:
        """Length (samples) of the running buffer, or None."""
        return None if self._span is None else len(self._span.samples)

    def _stop(self) -> None:
        if self._span is not None:
            self.air._stop_cyclic(self.name, self._host_step())
            self._span = None


def _checked(samples: np.ndarray) -> np.ndarray:
    """A transmit buffer as a Pluto accepts it: 1-D, finite, |x| <= 1 (full scale)."""
    x = as_baseband(samples)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0 + 1e-12:
        raise ValueError(
            f"burst peak |x| = {peak:.4g} exceeds full scale 1.0 and would clip in the DAC; "
            f"scale it down by at least {20 * math.log10(peak):.2f} dB"
        )
    return x
