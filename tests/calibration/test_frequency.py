"""frequency against the loopback's truth: CFO (Hz), carrier offset (ppm), xo_correction and the
residual after applying it, on timed and cyclic benches; evidence and profile entries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from airfl.calibration import frequency
from airfl.calibration.bench import Bench, open_bench
from airfl.calibration.output import ProcedureOutput
from airfl.calibration.profile import load_profile
from airfl.calibration.registry import run_procedure
from airfl.radio import AirConfig, OscillatorOverride
from airfl.radio.base import RadioConfig
from airfl.radio.oscillator import NOMINAL_REFERENCE_HZ
from airfl.radio.presets import LAB_OSCILLATOR, lab_impairments
from airfl.radio.recording import read_recording
from airfl.radio.uri import loopback_air, open_radio

FC = 2.44e9


def _bench(channel, seed: int, n_tx: int = 1, air: str = "fq") -> Bench:
    """A bench on an air with this exact ChannelConfig (open_bench only knows the presets)."""
    loopback_air(air, AirConfig(seed=seed, sample_rate_hz=1e6, channel=channel, center_freq_hz=FC))
    uris = [f"loopback://{air}/server"] + [f"loopback://{air}/c{i}" for i in range(n_tx)]
    radios = [open_radio(u) for u in uris]
    config = RadioConfig(sample_rate_hz=1e6, center_freq_hz=FC)
    for r in radios:
        r.configure(config)
    return Bench(radios[0], radios[1:], config, uris[0], uris[1:])


def test_cfo_within_1hz_of_the_links_truth_on_the_lab_air():
    """Lab preset (+-1 ppm, 0.02 ppm/s drift, 0.01 Hz phase noise, multipath, Rayleigh blocks, IQ, DC,
    12-bit ADC): each transmitter's CFO matches air.link(tx, rx).cfo_hz at the moment the estimate
    refers to within 1 Hz (phase noise alone puts ~0.2 Hz of spread on a 0.26 s capture), and its
    ppm the oscillators' within 0.001 ppm."""
    bench = open_bench("loopback://fq/server", ["loopback://fq/c0", "loopback://fq/c1"], air="lab", seed=7)
    air = bench.air
    lay = frequency.layout(bench, frequency.Options())
    for i, name in enumerate(["c0", "c1"]):
        m = frequency.measure(bench, i, lay)
        assert m is not None and m.stretches_used >= 50
        # the receiver's clock is within 1 ppm of true time: the window ended at air.true_time()
        t = air.true_time() - len(m.capture.samples) + m.t_ref
        truth_hz = float(air.link(name, "server").cfo_hz(t))
        assert abs(m.ratio_minus_one * FC - truth_hz) < 1.0, (name, m.ratio_minus_one * FC, truth_hz)
        p_tx, p_rx = air.oscillator(name).ppm_at(t), air.oscillator("server").ppm_at(t)
        assert m.ratio_minus_one * 1e6 == pytest.approx(p_tx - p_rx, abs=1e-3)
        assert abs(truth_hz) > 100  # a real offset was measured, not a zero
        # AD9361-like: the markers' spacing gives the same ppm for the locked sample clock
        assert m.sco_ppm == pytest.approx(m.ratio_minus_one * 1e6, abs=0.5)


def test_xo_correction_on_uncalibrated_plutos_and_the_residual(tmp_path):
    """+-25 ppm radios: xo_correction within 1 ppm (in fact ~0.01) of 40 MHz * f_tx / f_rx, written
    to the radio; afterwards the true carrier offset (air.link) is < 0.1 ppm and so is the measured
    residual. The profile, captures and figures land."""
    bench = open_bench("loopback://fq/server", ["loopback://fq/c0", "loopback://fq/c1"], air="lab_uncalibrated", seed=3)
    air = bench.air
    t0 = air.true_time()
    p_rx = air.oscillator("server").ppm_at(t0)
    before = {n: air.oscillator(n).ppm_at(t0) - p_rx for n in ("c0", "c1")}
    assert max(abs(v) for v in before.values()) > 10  # really uncalibrated
    ideal = {n: NOMINAL_REFERENCE_HZ * (1 + 1e-6 * air.oscillator(n).crystal_ppm_at(t0)) / (1 + 1e-6 * p_rx) for n in before}
    result, profile = run_procedure("frequency", bench, tmp_path, frequency.Options(), tmp_path / "profile.json")
    elapsed_s = (air.true_time() - t0) / 1e6
    assert elapsed_s < 1.5  # so the 0.02 ppm/s drift moved the ideal value < 0.06 ppm
    for i, name in enumerate(("c0", "c1")):
        uri = f"loopback://fq/{name}"
        row = result.rows[i]
        assert row["carrier_offset_ppm"] == pytest.approx(before[name], abs=0.06)
        xo = bench.transmitters[i].xo_correction()
        assert xo == row["xo_correction_Hz"]
        assert abs(xo / ideal[name] - 1) * 1e6 < 1.0
        assert abs(xo / ideal[name] - 1) * 1e6 < 0.1  # what it really achieves
        # truth after correction, from the oscillators: the carrier now matches the receiver's
        t = air.true_time()
        residual_truth = air.oscillator(name).ppm_at(t) - air.oscillator("server").ppm_at(t)
        assert abs(residual_truth) < 0.1
        assert abs(row["residual_offset_ppm"]) < 0.1
        assert row["residual_offset_ppm"] == pytest.approx(residual_truth, abs=0.03)
        entry = load_profile(tmp_path / "profile.json").entry(uri)
        assert entry is not None and entry.xo_correction_hz == xo
        assert entry.carrier_offset_ppm == pytest.approx(row["carrier_offset_ppm"])
        assert entry.residual_offset_ppm == pytest.approx(row["residual_offset_ppm"])
    assert profile is not None and profile.procedures[-1].name == "frequency"
    assert result.summary["max_xo_error_vs_truth_ppm"] < 0.1
    out = tmp_path / "frequency"
    assert {"report.txt", "report.json", "carrier_offset.png", "tone_spectrum_tx0.png"} <= {p.name for p in out.iterdir()}
    rec = read_recording(out / "captures" / "tone_tx1_after.sigmf-meta")
    assert rec.sample_rate_hz == 1e6 and rec.center_freq_hz == FC
    assert rec.extra["stage"] == "after" and rec.extra["xo_correction_hz"] == bench.transmitters[1].xo_correction()
    labels = {a.label for a in rec.annotations}
    assert labels == {"marker", "tone"} and len(rec.annotations) > 100
    assert len(rec.samples) == len(read_recording(out / "captures" / "tone_tx1_before.sigmf-meta").samples)


def test_cyclic_bench_finds_the_buffers_by_correlation(tmp_path):
    """Stock-Pluto-like radios (no hardware time, cyclic buffers at unknown offsets): the same
    answers from the repeating buffer."""
    q = "?mode=cyclic"
    bench = open_bench(f"loopback://fq/server{q}", [f"loopback://fq/c0{q}"], air="lab_uncalibrated", seed=11)
    assert not bench.timed
    air = bench.air
    t0 = air.true_time()
    p_rx = air.oscillator("server").ppm_at(t0)
    ideal = NOMINAL_REFERENCE_HZ * (1 + 1e-6 * air.oscillator("c0").crystal_ppm_at(t0)) / (1 + 1e-6 * p_rx)
    result, _ = run_procedure("frequency", bench, tmp_path, frequency.Options(periods=32))
    row = result.rows[0]
    assert row["carrier_offset_ppm"] == pytest.approx(air.oscillator("c0").ppm_at(t0) - p_rx, abs=0.06)
    assert abs(row["xo_correction_Hz"] / ideal - 1) * 1e6 < 0.1
    assert abs(row["residual_offset_ppm"]) < 0.1
    assert abs(row["carrier_offset_Hz"] - row["truth_offset_Hz"]) < 4.0  # receiver's Hz: 25 ppm of ~100 kHz


class _NoXo:
    """A radio without xo_correction (like a SoapySDR device): delegates everything else."""

    def __init__(self, radio):
        self._radio = radio

    def __getattr__(self, name):
        if name in ("set_xo_correction", "xo_correction", "has_xo_correction"):
            raise AttributeError(name)
        return getattr(self._radio, name)


def test_radios_without_xo_correction_are_measured_and_said_so(tmp_path):
    bench = open_bench("loopback://fq/server", ["loopback://fq/c0"], air="lab", seed=2)
    bench.transmitters[0] = _NoXo(bench.transmitters[0])
    result, _ = run_procedure("frequency", bench, tmp_path, frequency.Options(periods=8), tmp_path / "p.json")
    entry = load_profile(tmp_path / "p.json").entry("loopback://fq/c0")
    assert entry is not None and entry.carrier_offset_ppm is not None
    assert entry.xo_correction_hz is None and entry.residual_offset_ppm is None
    assert any("no xo_correction" in n for n in result.notes)
    assert "xo_correction_Hz" not in result.rows[0]


def test_independent_sample_clock_is_reported(tmp_path):
    """A transmitter whose sample clock does not follow its carrier reference (10 ppm vs 1 ppm):
    the marker spacing shows it, and a note says the radios do not share one reference."""
    osc = replace(
        LAB_OSCILLATOR, sample_clock="independent", ppm_spread=0.0, drift_spread_ppm_per_s=0.0,
        overrides={"c0": OscillatorOverride(ppm=1.0, sample_clock_ppm=10.0), "server": OscillatorOverride(sample_clock_ppm=0.0)},
    )
    bench = _bench(lab_impairments(noise_power=1e-4, oscillator=osc), seed=4)
    result = frequency.run(bench, ProcedureOutput(tmp_path), frequency.Options(periods=16, apply_correction=False))
    row = result.rows[0]
    assert row["sample_clock_ppm"] == pytest.approx(10.0, abs=0.5)
    assert row["carrier_offset_ppm"] == pytest.approx(1.0, abs=0.01)
    assert any("do not derive both from one reference" in n for n in result.notes)
    assert any("not applied" in n for n in result.notes)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"periods": 1}, "periods"), ({"marker_length": 128}, "prime"), ({"amplitude": 2.0}, "amplitude"),
     ({"period_samples": 256}, "period_samples"), ({"max_offset_ppm": 0.0}, "max_offset_ppm")],
)
def test_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        frequency.Options(**kwargs)


def test_a_search_band_that_reaches_dc_is_one_sentence():
    bench = open_bench("loopback://fq/server", ["loopback://fq/c0"], air="ideal")
    with pytest.raises(ValueError, match="reaches DC"):
        frequency.layout(bench, frequency.Options(tone_hz=50e3))


def test_xo_formula_sign():
    """A transmitter 10 ppm fast is told its reference is 10 ppm fast: 40 000 400 Hz."""
    assert frequency.xo_for(40e6, 10e-6) == 40_000_400
    assert frequency.xo_for(39_999_000, -2e-6) == int(round(39_999_000 * (1 - 2e-6)))
    assert np.isclose(frequency.xo_for(40e6, 0.0), 40e6)
