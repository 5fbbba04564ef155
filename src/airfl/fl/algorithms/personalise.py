"""Personalisation: an agent fine-tunes a starting point with a few gradient steps on each task's
support set and is scored on the task's query set.

Used for new agents (never seen in training) from the meta-model, for training agents on their own
tasks (the other side of the generalisation gap), and for the from-scratch reference (the same
steps from the random initialisation the meta-model started from).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import vmap

from airfl.fl.algorithms.maml import FlatModel, TorchTasks, task_loss
from airfl.fl.meta_tasks import TaskKind


@dataclass(frozen=True)
class Scores:
    """Mean query loss (MSE or cross-entropy) and accuracy (None for regression) over tasks, after
    `steps` fine-tuning steps on each task's support set."""

    loss: float
    accuracy: float | None
    steps: int


def personalised_scores(
    model: FlatModel, theta: Tensor, tasks: TorchTasks, kind: TaskKind, steps: int, lr: float
) -> Scores:
    """Fine-tune theta on every task's support set (steps of size lr), score on its query set.

    All tasks move together: one (T, d) batch of parameter vectors, a vmapped forward pass and one
    reverse-mode pass per step (the tasks are independent, so the gradient of the summed loss is
    every task's own gradient). This is the same computation as `maml.adapt` per task, about four
    times faster than nesting torch.func.grad inside vmap; no graph is kept between steps.
    """
    per_task_loss = vmap(lambda th, x, y: task_loss(model, th, x, y, kind))
    batch = theta.detach().expand(len(tasks), -1).clone()
    for _ in range(steps):
        batch.requires_grad_(True)
        (g,) = torch.autograd.grad(per_task_loss(batch, tasks.support_x, tasks.support_y).sum(), batch)
        batch = (batch - lr * g).detach()
    with torch.no_grad():
        losses = per_task_loss(batch, tasks.query_x, tasks.query_y)
        accuracy = None
        if kind == "classification":
            logits = vmap(model)(batch, tasks.query_x)
            accuracy = float((logits.argmax(dim=-1) == tasks.query_y).to(losses.dtype).mean())
    return Scores(float(losses.mean()), accuracy, steps)
