"""Meta-learning tasks: sinusoid regression per agent and few-shot digits episodes."""

from __future__ import annotations

import numpy as np
import pytest

from airfl.fl.config_meta import MetaConfig
from airfl.fl.meta_tasks import (
    SINE_AMPLITUDE,
    SINE_PHASE,
    build_task_set,
    digits_fewshot_agents,
    disjoint_groups,
    sine_task_parameters,
    sine_tasks,
    stack_tasks,
)


def test_sine_tasks_are_sinusoids_of_their_parameters():
    rng = np.random.default_rng(0)
    params = sine_task_parameters(np.array([0.2, 0.7]), 6, 0.5, rng)
    assert np.all((params[:, 0] >= SINE_AMPLITUDE[0]) & (params[:, 0] <= SINE_AMPLITUDE[1]))
    assert np.all((params[:, 1] >= SINE_PHASE[0]) & (params[:, 1] <= SINE_PHASE[1]))
    tasks = sine_tasks(params, 10, 7, rng)
    assert tasks.support_x.shape == (6, 10, 1) and tasks.query_y.shape == (6, 7, 1)
    expected = params[:, 0, None, None] * np.sin(tasks.query_x - params[:, 1, None, None])
    np.testing.assert_allclose(tasks.query_y, expected, rtol=0, atol=1e-15)


def test_heterogeneity_moves_tasks_from_shared_to_agent_specific():
    """h = 0: the agent's centre has no effect (i.i.d. agents); h = 1: every task of an agent is the
    same (amplitude, phase), the agent's centre."""
    a = sine_task_parameters(np.array([0.1, 0.1]), 5, 0.0, np.random.default_rng(1))
    b = sine_task_parameters(np.array([0.9, 0.9]), 5, 0.0, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    one = sine_task_parameters(np.array([0.5, 0.25]), 5, 1.0, np.random.default_rng(2))
    np.testing.assert_allclose(one, np.tile([(0.1 + 5.0) / 2, np.pi / 4], (5, 1)))


def test_disjoint_groups_partition_the_classes():
    groups = disjoint_groups(3, np.random.default_rng(0))
    assert len(groups) == 3 and all(len(g) >= 3 for g in groups)
    assert sorted(np.concatenate(groups).tolist()) == list(range(10))


@pytest.mark.parametrize("split", ["skewed", "disjoint"])
def test_digits_episodes_are_n_way_k_shot_and_new_agents_see_held_out_images(split):
    train, new = digits_fewshot_agents(4, 3, 2, 2, n_way=3, k_shot=2, q_per_class=4, heterogeneity=0.8,
                                       class_split=split, seed=0)
    assert len(train) == 4 and len(new) == 3
    ep = train[0]
    assert ep.support_x.shape == (2, 6, 64) and ep.query_x.shape == (2, 12, 64)
    np.testing.assert_array_equal(np.sort(ep.support_y[0]), [0, 0, 1, 1, 2, 2])
    assert ep.support_x.min() >= 0 and ep.support_x.max() <= 1
    seen = {row.tobytes() for b in train for row in np.concatenate([b.support_x, b.query_x], axis=1).reshape(-1, 64)}
    held = {row.tobytes() for b in new for row in np.concatenate([b.support_x, b.query_x], axis=1).reshape(-1, 64)}
    assert not seen & held


def test_task_set_is_seeded_and_agents_do_not_depend_on_how_many_there_are():
    a = build_task_set(MetaConfig(agents=4, agents_per_round=2, new_agents=3), seed=5)
    b = build_task_set(MetaConfig(agents=7, agents_per_round=2, new_agents=3), seed=5)
    np.testing.assert_array_equal(stack_tasks(a.new_agents).query_y, stack_tasks(b.new_agents).query_y)
    np.testing.assert_array_equal(a.train_agents[0].support_x, b.train_agents[0].support_x)
    c = build_task_set(MetaConfig(agents=4, agents_per_round=2, new_agents=3), seed=6)
    assert not np.array_equal(a.train_agents[0].support_x, c.train_agents[0].support_x)
    assert a.kind == "regression" and a.n_features == 1 and a.n_outputs == 1
