"""FFA-LoRA: A frozen from the shared seed, only B (and the head) travel, and the over-the-air sum
of B equals ideal aggregation exactly on a noise-free air."""

import numpy as np
import pytest

pytest.importorskip("peft")

import torch  # noqa: E402
from lora_helpers import SpyAggregator, tiny_config  # noqa: E402
from rich.console import Console  # noqa: E402

from airfl.fl.aggregate import IdealAggregator  # noqa: E402
from airfl.fl.air_setup import make_aggregator  # noqa: E402
from airfl.fl.lora.adapters import is_lora_a, lora_pairs  # noqa: E402
from airfl.fl.lora.build import build_strategy, build_task, local_training  # noqa: E402
from airfl.fl.lora.strategy import product_gap  # noqa: E402
from airfl.fl.lora.trainer import FederatedLora  # noqa: E402


def _trainer(cfg, task, aggregator):
    strategy, _ = build_strategy(cfg, task)
    return FederatedLora(strategy, task, local_training(cfg), aggregator, cfg.seed)


def test_only_b_and_head_travel_and_a_never_changes():
    cfg = tiny_config(lora={"strategy": "ffa"})
    task = build_task(cfg)
    spy = SpyAggregator(IdealAggregator())
    trainer = _trainer(cfg, task, spy)
    a_before = {k: v.clone() for k, v in trainer.strategy.global_state.items() if is_lora_a(k)}
    sent = trainer.strategy.broadcast(1)
    assert sent and not any(is_lora_a(k) for k in sent)
    r = trainer.round(1)
    n_b_and_head = sum(v.numel() for v in sent.values())
    assert r.values_per_client == n_b_and_head and all(u.size == n_b_and_head for u in spy.received[0])
    for k, v in a_before.items():
        assert torch.equal(trainer.strategy.global_state[k], v)
    # the local models never trained A either
    assert all(not p.requires_grad for n, p in trainer.strategy.model.named_parameters() if ".lora_A." in n)
    # with a shared A, mean(B) @ A is the mean of the updates B_k @ A, to rounding
    assert r.product_gap is not None and r.product_gap < 1e-12


def test_noise_free_loopback_equals_ideal_aggregation():
    cfg = tiny_config(
        lora={"strategy": "ffa"},
        aggregation={"kind": "ota"},
        channel={"noise": False},
        ota={"power_control": "full"},
    )
    task = build_task(cfg)
    n_clients = len(task.clients)
    air = SpyAggregator(make_aggregator(cfg, n_clients, 1000, Console(quiet=True)))
    ideal = SpyAggregator(IdealAggregator())
    over_air, exact = _trainer(cfg, task, air), _trainer(cfg, task, ideal)
    r = over_air.round(1)
    exact.round(1)
    assert r.stats.channel_uses > 0 and r.stats.participants == list(range(n_clients))  # it went over the air
    for u_air, u_ideal in zip(air.received[0], ideal.received[0]):  # same client updates in both runs
        assert np.array_equal(u_air, u_ideal)
    est_air, est_ideal = air.estimates[0], ideal.estimates[0]
    assert np.max(np.abs(est_air - est_ideal)) <= 1e-9 * np.max(np.abs(est_ideal))
    # and so the global B (float64 at the server) and the update B @ A agree to the same precision
    g_air, g_ideal = over_air.strategy.global_state, exact.strategy.global_state
    for p in lora_pairs(g_ideal):
        w_air = g_air[p.b_key] @ g_air[p.a_key]
        w_ideal = g_ideal[p.b_key] @ g_ideal[p.a_key]
        assert float(torch.max(torch.abs(w_air - w_ideal))) <= 1e-9 * float(torch.max(torch.abs(w_ideal)))


def test_product_gap_is_zero_for_a_shared_a_and_not_otherwise():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(2, 5, generator=g, dtype=torch.float64)
    states = [{"m.lora_A.weight": a, "m.lora_B.weight": torch.randn(4, 2, generator=g, dtype=torch.float64)} for _ in range(3)]
    assert product_gap(states, [1.0, 2.0, 3.0]) < 1e-15
    for s in states:
        s["m.lora_A.weight"] = torch.randn(2, 5, generator=g, dtype=torch.float64)
    assert product_gap(states, [1.0, 2.0, 3.0]) > 0.05
