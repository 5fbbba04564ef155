"""PFTT: the global adapter travels, each client's local LoRA never does (asserted on exactly what
the aggregator receives), and it personalises the client's model."""

import numpy as np
import pytest

pytest.importorskip("peft")

import torch  # noqa: E402
from lora_helpers import SpyAggregator, tiny_config  # noqa: E402

from airfl.fl.aggregate import IdealAggregator  # noqa: E402
from airfl.fl.lora.adapters import adapter_state, count_values, flatten  # noqa: E402
from airfl.fl.lora.build import build_strategy, build_task, local_training  # noqa: E402
from airfl.fl.lora.pftt import GLOBAL, LOCAL, PFTT  # noqa: E402
from airfl.fl.lora.trainer import FederatedLora  # noqa: E402


def test_local_lora_never_reaches_the_aggregator():
    cfg = tiny_config(lora={"strategy": "pftt", "rank": 2, "local_rank": 3})
    task = build_task(cfg)
    strategy, _ = build_strategy(cfg, task)
    assert isinstance(strategy, PFTT)
    spy = SpyAggregator(IdealAggregator())
    trainer = FederatedLora(strategy, task, local_training(cfg), spy, cfg.seed)
    initial_local = [{k: v.clone() for k, v in s.items()} for s in strategy.local_states]
    n_global = count_values(strategy.global_state)
    n_local = count_values(strategy.local_states[0])
    assert n_global != n_local

    local_values: list[np.ndarray] = []
    for t in (1, 2):
        before = [flatten(s) for s in strategy.local_states]
        trainer.round(t)
        for k, state in enumerate(strategy.local_states):
            after = flatten(state)
            change = after - before[k]
            # the local tensors, and their change this round; changes of a few float32 ulps are left
            # out, as the global adapter's own tiny changes can coincide with them by chance
            local_values += [after, change[np.abs(change) > 1e-4]]

    received = [u for round_updates in spy.received for u in round_updates]
    assert len(received) == 2 * len(task.clients)
    assert all(u.size == n_global for u in received)  # the size of the global adapter, every time
    sent_pool = np.concatenate(received)
    for values in local_values:
        nonzero = values[values != 0]
        assert nonzero.size > 0
        assert not np.isin(nonzero, sent_pool).any(), "a local LoRA value was handed to the aggregator"
    # the local LoRAs trained, each its own way, and stayed with their clients
    for k, state in enumerate(strategy.local_states):
        assert any(not torch.equal(state[key], initial_local[k][key]) for key in state)
    assert not torch.equal(flatten_t(strategy.local_states[0]), flatten_t(strategy.local_states[1]))


def flatten_t(state):
    return torch.from_numpy(flatten(state))


def test_personal_model_adds_the_local_lora_and_global_model_does_not():
    cfg = tiny_config(lora={"strategy": "pftt"})
    task = build_task(cfg)
    strategy, _ = build_strategy(cfg, task)
    trainer = FederatedLora(strategy, task, local_training(cfg), IdealAggregator(), cfg.seed)
    r = trainer.round(1)
    x = task.test.inputs["x"][:16]
    with torch.no_grad():
        global_out = strategy.global_model()(x=x).clone()
        personal_out = [strategy.personal_model(k)(x=x).clone() for k in range(len(task.clients))]
    assert all(not torch.allclose(p, global_out) for p in personal_out)
    assert strategy.model.active_adapters == [GLOBAL, LOCAL]
    # the global adapter in the personal model is the aggregated one: the same for everyone
    for k in range(len(task.clients)):
        strategy.personal_model(k)
        g = adapter_state(strategy.model, GLOBAL)
        assert all(torch.allclose(g[key].double(), strategy.global_state[key].float().double()) for key in g)
    assert len(r.personalised) == len(task.clients) and all(0 <= a <= 1 for a in r.personalised)
