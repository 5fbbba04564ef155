"""The round protocol over virtual clients: K emulated clients summed, one real RF link (the two-radio lab)."""

import numpy as np

from airfl.fl.ota import OtaSettings, OverTheAirRound
from airfl.radio import AirConfig, ChannelConfig, LoopbackAir
from airfl.radio.virtual import VirtualClients


def _bench(noise_power: float, seed: int = 2):
    rf = LoopbackAir(AirConfig(seed=seed, channel=ChannelConfig(fading="none", max_delay_samples=3, noise_power=noise_power)))
    bank = VirtualClients(
        4, rf.radio("tx"), AirConfig(seed=seed + 1, channel=ChannelConfig(fading="rayleigh", max_delay_samples=5))
    )
    return rf, bank, bank.receiver(rf.radio("rx"))


def test_a_full_over_the_air_round_through_virtual_clients_is_exact_without_noise():
    """The round protocol runs unchanged over the virtual clients and one real link: exact sum."""
    _, bank, rx = _bench(0.0)
    ota = OverTheAirRound(bank.clients, rx, 1e6, OtaSettings(truncation="full"))
    rng = np.random.default_rng(1)
    for _ in range(3):
        ups = [rng.standard_normal(1001) for _ in range(4)]
        result = ota.run(ups, np.ones(4))
        exact = result.exact_target(ups)
        assert np.linalg.norm(result.estimate - exact) / np.linalg.norm(exact) < 1e-9


def test_virtual_clients_run_fedavg_over_the_air(tmp_path):
    """FedAvg through virtual clients and a noisy RF link learns (accuracy far above chance)."""
    from airfl.fl.aggregate import OverTheAirAggregator
    from airfl.fl.algorithms.fedavg import FedAvg, LocalTraining
    from airfl.fl.data import load_federated_digits
    from airfl.fl.models import mlp

    rf = LoopbackAir(AirConfig(seed=5, channel=ChannelConfig(fading="none", max_delay_samples=2, noise_power=1e-4)))
    bank = VirtualClients(4, rf.radio("tx"), AirConfig(seed=6, channel=ChannelConfig(max_delay_samples=4)))
    aggregator = OverTheAirAggregator(OverTheAirRound(bank.clients, bank.receiver(rf.radio("rx")), 1e6, OtaSettings()))
    data = load_federated_digits(4, 0.5, seed=0)
    fed = FedAvg(lambda: mlp(64, [32], 10), data, LocalTraining(lr=0.1), aggregator, seed=0)
    accuracy = [fed.round(t).accuracy for t in range(1, 7)]
    assert accuracy[-1] > 0.7
