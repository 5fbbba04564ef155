"""Reference oscillators: per-radio draws, clocks, carrier frequency offset, drift, SCO, phase noise.

Every check compares what the loopback produces with the truth it exposes (air.oscillator(name),
air.link(tx, rx).cfo_hz / phase_at / arrival_sample), impairment by impairment.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from airfl.radio import (
    AirConfig,
    ChannelConfig,
    LateCommandError,
    LoopbackAir,
    Oscillator,
    OscillatorConfig,
    OscillatorOverride,
)
from airfl.radio.oscillator import WienerPhase

RATE = 1e6
FC = 2.4e9


def _air(osc: OscillatorConfig, seed: int = 0, fc: float = FC, **channel) -> LoopbackAir:
    channel.setdefault("fading", "none")
    return LoopbackAir(
        AirConfig(seed=seed, sample_rate_hz=RATE, center_freq_hz=fc, channel=ChannelConfig(oscillator=osc, **channel))
    )


def _fit_frequency(y: np.ndarray, rate: float = RATE) -> float:
    """Frequency (Hz) of a complex tone from a least-squares fit of its unwrapped phase."""
    n = np.arange(len(y))
    slope = np.polyfit(n, np.unwrap(np.angle(y)), 1)[0]
    return float(slope * rate / (2 * np.pi))


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"ppm": 2000.0}, "ppm"),
        ({"ppm_spread": -1.0}, "ppm_spread"),
        ({"ppm": 990.0, "ppm_spread": 20.0}, r"ppm \+ ppm_spread"),
        ({"drift_ppm_per_s": math.inf}, "drift_ppm_per_s"),
        ({"drift_spread_ppm_per_s": -0.1}, "drift_spread_ppm_per_s"),
        ({"linewidth_hz": -1.0}, "linewidth_hz"),
        ({"sample_clock": "free"}, "sample_clock"),
        ({"sample_clock_ppm_spread": -2.0}, "sample_clock_ppm_spread"),
        ({"overrides": {"a": 3.0}}, "OscillatorOverride"),
        ({"overrides": {"": OscillatorOverride()}}, "radio names"),
    ],
)
def test_oscillator_config_validation(kwargs, match):
    """Impossible oscillator settings are refused, naming the field and its unit."""
    with pytest.raises(ValueError, match=match):
        OscillatorConfig(**kwargs)


def test_override_validation_and_default_is_ideal():
    """Overrides are range-checked; the default config gives every radio an ideal oscillator."""
    with pytest.raises(ValueError, match="linewidth_hz"):
        OscillatorOverride(linewidth_hz=-1.0)
    with pytest.raises(ValueError, match="ppm"):
        OscillatorOverride(ppm=1e4)
    osc = Oscillator(OscillatorConfig(), "r", 0, RATE, FC)
    assert osc.ppm == osc.drift_ppm_per_s == osc.linewidth_hz == 0.0
    assert osc.ideal_clock and not osc.has_phase_noise
    np.testing.assert_array_equal(osc.local_time(np.arange(5.0)), np.arange(5.0))


def test_per_radio_ppm_is_uniform_within_spread_and_seeded_by_name():
    """ppm = nominal + U(-spread, spread) per radio: within bounds, std spread/sqrt(3) (10%),
    a function of (seed, name) only."""
    cfg = OscillatorConfig(ppm=2.0, ppm_spread=25.0, drift_spread_ppm_per_s=0.02)
    ppm = np.array([Oscillator(cfg, f"c{i}", 3, RATE, FC).ppm for i in range(600)])
    assert np.all((ppm >= -23.0) & (ppm <= 27.0))
    assert ppm.std() == pytest.approx(25.0 / np.sqrt(3), rel=0.1)
    assert ppm.mean() == pytest.approx(2.0, abs=1.5)
    a, b = Oscillator(cfg, "c7", 3, RATE, FC), Oscillator(cfg, "c7", 3, RATE, FC)
    assert (a.ppm, a.drift_ppm_per_s) == (b.ppm, b.drift_ppm_per_s)
    assert Oscillator(cfg, "c7", 4, RATE, FC).ppm != a.ppm
    assert abs(a.drift_ppm_per_s) <= 0.02


def test_zero_spread_and_overrides_are_exact():
    """With spread 0 every radio has exactly the nominal value; an override pins one radio exactly."""
    cfg = OscillatorConfig(
        ppm=7.5, drift_ppm_per_s=0.01, linewidth_hz=2.0, overrides={"x": OscillatorOverride(ppm=-3.25, linewidth_hz=0.0)}
    )
    y = Oscillator(cfg, "y", 1, RATE, FC)
    assert (y.ppm, y.drift_ppm_per_s, y.linewidth_hz) == (7.5, 0.01, 2.0)
    x = Oscillator(cfg, "x", 1, RATE, FC)
    assert (x.ppm, x.drift_ppm_per_s, x.linewidth_hz) == (-3.25, 0.01, 0.0)


def test_locked_and_independent_sample_clocks():
    """Locked: the sample clock shares the reference's ppm and drift (AD9361). Independent: its own
    constant error, no drift."""
    over = {"r": OscillatorOverride(ppm=10.0, drift_ppm_per_s=0.5, sample_clock_ppm=-4.0)}
    locked = Oscillator(OscillatorConfig(overrides=over), "r", 0, RATE, FC)
    assert (locked.sample_clock_ppm, locked.sample_clock_drift_ppm_per_s) == (10.0, 0.5)
    indep = Oscillator(OscillatorConfig(sample_clock="independent", overrides=over), "r", 0, RATE, FC)
    assert (indep.sample_clock_ppm, indep.sample_clock_drift_ppm_per_s) == (-4.0, 0.0)
    assert indep.ppm == 10.0  # the carrier still has the reference error


def test_ppm_drifts_linearly_and_clock_integrates_it():
    """ppm(t) = ppm + drift * t / fs; the sample clock reads tau(t) = t + 1e-6 (ppm t + drift t^2 / (2 fs)),
    and true_time inverts it to 1e-6 samples up to 1e9 samples."""
    osc = Oscillator(OscillatorConfig(overrides={"r": OscillatorOverride(ppm=20.0, drift_ppm_per_s=-0.3)}), "r", 0, RATE, FC)
    t = np.array([0.0, 1e3, 2.5e6, 1e9])
    np.testing.assert_allclose(osc.ppm_at(t), 20.0 - 0.3 * t / RATE)
    np.testing.assert_allclose(osc.local_time(t), t + 1e-6 * (20.0 * t - 0.3 * t**2 / (2 * RATE)), rtol=1e-15)
    n = np.array([0.0, 17.0, 3e6, 1e9])
    np.testing.assert_allclose(osc.local_time(osc.true_time(n)), n, atol=1e-6, rtol=0)


# -- carrier frequency offset ------------------------------------------------------------------


def test_cfo_tone_frequency_and_phase_match_truth():
    """A constant burst arrives as a tone at the link CFO (ppm_tx - ppm_rx) * 1e-6 * fc = 36 kHz
    (fit within 1 Hz), and its phase is exactly link.phase_at(t) (1e-9 rad)."""
    over = {"tx": OscillatorOverride(ppm=10.0), "rx": OscillatorOverride(ppm=-5.0)}
    air = _air(OscillatorConfig(sample_clock="independent", overrides=over))  # SCO off: CFO alone
    link = air.link("tx", "rx")
    assert link.cfo_hz(0.0) == pytest.approx(15e-6 * FC)
    air.radio("tx").transmit(np.full(20_000, 0.5), 1000)
    y = air.radio("rx").receive(20_000, 1000)
    assert _fit_frequency(y) == pytest.approx(link.cfo_hz(0.0), abs=1.0)
    expected = 0.5 * link.true_gain(1000) * np.exp(1j * link.phase_at(np.arange(1000, 21_000)))
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-9)


def test_cfo_follows_drift_and_phase_is_continuous():
    """With 0.5 ppm/s of drift the CFO 0.5 s later is 600 Hz higher: each window's tone frequency
    matches cfo_hz at its centre within 1 Hz, and the phase across the gap follows the integral."""
    over = {"tx": OscillatorOverride(ppm=3.0, drift_ppm_per_s=0.5)}
    air = _air(OscillatorConfig(sample_clock="independent", overrides=over))
    link = air.link("tx", "rx")
    tx, rx = air.radio("tx"), air.radio("rx")
    for at in (0, 500_000):
        tx.transmit(np.ones(10_000), at)
        y = rx.receive(10_000, at)
        assert _fit_frequency(y) == pytest.approx(link.cfo_hz(at + 5000), abs=1.0)
        np.testing.assert_allclose(np.angle(y / link.true_gain(at)), np.angle(np.exp(1j * link.phase_at(np.arange(at, at + 10_000)))), atol=1e-7)
    assert link.cfo_hz(500_000) - link.cfo_hz(0) == pytest.approx(0.5 * 0.5 * 1e-6 * FC)


# -- sample-clock offset -----------------------------------------------------------------------


def _pulse(n: int = 41, sigma: float = 3.0) -> np.ndarray:
    k = np.arange(n) - n // 2
    return np.exp(-0.5 * (k / sigma) ** 2).astype(np.complex128)


def _centroid(y: np.ndarray, around: float, half: int = 20) -> float:
    lo = int(round(around)) - half
    p = np.abs(y[lo : lo + 2 * half + 1]) ** 2
    return float(lo + np.sum(np.arange(2 * half + 1) * p) / np.sum(p))


def test_sco_stretches_a_burst_by_the_ppm_difference():
    """tx clock +40 ppm, rx clock -60 ppm (independent, no CFO): two pulses 200 000 tx samples apart
    arrive 200 000 * (1 - 60e-6) / (1 + 40e-6) rx samples apart (~20 samples shorter); each pulse
    centre sits at link.arrival_sample(T) within 0.01 sample."""
    over = {"tx": OscillatorOverride(sample_clock_ppm=40.0), "rx": OscillatorOverride(sample_clock_ppm=-60.0)}
    air = _air(OscillatorConfig(sample_clock="independent", overrides=over), max_delay_samples=5)
    link = air.link("tx", "rx")
    p = _pulse()
    gap = 200_000
    t1, t2 = 1000, 1000 + gap
    burst = np.zeros(gap + len(p), dtype=np.complex128)
    burst[: len(p)] = p
    burst[gap:] = p
    air.radio("tx").transmit(burst, t1)
    y = air.radio("rx").receive(t2 + 200, 0)
    c1 = _centroid(y, link.arrival_sample(t1 + 20))
    c2 = _centroid(y, link.arrival_sample(t2 + 20))
    assert c1 == pytest.approx(link.arrival_sample(t1 + 20), abs=0.01)
    assert c2 == pytest.approx(link.arrival_sample(t2 + 20), abs=0.01)
    assert c2 - c1 == pytest.approx(gap * (1 - 60e-6) / (1 + 40e-6), abs=0.02)


def test_sco_scales_a_tone_frequency():
    """A 100 kHz tone on the tx clock is received at 100 kHz * (1 + eps_tx) / (1 + eps_rx) in rx
    samples: +10 Hz for a 100 ppm difference (fit within 0.05 Hz)."""
    over = {"tx": OscillatorOverride(sample_clock_ppm=50.0), "rx": OscillatorOverride(sample_clock_ppm=-50.0)}
    air = _air(OscillatorConfig(sample_clock="independent", overrides=over))
    f0 = 100e3
    n = np.arange(60_000)
    air.radio("tx").transmit(0.5 * np.exp(2j * np.pi * f0 / RATE * n), 0)
    y = air.radio("rx").receive(50_000, 5000)
    assert _fit_frequency(y) == pytest.approx(f0 * (1 + 50e-6) / (1 - 50e-6), abs=0.05)


def test_locked_clock_gives_cfo_and_sco_from_one_ppm():
    """Locked (default): a radio 20 ppm fast has its carrier 48 kHz high and its clock 20 ppm fast;
    a DC burst from it arrives as a tone at the link CFO and a pulse lands at arrival_sample."""
    air = _air(OscillatorConfig(overrides={"tx": OscillatorOverride(ppm=20.0)}))
    link = air.link("tx", "rx")
    assert link.cfo_hz(0) == pytest.approx(48e3)
    assert air.oscillator("tx").sample_clock_ppm == 20.0
    air.radio("tx").transmit(np.ones(30_000), 100_000)
    y = air.radio("rx").receive(20_000, 100_000)
    assert _fit_frequency(y[1000:19_000]) == pytest.approx(48e3, abs=1.0)
    assert link.arrival_sample(100_000) == pytest.approx(100_000 / (1 + 20e-6))


def test_radio_clocks_and_lateness_in_true_time():
    """now(), transmit and receive are on each radio's own clock; lateness is judged in true time."""
    over = {"fast": OscillatorOverride(ppm=100.0), "slow": OscillatorOverride(ppm=-100.0)}
    air = _air(OscillatorConfig(overrides=over))
    fast, slow, ideal = air.radio("fast"), air.radio("slow"), air.radio("ideal")
    fast.receive(100_000, 0)
    assert fast.now() == 100_000
    t = air.true_time()
    assert t == pytest.approx(100_000 / (1 + 1e-4))
    assert ideal.now() == math.ceil(t) == air.now()
    assert slow.now() == math.ceil(t * (1 - 1e-4))
    with pytest.raises(LateCommandError, match="transmit"):
        slow.transmit(np.ones(4), slow.now() - 1)
    with pytest.raises(LateCommandError, match="receive"):
        ideal.receive(4, ideal.now() - 1)
    slow.transmit(np.ones(4), slow.now())
    ideal.receive(4, ideal.now())


# -- phase noise -------------------------------------------------------------------------------


@pytest.mark.parametrize("linewidth", [0.01, 100.0])
def test_wiener_increment_variance_is_2pi_linewidth_over_fs(linewidth):
    """One oscillator's phase increments per sample have variance 2*pi*linewidth/fs (within 10%),
    also over lags spanning the process's internal chunks (variance linear in the lag)."""
    osc = Oscillator(OscillatorConfig(linewidth_hz=linewidth), "r", 5, RATE, FC)
    theta = osc.phase_noise(np.arange(400_000, dtype=np.float64))
    var1 = 2 * np.pi * linewidth / RATE
    assert np.var(np.diff(theta)) == pytest.approx(var1, rel=0.1)
    lag = 5000  # > one chunk
    inc = theta[lag::lag] - theta[:-lag:lag]
    assert np.mean(inc**2) == pytest.approx(lag * var1, rel=0.2)
    assert theta[0] == 0.0


def test_wiener_phase_is_order_independent():
    """The phase at a time does not depend on what was asked before (lazy chunks, reproducible)."""
    t = np.array([3.5, 10_000.25, 2_000_000.0, 9_000_123.75])
    a = WienerPhase(1e-4, 7, (11,))
    far_first = [a.at(x) for x in t[::-1]][::-1]
    b = WienerPhase(1e-4, 7, (11,))
    np.testing.assert_array_equal(np.array(far_first), b.at(t))


def test_link_phase_noise_is_tx_minus_rx():
    """Through the loopback the link phase of a DC burst wanders with increment variance
    2*pi*(linewidth_tx + linewidth_rx)/fs (10%), and equals link.phase_at exactly."""
    over = {"tx": OscillatorOverride(linewidth_hz=60.0), "rx": OscillatorOverride(linewidth_hz=20.0)}
    air = _air(OscillatorConfig(overrides=over))
    link = air.link("tx", "rx")
    air.radio("tx").transmit(np.ones(200_000), 0)
    y = air.radio("rx").receive(200_000, 0)
    dphi = np.angle(y[1:] / y[:-1])
    assert np.var(dphi) == pytest.approx(2 * np.pi * 80.0 / RATE, rel=0.1)
    np.testing.assert_allclose(y, link.true_gain(0) * np.exp(1j * link.phase_at(np.arange(200_000))), atol=1e-9)
    # the receiver's phase noise is common to every transmitter it hears
    other = air.link("tx2", "rx")
    t = np.arange(0, 50_000, 7.0)
    np.testing.assert_allclose(other.phase_at(t) - link.phase_at(t), -air.oscillator("tx").phase_noise(t), atol=1e-9)


def test_phase_noise_increments_hold_off_the_grid():
    """A receiver with a sample-clock offset samples the phase processes between their grid points;
    the one-sample increment variance still matches 2*pi*(linewidth sum)/fs within 10%."""
    over = {"tx": OscillatorOverride(linewidth_hz=100.0, sample_clock_ppm=-70.0), "rx": OscillatorOverride(sample_clock_ppm=130.0)}
    air = _air(OscillatorConfig(sample_clock="independent", overrides=over))
    air.radio("tx").transmit(np.ones(200_000), 0)
    y = air.radio("rx").receive(190_000, 1000)
    dphi = np.angle(y[1:] / y[:-1])
    assert np.var(dphi) == pytest.approx(2 * np.pi * 100.0 / RATE, rel=0.1)
