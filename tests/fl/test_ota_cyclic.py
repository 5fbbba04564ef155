"""The cyclic timing mode: rounds over radios that can only repeat a buffer (stock Plutos), on the
loopback's cyclic-mode radios. Alignment is checked against the air's truth (where each client's
frame really arrives), sums against the exact weighted mean."""

from __future__ import annotations

import re

import numpy as np
import pytest

from airfl.fl.config import ConfigError, validate_config
from airfl.fl.experiment import run_experiment
from airfl.fl.ota import OtaSettings
from airfl.fl.ota_cyclic import (
    CyclicAlignmentError,
    CyclicOverTheAirRound,
    CyclicSettings,
    circular_advance,
    measure_restart_jitter,
)
from airfl.radio import AirConfig, ChannelConfig, LoopbackAir, OscillatorConfig
from airfl.radio.cyclic import CyclicLoopbackRadio, CyclicOptions

K = 4


def _bench(noise_power: float = 0.0, jitter: int = 0, seed: int = 2, **channel):
    channel = {"fading": "rayleigh", "coherence_time_s": 100.0, "max_delay_samples": 5, **channel}
    air = LoopbackAir(AirConfig(seed=seed, channel=ChannelConfig(noise_power=noise_power, **channel)))
    options = CyclicOptions(restart_jitter_samples=jitter)
    clients = [CyclicLoopbackRadio(air, f"c{k}", options) for k in range(K)]
    return air, clients, CyclicLoopbackRadio(air, "server", options)


def _nmse(result, updates) -> float:
    exact = result.exact_target(updates)
    return float(np.sum((result.estimate - exact) ** 2) / np.sum(exact**2))


def _arrivals(air: LoopbackAir, round_: CyclicOverTheAirRound, ks: list[int]) -> np.ndarray:
    """True arrival (samples, modulo the period) of each client's frame sample 0 at the server."""
    period = round_._frame.period
    out = []
    for k in ks:
        radio = round_.clients[k]
        link = air.link(radio.name, "server")
        out.append((radio.cyclic_origin - round_.shift[k] + link.total_delay) % period)
    out = np.asarray(out)
    return np.mod(out - out[0] + period / 2, period) - period / 2  # relative to the first


@pytest.mark.parametrize("waveform", ["single_carrier", "ofdm"])
def test_noise_free_cyclic_round_returns_the_exact_sum(waveform):
    """From random buffer phases: identification, rotation, sounding, pre-equalised payload; exact."""
    air, clients, server = _bench()
    ota = CyclicOverTheAirRound(clients, server, 1e6, OtaSettings(truncation="full", waveform=waveform))
    rng = np.random.default_rng(1)
    for t in range(3):
        ups = [rng.standard_normal(1001) for _ in range(K)]
        result = ota.run(ups, np.ones(K))
        assert result.participants == list(range(K))
        assert _nmse(result, ups) < 1e-18  # ~1e-9 in amplitude
        d = result.diagnostics
        assert d["cyclic_residual_samples"] < 1e-9 and d["cyclic_restart_jitter_samples"] < 1e-9
        # random phases need rotations on the first round; afterwards alignment carries over
        assert (d["cyclic_alignment_iterations"] >= 1) if t == 0 else (d["cyclic_captures"] == 2)


@pytest.mark.parametrize("waveform, tolerance", [("single_carrier", 0.1), ("ofdm", 1.0)])
def test_alignment_converges_within_the_tolerance_from_random_starts(waveform, tolerance):
    """Fractional delays and noise: every participant's frame truly arrives within the tolerance of
    the others, and the sum tracks truncated-inversion theory."""
    air, clients, server = _bench(1e-3, max_fractional_delay=1.0)
    settings = OtaSettings(waveform=waveform, cfo_correction=False)
    ota = CyclicOverTheAirRound(clients, server, 1e6, settings, CyclicSettings(tolerance_samples=tolerance))
    rng = np.random.default_rng(3)
    for _ in range(3):
        ups = [rng.standard_normal(2001) for _ in range(K)]
        result = ota.run(ups, np.ones(K))
        arrivals = _arrivals(air, ota, result.participants)
        spread = arrivals.max() - arrivals.min()
        if waveform == "single_carrier":
            assert spread < 2 * tolerance and result.diagnostics["cyclic_residual_samples"] <= tolerance
        else:  # OFDM does not rotate by fractions: within the tolerance of the grid, plus the fraction
            assert spread < 2 * tolerance + 1
        theory = result.error_variance_theory * 2001 / np.sum(result.exact_target(ups) ** 2)
        assert 10 * np.log10(_nmse(result, ups)) < 10 * np.log10(theory) + 1.5


def test_restart_jitter_above_the_tolerance_fails_with_one_clear_sentence():
    """Re-loads that move a buffer by up to 50 samples: rotations cannot converge, and the error
    names the measured jitter and what to do."""
    _, clients, server = _bench(jitter=50)
    ota = CyclicOverTheAirRound(clients, server, 1e6, OtaSettings(), CyclicSettings(max_iterations=4))
    rng = np.random.default_rng(0)
    with pytest.raises(CyclicAlignmentError) as info:
        ota.run([rng.standard_normal(300) for _ in range(K)], np.ones(K))
    message = str(info.value)
    assert "did not converge in 4 iterations" in message and "restart jitter" in message
    assert "ota.cyclic_max_iterations" in message and "\n" not in message
    moved = float(re.search(r"moved it by up to ([0-9.]+) samples", message).group(1))
    assert 1.0 <= moved <= 100.0  # beyond the tolerance, at most the two jitters of a re-load pair
    assert len(re.findall(r"[a-z]\. [A-Z]", message)) == 0  # one sentence


def test_a_carrier_offset_is_retuned_away():
    """Clients 2 ppm apart (4.8 kHz at 2.4 GHz): tones on the first round and the sounding's phase
    advance over a period retune each transmit LO; the sum is then as good as without the offset."""
    osc = OscillatorConfig(ppm_spread=2.0)
    air, clients, server = _bench(1e-4, oscillator=osc, fading="none")
    ota = CyclicOverTheAirRound(clients, server, 1e6, OtaSettings())
    rng = np.random.default_rng(4)
    for _ in range(2):
        ups = [rng.standard_normal(1001) for _ in range(K)]
        result = ota.run(ups, np.ones(K))
        assert 10 * np.log10(_nmse(result, ups)) < -25
    for k in result.participants:
        truth = air.link(f"c{k}", "server").cfo_hz(air.true_time())
        assert abs(result.client_cfo_hz[k] - truth) < 5.0  # hertz, of offsets of kilohertz
        assert abs(truth) > 100.0


def test_clients_without_a_cyclic_buffer_are_refused():
    air = LoopbackAir(AirConfig())
    with pytest.raises(ValueError, match="no cyclic transmit buffer"):
        CyclicOverTheAirRound([air.radio("c0")], air.radio("server"), 1e6)


def test_circular_advance_is_a_band_limited_periodic_shift():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(64) + 1j * rng.standard_normal(64)
    np.testing.assert_allclose(circular_advance(x, 3.0), np.roll(x, -3))
    y = x[:63]  # odd length: no Nyquist bin, so fractional shifts are exactly invertible
    np.testing.assert_allclose(circular_advance(circular_advance(y, 0.3), -0.3), y, atol=1e-12)
    tone = np.exp(2j * np.pi * 5 * np.arange(64) / 64)
    np.testing.assert_allclose(circular_advance(tone, 2.25), tone * np.exp(2j * np.pi * 5 * 2.25 / 64), atol=1e-12)


def test_cyclic_config_keys_are_checked_in_one_sentence():
    assert validate_config({"ota": {"timing_mode": "cyclic", "cyclic_tolerance_samples": 0.2}}).ota.timing_mode == "cyclic"
    with pytest.raises(ConfigError, match=r"fraction of a sample \(at most 0.5\)"):
        validate_config({"ota": {"timing_mode": "cyclic", "cyclic_tolerance_samples": 0.8}})
    with pytest.raises(ConfigError, match="at most 2 samples for OFDM"):
        validate_config({"ota": {"waveform": "ofdm", "cyclic_tolerance_samples": 3}})
    with pytest.raises(ConfigError, match="cyclic_max_iterations"):
        validate_config({"ota": {"cyclic_max_iterations": 0}})
    with pytest.raises(ConfigError, match="cyclic_restart_jitter_samples"):
        validate_config({"channel": {"cyclic_restart_jitter_samples": -1}})


def test_cyclic_timing_mode_runs_fedavg_and_tracks_the_ideal_baseline(tmp_path):
    """ota.timing_mode = "cyclic": every client a stock-Pluto-like radio on the loopback; a short
    FedAvg run learns like its baseline and every round's NMSE stands beside theory."""
    cfg = validate_config({
        "seed": 0, "rounds": 4, "train": {"lr": 0.1}, "ota": {"timing_mode": "cyclic"},
        "channel": {"coherence_time_s": 1.0},
    })
    s = run_experiment(cfg, tmp_path, progress=False)
    assert s["status"] == "complete" and s["aggregation"]["failed_rounds"] == 0
    assert s["final"]["accuracy"] > 0.7
    assert abs(s["final"]["accuracy"] - s["baseline"]["accuracy"]) < 0.1
    assert abs(s["aggregation"]["nmse_db_mean"] - s["aggregation"]["nmse_db_theory"]) < 1.5
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert all('"cyclic_alignment_iterations"' in line and '"cyclic_residual_samples"' in line for line in lines)


@pytest.mark.parametrize("jitter", [0, 3])
def test_the_restart_jitter_of_radios_can_be_measured(jitter):
    """measure_restart_jitter finds the emulated restart jitter: none for a seamless swap, whole
    samples within +-J otherwise (fractional delays and noise on the links)."""
    air, clients, server = _bench(1e-4, jitter=jitter, fading="none", max_fractional_delay=1.0)
    moves = measure_restart_jitter(clients[0], clients[1], server, reloads=30)
    if jitter == 0:
        assert np.max(np.abs(moves)) < 0.05
    else:
        assert np.max(np.abs(moves - np.round(moves))) < 0.1 and set(np.round(moves)) <= set(range(-3, 4))
        assert len(set(np.round(moves))) >= 4
    assert clients[0].cyclic_origin is None and clients[1].cyclic_origin is None  # both stopped
