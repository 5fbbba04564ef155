"""Local training helpers: the proximal penalty and the personalised accuracy."""

import numpy as np
import pytest
import torch
from torch import nn

from airfl.fl.lora.tasks import Split, label_distributions
from airfl.fl.lora.training import Evaluation, LocalTraining, evaluate, local_train, proximal_penalty


def test_proximal_penalty_is_half_mu_squared_distance_to_the_sent_weights():
    model = nn.Linear(3, 2)
    penalty = proximal_penalty(model, mu=0.4)
    assert float(penalty().detach()) == 0.0
    with torch.no_grad():
        model.weight.add_(1.0)  # 6 entries moved by 1
        model.bias.sub_(2.0)  # 2 entries moved by 2
    assert float(penalty().detach()) == pytest.approx(0.5 * 0.4 * (6 * 1.0 + 2 * 4.0))


def test_proximal_term_pulls_training_towards_the_start():
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0))
    data = Split({"x": x}, (x[:, 0] > 0).long())
    cfg = LocalTraining(epochs=5, batch_size=16, lr=0.5)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    start = Net().fc.weight.detach().clone()
    moved = {}
    for mu in (0.0, 1.0):
        net = Net()
        local_train(net, data, cfg, torch.Generator().manual_seed(1), proximal_penalty(net, mu) if mu else None)
        moved[mu] = float(torch.linalg.norm(net.fc.weight.detach() - start))
    assert moved[1.0] < 0.5 * moved[0.0]


def test_personalised_accuracy_reweights_per_class_accuracy():
    ev = Evaluation(accuracy=0.5, loss=1.0, per_class=np.array([1.0, 0.0, np.nan]))
    assert ev.personalised(np.array([0.75, 0.25, 0.0])) == pytest.approx(0.75)
    # a class absent from the test set counts for nothing
    assert ev.personalised(np.array([0.5, 0.0, 0.5])) == pytest.approx(1.0)
    dists = label_distributions([np.array([0, 0, 1]), np.array([2])], 3)
    assert np.allclose(dists, [[2 / 3, 1 / 3, 0], [0, 0, 1]])


def test_evaluate_counts_per_class():
    x = torch.tensor([[1.0], [2.0], [-1.0], [-2.0]])
    data = Split({"x": x}, torch.tensor([1, 1, 0, 1]))

    class Sign(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([-x, x], dim=1)

    ev = evaluate(Sign(), data, n_classes=3)
    assert ev.accuracy == pytest.approx(0.75)
    assert ev.per_class[0] == 1.0 and ev.per_class[1] == pytest.approx(2 / 3) and np.isnan(ev.per_class[2])


def test_token_batches_are_cut_to_the_longest_sentence():
    inputs = {"input_ids": torch.tensor([[5, 6, 0, 0], [7, 0, 0, 0]]), "attention_mask": torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])}
    batch = Split(inputs, torch.tensor([0, 1])).batch(torch.tensor([0, 1]))
    assert batch["input_ids"].shape == (2, 2) and batch["attention_mask"].tolist() == [[1, 1], [1, 0]]
