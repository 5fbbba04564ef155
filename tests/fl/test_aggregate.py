"""Aggregators: exact weighted mean, non-finite updates refused, over-the-air stats."""

import numpy as np

from airfl.fl.aggregate import IdealAggregator, OverTheAirAggregator
from airfl.fl.config import validate_config
from airfl.fl.air_setup import loopback_aggregator


def _updates(k: int, d: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(d) + 0.1 * i for i in range(k)]


def test_ideal_is_the_weighted_mean():
    ups = _updates(4, 101)
    w = [1.0, 2.0, 3.0, 4.0]
    est, stats = IdealAggregator().aggregate(ups, w)
    assert np.allclose(est, sum(wi * u for wi, u in zip(w, ups)) / sum(w))
    assert stats.participants == [0, 1, 2, 3] and stats.uplink_values == 4 * 101


def test_ideal_leaves_out_nonfinite_updates():
    ups = _updates(3, 10)
    ups[1][4] = np.inf
    est, stats = IdealAggregator().aggregate(ups, [1, 1, 1])
    assert stats.rejected == [1] and stats.participants == [0, 2]
    assert np.allclose(est, (ups[0] + ups[2]) / 2)


def test_over_the_air_noise_free_is_exact_and_reports_airtime():
    cfg = validate_config({"seed": 4, "channel": {"noise": False}})
    agg = loopback_aggregator(cfg, 6)
    assert isinstance(agg, OverTheAirAggregator)
    ups = _updates(6, 1001, seed=2)
    w = np.arange(1.0, 7.0)
    est, stats = agg.aggregate(ups, w)
    exact = sum(w[k] * ups[k] for k in stats.participants) / w[stats.participants].sum()
    assert np.linalg.norm(est - exact) / np.linalg.norm(exact) < 1e-9
    assert stats.nmse < 1e-18
    assert stats.airtime_s > 0 and stats.channel_uses == round(stats.airtime_s * cfg.channel.sample_rate_hz)
    assert stats.uplink_values == 1001 * len(stats.participants)


def test_over_the_air_reports_nan_client_and_completes():
    cfg = validate_config({"seed": 1, "channel": {"snr_db": 25}, "ota": {"power_control": "full"}})
    agg = loopback_aggregator(cfg, 5)
    ups = _updates(5, 400)
    ups[3][0] = np.nan
    est, stats = agg.aggregate(ups, [1] * 5)
    assert est is not None and np.all(np.isfinite(est))
    assert stats.rejected == [3] and 3 not in stats.participants
    assert sorted(stats.participants) == [0, 1, 2, 4]
    assert stats.nmse is not None and stats.nmse_theory is not None
