"""End to end: OverTheAirRound (sound, feed back, transmit together, receive) on the loopback air.

(a) exact sum when the air is noise-free (fading and integer delays on); (b) with noise, the NMSE
against truncated-inversion theory computed from the air's TRUTH; (c) non-finite updates are
refused before anything goes on the air.

SNR definition used here (as in benchmarks/aircomp.py): average receive SNR per client at full power,
SNR = P * E|h|^2 / sigma^2 with E|h|^2 = 1 (0 dB path loss, unit-power Rayleigh), so
sigma^2 = P / 10^(SNR/10), sigma^2 being the complex noise power per sample at the server.
"""

from __future__ import annotations

import numpy as np
import pytest

from airfl.fl.ota import OtaSettings, OverTheAirRound
from airfl.modem import common_scale, update_statistics
from airfl.radio import AirConfig, ChannelConfig, LoopbackAir

RATE = 1e6


def _air(seed: int, noise_power: float, max_delay: int = 8) -> LoopbackAir:
    # coherence time = OtaSettings().frame_period_s: every round is one fresh fading block
    channel = ChannelConfig(fading="rayleigh", coherence_time_s=0.02, max_delay_samples=max_delay, noise_power=noise_power)
    return LoopbackAir(AirConfig(seed=seed, sample_rate_hz=RATE, channel=channel))


def _round(air: LoopbackAir, k: int, settings: OtaSettings | None = None, radios=None) -> OverTheAirRound:
    clients = radios if radios is not None else [air.radio(f"client{i}") for i in range(k)]
    return OverTheAirRound(clients, air.radio("server"), RATE, settings)


def _exact(result, updates) -> np.ndarray:
    return np.sum([result.weights[k] * updates[k] for k in result.participants], axis=0)


def test_noise_free_round_returns_the_exact_weighted_sum():
    """Noise-free air with Rayleigh fading and delays up to the cyclic prefix: relative error < 1e-9,
    weights renormalised over the participants, timing advances absorbing each client's delay."""
    air = _air(seed=1, noise_power=0.0, max_delay=16)
    k, d = 6, 1001
    ota = _round(air, k)
    rng = np.random.default_rng(1)
    weights = rng.uniform(1, 3, k)
    delays = {air.link(f"client{i}", "server").delay_samples for i in range(k)}
    assert len(delays) > 1  # the clients really are misaligned on the air
    for _ in range(4):
        updates = [rng.normal(rng.normal(), rng.uniform(0.5, 2), d) for _ in range(k)]
        result = ota.run(updates, weights)
        assert result.failure is None and result.rejected == []
        assert sorted(result.participants + result.truncated) == list(range(k))
        assert result.weights.sum() == pytest.approx(1.0)
        exact = _exact(result, updates)
        assert np.linalg.norm(result.estimate - exact) / np.linalg.norm(exact) < 1e-9
        assert result.alignment == pytest.approx(1.0, abs=1e-9)
        measured = [result.client_delay[i] for i in range(k)]
        np.testing.assert_allclose(measured, [air.link(f"client{i}", "server").delay_samples for i in range(k)], atol=1e-9)


@pytest.mark.parametrize(
    "updates,weights,match",
    [
        ([np.ones(4)], [1.0, 1.0], "updates"),  # one update for two radios
        ([np.ones(4), np.ones(4)], [0.0, 0.0], "weights"),  # all-zero weights
        ([np.ones(4), np.ones(4)], [1.0, -1.0], "weights"),  # negative weight
        ([np.ones(4), np.ones(4)], [1.0, np.nan], "weights"),  # non-finite weight
        ([np.ones(4), np.ones(5)], [1.0, 1.0], "same length"),  # ragged updates
    ],
)
def test_round_input_checks(updates, weights, match):
    """Malformed calls raise ValueError before anything is transmitted (no half round on the air)."""
    air = _air(0, 0.0)
    with pytest.raises(ValueError, match=match):
        _round(air, 2).run(updates, weights)
    assert air.samples_transmitted == 0


def test_round_needs_a_client_radio():
    """An over-the-air round without client radios is a configuration error."""
    air = _air(0, 0.0)
    with pytest.raises(ValueError, match="client"):
        OverTheAirRound([], air.radio("server"), RATE)


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0, 30.0])
def test_nmse_matches_truncated_inversion_theory(snr_db):
    """K = 10, d = 20000, 20 rounds: measured NMSE within 1 dB of sigma^2 * scale^2 / (2 eta_true) per value,
    eta_true = P * min over participants of |h_k|^2 from the loopback's truth; also within 1 dB of the
    receiver's own prediction (result.error_variance_theory)."""
    k, d, rounds = 10, 20_000, 20
    settings = OtaSettings()
    noise = settings.tx_power / 10 ** (snr_db / 10)
    air = _air(seed=7, noise_power=noise)
    ota = _round(air, k, settings)
    rng = np.random.default_rng(int(snr_db) + 100)
    weights = np.full(k, 1.0 / k)
    err = exact_energy = theory_true = theory_rx = 0.0
    for _ in range(rounds):
        updates = [rng.normal(rng.normal(0, 0.5), rng.uniform(0.5, 2.0), d) for _ in range(k)]
        result = ota.run(updates, weights)
        assert result.failure is None, result.failure
        exact = _exact(result, updates)
        part = result.participants
        scale = common_scale([update_statistics(updates[j]) for j in part], result.weights[part])
        # Truth: the gain each participant's payload met. It was sent at payload_at - d_k (timing advance)
        # and arrived at payload_at; true_gain takes the send time. (Same block as payload_at here.)
        t1 = result.timing["payload_at"]
        gains2 = []
        for j in part:
            link = air.link(f"client{j}", "server")
            gains2.append(abs(link.true_gain(t1 - link.delay_samples)) ** 2)
        eta_true = settings.tx_power * min(gains2)
        err += float(np.sum((result.estimate - exact) ** 2))
        exact_energy += float(np.sum(exact**2))
        theory_true += d * noise * scale.scale**2 / (2 * eta_true)
        theory_rx += d * result.error_variance_theory
    measured_db = 10 * np.log10(err / exact_energy)
    assert measured_db == pytest.approx(10 * np.log10(theory_true / exact_energy), abs=1.0)
    assert measured_db == pytest.approx(10 * np.log10(theory_rx / exact_energy), abs=1.0)


class SpyRadio:
    """Wraps a radio and records every transmit call (bursts and times) before passing it on."""

    def __init__(self, inner):
        self.inner = inner
        self.transmits: list[tuple[int, int]] = []

    name = property(lambda self: self.inner.name)
    capabilities = property(lambda self: self.inner.capabilities)

    def configure(self, config):
        self.inner.configure(config)

    def now(self):
        return self.inner.now()

    def transmit(self, samples, at_sample):
        self.transmits.append((len(samples), int(at_sample)))
        self.inner.transmit(samples, at_sample)

    def receive(self, n_samples, at_sample):
        return self.inner.receive(n_samples, at_sample)

    def close(self):
        self.inner.close()


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_update_is_never_transmitted(bad_value):
    """A client whose update holds NaN/Inf never calls transmit; the others complete the round exactly
    and result.rejected names the bad client."""
    air = _air(seed=3, noise_power=0.0)
    k, d, bad = 4, 300, 2
    spies = [SpyRadio(air.radio(f"client{i}")) for i in range(k)]
    ota = _round(air, k, OtaSettings(truncation_threshold_db=None), radios=spies)
    rng = np.random.default_rng(3)
    updates = [rng.standard_normal(d) for _ in range(k)]
    updates[bad][17] = bad_value
    result = ota.run(updates, [1.0] * k)
    assert spies[bad].transmits == []
    assert result.rejected == [bad]
    assert result.participants == [0, 1, 3]
    assert result.weights[bad] == 0
    # the air carried exactly the others' pilots and payloads
    sent = sum(n for spy in spies for n, _ in spy.transmits)
    assert air.samples_transmitted == sent
    # acquisition tone (first round), pilot, payload
    assert all(len(spies[i].transmits) == 3 for i in (0, 1, 3))
    exact = _exact(result, updates)
    assert np.linalg.norm(result.estimate - exact) / np.linalg.norm(exact) < 1e-9


def test_all_updates_non_finite_sends_nothing():
    """If every update is non-finite the round fails cleanly and the air stays silent."""
    air = _air(seed=4, noise_power=0.0)
    result = _round(air, 2).run([np.full(4, np.nan), np.array([1.0, np.inf, 0, 0])], [1.0, 1.0])
    assert result.estimate is None and result.failure
    assert result.rejected == [0, 1] and result.participants == []
    assert air.samples_transmitted == 0
