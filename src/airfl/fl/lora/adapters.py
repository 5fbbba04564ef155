"""LoRA adapters through peft on any torch model, their state, and flat vectors of that state.

An adapter's state is what `peft.get_peft_model_state_dict` returns: the LoRA factors
`...lora_A.weight` (r x in) and `...lora_B.weight` (out x r) of every adapted layer, plus the
modules peft trains in full (`modules_to_save`, here the classification head). Only these tensors
ever travel; the frozen pre-trained weights never leave anyone. Aggregators take flat float64
vectors: `flatten` / `unflatten` convert, in the sorted order of the state's keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

State = dict[str, torch.Tensor]

LORA_A = ".lora_A."
LORA_B = ".lora_B."


@dataclass(frozen=True)
class AdapterSpec:
    """Shape of one LoRA adapter: rank r, scale alpha (update = alpha/r * B @ A), dropout on the
    LoRA branch, the modules that get LoRA, and the modules trained in full (e.g. a new head)."""

    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]
    modules_to_save: tuple[str, ...] = ()

    def peft_config(self) -> LoraConfig:
        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=list(self.target_modules),
            modules_to_save=list(self.modules_to_save) or None,
            bias="none",
        )


def attach_lora(model: nn.Module, spec: AdapterSpec, seed: int, name: str = "default") -> PeftModel:
    """Wrap `model` with a LoRA adapter called `name`. A is drawn from `seed` (the same seed gives
    every client the same A), B starts at zero, so the wrapped model computes what `model` did."""
    torch.manual_seed(seed)
    return get_peft_model(model, spec.peft_config(), adapter_name=name)


def add_lora(model: PeftModel, spec: AdapterSpec, seed: int, name: str) -> None:
    """Add a second LoRA adapter `name` to a peft model (A from `seed`, B zero)."""
    torch.manual_seed(seed)
    model.add_adapter(name, spec.peft_config())


def activate(model: PeftModel, names: list[str], trainable: Iterable[str] | None = None) -> None:
    """Make adapters `names` active (their outputs add up), and make exactly the parameters of the
    adapters in `trainable` (default: all of `names`) require gradients; nothing else trains."""
    model.base_model.set_adapter(names if len(names) > 1 else names[0])
    train = set(names if trainable is None else trainable)
    for pname, p in model.named_parameters():
        p.requires_grad_(any(f".{a}." in pname or pname.endswith(f".{a}") for a in train))


def adapter_state(model: PeftModel, name: str = "default") -> State:
    """A detached copy of adapter `name`'s state (peft's state-dict keys, no adapter name in them)."""
    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model, adapter_name=name).items()}


def load_adapter_state(model: PeftModel, state: Mapping[str, torch.Tensor], name: str = "default") -> None:
    """Write `state` into adapter `name` (peft's set_peft_model_state_dict); every key must land."""
    current = get_peft_model_state_dict(model, adapter_name=name)
    if set(current) != set(state):
        missing, extra = sorted(set(current) - set(state)), sorted(set(state) - set(current))
        raise ValueError(f"adapter state does not match adapter '{name}': missing {missing[:3]}, unexpected {extra[:3]}")
    typed = {k: v.to(dtype=current[k].dtype) for k, v in state.items()}
    result = set_peft_model_state_dict(model, typed, adapter_name=name)
    if result.unexpected_keys:
        raise ValueError(f"peft did not load {result.unexpected_keys[:3]} into adapter '{name}'")


def is_lora_a(key: str) -> bool:
    return LORA_A in key


def is_lora_b(key: str) -> bool:
    return LORA_B in key


@dataclass(frozen=True)
class LoraPair:
    """The two factors of one adapted layer: delta W = scale * B @ A."""

    a_key: str
    b_key: str


def lora_pairs(state: Mapping[str, torch.Tensor]) -> list[LoraPair]:
    """Every (A, B) key pair in a state, in sorted order."""
    pairs = [LoraPair(k, k.replace(LORA_A, LORA_B)) for k in sorted(state) if is_lora_a(k)]
    for p in pairs:
        if p.b_key not in state:
            raise ValueError(f"adapter state has {p.a_key} but not {p.b_key}")
    return pairs


def select(state: Mapping[str, torch.Tensor], keep: Iterable[str]) -> State:
    """The sub-state with keys `keep`."""
    return {k: state[k] for k in keep}


def flatten(state: Mapping[str, torch.Tensor]) -> np.ndarray:
    """All tensors of a state as one float64 vector, keys in sorted order (what goes on the air)."""
    if not state:
        return np.zeros(0)
    return np.concatenate([state[k].detach().double().reshape(-1).cpu().numpy() for k in sorted(state)])


def unflatten(vector: np.ndarray, template: Mapping[str, torch.Tensor]) -> State:
    """Inverse of `flatten`: float64 tensors shaped like `template`'s, keys in sorted order."""
    total = sum(t.numel() for t in template.values())
    if vector.size != total:
        raise ValueError(f"vector has {vector.size} values; the state holds {total}")
    out: State = {}
    offset = 0
    for k in sorted(template):
        n = template[k].numel()
        out[k] = torch.as_tensor(vector[offset : offset + n], dtype=torch.float64).reshape(template[k].shape).clone()
        offset += n
    return out


def count_values(state: Mapping[str, torch.Tensor]) -> int:
    """Number of reals in a state."""
    return int(sum(t.numel() for t in state.values()))


def to_float64(state: Mapping[str, torch.Tensor]) -> State:
    """A float64 copy (the server keeps its global state in double precision)."""
    return {k: v.detach().double().clone() for k, v in state.items()}


def add(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> State:
    """Key-wise a + b (same keys)."""
    return {k: a[k] + b[k].to(a[k].dtype) for k in a}


def subtract(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> State:
    """Key-wise a - b (same keys)."""
    return {k: a[k].double() - b[k].double() for k in a}


def truncate_rank(state: Mapping[str, torch.Tensor], rank: int) -> State:
    """The state restricted to the first `rank` LoRA components: A[:rank, :], B[:, :rank]; other
    tensors unchanged. What a rank-`rank` adapter inside a larger one sends."""
    out: State = {}
    for k, v in state.items():
        if is_lora_a(k):
            out[k] = v[:rank, :]
        elif is_lora_b(k):
            out[k] = v[:, :rank]
        else:
            out[k] = v
    return out


def pad_rank(state: Mapping[str, torch.Tensor], like: Mapping[str, torch.Tensor]) -> State:
    """Inverse of `truncate_rank`: zero-pad A's rows and B's columns to the shapes in `like`."""
    out: State = {}
    for k, v in state.items():
        full = torch.zeros(like[k].shape, dtype=v.dtype)
        if is_lora_a(k):
            full[: v.shape[0], :] = v
        elif is_lora_b(k):
            full[:, : v.shape[1]] = v
        else:
            full = v.clone()
        out[k] = full
    return out
