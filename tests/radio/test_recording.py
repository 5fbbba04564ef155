"""SigMF recordings: written with the sigmf package, validated, reopened with their metadata."""

import numpy as np
import pytest
from sigmf import sigmffile

from airfl.radio.recording import Annotation, Recording, read_recording, write_recording


def test_round_trip_keeps_samples_and_metadata(tmp_path):
    """complex64 samples, rate, centre frequency, annotations and airfl fields all come back."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(500) + 1j * rng.standard_normal(500)) * 0.3
    rec = Recording(
        x, 2e6, 915e6, "unit test", "loopback", [Annotation(0, 127, "preamble", "ZC"), Annotation(127, 373, "payload")],
        {"frame": {"eta": 0.5, "weights": [0.25, 0.75]}, "client": 3},
    )
    meta = write_recording(tmp_path / "cap", rec)
    assert meta.name == "cap.sigmf-meta" and (tmp_path / "cap.sigmf-data").stat().st_size == 500 * 8
    back = read_recording(tmp_path / "cap.sigmf-data")
    np.testing.assert_allclose(back.samples, x.astype(np.complex64), rtol=0, atol=0)
    assert (back.sample_rate_hz, back.center_freq_hz, back.description, back.hardware) == (2e6, 915e6, "unit test", "loopback")
    assert back.annotations == rec.annotations
    assert back.extra == {"frame": {"eta": 0.5, "weights": [0.25, 0.75]}, "client": 3}


def test_written_recording_validates_with_sigmf(tmp_path):
    """The sigmf package itself opens and validates what we wrote (checksum included)."""
    write_recording(tmp_path / "v", Recording(np.ones(16, dtype=complex), 1e6))
    handle = sigmffile.fromfile(str(tmp_path / "v.sigmf-meta"))
    handle.validate()
    assert handle.get_global_info()["core:datatype"] == "cf32_le"


def test_missing_recording_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no SigMF recording"):
        read_recording(tmp_path / "absent")


def test_writing_again_replaces_the_pair(tmp_path):
    """Re-writing a recording replaces both files together (the checksum matches the new data)."""
    write_recording(tmp_path / "r", Recording(np.ones(8, dtype=complex), 1e6))
    write_recording(tmp_path / "r", Recording(np.full(16, 2.0, dtype=complex), 1e6))
    back = read_recording(tmp_path / "r")
    assert len(back.samples) == 16 and np.all(back.samples == 2.0)
