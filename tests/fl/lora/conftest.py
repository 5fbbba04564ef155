"""Federated LoRA tests run torch on one thread, as `airfl run` does: on a shared 2-core machine,
OpenMP threads waiting on each other made these tiny models many times slower."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
