"""Deterministic random streams of the loopback air: every draw is a function of the seed and names.

A stream is named by the air seed and a tuple of integers (radio ids, a tag saying what is drawn,
a block or chunk index), never by the order of calls, so opening radios or sending bursts in
another order cannot change what is drawn.
"""

from __future__ import annotations

import zlib

import numpy as np


def stable_id(name: str) -> int:
    """A process-independent 32-bit number for a radio name (Python's hash() is salted per run)."""
    return zlib.crc32(name.encode("utf-8"))


def seeded_rng(seed: int, *words: int) -> np.random.Generator:
    """A generator determined by the air seed and a tuple of integers (link ids, block index...).

    A constant non-zero last word is appended because SeedSequence ignores trailing zeros
    (SeedSequence([1, 0]) == SeedSequence([1])): block 0 must not share a stream with its tag.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, *words, 0x5EED]))


# Stream tags (the word after the radio/link ids). 1-3 are the original loopback's and must not move.
TAG_LINK_STATIC = 1  # path loss spread, integer delay, static phase
TAG_FLAT_BLOCK = 2  # flat Rayleigh/Rician scattered part, per coherence block
TAG_NOISE = 3  # receiver thermal noise
TAG_LINK_EXTRA = 4  # fractional delay, LOS phase, static multipath taps
TAG_TAP_BLOCK = 5  # multipath taps, per coherence block
TAG_OSCILLATOR = 6  # per-radio reference error, drift, independent sample-clock error
TAG_PHASE_SUM = 7  # phase noise: sums over chunks (drawn in groups)
TAG_PHASE_BRIDGE = 8  # phase noise: the Brownian bridge inside one chunk
TAG_FRONTEND = 9  # per-radio IQ imbalance and DC offset
