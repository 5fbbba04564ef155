"""Transmit compression (Rapp AM/AM after the TX gain): off by default, its 1 dB compression point
matches the analytic A*(10^(p/10)-1)^(1/(2p)), per-radio values are seeded, and it acts on the air."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from airfl.radio import AirConfig, ChannelConfig, FrontendConfig, FrontendOverride, LoopbackAir, RadioConfig
from airfl.radio.frontend import Frontend, rapp, rapp_gain_db, rapp_p1db_amplitude

RATE = 1e6


def _tone(n: int = 4096, amp: float = 1.0) -> np.ndarray:
    return amp * np.exp(2j * np.pi * 0.01 * np.arange(n))


def test_off_by_default_and_bit_exact():
    fe = Frontend(FrontendConfig(), "c0", seed=1)
    assert fe.tx_saturation is None and fe.tx_p1db_input_power is None and fe.tx_p1db_output_power is None
    x = _tone(amp=3.0)  # far beyond any saturation a model could have: untouched when off
    y, _ = fe.transmit(x)
    assert y is x


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_p1db_matches_theory(p):
    """A tone swept over the TX gain is 1 dB compressed exactly at the accessor's input P1dB."""
    sat = 0.5
    fe = Frontend(FrontendConfig(tx_saturation=sat, tx_rapp_p=p), "c0", seed=0)
    r1 = rapp_p1db_amplitude(sat, p)
    assert fe.tx_p1db_input_power == pytest.approx(r1**2, rel=1e-12)
    assert fe.tx_p1db_output_power == pytest.approx(r1**2 * 10 ** (-0.1), rel=1e-12)
    # The DAC sends a unit tone; the attenuation sets the drive. Measured gain against the setting:
    gains = np.linspace(-20.0, 0.0, 81)
    x = _tone()
    measured = np.array([20 * np.log10(np.mean(np.abs(fe.transmit(x, g)[0])) / 10 ** (g / 20)) for g in gains])
    np.testing.assert_allclose(measured, rapp_gain_db(10 ** (gains / 20), sat, p), atol=1e-9)
    g_1db = float(np.interp(-1.0, measured[::-1], gains[::-1]))  # gain falls as the drive rises
    assert abs(10 * np.log10(fe.tx_p1db_input_power) - g_1db) < 0.02  # unit tone: input power = 10^(g/10)
    # AM/AM only: the phase of every sample is kept.
    y = rapp(x * 2.0, sat, p)
    np.testing.assert_allclose(np.angle(y), np.angle(x), atol=1e-12)


def test_compression_acts_on_the_air_after_the_tx_gain():
    """Through a loopback link (no fading, no noise) the received tone shows the Rapp curve."""
    fe = FrontendConfig(tx_saturation=0.3, tx_rapp_p=2.0)
    air = LoopbackAir(AirConfig(seed=2, sample_rate_hz=RATE, channel=ChannelConfig(fading="none", frontend=fe)))
    tx, rx = air.radio("c0"), air.radio("server")
    x = _tone(1024, 0.9)
    out = []
    for g in (-30.0, -6.0, 0.0):
        tx.configure(RadioConfig(sample_rate_hz=RATE, tx_gain_db=g))
        t = air.now() + 100
        tx.transmit(x, t)
        y = rx.receive(1024, t)
        out.append(20 * np.log10(np.mean(np.abs(y[50:-50]))) - g)
    expected = rapp_gain_db(0.9 * 10 ** (np.array([-30.0, -6.0, 0.0]) / 20), 0.3, 2.0)
    # The link has unit gain (path loss 0, fading "none"): received level = 0.9 * compression.
    np.testing.assert_allclose(np.array(out) - 20 * np.log10(0.9), expected, atol=1e-6)
    assert expected[2] < -5.0 < expected[1] < -0.1 < expected[0] + 0.1


def test_per_radio_values_are_seeded_and_overridable():
    cfg = FrontendConfig(tx_saturation=0.5, tx_saturation_spread_db=2.0, tx_iq_gain_spread_db=0.1, tx_dc_dbfs=-40.0,
                         overrides={"pinned": FrontendOverride(tx_saturation=0.2)})
    a = [Frontend(cfg, f"c{k}", seed=7).tx_saturation for k in range(20)]
    b = [Frontend(cfg, f"c{k}", seed=7).tx_saturation for k in range(20)]
    assert a == b and len(set(a)) == 20
    assert all(0.5 * 10 ** (-2 / 20) <= s <= 0.5 * 10 ** (2 / 20) for s in a)
    assert Frontend(cfg, "pinned", seed=7).tx_saturation == 0.2
    # Turning compression on leaves every other draw of a radio where it was.
    off = Frontend(replace(cfg, tx_saturation=None), "c3", seed=7)
    on = Frontend(cfg, "c3", seed=7)
    assert (off.tx_iq_gain_db, off.tx_dc) == (on.tx_iq_gain_db, on.tx_dc)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"tx_saturation": 0.0}, "tx_saturation"),
        ({"tx_saturation": -1.0}, "tx_saturation"),
        ({"tx_saturation_spread_db": -0.5}, "tx_saturation_spread_db"),
        ({"tx_rapp_p": 0.1}, "tx_rapp_p"),
        ({"tx_rapp_p": float("nan")}, "tx_rapp_p"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrontendConfig(**kwargs)
    if "tx_saturation" in kwargs:
        with pytest.raises(ValueError, match="tx_saturation"):
            FrontendOverride(tx_saturation=kwargs["tx_saturation"])
