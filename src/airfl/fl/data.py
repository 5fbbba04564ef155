"""Datasets that need no download, and their split across clients.

digits: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes), features scaled to
[0, 1]. Clients get a label-skewed (non-IID) share by the usual Dirichlet split: for every class,
the class's samples are divided among clients in proportions drawn from Dir(alpha, ..., alpha).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


@dataclass(frozen=True)
class ClientData:
    """One client's local training set (features float32, labels int64)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class FederatedDataset:
    clients: list[ClientData]
    x_test: np.ndarray
    y_test: np.ndarray
    n_features: int
    n_classes: int


def dirichlet_partition(
    labels: np.ndarray, n_clients: int, alpha: float, rng: np.random.Generator, min_samples: int = 1,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """Split sample indices among clients with Dirichlet(alpha) label skew.

    Redraws until every client has at least `min_samples` samples (raises ValueError if impossible).
    """
    if n_clients * min_samples > len(labels):
        raise ValueError(
            f"{len(labels)} samples cannot give {n_clients} clients {min_samples} samples each; "
            "use fewer clients or a smaller min_samples_per_client"
        )
    classes = np.unique(labels)
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].append(chunk)
        out = [np.sort(np.concatenate(p)) for p in parts]
        if min(len(p) for p in out) >= min_samples:
            return out
    raise ValueError(
        f"no Dirichlet(alpha={alpha}) split gave every one of {n_clients} clients {min_samples} samples "
        f"in {max_tries} draws; raise dirichlet_alpha or lower min_samples_per_client"
    )


def load_federated_digits(
    n_clients: int, alpha: float, seed: int, test_fraction: float = 0.25, min_samples: int = 10
) -> FederatedDataset:
    """Digits split into a stratified global test set and `n_clients` non-IID training shares."""
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    rng = np.random.default_rng(seed)
    parts = dirichlet_partition(y_train, n_clients, alpha, rng, min_samples)
    clients = [ClientData(x_train[p], y_train[p]) for p in parts]
    return FederatedDataset(clients, x_test, y_test, n_features=x.shape[1], n_classes=10)
