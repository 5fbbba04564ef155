"""`airfl run` with algorithm = "lora": the run directory contract plus the LoRA keys."""

import json
from pathlib import Path

import pytest

pytest.importorskip("peft")

from lora_helpers import tiny_config  # noqa: E402

from airfl.fl.config import load_config  # noqa: E402
from airfl.fl.experiment import run_experiment  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


def test_lora_run_directory_follows_the_contract(tmp_path):
    cfg = tiny_config(lora={"strategy": "sa_fedlora", "r_max": 4, "r_min": 2}, aggregation={"kind": "ota", "baseline": True})
    s = run_experiment(cfg, tmp_path, progress=False)
    for name in ("config.toml", "metrics.jsonl", "summary.json", "accuracy.png", "aggregation_nmse.png", "accuracy_vs_uplink.png"):
        assert (tmp_path / name).is_file(), name
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [1, 2]
    for r in records:
        for key in ("accuracy", "loss", "applied", "nmse_db", "participants", "uplink_values", "airtime_s",
                    "personalised_accuracy", "personalised_accuracy_per_client", "rank",
                    "uplink_values_cumulative", "downlink_values_cumulative", "uplink_saving_pct"):
            assert key in r, key
        assert set(r["baseline"]) >= {"accuracy", "loss", "personalised_accuracy"}
        assert len(r["personalised_accuracy_per_client"]) == 3
    assert records[1]["uplink_values_cumulative"] == sum(r["uplink_values"] for r in records)
    assert s["rounds"] == 2 and set(s["final"]) == {"accuracy", "loss"} and set(s["baseline"]) == {"accuracy", "loss"}
    assert s["algorithm"] == "lora" and s["airtime_s"] > 0 and isinstance(s["uplink_values"], int)
    assert s["lora"]["uplink_saving_pct"] > 0 and s["lora"]["full_model_values"] == s["model_parameters"]
    assert load_config(tmp_path / "config.toml") == cfg  # re-runnable as it is


def test_same_seed_same_run(tmp_path):
    cfg = tiny_config(lora={"strategy": "pftt"})
    a = run_experiment(cfg, tmp_path / "a", progress=False)
    b = run_experiment(cfg, tmp_path / "b", progress=False)
    assert a["final"] == b["final"] and a["lora"]["final_personalised_accuracy"] == b["lora"]["final_personalised_accuracy"]


@pytest.mark.parametrize(
    "name, strategy, model",
    [
        ("lora_fedit", "fedit", "mlp_digits"),
        ("lora_ffa", "ffa", "mlp_digits"),
        ("lora_pftt", "pftt", "mlp_digits"),
        ("lora_sa_fedlora", "sa_fedlora", "mlp_digits"),
        ("lora_minilm_small", "sa_fedlora", "minilm"),
    ],
)
def test_shipped_lora_configs_validate(name, strategy, model):
    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    assert (cfg.algorithm, cfg.lora.strategy, cfg.lora.model) == ("lora", strategy, model)
