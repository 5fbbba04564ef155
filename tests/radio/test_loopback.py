"""The loopback air: timed bursts, superposition through link models, receiver noise, determinism,
the bit-exact impairment-free default and determinism with every impairment on (lab preset).

Every expected waveform is rebuilt from the air's own truth (LinkModel.delay_samples, true_gain),
so these tests check the emulator against its stated physics, impairment by impairment.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from airfl.radio import (
    LAB_RX_GAIN_DB,
    AirConfig,
    ChannelConfig,
    LateCommandError,
    LoopbackAir,
    LoopbackRadio,
    Radio,
    RadioConfig,
    RadioError,
    lab_impairments,
)
from airfl.radio.base import as_baseband
from airfl.radio.channel import seeded_rng, stable_id
from airfl.radio.presets import LAB_FRONTEND

RATE = 1e6


def _air(seed=0, **channel) -> LoopbackAir:
    return LoopbackAir(AirConfig(seed=seed, sample_rate_hz=RATE, channel=ChannelConfig(**channel)))


def _burst(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)


def _expected(air: LoopbackAir, rx: str, bursts, n: int, at: int) -> np.ndarray:
    """Sample-by-sample superposition from the link truth: sample i of a burst sent at t arrives at
    t + i + delay with gain true_gain(t + i)."""
    out = np.zeros(n, dtype=np.complex128)
    for tx, t, x in bursts:
        link = air.link(tx, rx)
        for i, s in enumerate(x):
            j = t + i + link.delay_samples - at
            if 0 <= j < n:
                out[j] += link.true_gain(t + i) * s
    return out


# -- configuration and the Radio contract -------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, -1.0, 61.44e6 + 1])
def test_air_config_rate_checked(rate):
    """The air's sample rate must be positive and within what the loopback claims to support."""
    with pytest.raises(ValueError, match="sample_rate_hz"):
        AirConfig(sample_rate_hz=rate)


def test_radio_config_validation():
    """Non-positive sample rate or carrier is refused."""
    with pytest.raises(ValueError, match="sample_rate_hz"):
        RadioConfig(sample_rate_hz=0)
    with pytest.raises(ValueError, match="center_freq_hz"):
        RadioConfig(center_freq_hz=-1)


def test_loopback_radio_is_a_radio():
    """LoopbackRadio satisfies the Radio protocol and advertises timed, full-duplex operation."""
    radio = _air().radio("a")
    assert isinstance(radio, Radio)
    caps = radio.capabilities
    assert caps.timed_tx and caps.timed_rx and caps.full_duplex and not caps.cyclic_tx
    assert caps.name == "loopback:a"
    assert radio.name == "a"


def test_radio_by_name_is_unique_per_air():
    """air.radio(name) returns the same object for the same name; an empty name is refused."""
    air = _air()
    assert air.radio("x") is air.radio("x")
    assert air.radio("x") is not air.radio("y")
    assert air.radio("x").air is air
    with pytest.raises(ValueError, match="non-empty"):
        air.radio("")


def test_configure_follows_the_air_clock():
    """A loopback radio accepts its air's sample rate (any carrier/gains) and refuses another rate."""
    radio = _air().radio("a")
    radio.configure(RadioConfig(sample_rate_hz=RATE, center_freq_hz=915e6, tx_gain_db=-10))
    with pytest.raises(RadioError, match="clock"):
        radio.configure(RadioConfig(sample_rate_hz=2 * RATE))


def test_closed_radio_refuses_work_and_close_is_idempotent():
    """After close() transmit/receive/configure raise RadioError; closing twice is fine."""
    radio = _air().radio("a")
    radio.close()
    radio.close()
    with pytest.raises(RadioError, match="closed"):
        radio.transmit(np.ones(4), 0)
    with pytest.raises(RadioError, match="closed"):
        radio.receive(4, 0)
    with pytest.raises(RadioError, match="closed"):
        radio.configure(RadioConfig(sample_rate_hz=RATE))


def test_as_baseband_validation():
    """Bursts must be 1-D and finite; valid input comes back as complex128 with the same values."""
    np.testing.assert_array_equal(as_baseband(np.array([1, 2], dtype=np.float32)), np.array([1 + 0j, 2 + 0j]))
    assert as_baseband(np.ones(3, dtype=np.complex64)).dtype == np.complex128
    with pytest.raises(ValueError, match="1-D"):
        as_baseband(np.ones((2, 2)))
    with pytest.raises(ValueError, match="NaN or Inf"):
        as_baseband(np.array([1, np.inf]))


def test_non_finite_burst_is_not_scheduled():
    """A burst holding NaN is refused before it reaches the air: nothing is counted or heard."""
    air = _air(fading="none")
    with pytest.raises(ValueError, match="NaN"):
        air.radio("a").transmit(np.array([1.0, np.nan]), 0)
    assert air.samples_transmitted == 0
    assert np.all(air.radio("b").receive(10, 0) == 0)


# -- timing --------------------------------------------------------------------------------------


def test_receive_advances_the_shared_clock():
    """A receive moves the one air clock to the end of its window; every radio sees the same now()."""
    air = _air()
    a, b = air.radio("a"), air.radio("b")
    assert a.now() == b.now() == 0
    a.receive(100, 50)
    assert air.now() == a.now() == b.now() == 150


def test_late_commands_raise():
    """Transmitting or receiving at a sample time already passed raises LateCommandError (like a USRP)."""
    air = _air()
    tx, rx = air.radio("tx"), air.radio("rx")
    rx.receive(100, 0)
    with pytest.raises(LateCommandError, match="transmit"):
        tx.transmit(np.ones(5), 99)
    with pytest.raises(LateCommandError, match="receive"):
        rx.receive(10, 99)
    assert issubclass(LateCommandError, RadioError)
    tx.transmit(np.ones(5), 100)  # exactly now is still on time
    rx.receive(10, 100)


def test_negative_window_length_refused():
    """A negative number of samples is a ValueError, not an empty capture."""
    with pytest.raises(ValueError, match="n_samples"):
        _air().radio("rx").receive(-1, 0)


# -- the medium ----------------------------------------------------------------------------------


def test_single_burst_no_impairments_is_exact():
    """fading='none', 0 dB loss, no delay, no noise: the receiver gets the burst times one static phasor."""
    air = _air(fading="none")
    x = _burst(np.random.default_rng(0), 50)
    air.radio("tx").transmit(x, 10)
    y = air.radio("rx").receive(80, 0)
    g = air.link("tx", "rx").true_gain(10)
    assert abs(g) == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_array_equal(y[:10], 0)
    np.testing.assert_allclose(y[10:60], g * x, rtol=1e-12)
    np.testing.assert_array_equal(y[60:], 0)


def test_overlapping_bursts_sum_through_their_links():
    """Bursts from three radios overlap at the receiver; each goes through its own delay and block
    gain (Rayleigh, short coherence so bursts straddle blocks), and they add linearly."""
    air = _air(4, fading="rayleigh", coherence_time_s=40e-6, max_delay_samples=8, path_loss_spread_db=6.0)
    rng = np.random.default_rng(1)
    bursts = [("c0", 20, _burst(rng, 120)), ("c1", 35, _burst(rng, 90)), ("c2", 0, _burst(rng, 200))]
    for tx, t, x in bursts:
        air.radio(tx).transmit(x, t)
    assert len({air.link(tx, "srv").delay_samples for tx, _, _ in bursts}) > 1  # delays really differ
    y = air.radio("srv").receive(260, 5)
    np.testing.assert_allclose(y, _expected(air, "srv", bursts, 260, 5), rtol=1e-12, atol=1e-14)


def test_burst_split_across_windows_is_continuous():
    """Receiving a long burst in consecutive windows gives the same samples as one big window."""
    rng = np.random.default_rng(2)
    x = _burst(rng, 500)
    parts = []
    air = _air(5, coherence_time_s=100e-6, max_delay_samples=6)
    air.radio("tx").transmit(x, 0)
    for at in range(0, 600, 150):
        parts.append(air.radio("rx").receive(150, at))
    air2 = _air(5, coherence_time_s=100e-6, max_delay_samples=6)
    air2.radio("tx").transmit(x, 0)
    np.testing.assert_array_equal(np.concatenate(parts), air2.radio("rx").receive(600, 0))


def test_a_radio_does_not_hear_itself():
    """A radio's own burst is absent from its receive window but present at another radio's."""
    air = _air(fading="none")
    a, b = air.radio("a"), air.radio("b")
    a.transmit(np.ones(10), 0)
    b.transmit(2 * np.ones(10), 0)
    y = a.receive(10, 0)  # hears b only
    np.testing.assert_allclose(y, 2 * air.link("b", "a").true_gain(0), rtol=1e-12)


def test_samples_transmitted_counts_bursts():
    """samples_transmitted is the total length of every accepted burst."""
    air = _air()
    air.radio("a").transmit(np.ones(7), 0)
    air.radio("b").transmit(np.ones(5), 3)
    assert air.samples_transmitted == 12


def test_no_fading_has_constant_received_amplitude():
    """fading='none': a constant-envelope burst arrives with constant |gain| across many coherence blocks."""
    air = _air(fading="none", coherence_time_s=50e-6, path_loss_db=3.0)
    air.radio("tx").transmit(np.ones(1000), 0)
    y = air.radio("rx").receive(1000, 0)
    np.testing.assert_allclose(np.abs(y), np.sqrt(10 ** -0.3), rtol=1e-12)
    assert np.ptp(np.angle(y)) < 1e-12


def test_rayleigh_received_gain_changes_per_block():
    """Rayleigh: the received gain is constant inside a coherence block and changes from block to block."""
    air = _air(fading="rayleigh", coherence_time_s=100e-6)
    air.radio("tx").transmit(np.ones(1000), 0)
    y = air.radio("rx").receive(1000, 0)
    blocks = y.reshape(10, 100)
    assert np.all(blocks == blocks[:, :1])
    assert len(set(blocks[:, 0])) == 10


def test_rayleigh_received_power_is_path_gain():
    """Averaged over 2000 blocks the received power of a unit-power signal is the path gain (10 dB loss, 6%)."""
    air = _air(3, fading="rayleigh", coherence_time_s=10e-6, path_loss_db=10.0)
    air.radio("tx").transmit(np.ones(20000), 0)
    y = air.radio("rx").receive(20000, 0)
    assert np.mean(np.abs(y) ** 2) == pytest.approx(0.1, rel=0.06)


@pytest.mark.parametrize("loss_db", [0.0, 10.0, 30.0])
def test_path_loss_applied_to_received_samples(loss_db):
    """Received power = transmitted power * 10^(-loss/10) without fading."""
    air = _air(fading="none", path_loss_db=loss_db)
    x = 0.5 * np.exp(1j * np.linspace(0, 20, 300))
    air.radio("tx").transmit(x, 0)
    y = air.radio("rx").receive(300, 0)
    assert np.mean(np.abs(y) ** 2) == pytest.approx(0.25 * 10 ** (-loss_db / 10), rel=1e-12)


# -- noise ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("power", [1e-4, 0.5])
def test_noise_power_matches_config(power):
    """Receiver noise is circular complex Gaussian with the configured power per sample (within 2%)."""
    y = _air(7, noise_power=power).radio("rx").receive(200_000, 0)
    assert np.mean(np.abs(y) ** 2) == pytest.approx(power, rel=0.02)
    assert np.var(y.real) == pytest.approx(power / 2, rel=0.03)
    assert np.var(y.imag) == pytest.approx(power / 2, rel=0.03)
    assert abs(np.mean(y.real * y.imag)) < 0.02 * power  # I and Q uncorrelated
    assert abs(np.mean(y)) < 0.01 * np.sqrt(power)


def test_noise_is_additive_and_signal_independent():
    """Same seed, with and without a burst: the difference is exactly the noise-free signal."""
    rng = np.random.default_rng(8)
    x = _burst(rng, 300)
    quiet, busy = _air(9, noise_power=0.1), _air(9, noise_power=0.1)
    busy.radio("tx").transmit(x, 10)
    diff = busy.radio("rx").receive(400, 0) - quiet.radio("rx").receive(400, 0)
    np.testing.assert_allclose(diff, _expected(busy, "rx", [("tx", 10, x)], 400, 0), atol=1e-12)


def test_set_noise_power():
    """set_noise_power switches the receiver noise on and off; negative power is refused."""
    air = _air()
    rx = air.radio("rx")
    assert np.all(rx.receive(100, 0) == 0)
    air.set_noise_power(0.2)
    assert air.config.channel.noise_power == 0.2
    assert np.mean(np.abs(rx.receive(50_000, 100)) ** 2) == pytest.approx(0.2, rel=0.03)
    air.set_noise_power(0.0)
    assert np.all(rx.receive(100, 50_100) == 0)
    with pytest.raises(ValueError, match="noise_power"):
        air.set_noise_power(-1.0)


# -- determinism ---------------------------------------------------------------------------------


def _session(seed: int, order=("c0", "c1", "c2")) -> np.ndarray:
    air = _air(seed, fading="rayleigh", coherence_time_s=50e-6, max_delay_samples=5, noise_power=0.01)
    rng = np.random.default_rng(10)
    bursts = {name: _burst(rng, 150) for name in ("c0", "c1", "c2")}
    for name in order:
        air.radio(name).transmit(bursts[name], {"c0": 0, "c1": 40, "c2": 90}[name])
    first = air.radio("srv").receive(200, 0)
    return np.concatenate([first, air.radio("srv").receive(100, 200)])


def test_same_seed_same_samples():
    """Everything random (links, fading, noise) is drawn from the air seed: two runs are bit-identical."""
    np.testing.assert_array_equal(_session(11), _session(11))


def test_different_seed_different_samples():
    """Another seed gives other channels and noise."""
    a, b = _session(11), _session(12)
    assert not np.allclose(a, b)


def test_samples_do_not_depend_on_opening_or_sending_order():
    """Link state depends on seed and names only: opening and sending in another order changes nothing
    (beyond floating-point addition order)."""
    np.testing.assert_allclose(_session(11), _session(11, order=("c2", "c0", "c1")), rtol=1e-12, atol=1e-15)


def test_noise_of_one_receiver_ignores_other_receivers():
    """A receiver's noise stream is its own: another radio's captures do not shift it."""
    a, b = _air(13, noise_power=1.0), _air(13, noise_power=1.0)
    b.radio("other").receive(1000, 0)
    np.testing.assert_array_equal(a.radio("rx").receive(64, 2000), b.radio("rx").receive(64, 2000))


# -- impairments: defaults stay bit-exact, everything on stays deterministic -----------------------


def _reference_capture(air: LoopbackAir, rx: str, bursts, n: int, at: int, noise_rng) -> np.ndarray:
    """The original loopback's receive, verbatim: integer delay, block gain, then receiver noise."""
    out = np.zeros(n, dtype=np.complex128)
    for tx, t, x in bursts:
        if tx == rx:
            continue
        link = air.link(tx, rx)
        arrive = t + link.delay_samples
        lo, hi = max(arrive, at), min(arrive + len(x), at + n)
        if hi <= lo:
            continue
        times = np.arange(lo, hi, dtype=np.int64)
        out[lo - at : hi - at] += link.gain_at(times) * x[lo - arrive : hi - arrive]
    noise_power = air.config.channel.noise_power
    if noise_power > 0:
        noise = noise_rng.standard_normal((2, n))
        out += np.sqrt(noise_power / 2.0) * (noise[0] + 1j * noise[1])
    return out


@pytest.mark.parametrize("fading", ["rayleigh", "none"])
def test_default_config_is_bit_exact_with_the_original_loopback(fading):
    """Every new impairment defaults to off: the samples are bit-identical to the original algorithm
    (delays, path-loss spread, block fading, noise), also with 0 dB gains configured on the radios."""
    air = _air(21, fading=fading, coherence_time_s=50e-6, max_delay_samples=7, path_loss_db=3.0,
               path_loss_spread_db=4.0, noise_power=0.01)
    assert air.config.center_freq_hz == 2.4e9
    for name in ("c0", "c1", "c2", "srv"):
        air.radio(name).configure(RadioConfig(sample_rate_hz=RATE, center_freq_hz=915e6))
    rng = np.random.default_rng(5)
    bursts = [(f"c{k}", t, (rng.standard_normal(120 + 17 * k) + 1j * rng.standard_normal(120 + 17 * k)) * 0.3)
              for k, t in enumerate((0, 33, 71))]
    for tx, t, x in bursts:
        air.radio(tx).transmit(x, t)
    noise_rng = seeded_rng(21, stable_id("srv"), 3)
    for n, at in ((150, 0), (200, 160)):
        np.testing.assert_array_equal(air.radio("srv").receive(n, at), _reference_capture(air, "srv", bursts, n, at, noise_rng))
    assert all(air.link(tx, "srv").integer_timing and not air.link(tx, "srv").rotates for tx, _, _ in bursts)


def test_air_config_carrier_checked():
    """The air's carrier must be a finite positive frequency."""
    with pytest.raises(ValueError, match="center_freq_hz"):
        AirConfig(center_freq_hz=0.0)


def _lab_session(seed: int, order=("c0", "c1", "c2"), windows=((0, 3000), (3000, 2000)), **changes) -> np.ndarray:
    air = LoopbackAir(AirConfig(seed=seed, sample_rate_hz=RATE, channel=lab_impairments(**changes)))
    srv = air.radio("srv")
    srv.configure(RadioConfig(sample_rate_hz=RATE, rx_gain_db=LAB_RX_GAIN_DB))
    rng = np.random.default_rng(10)
    bursts = {name: 0.3 * _burst(rng, 1500) for name in ("c0", "c1", "c2")}
    for name in order:
        air.radio(name).transmit(bursts[name], {"c0": 100, "c1": 900, "c2": 1800}[name])
    return np.concatenate([srv.receive(n, at) for at, n in windows])


def test_lab_impairments_same_seed_same_samples():
    """All impairments on (lab preset, noise and ADC included): same seed, bit-identical samples;
    another seed, other samples."""
    a = _lab_session(11, noise_power=1e-4)
    np.testing.assert_array_equal(a, _lab_session(11, noise_power=1e-4))
    assert not np.allclose(a, _lab_session(12, noise_power=1e-4))
    assert np.mean(np.abs(a) ** 2) > 1e-3  # something was heard


def test_lab_impairments_independent_of_sending_order_and_windowing():
    """Link and radio state depend on names only, and every impairment is a function of true time:
    another sending order, or the capture cut into other windows, gives the same samples (to rounding;
    without noise and ADC, whose outputs depend on window layout or can flip at a level boundary)."""
    base = dict(noise_power=0.0, frontend=replace(LAB_FRONTEND, adc_bits=None))
    a = _lab_session(13, **base)
    np.testing.assert_allclose(a, _lab_session(13, order=("c2", "c0", "c1"), **base), rtol=0, atol=1e-12)
    np.testing.assert_allclose(a, _lab_session(13, windows=((0, 700), (700, 1700), (2400, 2600)), **base), rtol=0, atol=1e-12)


def test_lab_preset_values():
    """The preset carries the documented lab-bench values, each impairment on."""
    c = lab_impairments()
    o, f = c.oscillator, c.frontend
    assert (o.ppm_spread, o.drift_spread_ppm_per_s, o.linewidth_hz, o.sample_clock) == (1.0, 0.02, 0.01, "locked")
    assert (c.max_delay_samples, c.max_fractional_delay, c.rms_delay_spread_ns) == (8, 1.0, 50.0)
    assert (c.fading, c.coherence_time_s, c.rician_k_db) == ("rayleigh", 0.02, 6.0)
    assert (f.tx_iq_gain_spread_db, f.rx_iq_phase_spread_deg, f.tx_dc_dbfs, f.rx_dc_dbfs) == (0.1, 0.5, -45.0, -45.0)
    assert f.dac_clipping and f.adc_bits == 12
    assert lab_impairments(fading="rician", noise_power=1e-3).fading == "rician"


def test_uncalibrated_preset_has_pluto_crystal_spread():
    """Out of the box a Pluto's reference is +-25 ppm; the lab preset assumes xo_correction done."""
    from airfl.radio.presets import uncalibrated_lab_impairments

    assert uncalibrated_lab_impairments().oscillator.ppm_spread == 25.0
    assert uncalibrated_lab_impairments(noise_power=1e-3).noise_power == 1e-3
