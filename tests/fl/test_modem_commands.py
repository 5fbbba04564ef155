"""`airfl modem plan/encode/decode`: recordings made by encode, summed through channels, decode
back to the weighted mean within the truncated-inversion prediction."""

import json

import numpy as np
import pytest

from airfl.fl.cli import main
from airfl.modem.offline import FrameSpec, theory_error_variance
from airfl.radio.recording import read_recording, write_recording


def _write_updates(tmp_path, k: int, d: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    ups = [rng.normal(0.2, 1.0, d) for _ in range(k)]
    for i, u in enumerate(ups):
        np.save(tmp_path / f"u{i}.npy", u)
    return ups


def _superpose(tmp_path, k: int, channels: np.ndarray, noise_power: float, seed: int, waveform: str) -> None:
    """The air, by hand: every client's recorded burst through its channel, summed, plus noise."""
    rng = np.random.default_rng(seed)
    bursts = [read_recording(tmp_path / f"b{i}").samples for i in range(k)]
    rx = np.zeros(len(bursts[0]) + 64, dtype=complex)
    for i, b in enumerate(bursts):
        if waveform == "ofdm":
            rx[20 : 20 + len(b)] += np.convolve(b, channels[i])[: len(b)]
        else:
            rx[20 : 20 + len(b)] += channels[i] * b
    rx += np.sqrt(noise_power / 2) * (rng.standard_normal(len(rx)) + 1j * rng.standard_normal(len(rx)))
    rec = read_recording(tmp_path / "b0")
    rec.samples, rec.annotations = rx, []
    write_recording(tmp_path / "rx", rec)


@pytest.mark.parametrize("noise_power", [0.0, 1e-3])
def test_single_carrier_recordings_decode_to_the_weighted_mean(tmp_path, noise_power):
    k, d = 4, 4001
    ups = _write_updates(tmp_path, k, d)
    rng = np.random.default_rng(7)
    h = (rng.standard_normal(k) + 1j * rng.standard_normal(k)) / np.sqrt(2)
    np.save(tmp_path / "h.npy", h)
    files = [str(tmp_path / f"u{i}.npy") for i in range(k)]
    weights = ["1", "2", "3", "4"]
    assert main(["modem", "plan", *files, "--channels", str(tmp_path / "h.npy"), "--weights", *weights,
                 "--out", str(tmp_path / "spec.json")]) == 0
    for i in range(k):
        assert main(["modem", "encode", files[i], "--spec", str(tmp_path / "spec.json"), "--client", str(i),
                     "--out", str(tmp_path / f"b{i}")]) == 0
    _superpose(tmp_path, k, h, noise_power, 3, "single_carrier")
    assert main(["modem", "decode", str(tmp_path / "rx"), "--out", str(tmp_path / "est.npy"),
                 "--report", str(tmp_path / "rep.json")]) == 0
    est = np.load(tmp_path / "est.npy")
    w = np.arange(1, 5) / 10
    exact = sum(w[i] * ups[i] for i in range(k))
    err = float(np.sum((est - exact) ** 2))
    report = json.loads((tmp_path / "rep.json").read_text())
    assert report["detected"] and report["timing_index"] == 20
    if noise_power == 0:
        assert err / np.sum(exact**2) < 1e-12  # recordings hold complex64
    else:
        spec = FrameSpec.from_dict(json.loads((tmp_path / "spec.json").read_text()))
        predicted = theory_error_variance(spec, noise_power) * d
        assert abs(10 * np.log10(err / predicted)) < 1.0


def test_ofdm_recordings_through_multipath_decode_exactly(tmp_path):
    """OFDM frame through a different 3-tap channel per client, noise-free: the exact mean."""
    from airfl.modem.ofdm import OfdmLayout

    k, d = 3, 2000
    ups = _write_updates(tmp_path, k, d, seed=1)
    rng = np.random.default_rng(2)
    taps = (rng.standard_normal((k, 3)) + 1j * rng.standard_normal((k, 3))) / np.sqrt(6)
    o = OfdmLayout()
    lags = np.arange(3) + o.backoff  # the receiver's FFT window starts `backoff` samples early
    response = taps @ np.exp(-2j * np.pi * np.outer(lags, o.used) / o.n_fft)
    np.save(tmp_path / "H.npy", response)
    files = [str(tmp_path / f"u{i}.npy") for i in range(k)]
    assert main(["modem", "plan", *files, "--channels", str(tmp_path / "H.npy"), "--waveform", "ofdm",
                 "--out", str(tmp_path / "spec.json")]) == 0
    for i in range(k):
        assert main(["modem", "encode", files[i], "--spec", str(tmp_path / "spec.json"), "--client", str(i),
                     "--out", str(tmp_path / f"b{i}")]) == 0
    _superpose(tmp_path, k, taps, 0.0, 0, "ofdm")
    assert main(["modem", "decode", str(tmp_path / "rx"), "--out", str(tmp_path / "est.npy"),
                 "--report", str(tmp_path / "rep.json")]) == 0
    exact = np.mean(ups, axis=0)
    est = np.load(tmp_path / "est.npy")
    assert np.linalg.norm(est - exact) / np.linalg.norm(exact) < 1e-6  # recordings hold complex64
    report = json.loads((tmp_path / "rep.json").read_text())
    assert len(report["aggregate_channel"]) == o.n_used


@pytest.mark.parametrize(
    "argv",
    [
        ["modem", "decode", "nowhere", "--out", "e.npy", "--report", "r.json"],
        ["modem", "encode", "missing.npy", "--spec", "missing.json", "--client", "0", "--out", "b"],
        ["modem", "plan", "missing.npy", "--out", "s.json"],
    ],
)
def test_modem_mistakes_exit_2_with_one_sentence(argv, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("airfl: ") and "\n" not in err
