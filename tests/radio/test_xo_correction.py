"""Reference correction on the loopback (the AD9361's xo_correction): carrier and locked sample
clock scale by 40 MHz / reference_hz from the moment it is set, phase- and time-continuously.

Every check compares what the loopback produces with the truth it exposes (air.oscillator(name),
air.link(tx, rx).cfo_hz / phase_at / arrival_sample).
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.radio import AirConfig, ChannelConfig, LoopbackAir, OscillatorConfig, OscillatorOverride, RadioError
from airfl.radio.oscillator import NOMINAL_REFERENCE_HZ, Oscillator

RATE = 1e6
FC = 2.44e9


def _air(osc: OscillatorConfig, **channel) -> LoopbackAir:
    channel.setdefault("fading", "none")
    return LoopbackAir(
        AirConfig(seed=0, sample_rate_hz=RATE, center_freq_hz=FC, channel=ChannelConfig(oscillator=osc, **channel))
    )


def _fit_frequency(y: np.ndarray) -> float:
    """Frequency (Hz) of a complex tone from a least-squares fit of its unwrapped phase."""
    slope = np.polyfit(np.arange(len(y)), np.unwrap(np.angle(y)), 1)[0]
    return float(slope * RATE / (2 * np.pi))


def test_correcting_the_reference_removes_a_transmitters_offset():
    """tx crystal +20 ppm, rx -3 ppm: CFO 56.12 kHz. Telling tx its reference is 40 MHz * (1 + 20e-6)
    (800 Hz high) leaves the rx's 3 ppm: the tone moves to +7.32 kHz (fit within 1 Hz), cfo_hz says
    so, and the crystal's own ppm is unchanged."""
    air = _air(OscillatorConfig(overrides={"tx": OscillatorOverride(ppm=20.0), "rx": OscillatorOverride(ppm=-3.0)}))
    tx, rx = air.radio("tx"), air.radio("rx")
    link = air.link("tx", "rx")
    assert tx.has_xo_correction() and tx.xo_correction() == 40_000_000
    tx.transmit(np.full(20_000, 0.5), 0)
    assert _fit_frequency(rx.receive(20_000, 0)) == pytest.approx(23e-6 * FC, abs=1.0)
    tx.set_xo_correction(40_000_800)
    assert tx.xo_correction() == 40_000_800
    osc = air.oscillator("tx")
    assert osc.ppm == 20.0 and osc.crystal_ppm_at(1e5) == 20.0
    assert osc.ppm_at(1e5) == pytest.approx(0.0, abs=1e-9)
    assert link.cfo_hz(1e5) == pytest.approx(3e-6 * FC, abs=1e-6)
    tx.transmit(np.full(20_000, 0.5), tx.now() + 100)
    y = rx.receive(20_000, rx.now() + 100)
    assert _fit_frequency(y[100:-100]) == pytest.approx(3e-6 * FC, abs=1.0)


def test_phase_and_clock_are_continuous_through_a_change():
    """One long tone crosses the moment of correction: every received sample is exactly
    gain * exp(j * link.phase_at(t)) (1e-9 rad), before and after, so the phase does not jump; the
    locked clock reads continuously and true_time inverts it across segments."""
    air = _air(OscillatorConfig(overrides={"tx": OscillatorOverride(ppm=12.0, drift_ppm_per_s=0.3)}))
    tx, rx = air.radio("tx"), air.radio("rx")
    link = air.link("tx", "rx")
    tx.transmit(np.full(60_000, 0.5), 0)
    first = rx.receive(20_000, 0)
    t_change = air.true_time()
    tx.set_xo_correction(NOMINAL_REFERENCE_HZ * (1 + 12e-6))
    second = rx.receive(20_000, 20_000)  # rx clock is ideal: rx sample n is true time n
    y = np.concatenate([first, second])
    # tx's locked clock changed rate: read where each rx sample came from on the tx clock
    g = link.true_gain(0)
    expected = 0.5 * g * np.exp(1j * link.phase_at(np.arange(40_000.0)))
    # away from the burst's first samples (the interpolator's edge), resampling a constant is exact
    np.testing.assert_allclose(y[32:], expected[32:], rtol=0, atol=5e-8)
    osc = air.oscillator("tx")
    before = float(osc.local_time(t_change - 1e-3))
    after = float(osc.local_time(t_change + 1e-3))
    assert after - before == pytest.approx(1e-3 * (1 + 12e-6) + 1e-3, abs=1e-10)  # no jump, new rate after
    # what is left after correcting the crystal's 12 ppm at t = 0 is its drift (0.3 ppm/s) since then
    t = t_change + 1e6
    assert osc.ppm_at(t) == pytest.approx(0.3 * t / RATE / (1 + 12e-6), abs=1e-9)
    n = np.array([0.0, 5_000.0, t_change - 1, t_change + 1, 3e7])
    np.testing.assert_allclose(osc.local_time(osc.true_time(n)), n, atol=1e-6, rtol=0)


def test_locked_sample_clock_follows_and_independent_does_not():
    """A locked tx clock 30 ppm fast runs at the nominal rate once corrected (a pulse 1e6 tx samples
    later arrives 1e6 rx samples later, to 1e-6); an independent sample clock keeps its own error."""
    air = _air(OscillatorConfig(overrides={"tx": OscillatorOverride(ppm=30.0)}))
    link = air.link("tx", "rx")
    air.radio("tx").set_xo_correction(NOMINAL_REFERENCE_HZ * (1 + 30e-6))
    t0 = link.arrival_sample(1e6)
    assert link.arrival_sample(2e6) - t0 == pytest.approx(1e6, abs=1e-6)
    assert not link.integer_timing and link.rotates
    indep = Oscillator(
        OscillatorConfig(sample_clock="independent", overrides={"r": OscillatorOverride(ppm=30.0, sample_clock_ppm=5.0)}),
        "r", 0, RATE, FC,
    )
    indep.set_reference_hz(NOMINAL_REFERENCE_HZ * (1 + 30e-6), 0.0)
    assert indep.ppm_at(1e6) == pytest.approx(0.0, abs=1e-9)
    assert indep.sample_clock_ppm_at(1e6) == 5.0
    assert indep.local_time(1e6) == pytest.approx(1e6 * (1 + 5e-6))


def test_nominal_reference_restores_the_uncorrected_model_and_range_is_checked():
    air = _air(OscillatorConfig(overrides={"tx": OscillatorOverride(ppm=1.0)}))
    tx = air.radio("tx")
    tx.set_xo_correction(40_000_040)
    assert air.oscillator("tx").corrected
    tx.set_xo_correction(40_000_000)
    osc = air.oscillator("tx")
    assert not osc.corrected and osc.ppm_at(0.0) == 1.0
    with pytest.raises(RadioError, match="at most"):
        tx.set_xo_correction(40_010_000)  # +250 ppm
    ideal = _air(OscillatorConfig())
    r = ideal.radio("r")
    r.set_xo_correction(40_000_000)
    assert ideal.link("r", "x").integer_timing and not ideal.link("r", "x").rotates


def test_a_burst_scheduled_before_the_correction_leaves_on_the_corrected_clock():
    """tx crystal +150 ppm, a burst scheduled at its sample 1 000 000, then its reference corrected:
    the burst now leaves 150 samples later than first computed, and all of it is still heard, even
    across two receive windows (the air must not forget it early)."""
    air = _air(OscillatorConfig(overrides={"tx": OscillatorOverride(ppm=150.0)}))
    tx, rx = air.radio("tx"), air.radio("rx")
    tx.transmit(np.full(1000, 0.5), 1_000_000)
    tx.set_xo_correction(NOMINAL_REFERENCE_HZ * (1 + 150e-6))
    link = air.link("tx", "rx")
    start = link.arrival_sample(1_000_000)
    assert start == pytest.approx(1_000_000, abs=1e-3)  # sent on the corrected (now nominal) clock
    first = rx.receive(1880, 999_000)  # ends after where the uncorrected burst would have ended
    second = rx.receive(220, 1_000_880)
    y = np.concatenate([first, second])
    on = np.abs(y) > 0.25
    assert np.count_nonzero(on) == 1000 and np.flatnonzero(on)[0] == 1000
