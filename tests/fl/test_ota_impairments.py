"""The receiver against each impairment of the loopback air, one at a time.

For each: the receiver's estimate agrees with the truth the loopback knows (stated tolerance), and
switching that correction off shows what goes wrong (a stated loss in NMSE). Small K and d, a few
rounds: these check behaviour, benchmarks/aircomp.py measures the figures.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from airfl.fl.ota import OtaSettings, OverTheAirRound
from airfl.radio import AirConfig, ChannelConfig, LoopbackAir, RadioConfig
from airfl.radio.frontend import FrontendConfig, FrontendOverride
from airfl.radio.oscillator import OscillatorConfig, OscillatorOverride

P = 0.1
RATE = 1e6
BASE = ChannelConfig(fading="rayleigh", max_delay_samples=8, noise_power=P / 10**3)  # 30 dB


def _run(channel: ChannelConfig, rounds: int = 4, k: int = 4, d: int = 4000, seed: int = 3, **settings):
    """(NMSE over the rounds after the first, minus its truncated-inversion theory, in dB;
    last RoundResult; air). 0 dB means the receiver reaches theory. The absolute NMSE (dB) is
    stored on the result as result.diagnostics["test_nmse_db"]."""
    air = LoopbackAir(AirConfig(seed=seed, sample_rate_hz=RATE, channel=channel))
    server = air.radio("server")
    ota = OverTheAirRound(
        [air.radio(f"c{i}") for i in range(k)], server, RATE,
        OtaSettings(tx_power=P, sounding_cp=24, sounding_min_shift=40, **settings),
    )
    rng = np.random.default_rng(seed)
    errs, theory, refs = [], [], []
    result = None
    for r in range(rounds):
        ups = [rng.standard_normal(d) for _ in range(k)]
        result = ota.run(ups, np.ones(k))
        assert result.estimate is not None, result.failure
        if r >= 1:
            exact = result.exact_target(ups)
            errs.append(np.sum((result.estimate - exact) ** 2))
            theory.append(result.error_variance_theory * d)
            refs.append(np.sum(exact**2))
    result.diagnostics["test_nmse_db"] = float(10 * np.log10(np.sum(errs) / np.sum(refs)))
    return 10 * np.log10(np.sum(errs) / np.sum(theory)), result, air


def test_cfo_estimates_match_the_links_and_correction_matters():
    """+-1 ppm at 2.4 GHz (kHz offsets): tracked CFO within 5 Hz of the truth after four rounds (the
    drift-rate state is still settling); without correction
    the sum is ruined (> 15 dB worse)."""
    channel = replace(BASE, oscillator=OscillatorConfig(ppm_spread=1.0, sample_clock="independent"))
    good, result, air = _run(channel, sco_correction=False)
    t = result.timing["sounding_at"]
    for i, f in result.client_cfo_hz.items():
        assert f == pytest.approx(air.link(f"c{i}", "server").cfo_hz(t), abs=5.0)
    bad, _, _ = _run(channel, cfo_correction=False, sco_correction=False)
    assert good < 1.5 and bad > good + 15


@pytest.mark.parametrize("waveform", ["single_carrier", "ofdm"])
def test_fractional_delays_are_measured_and_matter(waveform):
    """Delays with a random fraction: measured total delay within 0.05 samples; timing correction off
    misaligns the clients (> 10 dB worse). OFDM reaches theory; single carrier at one sample per
    symbol fills the whole band, and the converters' band edge (the loopback's band-limited
    interpolator, like a real radio's filters) costs it several dB whatever the receiver does."""
    channel = replace(BASE, max_fractional_delay=1.0)
    good, result, air = _run(channel, waveform=waveform)
    for i, tau in result.client_delay.items():
        assert tau == pytest.approx(air.link(f"c{i}", "server").total_delay, abs=0.05)
    bad, _, _ = _run(channel, waveform=waveform, timing_correction=False)
    assert bad > good + 10
    if waveform == "ofdm":
        assert good < 2.0


def test_single_carrier_needs_the_fractional_advance():
    """Single carrier: integer advance alone leaves up to half a sample of misalignment (> 5 dB worse)."""
    channel = replace(BASE, max_fractional_delay=1.0)
    good, _, _ = _run(channel)
    bad, _, _ = _run(channel, fractional_timing=False)
    assert bad > good + 5


def test_locked_sample_clock_is_pre_compensated():
    """Sample clocks locked to +-1 ppm references (noise off, so nothing but the clocks matters): a
    35 ms payload drifts by up to 0.07 samples; re-timing each burst by CFO/carrier keeps the sum
    exact to -40 dB, without it the error is > 6 dB larger."""
    channel = replace(
        BASE, noise_power=0.0, coherence_time_s=1.0,
        oscillator=OscillatorConfig(ppm_spread=1.0, sample_clock="locked"),
    )  # a 40k-value payload lasts ~35 ms: longer than the default 20 ms fading block
    _, good, _ = _run(channel, d=40000, waveform="ofdm", frame_period_s=0.1)
    _, bad, _ = _run(channel, d=40000, waveform="ofdm", frame_period_s=0.1, sco_correction=False)
    assert good.diagnostics["test_nmse_db"] < -40
    assert bad.diagnostics["test_nmse_db"] > good.diagnostics["test_nmse_db"] + 6


def test_receiver_phase_noise_is_tracked_by_pilots():
    """Phase noise at the receiver is common to every client: the payload pilots follow it. Without
    pilots a strong receiver phase noise (0.3 Hz linewidth, 30 times the lab value) rotates the sum away
    (> 5 dB worse)."""
    osc = OscillatorConfig(overrides={"server": OscillatorOverride(linewidth_hz=0.3)})
    channel = replace(BASE, oscillator=osc)
    good, result, _ = _run(channel)
    bad, _, _ = _run(channel, pilot_spacing=0)
    assert result.diagnostics["pilot_snr_db"] > 10
    assert good < 2.0 and bad > good + 5


def test_ofdm_per_subcarrier_channels_follow_multipath():
    """A 300 ns delay spread at 1 MS/s is frequency selective: OFDM pre-equalises each subcarrier and
    stays near theory; single carrier cannot (> 8 dB worse)."""
    channel = replace(BASE, rms_delay_spread_ns=300.0)
    ofdm, _, _ = _run(channel, waveform="ofdm")
    sc, _, _ = _run(channel)
    assert ofdm < 2.0
    assert sc > ofdm + 8


def test_receiver_dc_offset_is_measured_and_removed():
    """A -30 dBFS receiver DC offset: estimated from the quiet interval within 5 %; single carrier
    suffers without the correction (> 5 dB worse)."""
    dc = 0.03 + 0.01j
    channel = replace(BASE, frontend=FrontendConfig(overrides={"server": FrontendOverride(rx_dc=dc)}))
    good, result, _ = _run(channel)
    assert good < 1.5
    assert result.frontend is not None and abs(result.frontend.dc - dc) < 0.05 * abs(dc)
    _, uncorrected, _ = _run(channel, dc_correction=False)
    # absolute NMSE: the offset also inflates the receiver's noise estimate, hence its theory
    assert uncorrected.diagnostics["test_nmse_db"] > result.diagnostics["test_nmse_db"] + 5


def test_receiver_iq_imbalance_is_estimated_and_compensated():
    """A poor receiver mixer (1 dB, 5 deg: image at -25 dB): the running moment estimate finds
    beta = nu/conj(mu) within 20 % and the correction gains > 3 dB at 30 dB SNR."""
    channel = replace(
        BASE, frontend=FrontendConfig(overrides={"server": FrontendOverride(rx_iq_gain_db=1.0, rx_iq_phase_deg=5.0)})
    )
    _, result, air = _run(channel, rounds=6, rx_iq_correction=True)
    fe = air.frontend("server")
    truth = fe.rx_nu / np.conj(fe.rx_mu)
    assert abs(result.frontend.beta - truth) < 0.2 * abs(truth)
    _, uncorrected, _ = _run(channel, rounds=6)
    # compare absolute NMSE: the image also inflates the receiver's own noise estimate (its theory)
    assert uncorrected.diagnostics["test_nmse_db"] > result.diagnostics["test_nmse_db"] + 3


def test_dac_never_clips_with_backoff():
    """Every burst is scaled so no transmitter exceeds full scale: the air counts no clipped sample."""
    channel = replace(BASE, frontend=FrontendConfig(dac_clipping=True))
    _, result, air = _run(channel, rounds=2)
    assert all(air.clipped_samples(f"c{i}") == 0 for i in range(4))
    assert result.diagnostics["papr_backoff_db"] >= 0


def test_adc_quantisation_costs_nothing_at_a_sensible_gain():
    """A 12-bit ADC with -10 dB receive gain: NMSE within 0.5 dB of the unquantised air."""
    from airfl.radio.presets import LAB_RX_GAIN_DB

    def run_with(adc_bits):
        channel = replace(BASE, frontend=FrontendConfig(adc_bits=adc_bits))
        air = LoopbackAir(AirConfig(seed=3, sample_rate_hz=RATE, channel=channel))
        server = air.radio("server")
        server.configure(RadioConfig(sample_rate_hz=RATE, rx_gain_db=LAB_RX_GAIN_DB))
        ota = OverTheAirRound([air.radio(f"c{i}") for i in range(4)], server, RATE,
                              OtaSettings(tx_power=P, truncation="full"))
        rng = np.random.default_rng(3)
        e = []
        for _ in range(3):
            ups = [rng.standard_normal(4000) for _ in range(4)]
            res = ota.run(ups, np.ones(4))
            ex = res.exact_target(ups)
            e.append(np.sum((res.estimate - ex) ** 2) / np.sum(ex**2))
        return 10 * np.log10(np.mean(e)), air

    quantised, air = run_with(12)
    ideal, _ = run_with(None)
    assert air.adc_clipped_samples("server") == 0
    assert quantised == pytest.approx(ideal, abs=0.5)
