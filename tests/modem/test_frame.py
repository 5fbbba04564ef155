"""Frame layouts: the cyclic-shift sounding frame and the aggregation frame."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.frame import PILOT_ROOT, PREAMBLE_ROOT, AggregationLayout, SoundingLayout
from airfl.modem.sequences import is_prime, zadoff_chu


@pytest.mark.parametrize("k", [1, 2, 5, 10, 20])
def test_sounding_length_and_shift(k):
    """N is a prime >= max(min_length, K*min_shift); the shift leaves every client > cp bins of its own."""
    lay = SoundingLayout(k)
    assert is_prime(lay.length)
    assert lay.length >= max(lay.min_length, k * lay.min_shift)
    assert lay.shift == lay.length // k
    assert lay.shift >= lay.min_shift > lay.cp
    assert lay.burst_length == lay.cp + lay.length


def test_sounding_base_is_the_pilot_zadoff_chu():
    """The base sequence is the root-PILOT_ROOT Zadoff-Chu of length N."""
    lay = SoundingLayout(3)
    np.testing.assert_array_equal(lay.base, zadoff_chu(lay.length, PILOT_ROOT))


@pytest.mark.parametrize("client", [0, 1, 4])
def test_pilot_is_shifted_base_with_cyclic_prefix(client):
    """Pilot = amplitude * [last cp samples | base rolled by client*shift]: a true cyclic prefix."""
    lay = SoundingLayout(5, cp=12, min_shift=20)
    pilot = lay.pilot(client, amplitude=0.5)
    body = 0.5 * np.roll(lay.base, client * lay.shift)
    assert pilot.shape == (lay.burst_length,)
    np.testing.assert_array_equal(pilot[lay.cp :], body)
    np.testing.assert_array_equal(pilot[: lay.cp], body[-lay.cp :])
    np.testing.assert_allclose(np.abs(pilot), 0.5, atol=1e-12)


def test_pilot_without_cyclic_prefix():
    """cp = 0 gives the bare shifted sequence."""
    lay = SoundingLayout(2, cp=0, min_shift=8)  # cp + PRECURSOR + 4 <= 8
    np.testing.assert_array_equal(lay.pilot(1), np.roll(lay.base, lay.shift))


def test_pilots_stay_orthogonal_for_delays_up_to_cp():
    """Client j's pilot delayed by up to cp samples never correlates with client k's (j != k).

    This is the property the estimator relies on: each client's response stays in its own bins.
    """
    lay = SoundingLayout(5, cp=16)
    bodies = [np.roll(lay.base, k * lay.shift) for k in range(5)]
    worst = 0.0
    for j in range(5):
        for k in range(5):
            if j == k:
                continue
            for delay in range(-lay.cp, lay.cp + 1):
                worst = max(worst, abs(np.vdot(bodies[k], np.roll(bodies[j], delay))))
    assert worst < 1e-9


@pytest.mark.parametrize("client", [-1, 3])
def test_pilot_client_index_checked(client):
    """An out-of-range client index is refused rather than wrapped around."""
    with pytest.raises(ValueError, match="client index"):
        SoundingLayout(3).pilot(client)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"n_clients": 0}, "n_clients"), ({"n_clients": 2, "cp": -1}, "cp"), ({"n_clients": 2, "cp": 16, "min_shift": 21}, "min_shift")],
)
def test_sounding_validation(kwargs, match):
    """Layouts that could not be estimated (no clients, negative cp, no noise bins) are refused."""
    with pytest.raises(ValueError, match=match):
        SoundingLayout(**kwargs)


def test_aggregation_layout():
    """Aggregation frame = Zadoff-Chu preamble (root PREAMBLE_ROOT) followed by the payload symbols."""
    lay = AggregationLayout(1000)
    np.testing.assert_array_equal(lay.preamble, zadoff_chu(127, PREAMBLE_ROOT))
    assert lay.burst_length == 127 + 1000
    short = AggregationLayout(5, preamble_length=61)
    assert short.preamble.shape == (61,)
    assert short.burst_length == 66


def test_aggregation_layout_needs_symbols():
    """An empty payload is refused."""
    with pytest.raises(ValueError, match="n_symbols"):
        AggregationLayout(0)


@pytest.mark.parametrize("length", [128, 133])  # even; a multiple of the root 7
def test_aggregation_layout_bad_preamble_length(length):
    """A preamble length with no valid Zadoff-Chu sequence raises ValueError (at latest when built)."""
    with pytest.raises(ValueError):
        AggregationLayout(10, preamble_length=length).preamble
