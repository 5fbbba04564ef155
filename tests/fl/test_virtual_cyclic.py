"""Virtual clients over two stock-Pluto-like radios: every window is one cyclic exchange."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from rich.console import Console

from airfl.fl.air_setup import make_aggregator
from airfl.fl.config import load_config
from airfl.fl.ota import OtaSettings, OverTheAirRound
from airfl.fl.virtual_cyclic import CyclicForwardingReceiver
from airfl.radio import AirConfig, ChannelConfig, LoopbackAir
from airfl.radio.base import RadioError
from airfl.radio.cyclic import CyclicLoopbackRadio
from airfl.radio.presets import lab_impairments
from airfl.radio.virtual import VirtualClients

OFDM = {"waveform": "ofdm", "sounding_cp": 24, "sounding_min_shift": 40}


def _two_plutos(channel: ChannelConfig, k: int = 4, gain_db: float = -12.0, seed: int = 3):
    rf = LoopbackAir(AirConfig(seed=seed, channel=channel))
    tx, rx = CyclicLoopbackRadio(rf, "tx"), CyclicLoopbackRadio(rf, "rx")
    bank = VirtualClients(k, tx, AirConfig(seed=seed + 1, channel=ChannelConfig(fading="rayleigh", max_delay_samples=5)))
    return rf, bank, CyclicForwardingReceiver(bank, tx, rx, gain_db)


def _nmse_db(ota: OverTheAirRound, rounds: int, k: int, seed: int = 1) -> list[float]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rounds):
        ups = [rng.standard_normal(2001) for _ in range(k)]
        r = ota.run(ups, np.ones(k))
        exact = r.exact_target(ups)
        out.append(10 * np.log10(np.sum((r.estimate - exact) ** 2) / np.sum(exact**2)))
    return out


def test_noise_free_round_over_cyclic_radios_is_exact():
    _, bank, rx = _two_plutos(ChannelConfig(fading="none", max_delay_samples=3))
    ota = OverTheAirRound(bank.clients, rx, 1e6, OtaSettings(truncation="full"))
    assert max(_nmse_db(ota, 3, 4)) < -200


def test_the_marker_measures_the_real_links_offset_and_delay():
    """CFO (+-1 ppm at 2.4 GHz) and fractional delay of the real link, against the air's truth."""
    lab = lab_impairments(noise_power=0.0, fading="none")
    channel = ChannelConfig(fading="none", oscillator=replace(lab.oscillator, linewidth_hz=0.0), max_fractional_delay=1.0)
    rf, bank, rx = _two_plutos(channel)
    t0 = bank.air.now() + 100
    rng = np.random.default_rng(0)
    x = 0.05 * (rng.standard_normal(2000) + 1j * rng.standard_normal(2000))
    bank.clients[0].transmit(x, t0)
    rx.receive(2100, t0 - 50)
    truth_cfo = rf.link("tx", "rx").cfo_hz(rf.true_time()) / 1e6  # cycles/sample at 1 MS/s
    assert abs(rx.last_link["cfo_cycles_per_sample"] - truth_cfo) < 1e-6  # within 1 Hz


def test_lab_link_with_ofdm_keeps_the_sum_within_the_front_ends_limit():
    """Every lab impairment on the real link, noise-free: the re-referenced link leaves only what the
    radios. front ends do (IQ image, DC), about -35 dB."""
    _, bank, rx = _two_plutos(lab_impairments(noise_power=0.0, fading="none", max_delay_samples=3))
    ota = OverTheAirRound(bank.clients, rx, 1e6, OtaSettings(truncation="full", **OFDM))
    assert max(_nmse_db(ota, 3, 4)) < -30


def test_a_sum_that_would_clip_is_refused_with_the_gain_to_use():
    _, bank, rx = _two_plutos(ChannelConfig(fading="none"), gain_db=0.0)
    bank.clients[0].transmit(np.full(100, 2.0 + 0j), bank.air.now() + 10)
    with pytest.raises(RadioError, match=r"virtual_forward_gain_db <= -\d+ dB"):
        rx.receive(200, bank.air.now())


def test_no_marker_is_a_clear_error():
    _, bank, rx = _two_plutos(ChannelConfig(fading="none", path_loss_db=120, noise_power=1e-4))
    with pytest.raises(RadioError, match="no marker"):
        rx.receive(100, bank.air.now())


def test_fedavg_through_two_cyclic_radios_from_a_config(tmp_path):
    """[radios] naming two cyclic-mode radios with ota.timing_mode = virtual: the two-Pluto lab."""
    path = tmp_path / "two.toml"
    path.write_text(
        'rounds = 2\n[data]\nclients = 4\n[radios]\nserver = "loopback://rf/rx?mode=cyclic"\n'
        'transmitter = "loopback://rf/tx?mode=cyclic"\n[ota]\ntiming_mode = "virtual"\nvirtual_forward_gain_db = -12.0\n'
    )
    cfg = load_config(path)
    agg = make_aggregator(cfg, 4, 500, Console(quiet=True))
    assert isinstance(agg.round.server, CyclicForwardingReceiver)
    rng = np.random.default_rng(0)
    for _ in range(2):
        ups = [rng.standard_normal(500) for _ in range(4)]
        _, stats = agg.aggregate(ups, [1.0] * 4)
        assert stats.nmse is not None and 10 * np.log10(stats.nmse) < 10 * np.log10(stats.nmse_theory) + 1.5
    agg.close()
