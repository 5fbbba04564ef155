"""The run directory: resolved config, metrics per round, summary contract, plots."""

import json

from airfl.fl.config import load_config, validate_config
from airfl.fl.air_setup import noise_power_for_snr
from airfl.fl.experiment import run_experiment


def test_run_directory_follows_the_contract(tmp_path):
    cfg = validate_config({"name": "t", "seed": 1, "rounds": 3})
    run_experiment(cfg, tmp_path, progress=False)
    for name in ("config.toml", "metrics.jsonl", "summary.json", "accuracy.png", "aggregation_nmse.png"):
        assert (tmp_path / name).is_file(), name
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["round"] == 1
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["rounds"] == 3
    assert set(s["final"]) == {"accuracy", "loss"} and set(s["baseline"]) == {"accuracy", "loss"}
    assert {"nmse_db_mean", "nmse_db_theory", "snr_db"} <= set(s["aggregation"])
    for key in ("airtime_s", "uplink_values", "wall_s"):
        assert key in s
    assert isinstance(s["uplink_values"], int) and s["airtime_s"] > 0
    # the resolved config re-runs as it is
    assert load_config(tmp_path / "config.toml") == cfg


def test_ideal_only_run_has_null_aggregation_figures(tmp_path):
    cfg = validate_config({"rounds": 1, "aggregation": {"kind": "ideal"}})
    s = run_experiment(cfg, tmp_path, progress=False)
    assert s["baseline"] is None and s["aggregation"]["nmse_db_mean"] is None
    assert s["airtime_s"] == 0.0


def test_snr_definition():
    # P * E|h|^2 / sigma^2 = 20 dB with P = 0.1 and 10 dB path loss
    sigma2 = noise_power_for_snr(20.0, 0.1, 10.0)
    assert abs(sigma2 - 0.1 * 0.1 / 100.0) < 1e-15


def test_lab_impairments_run_end_to_end(tmp_path):
    """[channel] impairments = "lab" with OFDM: a short run learns like its ideal baseline, and the
    resolved config (with keys left at None omitted) re-runs as it is."""
    from airfl.fl.config import load_config as load

    cfg = validate_config({
        "seed": 0, "rounds": 3, "train": {"lr": 0.1},
        "channel": {"impairments": "lab"},
        "ota": {"waveform": "ofdm", "sounding_cp": 24, "sounding_min_shift": 40},
    })
    s = run_experiment(cfg, tmp_path, progress=False)
    assert s["aggregation"]["failed_rounds"] == 0
    assert abs(s["final"]["accuracy"] - s["baseline"]["accuracy"]) < 0.1
    assert load(tmp_path / "config.toml") == cfg


def test_impairments_need_a_longer_sounding_prefix(tmp_path):
    """The lab preset's fractional delays and multipath need a sounding prefix beyond the integer delay."""
    import pytest

    cfg = validate_config({"rounds": 1, "channel": {"impairments": "lab", "max_delay_samples": 12}})
    with pytest.raises(ValueError, match="sounding_cp"):
        run_experiment(cfg, tmp_path, progress=False)


def test_virtual_timing_mode_runs_fedavg(tmp_path):
    """ota.timing_mode = "virtual": emulated clients summed and sent by one transmitter over one RF
    link (the two-radio lab); learns like its baseline."""
    cfg = validate_config({"seed": 0, "rounds": 4, "train": {"lr": 0.1}, "ota": {"timing_mode": "virtual"}})
    s = run_experiment(cfg, tmp_path, progress=False)
    assert s["aggregation"]["failed_rounds"] == 0
    assert abs(s["final"]["accuracy"] - s["baseline"]["accuracy"]) < 0.1
    assert abs(s["aggregation"]["nmse_db_mean"] - s["aggregation"]["nmse_db_theory"]) < 1.5
