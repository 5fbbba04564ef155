"""Over-the-air meta-pFL: device selection, learning-rate schedules, silent agents, the exact
noise-free air against ideal aggregation, and personalisation against training from scratch."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console

from airfl.fl.aggregate import AggregationStats, IdealAggregator
from airfl.fl.algorithms.compression import clip_to_norm
from airfl.fl.algorithms.meta_pfl import MetaSettings, select_agents
from airfl.fl.config import validate_config
from airfl.fl.runners.meta import build_meta_pfl

QUIET = Console(quiet=True)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is several times faster, more so on a busy machine (as the runner)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cfg(meta: dict[str, Any] | None = None, **top: Any):
    raw: dict[str, Any] = {
        "seed": 3,
        "algorithm": "meta",
        "model": {"hidden": [16]},
        "meta": {
            "agents": 5, "agents_per_round": 3, "tasks_per_agent": 2, "support": 5, "query": 5,
            "new_agents": 4, "new_agent_tasks": 2, "topk_fraction": 0.06, "compression": "dft",
            "compression_ratio": 0.6, "inner_lr": 0.02, "outer_lr": 0.3, "clip_norm": 3.0,
            "personalise_steps": 3, "personalise_lr": 0.02, **(meta or {}),
        },
        "channel": {"noise": False},
        "ota": {"power_control": "full"},
    }
    raw.update(top)
    return validate_config(raw)


def test_device_selection_is_seeded_and_uniform_without_replacement():
    picks = [select_agents(7, t, 10, 4) for t in range(1, 401)]
    assert picks[0] == select_agents(7, 1, 10, 4) and picks[0] != picks[1]
    assert all(len(set(p)) == 4 and p == sorted(p) for p in picks)
    counts = np.bincount(np.concatenate(picks), minlength=10)
    assert counts.min() > 0.8 * 160 and counts.max() < 1.2 * 160  # each agent ~ 400 * 4/10 times


def test_learning_rate_schedules():
    constant = MetaSettings(outer_lr=0.3)
    decaying = MetaSettings(outer_lr=0.3, lr_schedule="decaying", lr_decay_rounds=10.0)
    assert constant.outer_lr_at(1) == constant.outer_lr_at(500) == 0.3
    assert decaying.outer_lr_at(1) == 0.3
    assert decaying.outer_lr_at(31) == pytest.approx(0.3 / 2.0)


def test_clip_bounds_the_norm_only_when_longer():
    g = np.array([3.0, 4.0])
    np.testing.assert_allclose(clip_to_norm(g, 1.0), [0.6, 0.8])
    np.testing.assert_array_equal(clip_to_norm(g, 10.0), g)
    np.testing.assert_array_equal(clip_to_norm(g, 0.0), g)


def test_over_the_air_with_every_impairment_off_equals_ideal_meta_training():
    """Noise-free air (fading and delays still on, full channel inversion so nobody is truncated),
    with top-k, error feedback, a DFT sketch and IHT: the meta-model follows the ideal run to
    numerical precision, round after round, under the same seed."""
    cfg = _cfg()
    ota = build_meta_pfl(cfg, "config", QUIET)
    ideal = build_meta_pfl(cfg, "ideal", QUIET)
    torch.testing.assert_close(ota.theta, ideal.theta, rtol=0, atol=0)
    for t in range(1, 6):
        a, b = ota.round(t), ideal.round(t)
        assert a.selected == b.selected and a.stats.participants == [0, 1, 2]
        assert a.stats.channel_uses > 0 and b.stats.channel_uses == 0  # one really went over the air
        assert a.stats.nmse < 1e-20
        scale = float(ideal.theta.norm())
        assert float((ota.theta - ideal.theta).norm()) <= 1e-9 * scale
        assert a.evaluation.new_agents.loss == pytest.approx(b.evaluation.new_agents.loss, rel=1e-9)
    np.testing.assert_allclose(ota.codec.feedback.memory, ideal.codec.feedback.memory, rtol=0, atol=1e-9)


class _DropFirst:
    """An aggregator whose first client stays silent (as in a deep fade)."""

    def aggregate(self, updates, weights):
        estimate, stats = IdealAggregator().aggregate(updates[1:], weights[1:])
        return estimate, AggregationStats([p + 1 for p in stats.participants], truncated=[0])


def test_an_agent_that_stays_silent_keeps_its_whole_update_in_memory():
    run = build_meta_pfl(_cfg(), "ideal", QUIET)
    run.aggregator_for = lambda devices: _DropFirst()
    r = run.round(1)
    silent, heard = r.selected[0], r.selected[1]
    assert r.applied
    assert np.count_nonzero(run.codec.feedback.memory[silent]) == run.codec.d  # nothing was sent
    assert np.count_nonzero(run.codec.feedback.memory[heard]) == run.codec.d - run.codec.k


def test_personalisation_from_the_meta_model_beats_training_from_scratch():
    """After a short meta-training (ideal aggregation), new agents fine-tuned from the meta-model
    reach a lower query loss than the same steps from the random initialisation."""
    cfg = _cfg({"agents": 8, "agents_per_round": 4, "tasks_per_agent": 3, "support": 10, "query": 10,
                "new_agents": 10, "new_agent_tasks": 3, "compression": "none", "topk_fraction": 1.0,
                "personalise_steps": 5}, model={"hidden": [32, 32]})
    run = build_meta_pfl(cfg, "ideal", QUIET)
    scratch = run.evaluate().new_agents.loss
    for t in range(1, 41):
        run.round(t)
    meta = run.evaluate().new_agents.loss
    assert meta < 0.7 * scratch
