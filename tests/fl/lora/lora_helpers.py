"""Helpers shared by the federated LoRA tests: a tiny config (seconds, deterministic) and a spy
aggregator. A plain module (not conftest.py) so that tests import it by a unique name."""

from __future__ import annotations

from typing import Any

import numpy as np

from airfl.fl.config import ExperimentConfig, validate_config


def tiny_config(**sections: Any) -> ExperimentConfig:
    """A digits-MLP LoRA config small enough for a unit test; `sections` override/extend it."""
    raw: dict[str, Any] = {
        "algorithm": "lora",
        "seed": 3,
        "rounds": 2,
        "data": {"clients": 3, "dirichlet_alpha": 0.5, "min_samples_per_client": 20},
        "model": {"hidden": [16]},
        "train": {"local_epochs": 1, "batch_size": 32, "lr": 0.1},
        "lora": {"rank": 2, "alpha": 4.0, "pretrain_epochs": 2},
        "aggregation": {"kind": "ideal"},
    }
    for key, value in sections.items():
        if isinstance(value, dict):
            raw[key] = {**raw.get(key, {}), **value}
        else:
            raw[key] = value
    return validate_config(raw)


class SpyAggregator:
    """Wraps an aggregator and keeps a copy of every update vector it is handed."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.received: list[list[np.ndarray]] = []
        self.estimates: list[np.ndarray | None] = []

    def aggregate(self, updates, weights):  # noqa: ANN001 - the Aggregator protocol
        self.received.append([np.array(u, copy=True) for u in updates])
        estimate, stats = self.inner.aggregate(updates, weights)
        self.estimates.append(None if estimate is None else estimate.copy())
        return estimate, stats

