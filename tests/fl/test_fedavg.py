"""FedAvg learns over the air and tracks the ideal baseline (short, seeded run)."""

from airfl.fl.config import validate_config
from airfl.fl.experiment import run_experiment


def test_short_over_the_air_run_learns_and_tracks_baseline(tmp_path):
    cfg = validate_config({"seed": 0, "rounds": 10, "train": {"lr": 0.1}, "channel": {"snr_db": 20}})
    summary = run_experiment(cfg, tmp_path, progress=False)
    acc, base = summary["final"]["accuracy"], summary["baseline"]["accuracy"]
    assert acc > 0.8, f"accuracy {acc} should be far above chance (0.1)"
    assert abs(base - acc) < 0.03
    agg = summary["aggregation"]
    assert abs(agg["nmse_db_mean"] - agg["nmse_db_theory"]) < 1.0


def test_noise_free_over_the_air_equals_ideal_training(tmp_path):
    """With the receiver noise off the air adds exactly, so training matches the baseline."""
    cfg = validate_config({"seed": 2, "rounds": 3, "channel": {"noise": False}, "ota": {"power_control": "full"}})
    summary = run_experiment(cfg, tmp_path, progress=False)
    assert abs(summary["final"]["accuracy"] - summary["baseline"]["accuracy"]) < 1e-9
    assert abs(summary["final"]["loss"] - summary["baseline"]["loss"]) < 1e-5
