"""Communication accounting: the airtime estimate matches what the over-the-air round measures,
and the cumulative values and savings against full-model FedAvg add up."""

import numpy as np
import pytest

from airfl.fl.air_setup import loopback_aggregator, ota_settings
from airfl.fl.config import validate_config
from airfl.fl.lora.accounting import Ledger, RadioFrame, saving_pct


@pytest.mark.parametrize("ota", [{}, {"waveform": "ofdm"}, {"acquisition": "every_round"}, {"pilot_spacing": 0}])
def test_frame_estimate_equals_measured_airtime(ota):
    cfg = validate_config({"seed": 2, "channel": {"noise": False}, "ota": {"power_control": "full", **ota}})
    aggregator = loopback_aggregator(cfg, 3)
    frame = RadioFrame(ota_settings(cfg), cfg.channel.sample_rate_hz)
    rng = np.random.default_rng(0)
    for t in range(2):
        _, stats = aggregator.aggregate([rng.normal(size=777) for _ in range(3)], [1.0, 2.0, 3.0])
        assert stats.failure is None
        assert stats.channel_uses == frame.uplink_samples(777, 3, first_round=t == 0)
        assert stats.airtime_s == pytest.approx(frame.seconds(stats.channel_uses))


def test_ledger_adds_up_against_full_model_fedavg():
    frame = RadioFrame()
    ledger = Ledger(frame, full_values=1000)
    r1 = ledger.record(True, 100, senders=4, downlink_values=100, sounded=4, measured_airtime_s=None)
    r2 = ledger.record(False, 50, senders=3, downlink_values=50, sounded=4, measured_airtime_s=0.5)
    assert r1["uplink_values_cumulative"] == 400 and r2["uplink_values_cumulative"] == 400 + 150
    assert r2["downlink_values_cumulative"] == 150
    assert r2["full_fedavg_uplink_values_cumulative"] == 4000 + 3000
    assert r2["uplink_saving_pct"] == pytest.approx(100 * (1 - 550 / 7000))
    assert r1["uplink_airtime_s"] == pytest.approx(frame.seconds(frame.uplink_samples(100, 4, True)))
    assert r2["uplink_airtime_s"] == 0.5  # measured airtime wins over the estimate
    s = ledger.summary()
    assert s["totals"]["uplink_values"] == 550 and s["full_fedavg_totals"]["downlink_values"] == 2000
    assert s["downlink_saving_pct"] == pytest.approx(100 * (1 - 150 / 2000))
    assert saving_pct(1.0, 0.0) is None


def test_downlink_is_one_frame_without_sounding():
    frame = RadioFrame()
    assert frame.downlink_samples(0) == 0
    assert frame.uplink_samples(500, 2) > frame.downlink_samples(500) > 250
