"""Federated classification data for LoRA fine-tuning: label-skewed clients and a global test set.

Inputs are dicts of tensors whose first dimension is the sample (digits: {"x"}; text:
{"input_ids", "attention_mask"}), so one training loop serves every model. Every client also has
its label distribution p_k(c) (shares of its training labels): a client's personalised accuracy is
its model's per-class test accuracy weighted by p_k, i.e. accuracy on test data drawn the way the
client's own data is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from airfl.fl.data import dirichlet_partition, load_federated_digits
from airfl.fl.lora.text_data import CLASS_NAMES, generate_text


@dataclass(frozen=True)
class Split:
    """Labelled samples: `inputs` (name -> tensor, first dimension = samples) and `labels` (int64)."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Inputs of samples `idx`; token inputs are cut to the longest sentence in the batch."""
        out = {k: v[idx] for k, v in self.inputs.items()}
        if "attention_mask" in out:
            length = max(1, int(out["attention_mask"].sum(dim=1).max()))
            out = {k: v[:, :length] for k, v in out.items()}
        return out


@dataclass(frozen=True)
class FederatedTask:
    """Clients' training splits, the global test split, and each client's label distribution (K x C)."""

    clients: list[Split]
    test: Split
    n_classes: int
    label_distributions: np.ndarray

    @property
    def sizes(self) -> list[float]:
        return [float(len(c)) for c in self.clients]


def label_distributions(labels: list[np.ndarray], n_classes: int) -> np.ndarray:
    """Row k: the share of each class among client k's labels."""
    counts = np.stack([np.bincount(y, minlength=n_classes) for y in labels]).astype(np.float64)
    return counts / counts.sum(axis=1, keepdims=True)


def digits_task(n_clients: int, alpha: float, seed: int, test_fraction: float, min_samples: int) -> FederatedTask:
    """scikit-learn's digits (all ten classes), Dirichlet(alpha) label skew (airfl.fl.data)."""
    data = load_federated_digits(n_clients, alpha, seed, test_fraction, min_samples)
    clients = [Split({"x": torch.from_numpy(c.x)}, torch.from_numpy(c.y)) for c in data.clients]
    test = Split({"x": torch.from_numpy(data.x_test)}, torch.from_numpy(data.y_test))
    dists = label_distributions([c.y for c in data.clients], data.n_classes)
    return FederatedTask(clients, test, data.n_classes, dists)


def tokenise(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    """input_ids and attention_mask, padded/truncated to `max_length` tokens."""
    enc = tokenizer(
        texts,
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_token_type_ids=False,
        return_tensors="pt",
    )
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def text_task(
    tokenizer: Any,
    n_clients: int,
    alpha: float,
    seed: int,
    n_train: int,
    n_test: int,
    max_length: int,
    min_samples: int,
) -> FederatedTask:
    """Generated sentences (text_data), Dirichlet(alpha) label skew over the training sentences;
    the test sentences come from a different seed stream."""
    train = generate_text(n_train, seed)
    test = generate_text(n_test, seed + 1_000_003)
    parts = dirichlet_partition(train.labels, n_clients, alpha, np.random.default_rng(seed), min_samples)
    train_inputs = tokenise(tokenizer, train.texts, max_length)
    clients = [
        Split({k: v[torch.from_numpy(p)] for k, v in train_inputs.items()}, torch.from_numpy(train.labels[p]))
        for p in parts
    ]
    test_split = Split(tokenise(tokenizer, test.texts, max_length), torch.from_numpy(test.labels))
    n_classes = len(CLASS_NAMES)
    dists = label_distributions([train.labels[p] for p in parts], n_classes)
    return FederatedTask(clients, test_split, n_classes, dists)
