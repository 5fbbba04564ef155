"""Calibration profiles: versioned JSON written atomically, validated on the way in."""

from __future__ import annotations

import json

import pytest

from airfl.calibration.profile import (
    SCHEMA_VERSION,
    CalibrationProfile,
    ProfileError,
    load_or_new_profile,
    load_profile,
    save_profile,
)


def test_round_trip_keeps_every_field(tmp_path):
    p = CalibrationProfile(sample_rate_hz=1e6, center_freq_hz=2.44e9)
    p.update("pluto://usb:1.2.5", serial="104473", hardware="pluto", xo_correction_hz=39999535, tx_gain_db=-10.0,
             max_tx_power=0.05, tx_iq={"gain_db": 0.1, "phase_deg": -0.4}, tx_dc=(1e-3, -2e-3))
    p.update("loopback://bench/server", rx_gain_db=-20.0, noise_power=1e-6)
    p.record("frequency", "calibration/frequency", {"residual_ppm_max": 0.01})
    path = save_profile(p, tmp_path / "profile.json")
    raw = json.loads(path.read_text())
    assert raw["schema"] == "airfl-calibration" and raw["version"] == SCHEMA_VERSION
    assert set(raw["radios"]) == {"104473", "loopback://bench/server"}  # serial preferred as the key
    back = load_profile(path)
    assert back == p
    pluto = back.entry("pluto://usb:9.9.9", serial="104473")  # found by serial after a USB re-plug
    assert pluto is not None and pluto.xo_correction_hz == 39999535 and pluto.tx_iq.phase_deg == -0.4


def test_update_merges_fields_of_one_radio():
    p = CalibrationProfile()
    p.update("loopback://a/x", rx_gain_db=3.0)
    p.update("loopback://a/x", noise_power=2e-6)
    (entry,) = p.radios.values()
    assert entry.rx_gain_db == 3.0 and entry.noise_power == 2e-6


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("not json", "not readable JSON"),
        ('{"schema": "something-else", "version": 1}', "not an airfl calibration profile"),
        ('{"schema": "airfl-calibration", "version": 99}', "schema version 99"),
        ('{"schema": "airfl-calibration", "version": 1, "radios": {"x": {"uri": "x", "tx_gain_db": 5}}}', "radios.x.tx_gain_db"),
        ('{"schema": "airfl-calibration", "version": 1, "bogus": 1}', "bogus"),
    ],
)
def test_bad_profiles_give_one_sentence(tmp_path, content, fragment):
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ProfileError, match=fragment) as info:
        load_profile(path)
    assert "\n" not in str(info.value)


def test_missing_profile_says_how_to_make_one(tmp_path):
    with pytest.raises(ProfileError, match="airfl calibrate"):
        load_profile(tmp_path / "nope.json")
    assert load_or_new_profile(tmp_path / "nope.json").radios == {}


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "profile.json"
    save_profile(CalibrationProfile(sample_rate_hz=1e6), path)
    before = path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        save_profile(CalibrationProfile(sample_rate_hz=2e6), path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["profile.json"]  # no temporary left behind
