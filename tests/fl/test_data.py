"""Digits and the Dirichlet split: disjoint, complete, seeded, skewed."""

import numpy as np

from airfl.fl.data import dirichlet_partition, load_federated_digits


def test_partition_is_disjoint_and_complete():
    labels = np.repeat(np.arange(10), 50)
    parts = dirichlet_partition(labels, 7, 0.5, np.random.default_rng(0), min_samples=5)
    joined = np.concatenate(parts)
    assert len(joined) == len(labels) and len(np.unique(joined)) == len(labels)
    assert min(len(p) for p in parts) >= 5


def test_small_alpha_is_more_skewed_than_large():
    labels = np.repeat(np.arange(10), 100)

    def mean_label_entropy(alpha: float) -> float:
        parts = dirichlet_partition(labels, 10, alpha, np.random.default_rng(1), min_samples=1)
        ent = []
        for p in parts:
            frac = np.bincount(labels[p], minlength=10) / len(p)
            frac = frac[frac > 0]
            ent.append(-(frac * np.log(frac)).sum())
        return float(np.mean(ent))

    assert mean_label_entropy(0.1) < mean_label_entropy(100.0) - 0.5


def test_digits_split_is_seeded():
    a = load_federated_digits(5, 0.5, seed=3)
    b = load_federated_digits(5, 0.5, seed=3)
    assert all(np.array_equal(x.y, y.y) for x, y in zip(a.clients, b.clients))
    assert a.n_features == 64 and a.n_classes == 10
    assert 0.0 <= a.x_test.min() and a.x_test.max() <= 1.0
    total = sum(len(c) for c in a.clients) + len(a.y_test)
    assert total == 1797
