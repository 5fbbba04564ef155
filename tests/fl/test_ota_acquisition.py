"""Acquisition: each client's coarse CFO and integer timing offset over a wide search window.

The sounding's cyclic prefix covers a few samples of timing error; a bench can start far outside it
(sample clocks locked to +-1 ppm references run ~60 samples apart per minute, a host starts its
stream late). The first round's acquisition finds every client's marker within
+-acquisition_search_samples and initialises its timing advance, so the first sounding lands inside
the prefix. After a long pause (the tracked CFO's uncertainty has grown past what the sounding
resolves) every client is acquired again before sounding; a client whose offset jumps beyond the
prefix between rounds is acquired again within the round; one that cannot be found stays silent,
and a round that finds nobody fails in one sentence.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.fl.ota import (
    ACQUISITION_MARKER_LENGTH,
    OtaSettings,
    OverTheAirRound,
    acquisition_pitch,
    acquisition_samples,
)
from airfl.radio import AirConfig, ChannelConfig, LoopbackAir
from airfl.radio.oscillator import OscillatorConfig, OscillatorOverride

P = 0.1
RATE = 1e6
MINUTE = 60_000_000  # samples of true time at RATE
PPM = {"c0": 0.9, "c1": -0.9, "c2": 0.4, "c3": -0.3, "server": 0.0}
"""Reference errors (ppm; sample clocks locked to them): after a minute c0 and c1 are ~108 samples apart."""


def _air(seed: int = 5, snr_db: float = 25.0, ppm: dict[str, float] | None = None) -> LoopbackAir:
    osc = OscillatorConfig(sample_clock="locked", overrides={n: OscillatorOverride(ppm=v) for n, v in (ppm or PPM).items()})
    channel = ChannelConfig(fading="rayleigh", max_delay_samples=8, noise_power=P / 10 ** (snr_db / 10), oscillator=osc)
    return LoopbackAir(AirConfig(seed=seed, sample_rate_hz=RATE, channel=channel))


def _jump(air: LoopbackAir, samples: int) -> None:
    """Let `samples` of true time pass on the bench (the server captures one sample then)."""
    server = air.radio("server")
    server.receive(1, server.now() + samples)


def _offsets(air: LoopbackAir, k: int) -> np.ndarray:
    """True timing offset (samples) of each client: arrival on the server's clock minus send time on its own."""
    t = air.radio("server").now()
    return np.array([air.link(f"c{i}", "server").arrival_sample(t) - t for i in range(k)])


def _round(air: LoopbackAir, k: int = 4, **settings) -> OverTheAirRound:
    base = {"tx_power": P, "waveform": "ofdm", "sounding_cp": 24, "sounding_min_shift": 40}
    return OverTheAirRound([air.radio(f"c{i}") for i in range(k)], air.radio("server"), RATE,
                           OtaSettings(**(base | settings)))  # type: ignore[arg-type]


def _gap_db(result, updates) -> float:
    """Measured NMSE minus the receiver's truncated-inversion theory (dB)."""
    exact = result.exact_target(updates)
    return float(10 * np.log10(np.sum((result.estimate - exact) ** 2) / (result.error_variance_theory * exact.size)))


def test_acquisition_slot_accounting():
    """A slot is the tone, the marker and the search margin on either side; every slot is airtime."""
    s = OtaSettings(acquisition_length=256, acquisition_search_samples=300)
    assert acquisition_pitch(s) == 256 + ACQUISITION_MARKER_LENGTH + 600
    assert acquisition_samples(3, s) == 3 * acquisition_pitch(s)


def test_search_window_is_validated():
    air = _air()
    with pytest.raises(ValueError, match="acquisition_search_samples"):
        _round(air, acquisition_search_samples=10)  # below sounding_cp = 24


def test_first_round_after_a_minute_of_clock_drift_decodes_near_theory():
    """Clocks ~110 samples apart (a minute at +-0.9 ppm): acquisition puts every client's first sounding
    inside the 24-sample prefix; the first round decodes within 2 dB of theory (25 dB per client,
    OFDM; 0.3-1.8 dB over seeds with or without the drift: the first rounds' trackers are still
    settling) and measures every offset within 0.1 sample of the truth. The acquisition slots count
    as airtime."""
    air = _air()
    _jump(air, MINUTE)
    truth = _offsets(air, 4)
    assert np.ptp(truth) > 90 and np.max(np.abs(truth)) > 24  # far outside the cyclic prefix
    ota = _round(air)
    rng = np.random.default_rng(0)
    updates = [rng.standard_normal(4000) for _ in range(4)]
    result = ota.run(updates, np.ones(4))
    assert result.estimate is not None, result.failure
    assert result.lost == [] and result.diagnostics["acquired"] == 4
    assert result.diagnostics["acquisition_lag_max"] > 24
    np.testing.assert_allclose([result.client_delay[i] for i in range(4)], truth, atol=0.1)
    assert _gap_db(result, updates) < 2.0
    sounding_and_payload = _round(_air(), acquisition="off").settings  # same layout, nothing acquired
    assert result.airtime_samples >= acquisition_samples(4, sounding_and_payload)
    # the next round needs no acquisition and stays aligned
    updates = [rng.standard_normal(4000) for _ in range(4)]
    result = ota.run(updates, np.ones(4))
    assert result.estimate is not None and "acquired" not in result.diagnostics
    assert _gap_db(result, updates) < 2.0


def test_single_carrier_first_round_after_a_minute():
    """The same on single carrier: every client found and the sum delivered (single carrier at one
    sample per symbol pays for the clocks' fractional offsets at the band edge, as any fractional delay)."""
    air = _air(seed=6)
    _jump(air, MINUTE)
    ota = _round(air, waveform="single_carrier")
    rng = np.random.default_rng(1)
    updates = [rng.standard_normal(2000) for _ in range(4)]
    result = ota.run(updates, np.ones(4))
    assert result.estimate is not None, result.failure
    assert sorted(result.participants + result.truncated) == [0, 1, 2, 3] and result.lost == []
    assert _gap_db(result, updates) < 4.0


def test_after_a_long_pause_every_client_is_acquired_again():
    """Rounds run aligned; then half a minute passes: c0 (0.9 ppm) moves ~27 samples, beyond the prefix,
    and every tracked CFO has become too uncertain for the sounding (the drift rate's uncertainty
    times 30 s). The next round acquires everybody again before sounding and decodes near theory."""
    air = _air(ppm={"c0": 0.9, "c1": 0.0, "c2": 0.0, "c3": 0.0, "server": 0.0})
    ota = _round(air)
    rng = np.random.default_rng(2)
    for _ in range(2):
        result = ota.run([rng.standard_normal(2000) for _ in range(4)], np.ones(4))
        assert result.estimate is not None
    _jump(air, MINUTE // 2)
    updates = [rng.standard_normal(2000) for _ in range(4)]
    result = ota.run(updates, np.ones(4))
    assert result.estimate is not None, result.failure
    assert result.diagnostics["acquired"] == 4 and result.lost == []
    assert result.client_delay[0] == pytest.approx(_offsets(air, 4)[0], abs=0.1)
    t = result.timing["sounding_at"]
    for i in range(4):
        assert result.client_cfo_hz[i] == pytest.approx(air.link(f"c{i}", "server").cfo_hz(t), abs=20.0)
    assert _gap_db(result, updates) < 2.0


def test_client_whose_sounding_is_lost_is_acquired_again_within_the_round():
    """A host hiccup between rounds: c2's stream slips by 40 samples (emulated by shifting the advance
    the round keeps for it, which is what a slip of its sample counter amounts to), beyond the
    24-sample prefix. Its pilot is not found in its window, so it alone is acquired again, everybody
    sounds once more, and the round decodes near theory with every client; the extra slot and the
    second sounding count as airtime."""
    air = _air(ppm={"server": 0.0})
    ota = _round(air)
    rng = np.random.default_rng(4)
    ups = [rng.standard_normal(2000) for _ in range(4)]
    reference = ota.run(ups, np.ones(4))
    assert reference.estimate is not None
    ups = [rng.standard_normal(2000) for _ in range(4)]
    steady = ota.run(ups, np.ones(4))
    ota.advance[2] += 40
    updates = [rng.standard_normal(2000) for _ in range(4)]
    result = ota.run(updates, np.ones(4))
    assert result.estimate is not None, result.failure
    assert result.diagnostics["reacquired"] == 1 and result.diagnostics["acquired"] == 1 and result.lost == []
    assert sorted(result.participants + result.truncated) == [0, 1, 2, 3]
    assert result.client_delay[2] == pytest.approx(_offsets(air, 4)[2], abs=0.1)
    assert result.airtime_samples > steady.airtime_samples + acquisition_samples(1, ota.settings)
    assert _gap_db(result, updates) < 2.0


def test_client_that_cannot_be_found_stays_silent_and_is_tried_next_round():
    """c3's stream slips by 2000 samples, beyond the +-256-sample search: it is not found at the sounding
    nor at its re-acquisition, so it stays silent (RoundResult.lost) while the others deliver their sum;
    the next round tries it again."""
    air = _air(ppm={"server": 0.0})
    ota = _round(air)
    rng = np.random.default_rng(5)
    assert ota.run([rng.standard_normal(2000) for _ in range(4)], np.ones(4)).estimate is not None
    ota.advance[3] += 2000
    updates = [rng.standard_normal(2000) for _ in range(4)]
    result = ota.run(updates, np.ones(4))
    assert result.estimate is not None, result.failure
    assert result.lost == [3] and 3 in result.truncated and 3 not in result.participants
    assert _gap_db(result, updates) < 2.0
    assert not ota.acquired[3]
    nxt = ota.run([rng.standard_normal(2000) for _ in range(4)], np.ones(4))
    assert nxt.diagnostics["acquisition_missed"] >= 1 and nxt.lost == [3]


def test_offsets_beyond_the_search_window_fail_in_one_sentence():
    """A search window smaller than the offsets finds nobody: no client sounds blindly, no payload goes
    out, and the failure says why in one sentence."""
    air = _air(ppm={"c0": 0.9, "c1": -0.9, "c2": 0.8, "c3": -0.8, "server": 0.0})
    _jump(air, MINUTE)
    assert np.min(np.abs(_offsets(air, 4))) > 40
    ota = _round(air, acquisition_search_samples=24)
    result = ota.run([np.ones(100)] * 4, np.ones(4))
    assert result.estimate is None and result.participants == []
    assert sorted(result.lost) == [0, 1, 2, 3]
    assert "acquisition_search_samples" in result.failure and result.failure.count(". ") == 0
    assert "payload" not in result.captures


def test_acquisition_off_keeps_the_old_schedule():
    """acquisition = "off": no acquisition slots and no sounding check, as before (small offsets)."""
    air = _air(ppm={"server": 0.0})
    ota = _round(air, acquisition="off", cfo_correction=False)
    rng = np.random.default_rng(3)
    updates = [rng.standard_normal(2000) for _ in range(4)]
    result = ota.run(updates, np.ones(4))
    assert result.estimate is not None
    assert "acquired" not in result.diagnostics and "reacquired" not in result.diagnostics


def test_config_key_reaches_the_round_and_is_checked():
    from airfl.fl.air_setup import ota_settings
    from airfl.fl.config import ConfigError, validate_config

    assert ota_settings(validate_config({})).acquisition_search_samples == 256
    assert ota_settings(validate_config({"ota": {"acquisition_search_samples": 500}})).acquisition_search_samples == 500
    with pytest.raises(ConfigError, match="ota.acquisition_search_samples"):
        validate_config({"ota": {"acquisition_search_samples": 8}})  # below sounding_cp = 16
