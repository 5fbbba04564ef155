"""MAML, first-order MAML and Reptile: one inner/outer loop over a flat parameter vector.

A model is a pure function f(theta, x) of one flat vector theta (torch.func.functional_call), so the
inner loop's gradient steps can be differentiated through (second-order MAML) with torch.func.grad,
and tasks are batched with torch.func.vmap.

For T tasks with support (xs, ys) and query (xq, yq), inner step size alpha and n inner steps,
adapt(theta) = n steps of theta <- theta - alpha * grad L_support(theta), and per task:
- maml:    g = d/dtheta L_query(adapt(theta))                (through the inner steps, 2nd order)
- fomaml:  g = grad L_query evaluated at adapt(theta)        (inner steps treated as constants)
- reptile: g = (theta - adapt'(theta)) / (alpha * n), adapt' running on support + query together,
           so that g is in gradient units and the outer step theta <- theta - beta * g is Reptile's
           theta + epsilon (phi - theta) with epsilon = beta / (alpha * n).
The agent's meta-gradient is the mean of g over its tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from airfl.fl.meta_tasks import TaskBatch, TaskKind

Variant = Literal["maml", "fomaml", "reptile"]


class FlatModel:
    """A torch module called as a pure function of one flat parameter vector: f(theta, x)."""

    def __init__(self, module: nn.Module):
        self.module = module
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.n_params = int(sum(self.sizes))
        self.dtype = named[0][1].dtype

    def initial(self) -> Tensor:
        """The module's current parameters as one flat vector (a detached copy)."""
        with torch.no_grad():
            return torch.cat([p.reshape(-1) for p in self.module.parameters() if p.requires_grad]).clone()

    def params(self, theta: Tensor) -> dict[str, Tensor]:
        """Flat vector -> {name: tensor of the parameter's shape} (views, differentiable)."""
        parts = torch.split(theta, self.sizes)
        return {n: p.view(s) for n, p, s in zip(self.names, parts, self.shapes)}

    def __call__(self, theta: Tensor, x: Tensor) -> Tensor:
        return functional_call(self.module, self.params(theta), (x,))


@dataclass(frozen=True)
class TorchTasks:
    """A TaskBatch as torch tensors (features and regression targets in the model's dtype)."""

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor

    def __len__(self) -> int:
        return int(self.support_x.shape[0])


def to_torch(batch: TaskBatch, dtype: torch.dtype = torch.float64) -> TorchTasks:
    """Convert once; labels stay int64 for classification."""

    def conv(a: np.ndarray) -> Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t if t.dtype == torch.int64 else t.to(dtype)

    return TorchTasks(conv(batch.support_x), conv(batch.support_y), conv(batch.query_x), conv(batch.query_y))


def task_loss(model: FlatModel, theta: Tensor, x: Tensor, y: Tensor, kind: TaskKind) -> Tensor:
    """Mean squared error (regression) or mean cross-entropy (classification) on one task's samples."""
    out = model(theta, x)
    if kind == "regression":
        return torch.mean((out - y) ** 2)
    return nn.functional.cross_entropy(out, y)


def adapt(model: FlatModel, theta: Tensor, x: Tensor, y: Tensor, kind: TaskKind, steps: int, lr: float) -> Tensor:
    """`steps` gradient steps of size `lr` on (x, y) from theta; differentiable w.r.t. theta."""
    step_grad = grad(lambda th: task_loss(model, th, x, y, kind))
    for _ in range(steps):
        theta = theta - lr * step_grad(theta)
    return theta


def meta_gradient(
    model: FlatModel, theta: Tensor, tasks: TorchTasks, kind: TaskKind, variant: Variant, steps: int, lr: float
) -> Tensor:
    """The mean over `tasks` of the per-task meta-gradient of `variant` at theta (shape (d,))."""

    def maml_loss(th: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
        return task_loss(model, adapt(model, th, sx, sy, kind, steps, lr), qx, qy, kind)

    def fomaml_one(th: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
        adapted = adapt(model, th, sx, sy, kind, steps, lr).detach()
        return grad(lambda a: task_loss(model, a, qx, qy, kind))(adapted)

    def reptile_one(th: Tensor, sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
        adapted = adapt(model, th, torch.cat([sx, qx]), torch.cat([sy, qy]), kind, steps, lr)
        return (th - adapted) / (lr * steps)

    one = {"maml": grad(maml_loss), "fomaml": fomaml_one, "reptile": reptile_one}[variant]
    per_task = vmap(one, in_dims=(None, 0, 0, 0, 0))(
        theta, tasks.support_x, tasks.support_y, tasks.query_x, tasks.query_y
    )
    return per_task.mean(dim=0)


def meta_loss(
    model: FlatModel, theta: Tensor, tasks: TorchTasks, kind: TaskKind, steps: int, lr: float
) -> Tensor:
    """The MAML objective: mean over tasks of L_query(adapt(theta)) (the value MAML differentiates)."""

    def one(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
        return task_loss(model, adapt(model, theta, sx, sy, kind, steps, lr), qx, qy, kind)

    return vmap(one)(tasks.support_x, tasks.support_y, tasks.query_x, tasks.query_y).mean()
