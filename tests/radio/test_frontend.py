"""Front ends: IQ imbalance (image ratio |nu/mu|^2), DC offsets, DAC clipping and its count,
transmit/receive gains, and the N-bit ADC (quantisation noise Delta^2/12 per rail, full-scale clipping)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from airfl.radio import (
    AirConfig,
    ChannelConfig,
    FrontendConfig,
    FrontendOverride,
    LoopbackAir,
    RadioConfig,
    RadioError,
)
from airfl.radio.frontend import Frontend, adc_quantize, apply_iq, iq_coefficients

RATE = 1e6
N = 4096


def _air(frontend: FrontendConfig, seed: int = 0, **channel) -> LoopbackAir:
    channel.setdefault("fading", "none")
    return LoopbackAir(AirConfig(seed=seed, sample_rate_hz=RATE, channel=ChannelConfig(frontend=frontend, **channel)))


def _tone(bin_: int, amp: float = 0.5) -> np.ndarray:
    return amp * np.exp(2j * np.pi * bin_ * np.arange(N) / N)


def _image_ratio(y: np.ndarray, bin_: int) -> float:
    spec = np.abs(np.fft.fft(y)) ** 2
    return float(spec[-bin_ % N] / spec[bin_])


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tx_iq_gain_db": 7.0}, "tx_iq_gain_db"),
        ({"rx_iq_phase_deg": 50.0}, "rx_iq_phase_deg"),
        ({"rx_iq_gain_spread_db": -0.1}, "rx_iq_gain_spread_db"),
        ({"tx_dc_dbfs": 3.0}, "tx_dc_dbfs"),
        ({"rx_dc_dbfs": math.nan}, "rx_dc_dbfs"),
        ({"adc_bits": 1}, "adc_bits"),
        ({"adc_bits": 12.5}, "adc_bits"),
        ({"overrides": {"a": 1}}, "FrontendOverride"),
    ],
)
def test_frontend_config_validation(kwargs, match):
    """Impossible front-end settings are refused, naming the field."""
    with pytest.raises(ValueError, match=match):
        FrontendConfig(**kwargs)
    with pytest.raises(ValueError, match="tx_dc"):
        FrontendOverride(tx_dc=2.0)


def test_iq_model_matches_the_rail_equations():
    """y = mu x + nu conj(x) is I' = I, Q' = G (Q cos phi - I sin phi); ideal means mu = 1, nu = 0."""
    x = np.random.default_rng(0).standard_normal(100) + 1j * np.random.default_rng(1).standard_normal(100)
    mu, nu = iq_coefficients(1.5, 7.0)
    y = apply_iq(x, mu, nu)
    g, phi = 10 ** (1.5 / 20), np.radians(7.0)
    np.testing.assert_allclose(y.real, x.real, atol=1e-12)
    np.testing.assert_allclose(y.imag, g * (x.imag * np.cos(phi) - x.real * np.sin(phi)), atol=1e-12)
    assert iq_coefficients(0.0, 0.0) == (1.0, 0.0)


def test_per_radio_draws_within_spread_and_overrides_exact():
    """IQ values are drawn per radio within +-spread, DC has the configured magnitude and a random
    phase per radio; overrides are exact."""
    cfg = FrontendConfig(
        tx_iq_gain_spread_db=0.1, tx_iq_phase_spread_deg=0.5, rx_dc_dbfs=-45.0,
        overrides={"pinned": FrontendOverride(tx_iq_gain_db=0.3, rx_dc=0.01 - 0.02j)},
    )
    fes = [Frontend(cfg, f"r{i}", 2) for i in range(200)]
    gains = np.array([f.tx_iq_gain_db for f in fes])
    assert np.all(np.abs(gains) <= 0.1) and gains.std() == pytest.approx(0.1 / np.sqrt(3), rel=0.15)
    assert all(abs(f.tx_iq_phase_deg) <= 0.5 for f in fes)
    np.testing.assert_allclose([abs(f.rx_dc) for f in fes], 10 ** (-45 / 20))
    assert np.std(np.angle([f.rx_dc for f in fes])) > 1.0  # phases spread over the circle
    assert all(f.tx_dc == 0 and f.rx_iq_ideal for f in fes)
    pinned = Frontend(cfg, "pinned", 2)
    assert pinned.tx_iq_gain_db == 0.3 and pinned.rx_dc == 0.01 - 0.02j


# -- IQ imbalance ----------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["tx", "rx"])
def test_iq_image_ratio_through_the_loopback(side):
    """A tone on bin 300 comes out with an image on bin -300 whose power ratio is |nu/mu|^2 of the
    impaired chain (1%); 1 dB / 5 deg gives |1 - G e^{j phi}|^2 / |1 + G e^{-j phi}|^2 = -22.8 dB."""
    over = {"tx": FrontendOverride(tx_iq_gain_db=1.0, tx_iq_phase_deg=5.0)} if side == "tx" else {
        "rx": FrontendOverride(rx_iq_gain_db=1.0, rx_iq_phase_deg=5.0)
    }
    air = _air(FrontendConfig(overrides=over))
    air.radio("tx").transmit(_tone(300), 0)
    y = air.radio("rx").receive(N, 0)
    fe = air.frontend(side)
    truth = fe.tx_image_ratio if side == "tx" else fe.rx_image_ratio
    g, phi = 10 ** (1 / 20), np.radians(5.0)
    assert truth == pytest.approx(abs(1 - g * np.exp(1j * phi)) ** 2 / abs(1 + g * np.exp(-1j * phi)) ** 2)
    assert 10 * np.log10(truth) == pytest.approx(-22.8, abs=0.05)
    assert _image_ratio(y, 300) == pytest.approx(truth, rel=0.01)


# -- DC offset -------------------------------------------------------------------------------


def test_rx_dc_offset_is_added_to_every_sample():
    """With nothing on the air the receiver reads its DC offset exactly, on every sample; its level
    is rx_dc_dbfs at the ADC whatever the receive gain."""
    air = _air(FrontendConfig(rx_dc_dbfs=-45.0))
    rx = air.radio("rx")
    dc = air.frontend("rx").rx_dc
    assert 20 * np.log10(abs(dc)) == pytest.approx(-45.0)
    np.testing.assert_array_equal(rx.receive(100, 0), np.full(100, dc))
    rx.configure(RadioConfig(sample_rate_hz=RATE, rx_gain_db=20.0))
    np.testing.assert_array_equal(rx.receive(100, 100), np.full(100, dc))


def test_tx_dc_offset_rides_on_the_burst():
    """The transmitter's DC offset is on air while it transmits: a zero burst arrives as
    gain * tx_dc for its duration, and nothing outside it."""
    air = _air(FrontendConfig(tx_dc_dbfs=-30.0))
    air.radio("tx").transmit(np.zeros(50), 10)
    y = air.radio("rx").receive(100, 0)
    expected = air.link("tx", "rx").true_gain(10) * air.frontend("tx").tx_dc
    np.testing.assert_allclose(y[10:60], expected, rtol=1e-12)
    assert np.all(y[:10] == 0) and np.all(y[60:] == 0)
    assert abs(air.frontend("tx").tx_dc) == pytest.approx(10 ** (-30 / 20))


# -- DAC clipping and gains ---------------------------------------------------------------------


@pytest.mark.parametrize("clipping", [True, False])
def test_dac_clipping_and_count(clipping):
    """Samples with |I| or |Q| > 1 are counted per radio; with dac_clipping on they leave the DAC
    clipped to +-1 per rail, otherwise unchanged."""
    air = _air(FrontendConfig(dac_clipping=clipping))
    x = np.array([0.5 + 0.5j, 1.5 + 0.2j, -0.3 - 2.0j, 1.2 - 1.1j, 1.0 - 1.0j, -0.99 + 0j])
    air.radio("tx").transmit(x, 0)
    air.radio("tx").transmit(x, 10)
    assert air.clipped_samples("tx") == 6 and air.clipped_samples("rx") == 0
    y = air.radio("rx").receive(6, 0) / air.link("tx", "rx").true_gain(0)
    sent = np.clip(x.real, -1, 1) + 1j * np.clip(x.imag, -1, 1) if clipping else x
    np.testing.assert_allclose(y, sent, rtol=1e-12)


def test_tx_and_rx_gains_scale_the_signal():
    """tx_gain_db = -6 attenuates what the radio sends by 10^(-6/20); rx_gain_db = +10 amplifies
    what it receives (signal and noise) by 10^(10/20)."""
    air = _air(FrontendConfig())
    tx, rx = air.radio("tx"), air.radio("rx")
    tx.configure(RadioConfig(sample_rate_hz=RATE, tx_gain_db=-6.0))
    rx.configure(RadioConfig(sample_rate_hz=RATE, rx_gain_db=10.0))
    tx.transmit(np.full(8, 0.5), 0)
    y = rx.receive(8, 0)
    g = air.link("tx", "rx").true_gain(0)
    np.testing.assert_allclose(y, 0.5 * g * 10 ** (-6 / 20) * 10 ** (10 / 20), rtol=1e-12)


def test_configure_checks_gains():
    """The loopback accepts tx_gain_db <= 0 dB (an attenuation) and a finite rx gain."""
    radio = _air(FrontendConfig()).radio("a")
    with pytest.raises(RadioError, match="tx_gain_db"):
        radio.configure(RadioConfig(sample_rate_hz=RATE, tx_gain_db=3.0))
    with pytest.raises(RadioError, match="rx_gain_db"):
        radio.configure(RadioConfig(sample_rate_hz=RATE, rx_gain_db=math.inf))
    radio.configure(RadioConfig(sample_rate_hz=RATE, tx_gain_db=-89.75, rx_gain_db=71.0))
    assert radio.config.rx_gain_db == 71.0


# -- ADC ------------------------------------------------------------------------------------


def test_adc_levels_and_full_scale_clipping():
    """12 bits: outputs are multiples of Delta = 2/4096 in [-1, 1 - Delta]; inputs beyond full scale
    saturate there and are counted."""
    step = 2 / 4096
    x = np.array([0.0, 0.3 + 0.1j, 0.9999 - 1.0j, 1.5 + 0j, -3.0 + 0.2j, 0.5 + 2j, step * 0.49 + 0j])
    y, clipped = adc_quantize(x, 12)
    codes = np.concatenate([y.real, y.imag]) / step
    np.testing.assert_array_equal(codes, np.round(codes))
    assert y.real.max() <= 1 - step and y.real.min() >= -1
    assert y[3] == 1 - step and y[4].real == -1.0 and y[5].imag == 1 - step and y[6] == 0
    assert clipped == 4  # 0.9999 rounds to the (missing) code +2048; 1.5; -3.0; 2j


def test_adc_quantisation_noise_is_delta_squared_over_12():
    """Through the loopback (rx gain 0 dB, 12-bit ADC) a Gaussian signal at -20 dBFS per rail comes
    back with an error of variance Delta^2/12 on each rail (5%) and no clipping."""
    air = _air(FrontendConfig(adc_bits=12))
    x = np.random.default_rng(3).standard_normal((2, 200_000)) * 0.1
    x = x[0] + 1j * x[1]
    air.radio("tx").transmit(x, 0)
    y = air.radio("rx").receive(200_000, 0)
    err = y - air.link("tx", "rx").true_gain(0) * x
    step = 2 / 4096
    assert np.var(err.real) == pytest.approx(step**2 / 12, rel=0.05)
    assert np.var(err.imag) == pytest.approx(step**2 / 12, rel=0.05)
    assert air.adc_clipped_samples("rx") == 0
    assert air.radio("rx").capabilities.adc_bits == 12


def test_adc_clips_after_the_receive_gain():
    """A 0.5-amplitude tone is fine at 0 dB, but +12 dB of receive gain drives it past full scale:
    the ADC clips and counts the samples whose rail exceeded full scale."""
    air = _air(FrontendConfig(adc_bits=12), fading="none")
    rx = air.radio("rx")
    air.radio("tx").transmit(_tone(10), 0)
    assert np.abs(rx.receive(N, 0)).max() < 0.51 and air.adc_clipped_samples("rx") == 0
    rx.configure(RadioConfig(sample_rate_hz=RATE, rx_gain_db=12.0))
    air.radio("tx").transmit(_tone(10), N)
    y = rx.receive(N, N)
    amp = 0.5 * 10 ** (12 / 20)
    ideal = air.link("tx", "rx").true_gain(N) * _tone(10, amp)
    expected_clips = np.count_nonzero((np.round(ideal.real * 2048) > 2047) | (np.round(ideal.real * 2048) < -2048)
                                      | (np.round(ideal.imag * 2048) > 2047) | (np.round(ideal.imag * 2048) < -2048))
    assert air.adc_clipped_samples("rx") == expected_clips > 0
    assert y.real.max() == 1 - 2 / 4096 and y.real.min() == -1.0
