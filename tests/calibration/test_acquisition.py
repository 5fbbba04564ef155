"""Calibration after a minute on the bench: the `timing` procedure spends 60 s of bench time, after
which the lab's sample clocks (each locked to its own +-1 ppm reference) have run tens of samples
apart. `alignment` acquires every client's timing offset (tone + marker in wide slots) before its
first sounding, so it still works; and the CLI's order (timing, alignment, end_to_end) completes on
one bench with the round's own acquisition doing the same for end_to_end.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.calibration import alignment
from airfl.calibration.bench import BenchError, open_bench
from airfl.calibration.output import ProcedureOutput
from airfl.calibration.registry import run_procedure

TX = [f"loopback://airfl/client{k}" for k in range(3)]  # the bench of the README's `airfl calibrate all`
MINUTE = 60_000_000  # samples at 1 MS/s


def _lab_bench(seed: int = 0):
    return open_bench("loopback://airfl/server", TX, air="lab", seed=seed, noise_power=1e-4, tx_gain_db=-10.0)


def _offsets(bench) -> np.ndarray:
    """True timing offset (samples) of each transmitter against the receiver's clock, now."""
    air, t = bench.air, bench.receiver.now()
    rx = bench.air_name(bench.receiver)
    return np.array([air.link(bench.air_name(r), rx).arrival_sample(t) - t for r in bench.transmitters])


def _jump(bench, samples: int) -> None:
    bench.receiver.receive(1, bench.receiver.now() + samples)


def test_alignment_after_a_minute_on_the_lab_air(tmp_path):
    """A minute after start the clocks are far outside the 24-sample cyclic prefix; alignment acquires
    every offset within 0.2 sample of the truth and measures the residual as on a fresh bench (seed 2:
    the transmitters are 34 to 87 samples early; the lab's drift of up to 0.02 ppm/s adds to the
    +-1 ppm, so other seeds reach 166). Seed 1 is not used: there the receiver's clock is 82 samples
    ahead of the air's true time, so its frame grid no longer matches the emulated fading blocks (they
    start on true time) and every sounding straddles a block boundary, an artefact of the emulation."""
    bench = _lab_bench(seed=2)
    _jump(bench, MINUTE)
    truth = _offsets(bench)
    assert np.max(np.abs(truth)) > 24 and np.ptp(truth) > 24
    result, _ = run_procedure("alignment", bench, tmp_path, alignment.Options(repeats=3))
    s = result.summary
    acquired = np.array([s["acquisition_offset_samples"][uri] for uri in TX])
    np.testing.assert_allclose(acquired, truth, atol=0.2)
    assert s["truth_delay_error_max_samples"] < 0.2 and s["truth_cfo_error_max_hz"] < 20
    assert s["residual_amp_rms_db"] < 1.0 and s["residual_phase_rms_deg"] < 5.0
    assert (tmp_path / "alignment" / "captures" / "acquisition.sigmf-meta").is_file()


def test_alignment_reports_a_client_beyond_the_search_window(tmp_path):
    """Offsets larger than acquisition_search_samples: a one-sentence BenchError naming the client."""
    bench = _lab_bench(seed=2)
    _jump(bench, MINUTE)
    assert np.max(np.abs(_offsets(bench))) > 30
    with pytest.raises(BenchError, match="acquisition_search_samples") as err:
        run_procedure("alignment", bench, tmp_path, alignment.Options(repeats=1, acquisition_search_samples=24))
    assert "loopback://airfl/client" in str(err.value) and str(err.value).count(". ") == 0


def test_alignment_search_window_is_validated():
    with pytest.raises(ValueError, match="acquisition_search_samples"):
        alignment.Options(acquisition_search_samples=8)


def test_alignment_reacquires_a_client_whose_sounding_is_lost(tmp_path):
    """A client's timing jumps beyond the prefix between repetitions (its advance is shifted by 40
    samples, as a slip of its sample counter would): the repetition acquires it again and repeats."""
    bench = _lab_bench(seed=2)
    out = ProcedureOutput(tmp_path / "alignment")
    runner = alignment.TimedAlignment(bench, out, alignment.Options(), 0.1)
    runner.listen()
    runner.acquire()
    runner.repetition(0)
    runner.advance[1] += 40
    rep = runner.repetition(1)
    assert np.all(np.abs(rep.arrival - rep.truth_arrival) < 0.2)
    names = {p.name for p in (tmp_path / "alignment" / "captures").iterdir()}
    assert {"reacquisition_1.sigmf-meta", "sounding_1_retry.sigmf-meta"} <= names


def test_timing_then_alignment_then_end_to_end_on_one_bench(tmp_path):
    """The order `airfl calibrate all` runs them: timing (a minute of bench time), alignment, end_to_end,
    one bench and one profile. Every procedure completes; end_to_end delivers every round with every
    client found, and its NMSE agrees with alignment's prediction (single carrier at one sample per
    symbol is misalignment-limited here, several dB above the noise-only theory) within 2.5 dB."""
    bench = _lab_bench()
    profile = tmp_path / "profile.json"
    timing, _ = run_procedure("timing", bench, tmp_path, profile_path=profile)
    assert timing.summary["max_offset_error_vs_truth_samples"] < 0.5
    assert np.max(np.abs(_offsets(bench))) > 24  # the clocks have run apart
    align, _ = run_procedure("alignment", bench, tmp_path, profile_path=profile)
    e2e, _ = run_procedure("end_to_end", bench, tmp_path, profile_path=profile)
    s = e2e.summary
    assert s["failures"] == 0 and s["mean_participants"] >= 2.0  # a deep fade may silence one client
    assert s["nmse_db"] == pytest.approx(align.summary["nmse_predicted_db"], abs=2.5)
    assert s["nmse_db"] < -10
