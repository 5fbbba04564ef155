"""Link models of the emulated air: what happens to a burst between one transmitter and one receiver.

A link's state is drawn from the air's seed and the two radio names only, so it does not depend on
the order in which radios were opened or bursts were sent: same seed, same samples.

Units: gains in dB (power) or linear amplitude as named; delays in samples; times in samples on the
air's shared clock; noise power in full-scale units squared per complex sample.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

FadingKind = Literal["none", "rayleigh"]


@dataclass(frozen=True)
class ChannelConfig:
    """Physics of every link in the loopback air. All impairments can be switched off.

    path_loss_db: mean power loss of a link (dB); 0 means unit mean power gain.
    path_loss_spread_db: each link's loss is drawn uniformly in path_loss_db +- spread/2 (dB).
    fading: "rayleigh" draws a CN(0, 1) block-fading coefficient per coherence block; "none" keeps a
        constant amplitude with a random static phase.
    coherence_time_s: duration of one fading block (s); blocks start at multiples of it on the clock.
    max_delay_samples: each link's propagation/processing delay is uniform in [0, max] (samples).
    noise_power: complex white Gaussian noise power per sample added at every receiver
        (full-scale units squared); 0 turns noise off.
    """

    path_loss_db: float = 0.0
    path_loss_spread_db: float = 0.0
    fading: FadingKind = "rayleigh"
    coherence_time_s: float = 0.02
    max_delay_samples: int = 0
    noise_power: float = 0.0

    def __post_init__(self) -> None:
        if self.path_loss_spread_db < 0:
            raise ValueError(f"path_loss_spread_db must be >= 0 dB, got {self.path_loss_spread_db}")
        if not self.coherence_time_s > 0:
            raise ValueError(f"coherence_time_s must be > 0 s, got {self.coherence_time_s}")
        if self.max_delay_samples < 0:
            raise ValueError(f"max_delay_samples must be >= 0, got {self.max_delay_samples}")
        if self.noise_power < 0:
            raise ValueError(f"noise_power must be >= 0, got {self.noise_power}")
        if self.fading not in ("none", "rayleigh"):
            raise ValueError(f"fading must be 'none' or 'rayleigh', got {self.fading!r}")


def stable_id(name: str) -> int:
    """A process-independent 32-bit number for a radio name (Python's hash() is salted per run)."""
    return zlib.crc32(name.encode("utf-8"))


def seeded_rng(seed: int, *words: int) -> np.random.Generator:
    """A generator determined by the air seed and a tuple of integers (link ids, block index...).

    A constant non-zero last word is appended because SeedSequence ignores trailing zeros
    (SeedSequence([1, 0]) == SeedSequence([1])): block 0 must not share a stream with its tag.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, *words, 0x5EED]))


_TAG_STATIC = 1
_TAG_BLOCK = 2


class LinkModel:
    """One transmitter -> receiver link: mean path gain, integer delay, block-fading coefficient."""

    def __init__(self, config: ChannelConfig, sample_rate_hz: float, seed: int, tx: str, rx: str):
        self.config = config
        self.tx = tx
        self.rx = rx
        self._seed = seed
        self._ids = (stable_id(tx), stable_id(rx))
        self.coherence_samples = max(1, int(round(config.coherence_time_s * sample_rate_hz)))
        rng = seeded_rng(seed, *self._ids, _TAG_STATIC)
        spread = config.path_loss_spread_db
        loss_db = config.path_loss_db + (rng.uniform(-spread / 2, spread / 2) if spread > 0 else 0.0)
        self.path_gain_db: float = -loss_db
        self.path_gain: float = 10.0 ** (-loss_db / 10.0)
        self.delay_samples: int = int(rng.integers(0, config.max_delay_samples + 1))
        self._static_phase: float = float(rng.uniform(-np.pi, np.pi))
        self._block_cache: dict[int, complex] = {}

    def block_gain(self, block: int) -> complex:
        """Complex amplitude gain of fading block `block` (includes the path gain)."""
        cached = self._block_cache.get(block)
        if cached is not None:
            return cached
        amplitude = np.sqrt(self.path_gain)
        if self.config.fading == "rayleigh":
            rng = seeded_rng(self._seed, *self._ids, _TAG_BLOCK, block)
            z = (rng.standard_normal() + 1j * rng.standard_normal()) / np.sqrt(2.0)
            gain = complex(amplitude * z)
        else:
            gain = complex(amplitude * np.exp(1j * self._static_phase))
        if len(self._block_cache) > 4096:
            self._block_cache.clear()
        self._block_cache[block] = gain
        return gain

    def gain_at(self, arrival_times: np.ndarray) -> np.ndarray:
        """Per-sample complex gain for samples arriving at the given absolute times (samples)."""
        blocks = np.asarray(arrival_times, dtype=np.int64) // self.coherence_samples
        first, last = int(blocks[0]), int(blocks[-1])
        if first == last:
            return np.full(blocks.shape, self.block_gain(first), dtype=np.complex128)
        table = np.array([self.block_gain(b) for b in range(first, last + 1)], dtype=np.complex128)
        return table[blocks - first]

    def true_gain(self, at_sample: int) -> complex:
        """The channel the receiver would see for a sample sent at `at_sample` (test truth)."""
        return self.block_gain((at_sample + self.delay_samples) // self.coherence_samples)
