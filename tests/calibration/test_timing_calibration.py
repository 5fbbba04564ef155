"""timing against the loopback's truth: every measured offset against air.link(tx, rx)'s arrival
time, the drift against the oscillators, on timed and cyclic benches; evidence and profile entries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from airfl.calibration import timing
from airfl.calibration.bench import Bench, open_bench
from airfl.calibration.clock_sync import DELAY_BAND
from airfl.calibration.output import ProcedureOutput
from airfl.calibration.profile import load_profile
from airfl.calibration.registry import run_procedure
from airfl.radio import AirConfig, OscillatorOverride
from airfl.radio.base import RadioConfig
from airfl.radio.presets import LAB_OSCILLATOR, lab_impairments
from airfl.radio.recording import read_recording
from airfl.radio.uri import loopback_air, open_radio

FC = 2.44e9
FS = 1e6


def _bench(channel, seed: int, n_tx: int, query: str = "", air: str = "tm") -> Bench:
    """A bench on an air with this exact ChannelConfig (open_bench only knows the presets)."""
    loopback_air(air, AirConfig(seed=seed, sample_rate_hz=FS, channel=channel, center_freq_hz=FC))
    uris = [f"loopback://{air}/server{query}"] + [f"loopback://{air}/c{i}{query}" for i in range(n_tx)]
    radios = [open_radio(u) for u in uris]
    config = RadioConfig(sample_rate_hz=FS, center_freq_hz=FC)
    for r in radios:
        r.configure(config)
    return Bench(radios[0], radios[1:], config, uris[0], uris[1:])


def _true_offsets(bench: Bench, index: int, scheduled: list[float]) -> np.ndarray:
    """Where a sample sent at tx clock T lands on the rx clock, minus T (samples)."""
    link = bench.air.link(f"c{index}", "server")
    return np.array([link.arrival_sample(t) - t for t in scheduled])


def _fit_ppm(x, y) -> float:
    return float(np.polyfit(np.asarray(x) - x[0], y, 1)[0] * 1e6)


def test_offsets_within_005_samples_and_drift_on_the_lab_air_flat(tmp_path):
    """Lab preset (fractional delays, locked clocks +-1 ppm drifting 0.02 ppm/s, phase noise, Rayleigh
    blocks, IQ, DC, ADC) with a flat channel: every one of 7 offsets over 60 s is within 0.05 samples
    of the link's truth, and each drift within 0.01 ppm of the same straight-line fit of the truth."""
    bench = _bench(lab_impairments(noise_power=1e-4, rms_delay_spread_ns=0.0), seed=5, n_tx=3)
    tracks = timing.measure_timed(bench, ProcedureOutput(tmp_path), timing.Options())
    fractions = []
    for i, tr in enumerate(tracks):
        assert tr.missed == 0 and len(tr.offsets) == 7
        truth = _true_offsets(bench, i, tr.scheduled)
        err = np.abs(np.asarray(tr.offsets) - truth)
        assert err.max() < 0.05, (i, err)
        assert (tr.scheduled[-1] - tr.scheduled[0]) / FS == pytest.approx(60.0, abs=0.01)
        assert abs(_fit_ppm(tr.scheduled, tr.offsets) - _fit_ppm(tr.scheduled, truth)) < 0.01
        fractions.append(bench.air.link(f"c{i}", "server").fractional_delay)
        # the true offset really moved: drift of a locked +-1 ppm clock pair
        assert abs(truth[-1] - truth[0]) > 1.0
    assert max(fractions) > 0.2  # fractional delays were there to find


def test_multipath_offsets_are_the_first_path_plus_the_channels_group_delay(tmp_path):
    """With the lab's 50 ns multipath (second tap at -26 dB, each tap Rayleigh) a deep fade of the
    first tap moves the energy later: the procedure measures the channel's group delay over the
    band it uses (|f| <= 0.4 fs) on top of the first path, within 0.05 samples of that truth."""
    bench = open_bench("loopback://tm/server", ["loopback://tm/c0", "loopback://tm/c1"], air="lab", seed=1)
    tracks = timing.measure_timed(bench, ProcedureOutput(tmp_path), timing.Options(measurements=5))
    f = np.linspace(-DELAY_BAND, DELAY_BAND, 281)
    for i, tr in enumerate(tracks):
        link = bench.air.link(f"c{i}", "server")
        truth = _true_offsets(bench, i, tr.scheduled)
        group = []
        for t in tr.scheduled:
            h = link.taps_at(link.arrival_time(t))
            response = np.exp(-2j * np.pi * np.outer(f, np.arange(len(h)))) @ h
            slope = np.polyfit(f, np.unwrap(np.angle(response)), 1, w=np.abs(response))[0]
            group.append(-slope / (2 * np.pi))
        assert link.n_taps >= 2
        assert np.max(np.abs(np.asarray(tr.offsets) - truth - np.asarray(group))) < 0.05


def test_independent_sample_clocks(tmp_path):
    """Sample clocks independent of the carrier reference (`independent` override: tx +3 ppm and
    -2 ppm, rx +0.5 ppm): drifts of (1 + 0.5e-6)/(1 + eps_tx) - 1 = -2.5 and +2.5 ppm within 0.01 ppm,
    offsets within 0.05 samples."""
    osc = replace(
        LAB_OSCILLATOR, sample_clock="independent",
        overrides={"c0": OscillatorOverride(sample_clock_ppm=3.0), "c1": OscillatorOverride(sample_clock_ppm=-2.0),
                   "server": OscillatorOverride(sample_clock_ppm=0.5)},
    )
    bench = _bench(lab_impairments(noise_power=1e-4, rms_delay_spread_ns=0.0, oscillator=osc), seed=2, n_tx=2)
    tracks = timing.measure_timed(bench, ProcedureOutput(tmp_path), timing.Options(measurements=4, duration_s=30.0))
    for i, (tr, sco) in enumerate(zip(tracks, (3.0, -2.0), strict=True)):
        expected = ((1 + 0.5e-6) / (1 + sco * 1e-6) - 1) * 1e6
        assert _fit_ppm(tr.scheduled, tr.offsets) == pytest.approx(expected, abs=0.01)
        assert np.max(np.abs(np.asarray(tr.offsets) - _true_offsets(bench, i, tr.scheduled))) < 0.05


def test_uncalibrated_radios_stay_in_their_windows(tmp_path):
    """+-25 ppm (1500 samples a minute): the prediction keeps every sounding in its window and the
    drift is right within 0.02 ppm (multipath moves single offsets by up to a sample, see above)."""
    bench = open_bench("loopback://tm/server", ["loopback://tm/c0", "loopback://tm/c1"], air="lab_uncalibrated", seed=1)
    tracks = timing.measure_timed(bench, ProcedureOutput(tmp_path), timing.Options())
    drifts = []
    for i, tr in enumerate(tracks):
        assert tr.missed == 0
        truth = _true_offsets(bench, i, tr.scheduled)
        drifts.append(_fit_ppm(tr.scheduled, truth))
        assert abs(_fit_ppm(tr.scheduled, tr.offsets) - drifts[-1]) < 0.02
    assert max(abs(d) for d in drifts) > 20  # the wanderers were there


def test_procedure_writes_profile_report_and_sigmf(tmp_path):
    bench = open_bench("loopback://tm/server", ["loopback://tm/c0", "loopback://tm/c1"], air="lab", seed=8)
    opts = timing.Options(measurements=4, duration_s=20.0)
    result, profile = run_procedure("timing", bench, tmp_path, opts, tmp_path / "profile.json")
    for i, row in enumerate(result.rows):
        assert row["measurements"] == 4
        assert abs(row["drift_ppm"] - row["truth_drift_ppm"]) < 0.02
        assert row["drift_samples_per_s"] == pytest.approx(row["drift_ppm"] * 1e-6 * FS)
        entry = load_profile(tmp_path / "profile.json").entry(f"loopback://tm/c{i}")
        assert entry is not None
        assert entry.timing_offset_samples == pytest.approx(row["offset_samples"])
        assert entry.timing_drift_ppm == pytest.approx(row["drift_ppm"])
        assert abs(entry.timing_offset_samples - row["truth_offset_samples"]) < 0.5  # multipath: see above
    assert profile is not None and profile.procedures[-1].name == "timing"
    out = tmp_path / "timing"
    assert {"report.txt", "report.json", "timing_offsets.png"} <= {p.name for p in out.iterdir()}
    assert len(result.captures) == 4
    rec = read_recording(out / result.captures[3])
    assert rec.sample_rate_hz == FS and rec.center_freq_hz == FC
    assert rec.extra["elapsed_s"] == pytest.approx(20.0)
    assert [a.label for a in rec.annotations] == ["tone", "preamble", "tone", "preamble"]


def test_cyclic_bench_drift_and_offsets_relative_to_the_first(tmp_path):
    """Stock-Pluto-like radios: buffers at unknown offsets, found by correlation. Drift against the
    receiver from the buffer spacing (within 0.1 ppm of the oscillators over 0.4 s) and each buffer's
    offset relative to the first transmitter's within 0.05 samples of where the air put them."""
    bench = _bench(lab_impairments(noise_power=1e-4, rms_delay_spread_ns=0.0), seed=3, n_tx=2, query="?mode=cyclic")
    assert not bench.timed
    air = bench.air
    origins: dict[int, tuple[int, int]] = {}
    windows: list[tuple[float, int]] = []
    for i, radio in enumerate(bench.transmitters):  # record the truth the air holds before buffers stop
        stop = radio.stop_transmit

        def record(i=i, radio=radio, stop=stop):
            origins[i] = (radio.cyclic_origin, radio.cyclic_length)
            stop()

        radio.stop_transmit = record
    receive = bench.receiver.receive

    def capture(n, at):
        y = receive(n, at)
        windows.append((air.true_time(), len(y)))
        return y

    bench.receiver.receive = capture
    result, _ = run_procedure("timing", bench, tmp_path, timing.Options(cyclic_capture_s=0.4), tmp_path / "p.json")
    end, length = windows[-1]
    rx = air.oscillator("server")
    centre = float(rx.local_time(end)) - length / 2  # rx clock at the capture's centre
    period = origins[0][1]

    def phase(i: int) -> float:  # where in its buffer tx i is (samples), for what arrives at `centre`
        link = air.link(f"c{i}", "server")
        t = centre - link.total_delay
        for _ in range(4):
            t += centre - link.arrival_sample(t)
        return (t - origins[i][0]) % period

    rel_truth = (phase(0) - phase(1) + period / 2) % period - period / 2
    assert result.rows[1]["offset_vs_first_samples"] == pytest.approx(rel_truth, abs=0.05)
    assert result.rows[0]["offset_vs_first_samples"] == 0.0
    for i, row in enumerate(result.rows):
        s_tx, s_rx = air.oscillator(f"c{i}").sample_clock_ppm_at(end), rx.sample_clock_ppm_at(end)
        assert row["drift_ppm"] == pytest.approx(((1 + 1e-6 * s_rx) / (1 + 1e-6 * s_tx) - 1) * 1e6, abs=0.1)
        entry = load_profile(tmp_path / "p.json").entry(bench.transmitter_uris[i])
        assert entry.timing_drift_ppm == pytest.approx(row["drift_ppm"]) and entry.timing_offset_samples is None
    assert read_recording(tmp_path / "timing" / result.captures[0]).extra["period_samples"] == period


@pytest.mark.parametrize(
    "kwargs,match",
    [({"measurements": 1}, "measurements"), ({"duration_s": 0.0}, "duration_s"), ({"zc_length": 352}, "prime"),
     ({"tone_samples": 100}, "tone_samples"), ({"max_cfo_ppm": -1.0}, "max_cfo_ppm")],
)
def test_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        timing.Options(**kwargs)
