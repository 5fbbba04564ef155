"""alignment against the loopback's truth: channel estimates, residual misalignment, and how the
residual grows with phase noise and block fading as the theory in the module says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from airfl.calibration import alignment
from airfl.calibration.bench import AIR_PRESETS, open_bench
from airfl.calibration.output import ProcedureOutput
from airfl.calibration.profile import CalibrationProfile, load_profile, save_profile
from airfl.calibration.registry import run_procedure
from airfl.modem import SoundingLayout
from airfl.modem.frame import PRECURSOR
from airfl.radio.channel import ChannelConfig
from airfl.radio.oscillator import OscillatorConfig
from airfl.radio.presets import lab_impairments
from airfl.radio.recording import read_recording

TX = [f"loopback://al/c{k}" for k in range(4)]


def _bench(monkeypatch, channel, noise=0.0, tx=TX, rx="loopback://al/server", seed=1, **kwargs):
    monkeypatch.setitem(AIR_PRESETS, "test", lambda n: channel(n))
    return open_bench(rx, tx, air="test", noise_power=noise, seed=seed, tx_gain_db=-10.0, **kwargs)


@pytest.mark.parametrize(
    ("waveform", "channel", "rate"),
    [
        # Rayleigh block fading and integer delays up to 8 samples
        ("single_carrier", lambda n: ChannelConfig(noise_power=n, max_delay_samples=8), 1e6),
        # ... plus multipath within the OFDM cyclic prefix (50 ns at 10 MS/s: a few taps)
        ("ofdm", lambda n: ChannelConfig(noise_power=n, max_delay_samples=8, rms_delay_spread_ns=50.0), 10e6),
    ],
)
def test_noise_free_alignment_is_exact(tmp_path, monkeypatch, waveform, channel, rate):
    bench = _bench(monkeypatch, channel, sample_rate_hz=rate)
    result, _ = run_procedure("alignment", bench, tmp_path, alignment.Options(waveform=waveform, repeats=3))
    s = result.summary
    assert s["residual_amp_rms_db"] < 0.01 and s["residual_phase_rms_deg"] < 0.1
    assert s["truth_gain_error_rms_db"] < 1e-6 and s["truth_phase_error_rms_deg"] < 1e-5
    if waveform == "single_carrier":  # flat links: the delay is the path's (with multipath, the strongest tap's)
        assert s["truth_delay_error_max_samples"] < 1e-6
    for row in result.rows:
        assert abs(row["resid_dB"]) < 0.01 and abs(row["resid_deg"]) < 0.1
        assert row["precoder_dB"] is not None
    # No noise: the prediction is the misalignment alone, and that is nil.
    assert s["nmse_predicted_db"] is None or s["nmse_predicted_db"] < -200


def _static_lab(multipath: bool):
    # Every lab impairment except block fading (so each client keeps one SNR over the repetitions,
    # and the tolerance below is one number) and, for single carrier, multipath (see the note).
    return lambda n: lab_impairments(noise_power=n, fading="none", rms_delay_spread_ns=50.0 if multipath else 0.0)


def test_single_carrier_estimates_match_truth_on_the_lab_air(tmp_path, monkeypatch):
    """Channel estimates of single carrier against the loopback's flat truth on the lab air.

    Tolerance at the test SNR (P |h|^2 / sigma^2 = 0.1 x 0.1 / 1e-4 = 20 dB per client): the gain of
    a pilot of N R = 1004 samples has relative error variance 1 / (SNR N R), i.e. amplitude and phase
    standard deviations of 8.686 / sqrt(2 SNR N R) dB (0.02 dB) and 57.3 / sqrt(2 SNR N R) degrees
    (0.13 deg). Allowed: 4 of those, plus 0.15 dB for the estimator's fractional-delay model against
    the emulated converters' interpolation filter and the lab's IQ imbalance (noise-free it is within
    0.06 dB), plus 2 degrees for the lab's phase noise (0.01 Hz per radio: the estimate averages the
    phase over the ~1000-sample burst, the truth is the phase at its start: about 0.8 degrees RMS).
    """
    bench = _bench(monkeypatch, _static_lab(multipath=False), noise=1e-4)
    result, _ = run_procedure("alignment", bench, tmp_path, alignment.Options(repeats=3))
    n_r = SoundingLayout(4, 24, 40, 251, 4).length * 4
    for row in result.rows:
        snr = 10 ** (row["snr_dB"] / 10)
        assert 18.0 < row["snr_dB"] < 21.0
        sigma_db = 20 / math.log(10) / math.sqrt(2 * snr * n_r)
        sigma_deg = math.degrees(1 / math.sqrt(2 * snr * n_r))
        assert row["gain_err_dB"] < 4 * sigma_db + 0.15, row
        assert row["phase_err_deg"] < 4 * sigma_deg + 2.0, row
    s = result.summary
    assert s["truth_cfo_error_max_hz"] < 15.0  # carrier offsets of up to 4.9 kHz, measured to Hz
    assert s["truth_delay_error_max_samples"] < 0.1  # integer + fractional delay
    # The flat truth's residual and the measured one agree up to the fractional-delay loss that only
    # the measurement sees (single carrier at one sample per symbol; reported as ISI too).
    for row in result.rows:
        assert abs(row["resid_deg"] - row["true_resid_deg"]) < 3.0
        assert -1.0 < row["resid_dB"] < 0.2 and row["isi_dB"] < -10


def test_ofdm_estimates_match_truth_per_subcarrier_on_the_lab_air(tmp_path, monkeypatch):
    """Per-subcarrier channels (OFDM) against the FFT of the loopback's taps, multipath included.

    Each subcarrier's estimate comes from a wide window of W correlation lags (W = 51 for four
    clients), so its relative error variance is W / (SNR N R): 0.15 dB and 1 degree RMS at 20 dB.
    Allowed: 1.5 times that RMS (it is an RMS over 52 subcarriers x 3 repetitions, so it scatters
    little) plus 0.05 dB and 1 degree (the lab's phase noise, as in the single-carrier test).
    """
    bench = _bench(monkeypatch, _static_lab(multipath=True), noise=1e-4)
    result, _ = run_procedure("alignment", bench, tmp_path, alignment.Options(waveform="ofdm", repeats=3))
    layout = SoundingLayout(4, 24, 40, 251, 4)
    wide = 2 * max(PRECURSOR + 1, (layout.shift - layout.cp // 2) // 2) + 1
    for row in result.rows:
        rel = math.sqrt(wide / (10 ** (row["snr_dB"] / 10) * layout.length * layout.repeats))
        assert row["gain_err_dB"] < 1.5 * 20 / math.log(10) * rel / math.sqrt(2) + 0.05, row
        assert row["phase_err_deg"] < 1.5 * math.degrees(rel / math.sqrt(2)) + 1.0, row
    assert result.summary["truth_cfo_error_max_hz"] < 15.0
    # The OFDM residual is what the round's receiver will see: a fraction of a dB, a few degrees.
    assert result.summary["residual_amp_rms_db"] < 1.0 and result.summary["residual_phase_rms_deg"] < 6.0


@pytest.mark.parametrize(("linewidth_hz", "cfo_correction"), [(0.5, False), (0.05, True)])
def test_residual_phase_grows_with_phase_noise_as_theory_says(tmp_path, monkeypatch, linewidth_hz, cfo_correction):
    """Wiener phase noise only (each radio `linewidth_hz`), feedback delay D = 8000 samples.

    Without CFO correction the residual phase variance is `phase_noise_residual_variance`
    (about 2 pi (b_tx + b_rx) D / fs). With it, the transmitters also extrapolate a CFO estimate that
    the phase noise corrupts: one sounding's estimate would give the `cfo_correction=True` figure
    (some ten times more); the round's Kalman tracker, which this procedure uses too, averages the
    estimates over the repetitions and lands in between. 4 clients x 20 repetitions share the
    receiver's phase noise, so the measured variance scatters by some 30 %: factor 1.7 allowed.
    """
    channel = lambda n: ChannelConfig(noise_power=n, fading="none", oscillator=OscillatorConfig(linewidth_hz=linewidth_hz))  # noqa: E731
    bench = _bench(monkeypatch, channel, tx=TX, seed=2)
    options = alignment.Options(repeats=20, feedback_delay_samples=8000, cfo_correction=cfo_correction, quiet_samples=0)
    runner = alignment.TimedAlignment(bench, ProcedureOutput(tmp_path), options, 0.1)
    runner.acquire()
    phases = np.array([np.angle(runner.repetition(i).residual) for i in range(options.repeats)])
    measured = float(np.mean(phases**2))
    wiener = alignment.phase_noise_residual_variance(2 * linewidth_hz, 8000, runner.layout, 1e6, cfo_correction=False)
    assert wiener > 0.9 * 2 * np.pi * 2 * linewidth_hz * 8000 / 1e6  # the rough figure of the docstring
    if cfo_correction:
        one_shot = alignment.phase_noise_residual_variance(2 * linewidth_hz, 8000, runner.layout, 1e6, cfo_correction=True)
        assert one_shot > 5 * wiener
        assert wiener < measured < 1.7 * one_shot, (wiener, measured, one_shot)
    else:
        assert wiener / 1.7 < measured < 1.7 * wiener, (measured, wiener)
    assert np.all(np.abs(phases) < np.pi / 2)  # small angles: the model holds


def test_feedback_across_a_fading_block_meets_another_channel(tmp_path, monkeypatch):
    """Rayleigh block fading, 20 ms blocks on the round's frame grid: within a block the residual is 1;
    a feedback delay of one whole block sends the pre-equalised sounding into the next block, where
    each client arrives with h_k(t1) / h_k(t0), exactly what the loopback's truth says."""
    bench = _bench(monkeypatch, lambda n: ChannelConfig(noise_power=n, max_delay_samples=8))
    within, _ = run_procedure("alignment", bench, tmp_path / "a", alignment.Options(repeats=2))
    assert within.summary["residual_amp_rms_db"] < 1e-6
    across, _ = run_procedure("alignment", bench, tmp_path / "b", alignment.Options(repeats=3, feedback_delay_samples=20000))
    rows = across.rows
    assert across.summary["residual_amp_rms_db"] > 1.0
    for row in rows:
        assert abs(row["resid_dB"] - row["true_resid_dB"]) < 1e-6
        assert abs(row["resid_deg"] - row["true_resid_deg"]) < 1e-5
    assert across.summary["nmse_misalignment_db"] > -10.0  # a stale channel is no pre-equaliser at all


def test_cyclic_bench_measures_each_client_alone(tmp_path, monkeypatch):
    """Stock-Pluto-like radios (no hardware time, cyclic buffers at unknown offsets): the bursts are
    found by correlation, |h_k| and |a_k| are measured per client, the phase is not defined."""
    tx = [f"loopback://cy/c{k}?mode=cyclic" for k in range(3)]
    bench = _bench(monkeypatch, _static_lab(multipath=False), noise=1e-4, tx=tx, rx="loopback://cy/server?mode=cyclic")
    assert not bench.timed
    result, _ = run_procedure("alignment", bench, tmp_path, alignment.Options(repeats=2))
    air = bench.air
    assert air is not None
    for j, row in enumerate(result.rows):
        truth_db = 20 * np.log10(abs(air.link(f"c{j}", "server").true_gain(0))) - 10.0  # tx gain -10 dB
        assert abs(row["gain_dB"] - truth_db) < 0.2, (row, truth_db)
        assert abs(row["resid_dB"]) < 0.5 and row["resid_deg"] is None
        assert abs(row["cfo_Hz"] - air.link(f"c{j}", "server").cfo_hz(air.true_time())) < 100.0  # coarse
    assert result.summary["mode"].startswith("cyclic") and result.summary["residual_phase_rms_deg"] is None
    assert any("time base" in n for n in result.notes)
    rec = read_recording(tmp_path / "alignment" / result.captures[-1])
    assert rec.annotations[0].label == "pilot" and rec.extra["period_samples"] == 251


def test_captures_figures_and_profile(tmp_path, monkeypatch):
    """SigMF captures reopen with their annotations, figures exist, the profile records the run, and
    a profile's max_tx_power and gains drive the measurement (and the bench's gains come back)."""
    bench = _bench(monkeypatch, _static_lab(multipath=False), noise=1e-4, tx=TX[:2])
    profile = CalibrationProfile()
    profile.update(TX[0], max_tx_power=0.05, tx_gain_db=-6.0)
    profile.update(TX[1], max_tx_power=0.08)
    profile.update("loopback://al/server", rx_gain_db=-3.0)
    path = save_profile(profile, tmp_path / "profile.json")
    opts = alignment.Options(repeats=2, profile=str(path))
    result, saved = run_procedure("alignment", bench, tmp_path, opts, path)
    s = result.summary
    assert s["tx_power"] == 0.05 and s["tx_power_source"] == "profile"
    assert s["tx_gains_db"] == [-6.0, -10.0] and s["rx_gain_db"] == -3.0
    assert bench.tx_gains_db == [-10.0, -10.0] and bench.config.rx_gain_db == 0.0
    out = tmp_path / "alignment"
    names = {p.name for p in out.iterdir()}
    assert {"report.txt", "report.json", "channel_gain.png", "channel_phase.png", "residual_constellation.png",
            "residual_amplitude.png", "residual_phase.png"} <= names
    sounding = read_recording(out / "captures" / "sounding_0")
    assert sounding.sample_rate_hz == 1e6 and sounding.center_freq_hz == bench.center_freq_hz
    assert sounding.annotations[0].label == "sounding" and sounding.extra["clients"] == 2
    # the annotated span holds the pilots: their power is there, not before
    a = sounding.annotations[0]
    inside = np.mean(np.abs(sounding.samples[a.sample_start : a.sample_start + a.sample_count]) ** 2)
    before = np.mean(np.abs(sounding.samples[: a.sample_start - 16]) ** 2)
    assert inside > 10 * before
    pre = read_recording(out / "captures" / "preequalised_1")
    assert pre.annotations[0].label == "pilot" and pre.extra["eta"] > 0
    assert saved is not None and saved.procedures[-1].name == "alignment"
    assert load_profile(path).procedures[-1].summary["tx_power"] == 0.05
    # alignment writes no per-radio settings: the entries are what the profile had
    assert load_profile(path).entry(TX[0]).max_tx_power == 0.05  # type: ignore[union-attr]


def test_options_are_checked():
    with pytest.raises(ValueError, match="waveform"):
        alignment.Options(waveform="fsk")
    with pytest.raises(ValueError, match="sounding_repeats"):
        alignment.Options(sounding_repeats=1)
    with pytest.raises(ValueError, match="tx_power"):
        alignment.Options(tx_power=2.0)
