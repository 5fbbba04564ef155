"""The bench: timed send-and-capture on the loopback, settings, truth access, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.calibration.bench import BenchError, open_bench


def test_timed_bursts_land_where_scheduled_on_an_ideal_air():
    bench = open_bench("loopback://b/server", ["loopback://b/c0", "loopback://b/c1"], air="ideal", noise_power=0.0,
                       tx_gain_db=0.0)
    assert bench.timed and bench.air is not None
    x0 = np.exp(2j * np.pi * 0.01 * np.arange(100)) * 0.5
    x1 = np.ones(50) * 0.25j
    cap = bench.send_and_capture({0: x0, 1: x1}, 300, pre=20)
    assert cap.burst_at == 20
    at = cap.start + cap.burst_at
    g0, g1 = (bench.air.link(n, "server").true_gain(at) for n in ("c0", "c1"))
    assert abs(abs(g0) - 1) < 1e-12  # no fading, no path loss: only each link's carrier phase
    expected = np.zeros(300, dtype=complex)
    expected[20:120] += g0 * x0
    expected[20:70] += g1 * x1
    np.testing.assert_allclose(cap.samples, expected, atol=1e-12)


def test_tx_gain_scales_and_listen_is_silent():
    bench = open_bench("loopback://b/server", ["loopback://b/c0"], air="ideal", noise_power=0.0)
    bench.set_tx_gain(0, -6.0)
    cap = bench.send_and_capture({0: np.ones(10)}, 40, pre=5)
    np.testing.assert_allclose(np.abs(cap.samples[5:15]), 10 ** (-6 / 20), rtol=1e-12)
    assert np.all(bench.listen(64).samples == 0)


def test_bad_benches_are_one_sentence():
    with pytest.raises(BenchError, match="appear once"):
        open_bench("loopback://b/x", ["loopback://b/x"])
    with pytest.raises(BenchError, match="unknown air preset"):
        open_bench("loopback://b/x", air="moon")
    with pytest.raises(BenchError, match="loopback URI"):
        open_bench("loopback://b/")
    bench = open_bench("loopback://b/server")
    with pytest.raises(BenchError, match="--tx"):
        bench.require_transmitters("frequency")
    with pytest.raises(ValueError, match="no transmitter 3"):
        bench.send_and_capture({3: np.ones(4)}, 10)
