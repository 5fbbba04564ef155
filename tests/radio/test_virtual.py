"""Virtual clients: K emulated clients through their own channels, summed, sent by one transmitter."""

import numpy as np

from airfl.radio import AirConfig, ChannelConfig, LoopbackAir
from airfl.radio.virtual import VirtualClients


def _bench(noise_power: float, seed: int = 2):
    """Two 'real' radios on one air (the RF link) and four virtual clients on their own air."""
    rf = LoopbackAir(AirConfig(seed=seed, channel=ChannelConfig(fading="none", max_delay_samples=3, noise_power=noise_power)))
    bank = VirtualClients(
        4, rf.radio("tx"), AirConfig(seed=seed + 1, channel=ChannelConfig(fading="rayleigh", max_delay_samples=5))
    )
    return rf, bank, bank.receiver(rf.radio("rx"))


def test_forwarded_sum_is_each_virtual_burst_through_its_channel_then_the_rf_link():
    """What the real receiver captures = sum_k h_k x_k (virtual links, with delays) through the RF link."""
    rf, bank, rx = _bench(0.0)
    rng = np.random.default_rng(0)
    bursts = [(rng.standard_normal(50) + 1j * rng.standard_normal(50)) * 0.1 for _ in range(4)]
    for radio, x in zip(bank.clients, bursts):
        radio.transmit(x, 200)
    got = rx.receive(120, 190)
    rf_link = rf.link("tx", "rx")
    expected = np.zeros(120, dtype=complex)
    for k, x in enumerate(bursts):
        link = bank.air.link(f"virtual{k}", "virtual-sum")
        d = link.delay_samples + rf_link.delay_samples
        expected[200 + d - 190 : 200 + d - 190 + 50] += rf_link.true_gain(200) * link.true_gain(200) * x
    np.testing.assert_allclose(got, expected, atol=1e-12)
