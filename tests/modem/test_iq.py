"""Receiver front-end corrections: DC offset and IQ imbalance.

Imbalance model: y = mu*s + nu*conj(s), beta = nu/conj(mu). For a proper s the moment estimator
gives E[y^2] / (2 E|y|^2) = beta / (1 + |beta|^2), i.e. beta to within |beta|^2 relative.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.modem.iq import FrontEndCorrection, estimate_dc, estimate_image


def _imbalance(gain_db: float, phase_deg: float) -> tuple[complex, complex]:
    """mu, nu of a mixer whose Q branch has gain g and phase error phi relative to I."""
    g = 10 ** (gain_db / 20)
    phi = np.deg2rad(phase_deg)
    return complex((1 + g * np.exp(-1j * phi)) / 2), complex((1 - g * np.exp(1j * phi)) / 2)


def _proper_gaussian(rng: np.random.Generator, n: int) -> np.ndarray:
    return (rng.standard_normal(n) + 1j * rng.standard_normal(n)) / np.sqrt(2)


def _image_ratio_db(z: np.ndarray, tone: np.ndarray) -> float:
    """Power of the image (conj tone) relative to the tone in z, by projection (dB)."""
    signal = np.vdot(tone, z)
    image = np.vdot(np.conj(tone), z)
    return float(20 * np.log10(abs(image) / abs(signal)))


def test_default_correction_is_identity():
    """FrontEndCorrection() changes nothing; image rejection of a perfect front end is infinite."""
    x = np.array([1 + 2j, -0.5j, 3.0])
    fe = FrontEndCorrection()
    np.testing.assert_array_equal(fe.apply(x), x)
    assert fe.image_rejection_db == float("inf")


def test_apply_subtracts_dc_then_cancels_the_image():
    """apply(y) = (y - dc) - beta * conj(y - dc)."""
    rng = np.random.default_rng(0)
    y = _proper_gaussian(rng, 50)
    fe = FrontEndCorrection(dc=0.1 - 0.2j, beta=0.03 + 0.01j)
    np.testing.assert_allclose(fe.apply(y), (y - fe.dc) - fe.beta * np.conj(y - fe.dc), atol=1e-15)
    np.testing.assert_allclose(FrontEndCorrection(dc=0.5j).apply(y), y - 0.5j, atol=1e-15)


def test_image_rejection_db_is_minus_20_log_beta():
    """image_rejection_db = -20 log10 |beta|: 0.01 -> 40 dB."""
    assert FrontEndCorrection(beta=0.01j).image_rejection_db == pytest.approx(40.0, rel=1e-12)


def test_estimate_dc_from_a_quiet_window():
    """Quiet samples dc + CN(0, s2): the mean is within 4 standard errors of dc, the noise power within 3%."""
    rng = np.random.default_rng(1)
    n, s2, dc = 20_000, 0.01, 0.05 - 0.02j
    quiet = dc + np.sqrt(s2) * _proper_gaussian(rng, n)
    dc_hat, noise = estimate_dc(quiet)
    assert isinstance(dc_hat, complex)
    assert abs(dc_hat - dc) < 4 * np.sqrt(s2 / n)
    assert noise == pytest.approx(s2, rel=0.03)


def test_estimate_dc_needs_two_samples():
    """One sample gives no variance: ValueError."""
    with pytest.raises(ValueError, match="2 quiet samples"):
        estimate_dc(np.array([1.0 + 0j]))


def test_estimate_image_exact_for_an_exactly_proper_signal():
    """A multitone on positive bins only has mean(s^2) = 0 exactly: the estimate is beta/(1+|beta|^2) to rounding."""
    rng = np.random.default_rng(2)
    n = 4096
    bins = rng.choice(np.arange(1, n // 2), 200, replace=False)
    s = np.exp(2j * np.pi * (np.outer(np.arange(n), bins) / n + rng.random(200)[None, :])).sum(axis=1)
    mu, nu = _imbalance(1.0, 5.0)
    beta = nu / np.conj(mu)
    beta_hat = estimate_image(mu * s + nu * np.conj(s))
    assert beta_hat == pytest.approx(beta / (1 + abs(beta) ** 2), abs=1e-12)
    assert abs(beta_hat - beta) <= abs(beta) ** 3 * 1.01


@pytest.mark.parametrize("gain_db,phase_deg", [(1.0, 5.0), (-0.5, -3.0), (0.2, 8.0)])
def test_estimate_image_from_a_noisy_proper_signal(gain_db, phase_deg):
    """Gaussian s (1e5 samples) plus noise and a DC offset: beta within 6% (sampling std ~ 1/(2 sqrt(n) |beta|))."""
    rng = np.random.default_rng(3)
    n = 100_000
    mu, nu = _imbalance(gain_db, phase_deg)
    beta = nu / np.conj(mu)
    s = _proper_gaussian(rng, n) + np.sqrt(0.05) * _proper_gaussian(rng, n)  # thermal noise is proper too
    dc = 0.03 + 0.04j
    y = mu * s + nu * np.conj(s) + dc
    beta_hat = estimate_image(y, dc=dc)
    assert abs(beta_hat - beta) / abs(beta) < 0.06
    # ignoring the DC offset biases the estimate: dc^2 leaks into E[y^2], ~dc^2 / (2 E|y|^2)
    assert abs(estimate_image(y) - beta_hat) > 0.25 * abs(dc) ** 2 / np.mean(np.abs(y) ** 2)


def test_estimate_image_of_silence_is_zero():
    """All-zero samples: beta = 0 (no division by zero)."""
    assert estimate_image(np.zeros(10, dtype=complex)) == 0j


@pytest.mark.parametrize("gain_db,phase_deg", [(1.0, 5.0), (0.5, -2.0)])
def test_correction_improves_image_rejection_by_20_db(gain_db, phase_deg):
    """beta estimated from 1e5 samples of a proper signal, applied to a test tone: the image falls > 20 dB."""
    rng = np.random.default_rng(4)
    mu, nu = _imbalance(gain_db, phase_deg)
    s = _proper_gaussian(rng, 100_000)
    fe = FrontEndCorrection(beta=estimate_image(mu * s + nu * np.conj(s)))
    tone = np.exp(2j * np.pi * 300 * np.arange(4096) / 4096)
    y = mu * tone + nu * np.conj(tone)
    before = _image_ratio_db(y, tone)
    after = _image_ratio_db(fe.apply(y), tone)
    assert before == pytest.approx(20 * np.log10(abs(nu / mu)), abs=1e-9)
    assert after < before - 20.0
    assert fe.image_rejection_db == pytest.approx(-before, abs=1.0)


def test_exact_beta_cancels_the_image_completely():
    """With beta = nu/conj(mu) exactly, z = (mu - beta conj(nu)) s: no image at all."""
    mu, nu = _imbalance(1.5, 7.0)
    tone = np.exp(2j * np.pi * 123 * np.arange(1024) / 1024)
    z = FrontEndCorrection(beta=nu / np.conj(mu)).apply(mu * tone + nu * np.conj(tone))
    np.testing.assert_allclose(z, (mu - nu / np.conj(mu) * np.conj(nu)) * tone, atol=1e-13)
