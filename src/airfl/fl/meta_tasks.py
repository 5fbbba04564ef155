"""Meta-learning tasks that need no download: sinusoid regression and few-shot digits.

A *task* is a small supervised problem with a support set (to adapt on) and a query set (to score
on). An *agent* holds a fixed set of tasks drawn from its own task distribution; agents differ by
`heterogeneity` in [0, 1] (0: every agent draws from the same distribution, 1: as different as the
family allows). *New agents* draw their distributions from the same hyper-distribution as training
agents but are never seen in training; for digits they also only see held-out images.

Sinusoid (Finn et al. 2017): y = A sin(x - phi), x ~ U[-5, 5], amplitude A in [0.1, 5], phase phi
in [0, pi]. Agent k has a centre c_k ~ U[0, 1]^2 and draws each task's (A, phi) as
lo + (hi - lo) * (h c_k + (1 - h) u), u ~ U[0, 1]^2: h = 0 is i.i.d. agents, h = 1 gives an agent a
single task.

Few-shot digits: N-way K-shot episodes over scikit-learn's 8x8 digits (features in [0, 1]); the
labels 0..N-1 are a random assignment of the episode's N classes, fixed per task. Class choice per
agent: "skewed" draws N classes without replacement with probabilities (1 - h)/10 + h p_k,
p_k ~ Dirichlet(1); "disjoint" gives agent k the group k mod G of a seeded partition of the ten
classes into G = 10 // N groups (so agents in different groups never share a class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from airfl.fl.config_meta import MetaConfig

TaskKind = Literal["regression", "classification"]

SINE_AMPLITUDE = (0.1, 5.0)
SINE_PHASE = (0.0, np.pi)
SINE_X = (-5.0, 5.0)
DIGITS_CLASSES = 10


@dataclass(frozen=True)
class TaskBatch:
    """T tasks of one shape: support_x (T, S, F), support_y (T, S, 1) float64 for regression or
    (T, S) int64 for classification; query_x / query_y the same with Q samples."""

    support_x: np.ndarray
    support_y: np.ndarray
    query_x: np.ndarray
    query_y: np.ndarray

    def __len__(self) -> int:
        return int(self.support_x.shape[0])


@dataclass(frozen=True)
class MetaTaskSet:
    """Training agents' and new agents' tasks, one TaskBatch per agent."""

    train_agents: list[TaskBatch]
    new_agents: list[TaskBatch]
    kind: TaskKind
    n_features: int
    n_outputs: int


def stack_tasks(batches: list[TaskBatch]) -> TaskBatch:
    """All tasks of several agents as one batch (agents must share support and query sizes)."""
    return TaskBatch(*(np.concatenate([getattr(b, f) for b in batches]) for f in TaskBatch.__dataclass_fields__))


# --------------------------------------------------------------------------------------------------
# Sinusoid regression


def sine_agent_centres(n_agents: int, rng: np.random.Generator) -> np.ndarray:
    """Each agent's centre in the unit square of (amplitude, phase) ranges, shape (n_agents, 2)."""
    return rng.uniform(0.0, 1.0, (n_agents, 2))


def sine_task_parameters(
    centre: np.ndarray, n_tasks: int, heterogeneity: float, rng: np.random.Generator
) -> np.ndarray:
    """(amplitude, phase) per task, shape (n_tasks, 2): lo + (hi - lo) (h c + (1 - h) u)."""
    u = rng.uniform(0.0, 1.0, (n_tasks, 2))
    mix = heterogeneity * centre[None, :] + (1.0 - heterogeneity) * u
    lo = np.array([SINE_AMPLITUDE[0], SINE_PHASE[0]])
    hi = np.array([SINE_AMPLITUDE[1], SINE_PHASE[1]])
    return lo + (hi - lo) * mix


def sine_tasks(params: np.ndarray, support: int, query: int, rng: np.random.Generator) -> TaskBatch:
    """Support and query samples y = A sin(x - phi) for every (A, phi) row of `params`."""
    n = len(params)
    x = rng.uniform(SINE_X[0], SINE_X[1], (n, support + query, 1))
    y = params[:, 0, None, None] * np.sin(x - params[:, 1, None, None])
    return TaskBatch(x[:, :support], y[:, :support], x[:, support:], y[:, support:])


def sine_agents(
    n_agents: int, tasks_per_agent: int, support: int, query: int, heterogeneity: float, rng: np.random.Generator
) -> list[TaskBatch]:
    """`n_agents` agents, each with `tasks_per_agent` fixed sinusoid tasks from its own distribution.

    Agents are drawn one after the other, so the first n agents do not depend on how many follow.
    """
    agents = []
    for _ in range(n_agents):
        centre = sine_agent_centres(1, rng)[0]
        params = sine_task_parameters(centre, tasks_per_agent, heterogeneity, rng)
        agents.append(sine_tasks(params, support, query, rng))
    return agents


# --------------------------------------------------------------------------------------------------
# Few-shot digits


def class_probabilities(n_agents: int, heterogeneity: float, rng: np.random.Generator) -> np.ndarray:
    """Skewed class preferences per agent, shape (n_agents, 10): (1 - h)/10 + h Dirichlet(1)."""
    p = rng.dirichlet(np.ones(DIGITS_CLASSES), n_agents)
    return (1.0 - heterogeneity) / DIGITS_CLASSES + heterogeneity * p


def disjoint_groups(n_way: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A seeded partition of the ten classes into groups of at least `n_way` classes (as many
    groups as fit: 10 // n_way; the remainder joins the last group)."""
    order = rng.permutation(DIGITS_CLASSES)
    n_groups = max(1, DIGITS_CLASSES // n_way)
    return [np.sort(g) for g in np.array_split(order, n_groups)]


def digits_episode(
    x: np.ndarray, y: np.ndarray, classes: np.ndarray, k_shot: int, q_per_class: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One N-way episode over `classes` (labels 0..N-1 in the given order): support and query."""
    sx, sy, qx, qy = [], [], [], []
    for label, c in enumerate(classes):
        idx = rng.choice(np.flatnonzero(y == c), k_shot + q_per_class, replace=False)
        sx.append(x[idx[:k_shot]])
        qx.append(x[idx[k_shot:]])
        sy.append(np.full(k_shot, label, dtype=np.int64))
        qy.append(np.full(q_per_class, label, dtype=np.int64))
    return np.concatenate(sx), np.concatenate(sy), np.concatenate(qx), np.concatenate(qy)


def _digits_agents(
    x: np.ndarray, y: np.ndarray, n_agents: int, tasks_per_agent: int, n_way: int, k_shot: int, q_per_class: int,
    heterogeneity: float, class_split: Literal["skewed", "disjoint"], groups: list[np.ndarray],
    rng: np.random.Generator,
) -> list[TaskBatch]:
    probs = class_probabilities(n_agents, heterogeneity, rng)
    agents: list[TaskBatch] = []
    for k in range(n_agents):
        episodes = []
        for _ in range(tasks_per_agent):
            if class_split == "disjoint":
                classes = rng.choice(groups[k % len(groups)], n_way, replace=False)
            else:
                classes = rng.choice(DIGITS_CLASSES, n_way, replace=False, p=probs[k])
            episodes.append(digits_episode(x, y, classes, k_shot, q_per_class, rng))
        agents.append(TaskBatch(*(np.stack(parts) for parts in zip(*episodes))))
    return agents


def digits_fewshot_agents(
    n_train: int, n_new: int, tasks_per_agent: int, new_agent_tasks: int, n_way: int, k_shot: int,
    q_per_class: int, heterogeneity: float, class_split: Literal["skewed", "disjoint"], seed: int,
    heldout_fraction: float = 0.3,
) -> tuple[list[TaskBatch], list[TaskBatch]]:
    """Training agents' episodes from one pool of images, new agents' from a held-out pool."""
    bunch = load_digits()
    x = bunch.data / 16.0
    y = bunch.target.astype(np.int64)
    x_a, x_b, y_a, y_b = train_test_split(x, y, test_size=heldout_fraction, random_state=seed, stratify=y)
    need = k_shot + q_per_class
    if need > np.bincount(y_b).min():
        raise ValueError(
            f"meta.support + meta.query ({need} images per class) exceeds the {np.bincount(y_b).min()} held-out "
            "images of the rarest digit; use fewer shots"
        )
    groups = disjoint_groups(n_way, np.random.default_rng([seed, 4]))
    train = _digits_agents(x_a, y_a, n_train, tasks_per_agent, n_way, k_shot, q_per_class, heterogeneity,
                           class_split, groups, np.random.default_rng([seed, 1]))
    new = _digits_agents(x_b, y_b, n_new, new_agent_tasks, n_way, k_shot, q_per_class, heterogeneity,
                         class_split, groups, np.random.default_rng([seed, 3]))
    return train, new


# --------------------------------------------------------------------------------------------------


def build_task_set(cfg: MetaConfig, seed: int) -> MetaTaskSet:
    """Training and new agents of `cfg.task` from `seed` (new agents do not depend on cfg.agents)."""
    if cfg.task == "sine":
        train = sine_agents(cfg.agents, cfg.tasks_per_agent, cfg.support, cfg.query, cfg.heterogeneity,
                            np.random.default_rng([seed, 0]))
        new = sine_agents(cfg.new_agents, cfg.new_agent_tasks, cfg.support, cfg.query, cfg.heterogeneity,
                          np.random.default_rng([seed, 2]))
        return MetaTaskSet(train, new, "regression", n_features=1, n_outputs=1)
    train, new = digits_fewshot_agents(
        cfg.agents, cfg.new_agents, cfg.tasks_per_agent, cfg.new_agent_tasks, cfg.n_way, cfg.support, cfg.query,
        cfg.heterogeneity, cfg.class_split, seed,
    )
    return MetaTaskSet(train, new, "classification", n_features=train[0].support_x.shape[-1], n_outputs=cfg.n_way)
