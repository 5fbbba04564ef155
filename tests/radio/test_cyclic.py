"""Cyclic-mode loopback radios: a stock Pluto's interface (no hardware time, cyclic transmit) on the
emulated air. Expected waveforms are rebuilt from the air's own truth (link delay and gain, the
buffer's origin), so these tests check the emulation against its stated behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.radio import AirConfig, ChannelConfig, LateCommandError, LoopbackAir, RadioError, lab_impairments
from airfl.radio.cyclic import CyclicLoopbackRadio, CyclicOptions
from airfl.radio.uri import forget_airs, loopback_air, open_radio


def _air(seed: int = 0, **channel) -> LoopbackAir:
    return LoopbackAir(AirConfig(seed=seed, channel=ChannelConfig(**{"fading": "none", **channel})))


def _buffer(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 0.3 * (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)


def _capture_start(air: LoopbackAir, n: int) -> int:
    """True time (samples) of the first sample of the capture that just ended (ideal clocks)."""
    return int(round(air.true_time())) - n


def test_a_cyclic_radio_has_no_hardware_time():
    """Capabilities say cyclic only; a burst at a future sample is refused with what to do instead,
    one in the past is late, one "now" is sent."""
    air = _air(max_delay_samples=3)
    tx, rx = CyclicLoopbackRadio(air, "c0"), CyclicLoopbackRadio(air, "server")
    caps = tx.capabilities
    assert (caps.timed_tx, caps.timed_rx, caps.cyclic_tx) == (False, False, True)
    with pytest.raises(RadioError, match="no hardware time.*transmit_cyclic"):
        tx.transmit(_buffer(10), tx.now() + 100)
    rx.receive(50, rx.now())
    with pytest.raises(LateCommandError):
        rx.receive(10, 0)
    x = _buffer(3000)
    tx.transmit(x, tx.now())  # once, now (after a host latency); the capture starts later still
    y = rx.receive(4000, rx.now())
    g = air.link("c0", "server").true_gain(0)
    heard = [j for j in range(1, 1500) if np.allclose(y[:50], g * x[j : j + 50], atol=1e-12)]
    assert len(heard) == 1  # the capture missed the burst's first samples, as on a Pluto
    j = heard[0]
    np.testing.assert_allclose(y[: 3000 - j], g * x[j:], atol=1e-12)
    assert not np.any(y[3000 - j + 3 :])


def test_the_buffer_repeats_exactly_on_a_noise_free_air():
    """Every capture is the buffer, rotated by where it started, times the link's gain."""
    air = _air(max_delay_samples=6)
    tx, rx = CyclicLoopbackRadio(air, "c0"), CyclicLoopbackRadio(air, "server")
    x = _buffer(97)
    tx.transmit_cyclic(x)
    link = air.link("c0", "server")
    for n in (500, 97, 1234):
        y = rx.receive(n, rx.now())
        rotation = (_capture_start(air, n) - tx.cyclic_origin - link.delay_samples) % len(x)
        expected = link.true_gain(0) * x[(rotation + np.arange(n)) % len(x)]
        np.testing.assert_allclose(y, expected, atol=1e-12)
    tx.stop_transmit()
    rx.receive(100, rx.now())  # the tail of the stopped buffer
    assert not np.any(rx.receive(300, rx.now()))


def test_a_buffer_starts_at_a_seeded_random_phase():
    """Independently started buffers sit at arbitrary offsets, the same for the same seed."""
    def origins(seed: int) -> list[int]:
        air = _air(seed)
        radios = [CyclicLoopbackRadio(air, f"c{k}") for k in range(4)]
        for r in radios:
            r.transmit_cyclic(_buffer(1000))
        return [r.cyclic_origin % 1000 for r in radios]

    assert origins(3) == origins(3)
    assert origins(3) != origins(4)
    assert len(set(origins(3))) == 4


def test_reloading_keeps_the_phase_or_moves_it_by_the_restart_jitter():
    """A seamless swap keeps the buffer's phase; with restart jitter J every re-load moves it by a
    whole number of samples in [-J, J], drawn from the seed."""
    air = _air()
    seamless = CyclicLoopbackRadio(air, "a")
    seamless.transmit_cyclic(_buffer(200))
    first = seamless.cyclic_origin
    for k in range(5):
        seamless.transmit_cyclic(_buffer(200, seed=k))
        assert seamless.cyclic_origin == first
    jittery = CyclicLoopbackRadio(air, "b", CyclicOptions(restart_jitter_samples=3))
    jittery.transmit_cyclic(_buffer(200))
    origins = [jittery.cyclic_origin]
    for k in range(40):
        jittery.transmit_cyclic(_buffer(200, seed=k))
        origins.append(jittery.cyclic_origin)
    moves = np.diff(origins)
    assert set(moves) <= set(range(-3, 4)) and len(set(moves)) > 3


def test_a_seamless_swap_is_heard_as_the_new_buffer_at_the_old_phase():
    air = _air(max_delay_samples=4)
    tx, rx = CyclicLoopbackRadio(air, "c0"), CyclicLoopbackRadio(air, "server")
    tx.transmit_cyclic(_buffer(128, seed=1))
    rx.receive(300, rx.now())
    x = _buffer(128, seed=2)
    tx.transmit_cyclic(np.roll(x, -5))  # rotate by 5 samples: arrives 5 samples earlier
    y = rx.receive(256, rx.now())
    link = air.link("c0", "server")
    rotation = (_capture_start(air, 256) - tx.cyclic_origin - link.delay_samples + 5) % 128
    np.testing.assert_allclose(y, link.true_gain(0) * x[(rotation + np.arange(256)) % 128], atol=1e-12)


def test_every_impairment_applies_as_to_a_timed_burst_of_the_same_samples():
    """The lab preset (CFO, drift, sample clock, phase noise, fractional delay, multipath, IQ, DC,
    converters): a cyclic buffer is heard exactly as the same periodic samples sent as one burst."""
    config = AirConfig(seed=5, channel=lab_impairments(noise_power=0.0, max_delay_samples=5))
    a, b = LoopbackAir(config), LoopbackAir(config)
    tx = CyclicLoopbackRadio(a, "c0")
    x = _buffer(300)
    tx.transmit_cyclic(x)
    span = a._cyclic[-1]
    first = int(np.ceil(float(a.oscillator("c0").local_time(span.true_start)) - 1e-9))
    window = a.radio("server").now() + 2000
    y = a.radio("server").receive(700, window)
    n = np.arange(first, window + 1200)
    b.radio("c0").transmit(x[(n - span.origin) % len(x)], first)
    z = b.radio("server").receive(700, window)
    np.testing.assert_allclose(y, z, atol=1e-9)
    assert np.mean(np.abs(y) ** 2) > 1e-3


def test_untimed_receive_starts_after_a_host_latency():
    """now() counts delivered samples; a capture starts after the buffers loaded before it and a
    seeded latency of at most max_host_latency_s."""
    air = _air()
    rx = CyclicLoopbackRadio(air, "server", CyclicOptions(max_host_latency_s=2e-3))
    gaps = []
    for _ in range(20):
        before = air.true_time()
        assert len(rx.receive(100, rx.now())) == 100
        gaps.append(air.true_time() - 100 - before)
    assert rx.now() == 2000
    assert 0 <= min(gaps) and max(gaps) <= 2000 and np.std(gaps) > 100


def test_options_are_checked():
    with pytest.raises(ValueError, match="restart_jitter_samples"):
        CyclicOptions(restart_jitter_samples=-1)
    with pytest.raises(ValueError, match="max_host_latency_s"):
        CyclicOptions(max_host_latency_s=-1.0)


def test_cyclic_radios_open_by_uri():
    forget_airs()
    try:
        radio = open_radio("loopback://cyc/c0?mode=cyclic&restart_jitter_samples=2&max_host_latency_s=0.002")
        assert isinstance(radio, CyclicLoopbackRadio) and radio.air is loopback_air("cyc")
        assert radio.options == CyclicOptions(restart_jitter_samples=2, max_host_latency_s=0.002)
        assert open_radio("loopback://cyc/c0?mode=cyclic&restart_jitter_samples=2&max_host_latency_s=0.002") is radio
        assert not isinstance(open_radio("loopback://cyc/c1"), CyclicLoopbackRadio)
        with pytest.raises(ValueError, match="mode must be one of"):
            open_radio("loopback://cyc/c2?mode=burst")
        with pytest.raises(ValueError, match="mode=cyclic only"):
            open_radio("loopback://cyc/c3?restart_jitter_samples=1")
        with pytest.raises(ValueError, match="unknown option"):
            open_radio("loopback://cyc/c4?mode=cyclic&jitter=1")
    finally:
        forget_airs()
