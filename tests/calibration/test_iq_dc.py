"""iq_dc against the loopback's truth: receiver and transmitter IQ imbalance and DC offsets injected
larger than the lab preset's, on a lab air (fading, carrier offsets, noise, 12-bit ADC), told apart."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from airfl.calibration import iq_dc
from airfl.calibration.bench import Bench
from airfl.calibration.profile import load_profile
from airfl.calibration.registry import run_procedure
from airfl.radio.base import RadioConfig
from airfl.radio.frontend import FrontendOverride, iq_coefficients
from airfl.radio.loopback import AirConfig
from airfl.radio.presets import LAB_FRONTEND, lab_impairments
from airfl.radio.recording import read_recording
from airfl.radio.uri import loopback_air, open_radio

INJECTED = {
    "server": FrontendOverride(rx_iq_gain_db=0.5, rx_iq_phase_deg=-3.0, rx_dc=0.004 - 0.003j),
    "client0": FrontendOverride(tx_iq_gain_db=-0.5, tx_iq_phase_deg=3.0, tx_dc=0.006 + 0.004j),
    "client1": FrontendOverride(tx_iq_gain_db=0.4, tx_iq_phase_deg=-2.5, tx_dc=-0.003 + 0.005j),
}


def _bench(seed: int, clients: int = 2, query: str = "") -> Bench:
    fe = replace(LAB_FRONTEND, overrides=INJECTED)
    config = AirConfig(seed=seed, sample_rate_hz=1e6, channel=lab_impairments(noise_power=1e-4, frontend=fe))
    loopback_air("iq", config)
    uris = [f"loopback://iq/server{query}", *(f"loopback://iq/client{k}{query}" for k in range(clients))]
    radios = [open_radio(u) for u in uris]
    rc = RadioConfig(sample_rate_hz=1e6, center_freq_hz=config.center_freq_hz)
    for r in radios:
        r.configure(rc)
    return Bench(radios[0], radios[1:], rc, uris[0], uris[1:])


def _angle_error(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def _check_rows(result) -> None:
    """Every chain within 0.1 dB and 1 degree; every DC within 1 dB and 5 degrees of the injected truth."""
    for row in result.rows:
        assert abs(row["gain_dB"] - row["true_gain_dB"]) < 0.1, row
        assert abs(row["phase_deg"] - row["true_phase_deg"]) < 1.0, row
        assert abs(row["dc_dBFS"] - row["true_dc_dBFS"]) < 1.0, row
        assert _angle_error(row["dc_deg"], row["true_dc_deg"]) < 5.0, row


def test_rx_and_tx_imbalance_and_dc_match_truth(tmp_path):
    bench = _bench(seed=11)
    result, profile = run_procedure("iq_dc", bench, tmp_path, iq_dc.Options(), tmp_path / "profile.json")
    assert [r["chain"] for r in result.rows] == ["rx", "tx", "tx"]
    _check_rows(result)
    assert result.summary["max_iq_gain_error_db"] < 0.1 and result.summary["max_iq_phase_error_deg"] < 1.0
    # The check after correction: the pre-corrected tone's image and LO leakage are gone (from ~-28
    # and ~-31 dBc) to below -50 dBc.
    for row in result.rows[1:]:
        assert row["image_dBc"] > -35 and row["image_after_dBc"] < -50, row
        assert result.summary[f"{row['radio']}.lo_leak_dbc"] > -35 and row["lo_after_dBc"] < -50, row
    # Profile: rx_iq/rx_dc on the receiver, tx_iq/tx_dc on each transmitter.
    saved = load_profile(tmp_path / "profile.json")
    rx = saved.entry("loopback://iq/server")
    assert rx is not None and rx.rx_iq is not None and abs(rx.rx_iq.gain_db - 0.5) < 0.1
    assert rx.rx_dc is not None and abs(complex(*rx.rx_dc) - INJECTED["server"].rx_dc) < 0.1 * abs(INJECTED["server"].rx_dc)
    for k in (0, 1):
        tx = saved.entry(f"loopback://iq/client{k}")
        truth = INJECTED[f"client{k}"]
        assert tx is not None and tx.tx_iq is not None and tx.tx_dc is not None
        assert abs(tx.tx_iq.phase_deg - truth.tx_iq_phase_deg) < 1.0
        assert abs(complex(*tx.tx_dc) - truth.tx_dc) < 0.12 * abs(truth.tx_dc)
    assert profile is not None and profile.procedures[-1].name == "iq_dc"
    # Evidence: the captures reopen with their metadata and annotations; figures exist.
    out = tmp_path / "iq_dc"
    names = {p.name for p in out.iterdir()}
    assert {"report.txt", "report.json", "iq_gain.png", "iq_phase.png", "iq_spectrum_before_client0.png",
            "iq_spectrum_after_client0.png", "iq_constellation_before_client1.png",
            "iq_constellation_after_client1.png"} <= names
    quiet = read_recording(out / "captures" / "rx_quiet")
    assert len(quiet.samples) == iq_dc.Options().n_quiet and quiet.annotations[0].label == "noise"
    tone = read_recording(out / "captures" / "tx_tone_client0")
    assert [a.label for a in tone.annotations] == ["preamble", "tone"]
    assert tone.extra["transmitter"] == "loopback://iq/client0" and tone.center_freq_hz == bench.center_freq_hz


def test_cyclic_bench(tmp_path):
    """Stock-Pluto radios: the tone repeats from an unknown offset; the preamble finds it."""
    bench = _bench(seed=12, clients=1, query="?mode=cyclic")
    assert not bench.timed
    result, _ = run_procedure("iq_dc", bench, tmp_path, iq_dc.Options(n_segments=8))
    _check_rows(result)


def test_receiver_alone(tmp_path):
    bench = _bench(seed=13, clients=0)
    result, _ = run_procedure("iq_dc", bench, tmp_path, iq_dc.Options())
    assert [r["chain"] for r in result.rows] == ["rx"]
    _check_rows(result)
    assert set(result.profile) == {"loopback://iq/server"}
    assert any("--tx" in n for n in result.notes)


@pytest.mark.parametrize("gain_db,phase_deg", [(0.0, 0.0), (0.5, 3.0), (-1.2, -7.5), (2.0, 20.0)])
def test_image_ratio_inverts_the_model(gain_db, phase_deg):
    mu, nu = iq_coefficients(gain_db, phase_deg)
    est = iq_dc.iq_from_image_ratio(nu / mu)
    assert est.gain_db == pytest.approx(gain_db, abs=1e-9) and est.phase_deg == pytest.approx(phase_deg, abs=1e-9)
    x = np.exp(2j * np.pi * 0.01 * np.arange(100)) * 0.3
    np.testing.assert_allclose(iq_dc.undo_iq(mu * x + nu * np.conj(x), est), x, atol=1e-12)
    assert math.isclose(est.image_dbc, 10 * math.log10(abs(nu / mu) ** 2), abs_tol=1e-9) if nu != 0 else True


def test_options_are_checked():
    with pytest.raises(ValueError, match="n_quiet"):
        iq_dc.Options(n_quiet=100)
    with pytest.raises(ValueError, match="tone_amplitude"):
        iq_dc.Options(tone_amplitude=0.9)
