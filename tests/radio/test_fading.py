"""Block fading: the Rayleigh draws of the original loopback, Rician line of sight and K-factor,
coherence blocks in true time, and channel state that goes stale from one block to the next."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.radio import AirConfig, ChannelConfig, LinkModel, LoopbackAir
from airfl.radio.channel import seeded_rng, stable_id
from airfl.radio.fading import add_line_of_sight, k_factor_db, rician_weights

RATE = 1e6


def _link(seed=0, **channel) -> LinkModel:
    return LinkModel(ChannelConfig(**channel), RATE, seed, "client0", "server")


def test_rayleigh_default_draws_are_unchanged():
    """Rayleigh block b is sqrt(path gain) * CN(0,1) drawn from seeded_rng(seed, ids, 2, b), exactly
    as before the impairments existed (so old seeds give old channels)."""
    link = _link(9, path_loss_db=3.0)
    ids = (stable_id("client0"), stable_id("server"))
    for b in (0, 1, 57):
        rng = seeded_rng(9, *ids, 2, b)
        z = (rng.standard_normal() + 1j * rng.standard_normal()) / np.sqrt(2.0)
        assert link.block_gain(b) == complex(np.sqrt(10 ** -0.3) * z)


def test_rician_weights():
    """K = 10^(K_dB/10): LOS amplitude^2 = K/(K+1), scattered amplitude^2 = 1/(K+1)."""
    los, scatter = rician_weights(6.0)
    k = 10**0.6
    assert los**2 == pytest.approx(k / (k + 1))
    assert los**2 + scatter**2 == pytest.approx(1.0)
    z = add_line_of_sight(np.zeros(3, dtype=complex), 6.0, 0.3)
    np.testing.assert_allclose(z, [los * np.exp(0.3j), 0, 0])


@pytest.mark.parametrize("k_db", [0.0, 6.0, 12.0])
def test_rician_mean_power_and_k_factor(k_db):
    """Rician blocks: E|h|^2 = path gain (5%); the K-factor estimated from 4000 blocks
    (|mean|^2 / variance) is the configured one within 0.5 dB; |mean| = sqrt(K/(K+1) * path gain)."""
    link = _link(3, fading="rician", rician_k_db=k_db, path_loss_db=10.0)
    h = np.array([link.block_gain(b) for b in range(4000)])
    assert np.mean(np.abs(h) ** 2) == pytest.approx(0.1, rel=0.05)
    assert k_factor_db(h) == pytest.approx(k_db, abs=0.5)
    k = 10 ** (k_db / 10)
    assert abs(np.mean(h)) == pytest.approx(np.sqrt(0.1 * k / (k + 1)), rel=0.05)
    assert np.angle(np.mean(h)) == pytest.approx(link.los_phase, abs=0.1)


def test_rician_deep_fades_are_rarer_than_rayleigh():
    """The line of sight fills the fades: P(|h|^2 < 0.1 mean) is far below Rayleigh's 1 - e^-0.1."""
    rayleigh, rician = _link(2), _link(2, fading="rician", rician_k_db=10.0)
    ray = np.abs([rayleigh.block_gain(b) for b in range(4000)]) ** 2
    ric = np.abs([rician.block_gain(b) for b in range(4000)]) ** 2
    assert np.mean(ray < 0.1) == pytest.approx(1 - np.exp(-0.1), abs=0.015)
    assert np.mean(ric < 0.1) < 0.002


def test_blocks_follow_true_time_through_the_loopback():
    """With a fractional delay (general path) the received DC burst switches gain exactly at the
    coherence-block boundaries of true time (1e-6), one gain per block."""
    channel = ChannelConfig(fading="rician", rician_k_db=3.0, coherence_time_s=1e-3, max_fractional_delay=1.0)
    air = LoopbackAir(AirConfig(seed=1, sample_rate_hz=RATE, channel=channel))
    link = air.link("tx", "rx")
    assert link.fractional_delay > 0 and not link.integer_timing
    air.radio("tx").transmit(np.ones(5000), 0)
    y = air.radio("rx").receive(4000, 500)
    n = np.arange(500, 4500)
    np.testing.assert_allclose(y, [link.block_gain(b) for b in n // 1000], atol=1e-6)
    assert len({link.block_gain(b) for b in range(5)}) == 5


def test_channel_state_is_stale_in_the_next_block():
    """What a sounding measures (true_gain at its send time) holds for a payload in the same block
    and is uncorrelated with the channel one block later (|corr| < 0.06 over 2000 pairs)."""
    link = _link(5, coherence_time_s=0.02)
    block = link.coherence_samples
    assert link.true_gain(100) == link.true_gain(block - 1)
    assert link.true_gain(block - 1) != link.true_gain(block)
    h = np.array([link.block_gain(b) for b in range(2001)])
    corr = np.mean(h[1:] * np.conj(h[:-1])) / np.mean(np.abs(h) ** 2)
    assert abs(corr) < 0.06


def test_no_fading_ignores_the_k_factor():
    """fading='none' keeps one static phasor of magnitude sqrt(path gain), whatever rician_k_db says."""
    link = _link(4, fading="none", rician_k_db=20.0, path_loss_db=6.0)
    g = [link.block_gain(b) for b in range(50)]
    assert len(set(g)) == 1 and abs(g[0]) == pytest.approx(10**-0.3)
