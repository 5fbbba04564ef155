"""Common-scale normalisation and truncated channel inversion (DESIGN.md section 2, steps 1 and 4)."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.mapping import reals_to_symbols
from airfl.modem.power import (
    CommonScale,
    common_scale,
    denormalise,
    error_variance_per_value,
    normalise,
    truncated_inversion,
    update_statistics,
)


def _clients(seed: int, k: int, d: int) -> tuple[list[np.ndarray], np.ndarray]:
    """K heterogeneous updates (different means and spreads) and random weights summing to 1."""
    rng = np.random.default_rng(seed)
    updates = [rng.normal(rng.normal(0, 2), rng.uniform(0.1, 5.0), d) for _ in range(k)]
    w = rng.uniform(0.2, 1.0, k)
    return updates, w / w.sum()


def _symbol_power(update: np.ndarray, weight: float, scale: CommonScale) -> float:
    return float(np.mean(np.abs(reals_to_symbols(normalise(update, weight, scale))) ** 2))


def test_update_statistics():
    """The control-plane report is the mean, variance and size of the update."""
    g = np.array([1.0, -2.0, 4.0])
    s = update_statistics(g)
    assert (s.mean, s.variance, s.n_values) == (pytest.approx(1.0), pytest.approx(6.0), 3)


@pytest.mark.parametrize("seed,k", [(0, 1), (1, 2), (2, 5), (3, 10)])
def test_common_scale_bounds_every_clients_power(seed, k):
    """Every client's normalised symbols have mean power <= 1, and the worst client has exactly 1.

    This is what lets one per-client power limit P hold for every participant at once.
    """
    updates, w = _clients(seed, k, 2000)
    scale = common_scale([update_statistics(g) for g in updates], w)
    powers = np.array([_symbol_power(g, wk, scale) for g, wk in zip(updates, w)])
    assert np.all(powers <= 1.0 + 1e-12)
    assert powers.max() == pytest.approx(1.0, rel=1e-9)


def test_common_scale_odd_length_stays_below_one():
    """With an odd d the zero padding only lowers the power (worst client: d/(d+1)), still <= 1."""
    updates, w = _clients(4, 4, 1001)
    scale = common_scale([update_statistics(g) for g in updates], w)
    powers = [_symbol_power(g, wk, scale) for g, wk in zip(updates, w)]
    assert max(powers) <= 1.0
    # worst client: mean x^2 = 1/2 over 1001 reals, spread over 501 symbols
    assert max(powers) == pytest.approx(1001 / 1002, rel=1e-9)


def test_common_scale_offset_is_weighted_mean():
    """The broadcast offset is the weighted mean of the clients' means (it is added back after the sum)."""
    updates, w = _clients(5, 3, 500)
    scale = common_scale([update_statistics(g) for g in updates], w)
    assert scale.offset == pytest.approx(float(np.dot(w, [g.mean() for g in updates])), rel=1e-12)
    assert scale.scale > 0


def test_common_scale_constant_updates_fall_back_to_unit_scale():
    """If every update equals the offset there is nothing to send: scale 1, zero symbols, exact sum back."""
    updates = [np.full(6, 2.5), np.full(6, 2.5)]
    w = np.array([0.5, 0.5])
    scale = common_scale([update_statistics(g) for g in updates], w)
    assert scale == CommonScale(offset=2.5, scale=1.0)
    assert np.all(normalise(updates[0], 0.5, scale) == 0.0)
    np.testing.assert_allclose(denormalise(np.zeros(6), 1.0, scale), 2.5)


def test_common_scale_needs_a_client():
    """No participants, no scale: a clear ValueError instead of a NaN broadcast."""
    with pytest.raises(ValueError):
        common_scale([], np.array([]))


def test_common_scale_is_accurate_for_large_offsets():
    """Updates far from zero (mean 1e4, spread 1e-4, all exactly representable) still get worst power 1."""
    rng = np.random.default_rng(0)
    updates = [1e4 + 1e-4 * rng.standard_normal(1000) for _ in range(3)]
    w = np.full(3, 1 / 3)
    scale = common_scale([update_statistics(g) for g in updates], w)
    powers = [_symbol_power(g, wk, scale) for g, wk in zip(updates, w)]
    assert max(powers) == pytest.approx(1.0, rel=1e-3)


def test_normalise_denormalise_round_trip_single_client():
    """denormalise(normalise(g, w)) with total weight w returns w*g."""
    g = np.random.default_rng(6).normal(3.0, 2.0, 101)
    scale = CommonScale(offset=1.7, scale=4.2)
    np.testing.assert_allclose(denormalise(normalise(g, 0.25, scale), 0.25, scale), 0.25 * g, rtol=1e-13)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_normalise_denormalise_round_trip_of_the_sum(k):
    """Summing normalised updates and de-normalising gives the weighted sum exactly (the air's job)."""
    updates, w = _clients(10 + k, k, 257)
    scale = common_scale([update_statistics(g) for g in updates], w)
    air_sum = np.sum([normalise(g, wk, scale) for g, wk in zip(updates, w)], axis=0)
    exact = np.sum([wk * g for g, wk in zip(updates, w)], axis=0)
    np.testing.assert_allclose(denormalise(air_sum, w.sum(), scale), exact, rtol=1e-12, atol=1e-12)


def _channels(seed: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(k) + 1j * rng.standard_normal(k)) / np.sqrt(2)


@pytest.mark.parametrize("seed", range(4))
def test_truncated_inversion_aligns_actives(seed):
    """h_k * b_k = sqrt(eta) for every active client: they all arrive with the same real gain."""
    h = _channels(seed, 8)
    pc = truncated_inversion(h, 0.1, 0.0)
    np.testing.assert_allclose(h[pc.active] * pc.precoders[pc.active], np.sqrt(pc.eta), rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_truncated_inversion_respects_power_limit(seed):
    """|b_k|^2 <= P for every client, with equality for the weakest participant (it sets eta)."""
    p = 0.3
    h = _channels(seed, 8)
    pc = truncated_inversion(h, p, 0.2)
    b2 = np.abs(pc.precoders) ** 2
    assert np.all(b2 <= p * (1 + 1e-12))
    weakest = np.flatnonzero(pc.active)[np.argmin(np.abs(h[pc.active]))]
    assert b2[weakest] == pytest.approx(p, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_truncated_inversion_eta_and_threshold(seed):
    """eta = P * min |h_k|^2 over actives; exactly the clients with |h_k|^2 < threshold stay silent (b_k = 0)."""
    p, threshold = 0.1, 0.5
    h = _channels(seed, 12)
    pc = truncated_inversion(h, p, threshold)
    g2 = np.abs(h) ** 2
    np.testing.assert_array_equal(pc.active, g2 >= threshold)
    assert pc.n_active == int(np.sum(g2 >= threshold))
    assert pc.eta == pytest.approx(p * g2[g2 >= threshold].min(), rel=1e-12)
    assert np.all(pc.precoders[~pc.active] == 0)


def test_truncated_inversion_threshold_zero_is_full_inversion():
    """Threshold 0: everybody with a non-zero channel transmits, eta set by the deepest fade."""
    h = np.array([1.0, 0.01j, -0.5 + 0.5j])
    pc = truncated_inversion(h, 1.0, 0.0)
    assert pc.active.all()
    assert pc.eta == pytest.approx(1e-4, rel=1e-12)


def test_truncated_inversion_zero_channel_is_never_active():
    """A client with h = 0 cannot be inverted and stays silent even under full inversion."""
    pc = truncated_inversion(np.array([0.0, 1.0]), 1.0, 0.0)
    np.testing.assert_array_equal(pc.active, [False, True])
    assert pc.precoders[0] == 0


def test_truncated_inversion_nobody_above_threshold():
    """All in deep fade: no participants, eta 0, all precoders 0 (the caller reports the failure)."""
    pc = truncated_inversion(np.array([0.1, 0.2j]), 1.0, 1.0)
    assert pc.n_active == 0 and pc.eta == 0.0
    assert np.all(pc.precoders == 0)


@pytest.mark.parametrize("p", [0.0, -1.0])
def test_truncated_inversion_needs_positive_power(p):
    """A non-positive power limit is a configuration error."""
    with pytest.raises(ValueError, match="tx_power"):
        truncated_inversion(np.array([1.0]), p, 0.0)


def test_error_variance_formula():
    """Theory: noise_power / (2 eta) * scale^2 per real value; infinite when nobody transmitted."""
    scale = CommonScale(offset=0.0, scale=3.0)
    assert error_variance_per_value(0.02, 0.5, scale) == pytest.approx(0.02 / 1.0 * 9.0)
    assert error_variance_per_value(0.02, 0.0, scale) == float("inf")
