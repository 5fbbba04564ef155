"""Small models for federated experiments, and flat-vector views of their parameters.

Aggregators work on flat float64 numpy vectors (what goes on the air); models are torch modules.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mlp(n_features: int, hidden: list[int], n_classes: int) -> nn.Sequential:
    """A ReLU multilayer perceptron: n_features -> hidden... -> n_classes logits."""
    layers: list[nn.Module] = []
    width = n_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def get_flat(model: nn.Module) -> np.ndarray:
    """All trainable parameters as one float64 vector (the update space)."""
    with torch.no_grad():
        return torch.nn.utils.parameters_to_vector(
            [p for p in model.parameters() if p.requires_grad]
        ).double().numpy().copy()


def set_flat(model: nn.Module, vector: np.ndarray) -> None:
    """Overwrite the trainable parameters from a flat vector (inverse of get_flat)."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() for p in params)
    if vector.size != total:
        raise ValueError(f"vector has {vector.size} values; the model has {total} trainable parameters")
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.as_tensor(vector, dtype=params[0].dtype), params)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
