"""Config validation: every user mistake is one sentence naming the key and what is allowed."""

from pathlib import Path

import pytest

from airfl.fl.config import ConfigError, ExperimentConfig, apply_overrides, load_config, validate_config

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_config_validates():
    cfg = load_config(ROOT / "configs" / "fedavg_digits.toml")
    assert cfg.rounds == 30 and cfg.data.clients == 10 and cfg.data.dirichlet_alpha == 0.5
    assert cfg.channel.snr_db == 20.0 and cfg.aggregation.kind == "ota"


@pytest.mark.parametrize(
    "raw, must_contain",
    [
        ({"train": {"lrr": 0.1}}, ["train.lrr", "allowed keys", "lr"]),
        ({"bogus": 1}, ["'bogus'", "rounds"]),
        ({"rounds": 0}, ["rounds", "greater than or equal to 1"]),
        ({"rounds": "ten"}, ["rounds", "integer"]),
        ({"channel": {"snr_db": "high"}}, ["channel.snr_db", "number"]),
        ({"aggregation": {"kind": "digital"}}, ["aggregation.kind", "'ota' or 'ideal'"]),
        ({"ota": {"preamble_length": 128}}, ["ota.preamble_length", "odd"]),
        ({"train": {"lr": -1}}, ["train.lr", "greater than 0"]),
    ],
)
def test_bad_values_give_one_sentence(raw, must_contain):
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    for fragment in must_contain:
        assert fragment in message


def test_overrides_parse_toml_values():
    raw = apply_overrides({}, ["rounds=5", "channel.snr_db=7.5", "model.hidden=[8, 4]", "name=abc", "channel.noise=false"])
    cfg = validate_config(raw)
    assert cfg.rounds == 5 and cfg.channel.snr_db == 7.5 and cfg.model.hidden == [8, 4]
    assert cfg.name == "abc" and cfg.channel.noise is False


def test_override_without_equals_is_a_config_error():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["rounds"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rounds = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_defaults_are_valid():
    assert ExperimentConfig().ota.power_control == "truncated"
