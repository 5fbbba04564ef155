"""MAML / first-order MAML / Reptile over a flat parameter vector (float64, tiny models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from airfl.fl.algorithms.maml import FlatModel, adapt, meta_gradient, meta_loss, task_loss, to_torch
from airfl.fl.algorithms.personalise import personalised_scores
from airfl.fl.meta_tasks import sine_agents
from airfl.fl.models import mlp


def _tiny(seed: int = 0, hidden: list[int] | None = None) -> FlatModel:
    torch.manual_seed(seed)
    return FlatModel(mlp(1, hidden or [6], 1).double())


def _tasks(n_tasks: int = 3, support: int = 4, query: int = 5, seed: int = 0):
    return to_torch(sine_agents(1, n_tasks, support, query, 0.3, np.random.default_rng(seed))[0])


def test_flat_model_is_the_module():
    """f(theta, x) with theta = the module's own parameters gives the module's output."""
    model = _tiny()
    x = torch.linspace(-5, 5, 7, dtype=torch.float64)[:, None]
    torch.testing.assert_close(model(model.initial(), x), model.module(x), rtol=0, atol=0)
    assert model.n_params == 6 + 6 + 6 + 1


def test_maml_meta_gradient_matches_finite_differences():
    """Second-order MAML (2 inner steps): d/dtheta mean_task L_query(adapt(theta)) against central
    finite differences of the same objective, every coordinate, float64."""
    model, tasks = _tiny(), _tasks()
    theta = model.initial()
    steps, lr, eps = 2, 0.05, 1e-6
    g = meta_gradient(model, theta, tasks, "regression", "maml", steps, lr)
    fd = torch.empty_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = eps
        up = meta_loss(model, theta + e, tasks, "regression", steps, lr)
        down = meta_loss(model, theta - e, tasks, "regression", steps, lr)
        fd[i] = (up - down) / (2 * eps)
    assert float(g.norm()) > 0.1  # not a trivial comparison
    torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-7)


def test_first_order_maml_drops_the_second_order_term():
    """FOMAML = the query gradient at the adapted point (computed here with plain autograd);
    it differs from full MAML by the Hessian term."""
    model, tasks = _tiny(1), _tasks(seed=1)
    theta = model.initial()
    fo = meta_gradient(model, theta, tasks, "regression", "fomaml", 1, 0.05)
    expected = torch.zeros_like(theta)
    for t in range(len(tasks)):
        th = theta.clone().requires_grad_(True)
        (gs,) = torch.autograd.grad(task_loss(model, th, tasks.support_x[t], tasks.support_y[t], "regression"), th)
        adapted = (theta - 0.05 * gs).requires_grad_(True)
        (gq,) = torch.autograd.grad(task_loss(model, adapted, tasks.query_x[t], tasks.query_y[t], "regression"), adapted)
        expected += gq / len(tasks)
    torch.testing.assert_close(fo, expected, rtol=1e-10, atol=1e-12)
    full = meta_gradient(model, theta, tasks, "regression", "maml", 1, 0.05)
    assert float((full - fo).norm()) > 1e-3 * float(full.norm())


def test_reptile_with_one_step_is_the_joint_gradient():
    """Reptile's (theta - phi) / (alpha n) with n = 1 is the gradient of the loss on support+query."""
    model, tasks = _tiny(2), _tasks(seed=2)
    theta = model.initial()
    g = meta_gradient(model, theta, tasks, "regression", "reptile", 1, 0.05)
    th = theta.clone().requires_grad_(True)
    joint = sum(
        task_loss(model, th, torch.cat([tasks.support_x[t], tasks.query_x[t]]),
                  torch.cat([tasks.support_y[t], tasks.query_y[t]]), "regression")
        for t in range(len(tasks))
    ) / len(tasks)
    (expected,) = torch.autograd.grad(joint, th)
    torch.testing.assert_close(g, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("steps", [0, 3])
def test_batched_personalisation_equals_per_task_adaptation(steps):
    """personalised_scores (batched autograd) = maml.adapt (torch.func) task by task."""
    model, tasks = _tiny(3, [8, 8]), _tasks(4, seed=3)
    theta = model.initial()
    scores = personalised_scores(model, theta, tasks, "regression", steps, 0.02, backtracking=False)
    losses = [
        float(task_loss(model, adapt(model, theta, tasks.support_x[t], tasks.support_y[t], "regression", steps, 0.02),
                        tasks.query_x[t], tasks.query_y[t], "regression"))
        for t in range(len(tasks))
    ]
    assert scores.loss == pytest.approx(float(np.mean(losses)), rel=1e-12)
    assert scores.accuracy is None and scores.steps == steps


def test_backtracking_personalisation_never_raises_the_support_loss():
    """With a step size far too large, plain steps blow up; backtracking halves the step instead,
    so every task's support loss never rises and the query loss stays finite. With a small step
    nothing is rejected and both agree."""
    model, tasks = _tiny(4, [16, 16]), _tasks(6, seed=4)
    theta = model.initial()
    start = personalised_scores(model, theta, to_support_as_query(tasks), "regression", 0, 1.0)
    plain = personalised_scores(model, theta, tasks, "regression", 5, 1.0, backtracking=False)
    safe = personalised_scores(model, theta, to_support_as_query(tasks), "regression", 5, 1.0, backtracking=True)
    assert not plain.loss < 1e3  # diverged (or NaN)
    assert safe.loss <= start.loss
    small = [personalised_scores(model, theta, tasks, "regression", 3, 1e-3, backtracking=b).loss for b in (True, False)]
    assert small[0] == pytest.approx(small[1], rel=1e-12)


def to_support_as_query(tasks):
    """The same tasks scored on their support sets (to read the support loss back)."""
    from airfl.fl.algorithms.maml import TorchTasks

    return TorchTasks(tasks.support_x, tasks.support_y, tasks.support_x, tasks.support_y)
