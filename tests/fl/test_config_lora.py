"""The [lora] section: defaults, and one-sentence errors naming the key."""

import pytest

from airfl.fl.config import ConfigError, validate_config


def test_lora_defaults_and_algorithm():
    cfg = validate_config({"algorithm": "lora"})
    assert cfg.lora.strategy == "fedit" and cfg.lora.model == "mlp_digits" and cfg.lora.target_modules == []
    assert cfg.lora.r_min <= cfg.lora.r_max


@pytest.mark.parametrize(
    "raw, must_contain",
    [
        ({"lora": {"rnk": 4}}, ["lora.rnk", "allowed keys", "rank"]),
        ({"lora": {"strategy": "fedprox"}}, ["lora.strategy", "'fedit'", "'sa_fedlora'"]),
        ({"lora": {"r_max": 2, "r_min": 4}}, ["lora.r_min", "cannot exceed", "lora.r_max"]),
        ({"lora": {"rank": 0}}, ["lora.rank", "greater than or equal to 1"]),
        ({"lora": {"model": "gpt2"}}, ["lora.model", "'mlp_digits' or 'minilm'"]),
        ({"lora": {"target_modules": ["query", " "]}}, ["lora.target_modules", "empty"]),
    ],
)
def test_bad_lora_values_give_one_sentence(raw, must_contain):
    with pytest.raises(ConfigError) as info:
        validate_config({"algorithm": "lora", **raw})
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    for fragment in must_contain:
        assert fragment in message
