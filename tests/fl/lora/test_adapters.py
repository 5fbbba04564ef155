"""peft adapters: state round-trips through peft's state-dict functions and through flat vectors."""

import numpy as np
import pytest

pytest.importorskip("peft")

import torch  # noqa: E402
from peft import get_peft_model_state_dict, set_peft_model_state_dict  # noqa: E402
from torch import nn  # noqa: E402

from airfl.fl.lora.adapters import (  # noqa: E402
    AdapterSpec,
    activate,
    adapter_state,
    add_lora,
    attach_lora,
    count_values,
    flatten,
    load_adapter_state,
    lora_pairs,
    pad_rank,
    truncate_rank,
    unflatten,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


SPEC = AdapterSpec(rank=2, alpha=4.0, dropout=0.0, target_modules=("fc1", "fc2"), modules_to_save=("head",))


def test_wrapped_model_starts_as_the_base_model_and_only_adapters_train():
    x = torch.randn(4, 6)
    base_out = Tiny()(x)
    model = attach_lora(Tiny(), SPEC, seed=1)
    assert torch.allclose(model(x), base_out)  # B starts at zero
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n or "modules_to_save" in n for n in trainable)
    state = adapter_state(model)
    assert len(lora_pairs(state)) == 2
    assert count_values(state) == 2 * (6 + 8) + 2 * (8 + 8) + (8 * 3 + 3)


def test_state_round_trips_through_peft_state_dict_functions():
    source = attach_lora(Tiny(), SPEC, seed=1)
    with torch.no_grad():
        for name, p in source.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    state = adapter_state(source)
    # peft's own functions: the state is what get_peft_model_state_dict gives
    assert set(state) == set(get_peft_model_state_dict(source))
    target = attach_lora(Tiny(), SPEC, seed=2)
    load_adapter_state(target, state)
    again = get_peft_model_state_dict(target)
    for key, value in state.items():
        assert torch.equal(again[key], value)
    x = torch.randn(5, 6)
    assert torch.allclose(source(x), target(x))
    # and peft's set function accepts what we flatten and unflatten
    restored = unflatten(flatten(state), state)
    fresh = attach_lora(Tiny(), SPEC, seed=3)
    set_peft_model_state_dict(fresh, {k: v.float() for k, v in restored.items()})
    assert torch.allclose(fresh(x), source(x))


def test_flatten_is_sorted_float64_and_unflatten_inverts_it():
    state = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.tensor([7.0, 8.0])}
    vector = flatten(state)
    assert vector.dtype == np.float64
    assert vector.tolist() == [7.0, 8.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    back = unflatten(vector, state)
    assert all(torch.equal(back[k].float(), state[k]) for k in state)
    with pytest.raises(ValueError, match="7 values; the state holds 8"):
        unflatten(np.zeros(7), state)


def test_truncate_and_pad_rank():
    model = attach_lora(Tiny(), AdapterSpec(4, 4.0, 0.0, ("fc1",), ("head",)), seed=1)
    state = adapter_state(model)
    small = truncate_rank(state, 2)
    (pair,) = lora_pairs(state)
    assert small[pair.a_key].shape == (2, 6) and small[pair.b_key].shape == (8, 2)
    assert small["base_model.model.head.weight"].shape == (3, 8)
    padded = pad_rank(small, state)
    assert torch.equal(padded[pair.a_key][:2], state[pair.a_key][:2])
    assert torch.all(padded[pair.a_key][2:] == 0)


def test_load_refuses_a_state_of_another_adapter_shape():
    model = attach_lora(Tiny(), SPEC, seed=1)
    with pytest.raises(ValueError, match="does not match"):
        load_adapter_state(model, {"nonsense.weight": torch.zeros(1)})


def test_two_adapters_and_which_train():
    model = attach_lora(Tiny(), SPEC, seed=1, name="global")
    add_lora(model, AdapterSpec(1, 2.0, 0.0, ("fc1", "fc2")), seed=2, name="local")
    activate(model, ["global", "local"], trainable=["local"])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".local." in n for n in trainable)
    assert set(adapter_state(model, "global")) != set(adapter_state(model, "local"))  # the head is global's
