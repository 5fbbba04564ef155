"""Multipath: the exponential power-delay profile, independent tap fading, and the loopback's
tapped delay line against the taps it reports."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.radio import AirConfig, ChannelConfig, LinkModel, LoopbackAir, OscillatorConfig, OscillatorOverride
from airfl.radio.multipath import apply_taps, exponential_pdp, rms_delay_spread_samples

FS = 20e6  # 50 ns per sample


def _link(seed=0, fs=FS, **channel) -> LinkModel:
    return LinkModel(ChannelConfig(**channel), fs, seed, "client0", "server")


@pytest.mark.parametrize("spread_ns,fs", [(50.0, 1e6), (50.0, 61.44e6), (200.0, 20e6), (1000.0, 10e6)])
def test_pdp_is_exponential_with_the_requested_rms_spread(spread_ns, fs):
    """Mean tap powers sum to 1, fall by a constant ratio per tap, stop near -50 dB, and have exactly
    (1e-6) the configured RMS delay spread."""
    p = exponential_pdp(spread_ns * 1e-9, fs)
    assert p.sum() == pytest.approx(1.0)
    ratios = p[1:] / p[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)
    assert len(p) >= 2 and p[-1] / p[0] > 10 ** -5.1
    assert rms_delay_spread_samples(p) / fs == pytest.approx(spread_ns * 1e-9, rel=1e-6)


def test_flat_and_too_long_profiles():
    """0 ns is a single tap; a spread needing more than 1024 taps is refused with the fix named."""
    np.testing.assert_array_equal(exponential_pdp(0.0, 1e6), [1.0])
    with pytest.raises(ValueError, match="rms_delay_spread_ns"):
        exponential_pdp(20e-6, 61.44e6)
    with pytest.raises(ValueError, match="rms_delay_spread_ns"):
        ChannelConfig(rms_delay_spread_ns=-1.0)


def test_fading_taps_reproduce_the_pdp_over_many_blocks():
    """Averaged over 3000 Rayleigh blocks: each tap's power matches the PDP (10% for taps above
    -15 dB), the RMS delay spread of the average profile is 200 ns within 10%, the total power is the
    path gain (5%), and neighbouring taps are uncorrelated (|rho| < 0.06)."""
    link = _link(1, rms_delay_spread_ns=200.0, path_loss_db=3.0)
    taps = np.array([link.block_taps(b) for b in range(3000)])
    power = np.mean(np.abs(taps) ** 2, axis=0)
    strong = link.pdp > link.pdp[0] * 10**-1.5
    np.testing.assert_allclose(power[strong], link.pdp[strong], rtol=0.1)
    assert rms_delay_spread_samples(power) / FS == pytest.approx(200e-9, rel=0.1)
    assert power.sum() == pytest.approx(10**-0.3, rel=0.05)
    assert link.pdp.sum() == pytest.approx(10**-0.3)
    rho = np.mean(taps[:, 0] * np.conj(taps[:, 1])) / np.sqrt(power[0] * power[1])
    assert abs(rho) < 0.06


def test_rician_line_of_sight_is_on_the_first_tap_only():
    """With multipath and Rician fading only tap 0 has a non-zero mean."""
    link = _link(2, rms_delay_spread_ns=100.0, fading="rician", rician_k_db=10.0)
    taps = np.array([link.block_taps(b) for b in range(2000)])
    mean = np.abs(taps.mean(axis=0))
    assert mean[0] ** 2 == pytest.approx(link.pdp[0] * 10 / 11, rel=0.1)
    assert np.all(mean[1:] < 0.1 * np.sqrt(link.pdp[1:]) + 0.01)


def test_static_multipath_has_exact_path_gain():
    """fading='none' with multipath: one static draw of the taps, total power exactly the path gain."""
    link = _link(3, rms_delay_spread_ns=150.0, fading="none", path_loss_db=6.0)
    t0, t9 = link.block_taps(0), link.block_taps(9)
    np.testing.assert_array_equal(t0, t9)
    assert np.sum(np.abs(t0) ** 2) == pytest.approx(10**-0.6, rel=1e-12)
    assert link.block_gain(4) == pytest.approx(np.sum(t0))


def test_apply_taps_is_a_convolution():
    """With constant taps the tapped delay line equals np.convolve."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal(50) + 1j * rng.standard_normal(50)
    h = rng.standard_normal(4) + 1j * rng.standard_normal(4)
    np.testing.assert_allclose(apply_taps(z, h), np.convolve(z, h)[3:50], rtol=1e-12)


def test_loopback_output_is_the_burst_through_the_reported_taps():
    """Integer timing, 300 ns spread at 20 MS/s, blocks of 100 us: the received window equals the
    burst convolved with taps_at(t) of each output sample's block (1e-12), across block boundaries."""
    channel = ChannelConfig(rms_delay_spread_ns=300.0, coherence_time_s=100e-6, max_delay_samples=4)
    air = LoopbackAir(AirConfig(seed=4, sample_rate_hz=FS, channel=channel))
    link = air.link("tx", "rx")
    assert link.n_taps > 10 and link.integer_timing
    x = np.random.default_rng(5).standard_normal(5000) * (0.3 + 0.1j)
    air.radio("tx").transmit(x, 100)
    y = air.radio("rx").receive(6000, 0)
    d, n_taps = link.delay_samples, link.n_taps
    xs = np.zeros(6000 + n_taps, dtype=complex)
    xs[100 + d + n_taps - 1 : 100 + d + n_taps - 1 + 5000] = x  # xs[n + L - 1] = burst sample arriving at n
    expected = np.zeros(6000, dtype=complex)
    taps = link.taps_at(np.arange(6000.0))
    for lag in range(n_taps):
        expected += taps[:, lag] * xs[n_taps - 1 - lag : n_taps - 1 - lag + 6000]
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)
    assert np.abs(y[100 + d + 5000 + n_taps :]).max() == 0  # the tail ends with the last tap


def test_multipath_with_clock_offsets_keeps_power():
    """With SCO, a fractional delay and multipath together, a long band-limited noise burst arrives
    with the power its spectrum picks up through the reported taps, sum_f S(f) |H(f)|^2 (3%)."""
    over = {"tx": OscillatorOverride(sample_clock_ppm=30.0)}
    channel = ChannelConfig(
        rms_delay_spread_ns=100.0,
        max_fractional_delay=1.0,
        coherence_time_s=0.1,
        oscillator=OscillatorConfig(sample_clock="independent", overrides=over),
    )
    air = LoopbackAir(AirConfig(seed=6, sample_rate_hz=FS, channel=channel))
    rng = np.random.default_rng(7)
    # white but band-limited to 0.4 fs, unit power
    spec = rng.standard_normal(65536) + 1j * rng.standard_normal(65536)
    f = np.fft.fftfreq(65536)
    spec[np.abs(f) > 0.4] = 0
    x = np.fft.ifft(spec)
    x /= np.sqrt(np.mean(np.abs(x) ** 2))
    air.radio("tx").transmit(0.2 * x, 0)
    y = air.radio("rx").receive(60000, 100)
    link = air.link("tx", "rx")
    h2 = np.abs(np.fft.fft(link.taps_at(1000.0), 65536)) ** 2
    expected = 0.04 * np.sum(np.abs(spec) ** 2 * h2) / np.sum(np.abs(spec) ** 2)
    assert np.mean(np.abs(y) ** 2) == pytest.approx(expected, rel=0.03)
