"""SA-FedLoRA: proximal term in the initiating rounds, uploads that follow the rank budget, and the
server's truncated-SVD re-factorisation to next round's rank."""

import pytest

pytest.importorskip("peft")

import torch  # noqa: E402
from lora_helpers import SpyAggregator, tiny_config  # noqa: E402

from airfl.fl.aggregate import IdealAggregator  # noqa: E402
from airfl.fl.lora.adapters import lora_pairs  # noqa: E402
from airfl.fl.lora.build import build_strategy, build_task, local_training  # noqa: E402
from airfl.fl.lora.sa_fedlora import SAFedLoRA  # noqa: E402
from airfl.fl.lora.trainer import FederatedLora  # noqa: E402

HIDDEN = 16
IN_FEATURES = 64
HEAD_VALUES = HIDDEN * 10 + 10


def test_rank_budget_drives_uploads_and_refactorisation():
    cfg = tiny_config(
        rounds=4,
        lora={
            "strategy": "sa_fedlora", "r_max": 6, "r_min": 2, "rank_schedule": "linear",
            "rank_warmup_rounds": 1, "rank_final_rounds": 1, "initiating_rounds": 2, "mu": 0.5,
        },
    )
    task = build_task(cfg)
    strategy, _ = build_strategy(cfg, task)
    assert isinstance(strategy, SAFedLoRA)
    assert strategy.schedule.ranks() == [6, 6, 4, 2]
    spy = SpyAggregator(IdealAggregator())
    trainer = FederatedLora(strategy, task, local_training(cfg), spy, cfg.seed)
    for t in range(1, 5):
        r = trainer.round(t)
        rank = strategy.schedule.rank(t)
        assert r.rank == rank
        # fc1 is 64 -> 16: rank * (64 + 16) LoRA values, plus the head
        assert r.values_per_client == rank * (IN_FEATURES + HIDDEN) + HEAD_VALUES
        assert all(u.size == r.values_per_client for u in spy.received[t - 1])
        assert r.proximal_mu == (0.5 if t <= 2 else 0.0)
        next_rank = strategy.schedule.rank(t + 1)
        for p in lora_pairs(strategy.global_state):
            a, b = strategy.global_state[p.a_key], strategy.global_state[p.b_key]
            assert a.shape == (6, IN_FEATURES) and b.shape == (HIDDEN, 6)  # the adapter stays at r_max
            assert torch.all(a[next_rank:] == 0) and torch.all(b[:, next_rank:] == 0)
            assert int(torch.linalg.matrix_rank(b @ a)) == next_rank
        # the SVD sees min(16, 64) singular values of each aggregated update and drops all but next_rank
        assert all(d.numel() == HIDDEN - next_rank for d in strategy.last_dropped.values())


def test_refactorisation_keeps_the_best_approximation_of_the_aggregate():
    cfg = tiny_config(lora={"strategy": "sa_fedlora", "r_max": 4, "r_min": 1, "rank_warmup_rounds": 0, "rank_final_rounds": 0})
    task = build_task(cfg)
    strategy, _ = build_strategy(cfg, task)
    trainer = FederatedLora(strategy, task, local_training(cfg), IdealAggregator(), cfg.seed)
    sent = strategy.broadcast(1)
    spy = SpyAggregator(IdealAggregator())
    trainer.aggregator = spy
    trainer.round(1)
    from airfl.fl.lora.adapters import add, unflatten

    aggregate = add(sent, unflatten(spy.estimates[0], sent))
    for p in lora_pairs(aggregate):
        w = aggregate[p.b_key] @ aggregate[p.a_key]
        s = torch.linalg.svdvals(w)
        next_rank = strategy.schedule.rank(2)
        w_new = strategy.global_state[p.b_key] @ strategy.global_state[p.a_key]
        assert float(torch.linalg.norm(w - w_new)) == pytest.approx(float(torch.sqrt(torch.sum(s[next_rank:] ** 2))), rel=1e-9)
