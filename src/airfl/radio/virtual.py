"""Virtual clients: K emulated clients summed digitally and sent by one real transmitter.

The two-radio lab. Each virtual client is a `Radio` that transmits into a private emulated air
(its own seeded channel to a collector, exactly the loopback's physics); the sum the collector
hears is sent over the real RF link by one transmitter to the real receiver. The round protocol
sees K ordinary client radios and one receiver: the receiver returned by `VirtualClients.receiver`
first forwards the emulated sum for the window it is asked for (starting `lookback` samples early,
so delayed arrivals are not cut), then captures it from the real receiver.

Times are sample numbers on the real receiver's clock; the emulated air follows the same numbers.
The real transmitter and receiver must support timed transmit and receive (SoapySDR devices with
hardware time, or loopback radios); stock Plutos need the cyclic mode instead.
"""

from __future__ import annotations

import numpy as np

from airfl.radio.base import Capabilities, Radio, RadioConfig
from airfl.radio.loopback import AirConfig, LoopbackAir

COLLECTOR = "virtual-sum"


class VirtualClients:
    """`count` emulated clients whose summed signal leaves through `transmitter`."""

    def __init__(
        self, count: int, transmitter: Radio, air: AirConfig | None = None, lookback: int = 64, forward_gain_db: float = 0.0
    ):
        if not forward_gain_db <= 0.0:
            raise ValueError(f"forward_gain_db must be an attenuation (<= 0 dB), got {forward_gain_db}")
        if count < 1:
            raise ValueError(f"count must be >= 1 virtual client, got {count}")
        if lookback < 0:
            raise ValueError(f"lookback must be >= 0 samples, got {lookback}")
        self.transmitter = transmitter
        self.air = LoopbackAir(air)
        self.lookback = lookback
        #: linear gain applied to the clients' sum before the real transmitter (so its peaks fit the DAC)
        self.forward_gain = 10.0 ** (forward_gain_db / 20.0)
        self.clients = [self.air.radio(f"virtual{k}") for k in range(count)]
        self._collector = self.air.radio(COLLECTOR)
        self._flushed_to = 0

    def receiver(self, radio: Radio) -> Radio:
        """The real receiver, wrapped so every capture first sends the emulated sum."""
        return _ForwardingReceiver(self, radio)

    def emulated_sum(self, n_samples: int, at_sample: int) -> np.ndarray:
        """The clients' emulated sum for [at_sample, at_sample + n) on the virtual air (samples);
        the part the virtual air has already passed (sent in an earlier window) is zero."""
        out = np.zeros(n_samples, dtype=np.complex128)
        start = max(at_sample, self.air.now())
        end = at_sample + n_samples
        if end > start:
            out[start - at_sample :] = self._collector.receive(end - start, start)
        return out

    def _forward(self, n_samples: int, at_sample: int) -> None:
        """Send the clients' emulated sum for [at_sample - lookback, at_sample + n) through the
        real transmitter (only the part not sent before)."""
        # Not before the transmitter's own clock either: with a sample-clock offset it can run ahead
        # of the receiver's numbers, and what it has passed was before the asked window anyway.
        start = max(at_sample - self.lookback, self._flushed_to, self.air.now(), self.transmitter.now())
        end = at_sample + n_samples
        if end <= start:
            return
        total = self._collector.receive(end - start, start) * self.forward_gain
        if np.any(total != 0):
            self.transmitter.transmit(total, start)
        self._flushed_to = end


class _ForwardingReceiver:
    """A receiver whose `receive` forwards the virtual clients' sum first (see VirtualClients)."""

    def __init__(self, bank: VirtualClients, radio: Radio):
        self._bank = bank
        self._radio = radio

    @property
    def name(self) -> str:
        return self._radio.name

    @property
    def capabilities(self) -> Capabilities:
        return self._radio.capabilities

    def configure(self, config: RadioConfig) -> None:
        self._radio.configure(config)

    def now(self) -> int:
        return self._radio.now()

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        self._radio.transmit(samples, at_sample)

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        self._bank._forward(int(n_samples), int(at_sample))
        return self._radio.receive(n_samples, at_sample)

    def close(self) -> None:
        self._radio.close()
