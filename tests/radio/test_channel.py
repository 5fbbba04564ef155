"""Link models of the loopback air: path loss, delay, block fading, and their determinism."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from airfl.radio.channel import ChannelConfig, LinkModel, seeded_rng, stable_id

RATE = 1e6


def _link(seed=0, tx="client0", rx="server", **channel) -> LinkModel:
    return LinkModel(ChannelConfig(**channel), RATE, seed, tx, rx)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"path_loss_spread_db": -1.0}, "path_loss_spread_db"),
        ({"coherence_time_s": 0.0}, "coherence_time_s"),
        ({"max_delay_samples": -1}, "max_delay_samples"),
        ({"noise_power": -1e-3}, "noise_power"),
        ({"fading": "nakagami"}, "fading"),
    ],
)
def test_channel_config_validation(kwargs, match):
    """Impossible physics is refused at construction, naming the offending field."""
    with pytest.raises(ValueError, match=match):
        ChannelConfig(**kwargs)


def test_stable_id_is_crc32():
    """Radio ids are CRC-32 of the name: identical in every process (unlike the salted hash())."""
    assert stable_id("server") == zlib.crc32(b"server")
    assert stable_id("client0") != stable_id("client1")


def test_seeded_rng_depends_on_every_word():
    """Same words, same stream; changing the seed or any word changes it."""
    a = seeded_rng(1, 2, 3).standard_normal(4)
    np.testing.assert_array_equal(a, seeded_rng(1, 2, 3).standard_normal(4))
    assert not np.array_equal(a, seeded_rng(2, 2, 3).standard_normal(4))
    assert not np.array_equal(a, seeded_rng(1, 2, 4).standard_normal(4))


def test_link_state_is_a_function_of_seed_and_names():
    """Two models of one (seed, tx, rx) agree on delay, path gain and every block gain; other seeds,
    other names and the reverse direction give different links."""
    kw = dict(max_delay_samples=50, path_loss_spread_db=10.0)
    a, b = _link(3, **kw), _link(3, **kw)
    assert (a.delay_samples, a.path_gain) == (b.delay_samples, b.path_gain)
    assert [a.block_gain(i) for i in range(20)] == [b.block_gain(i) for i in range(20)]
    gains = [a.block_gain(i) for i in range(5)]
    for other in (_link(4, **kw), _link(3, tx="client1", **kw), _link(3, tx="server", rx="client0", **kw)):
        assert [other.block_gain(i) for i in range(5)] != gains


def test_no_fading_has_constant_amplitude_and_static_phase():
    """fading='none': |gain| = sqrt(path gain) in every block, and the (random) phase never changes."""
    link = _link(fading="none", path_loss_db=6.0)
    gains = np.array([link.block_gain(i) for i in range(200)])
    np.testing.assert_allclose(np.abs(gains), np.sqrt(10 ** (-0.6)), rtol=1e-12)
    assert np.all(gains == gains[0])


@pytest.mark.parametrize("loss_db", [0.0, 3.0, 20.0, -2.0])
def test_path_loss_is_applied(loss_db):
    """path_gain = 10^(-loss/10), path_gain_db = -loss (no spread)."""
    link = _link(fading="none", path_loss_db=loss_db)
    assert link.path_gain == pytest.approx(10 ** (-loss_db / 10))
    assert link.path_gain_db == pytest.approx(-loss_db)
    assert abs(link.block_gain(0)) ** 2 == pytest.approx(link.path_gain, rel=1e-12)


def test_path_loss_spread_is_uniform_within_bounds():
    """With a spread S each link's loss lies in loss +- S/2, and links really differ."""
    losses = np.array(
        [-_link(7, tx=f"c{i}", path_loss_db=10.0, path_loss_spread_db=6.0).path_gain_db for i in range(300)]
    )
    assert np.all((losses >= 7.0) & (losses <= 13.0))
    assert losses.std() == pytest.approx(6.0 / np.sqrt(12), rel=0.15)


def test_delays_are_uniform_integers_in_range():
    """delay_samples is an integer in [0, max]; over many links every value occurs."""
    delays = [_link(1, tx=f"c{i}", max_delay_samples=4).delay_samples for i in range(300)]
    assert all(isinstance(d, int) for d in delays)
    assert set(delays) == {0, 1, 2, 3, 4}
    assert _link(max_delay_samples=0).delay_samples == 0


def test_rayleigh_mean_power_is_path_gain():
    """Rayleigh block gains have E|h|^2 = path gain (5%) and the exponential deep-fade tail
    P(|h|^2 < 0.1 * path gain) = 1 - exp(-0.1), which is what truncation acts on."""
    link = _link(2, path_loss_db=10.0)
    g2 = np.abs([link.block_gain(i) for i in range(4000)]) ** 2
    assert g2.mean() == pytest.approx(0.1, rel=0.05)
    assert np.mean(g2 < 0.01) == pytest.approx(1 - np.exp(-0.1), abs=0.015)


def test_rayleigh_changes_across_blocks_and_not_within():
    """One coherence block = one gain; consecutive blocks differ. Blocks sit on multiples of the coherence time."""
    link = _link(fading="rayleigh", coherence_time_s=1e-3)
    assert link.coherence_samples == 1000
    times = np.arange(0, 3000)
    g = link.gain_at(times)
    for b in range(3):
        assert np.all(g[b * 1000 : (b + 1) * 1000] == link.block_gain(b))
    assert len({link.block_gain(b) for b in range(10)}) == 10


def test_gain_at_single_block_and_offset_times():
    """gain_at handles windows inside one block and windows starting mid-block."""
    link = _link(5, coherence_time_s=1e-4)
    np.testing.assert_array_equal(link.gain_at(np.arange(120, 180)), np.full(60, link.block_gain(1)))
    g = link.gain_at(np.arange(250, 420))
    np.testing.assert_array_equal(g[:50], link.block_gain(2))
    np.testing.assert_array_equal(g[50:150], link.block_gain(3))
    np.testing.assert_array_equal(g[150:], link.block_gain(4))


def test_true_gain_is_the_gain_at_arrival():
    """true_gain(t) is the gain of the block in which a sample sent at t arrives (t + delay)."""
    link = _link(6, coherence_time_s=1e-4, max_delay_samples=30)
    d = link.delay_samples
    for t in (0, 99 - d, 100 - d, 1234):
        assert link.true_gain(t) == link.block_gain((t + d) // 100)


def test_block_cache_eviction_keeps_values():
    """Gains are recomputed identically after the cache is flushed (same seed, same samples)."""
    link = _link(8, coherence_time_s=1e-6)
    first = link.block_gain(0)
    link.gain_at(np.arange(0, 6000))  # more than 4096 blocks: cache cleared on the way
    assert link.block_gain(0) == first
    fresh = _link(8, coherence_time_s=1e-6)
    assert fresh.block_gain(5999) == link.block_gain(5999)


def test_coherence_samples_at_least_one():
    """A coherence time shorter than a sample still gives blocks of one sample."""
    assert LinkModel(ChannelConfig(coherence_time_s=1e-9), RATE, 0, "a", "b").coherence_samples == 1
