"""The meta-learning runner: run directory contract, meta keys, the noise-free air against its
ideal baseline, few-shot digits, shipped configs and one-sentence config errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from airfl.fl.config import ConfigError, load_config, validate_config
from airfl.fl.experiment import RUNNERS, run_experiment

ROOT = Path(__file__).resolve().parents[2]
TINY_META = {
    "agents": 4, "agents_per_round": 2, "tasks_per_agent": 2, "support": 5, "query": 5, "new_agents": 3,
    "new_agent_tasks": 2, "topk_fraction": 0.06, "compression": "dft", "compression_ratio": 0.6,
    "personalise_steps": 2, "inner_lr": 0.02, "personalise_lr": 0.02, "clip_norm": 3.0,
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _cfg(meta: dict[str, Any] | None = None, **top: Any):
    raw: dict[str, Any] = {"name": "m", "seed": 2, "rounds": 3, "algorithm": "meta", "model": {"hidden": [16]},
                           "meta": {**TINY_META, **(meta or {})}}
    raw.update(top)
    return validate_config(raw)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_meta_run_directory_follows_the_contract(tmp_path):
    cfg = _cfg()
    s = run_experiment(cfg, tmp_path, progress=False)
    assert RUNNERS["meta"] is not None
    for name in ("config.toml", "metrics.jsonl", "summary.json", "meta_loss.png", "aggregation_nmse.png"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(s))
    assert s["rounds"] == 3 and s["status"] == "complete" and s["algorithm"] == "meta"
    assert s["final"]["accuracy"] is None and s["final"]["loss"] > 0  # regression: no accuracy
    assert set(s["baseline"]) == {"accuracy", "loss"}
    assert s["aggregation"]["snr_db"] == 20.0 and s["aggregation"]["nmse_db_mean"] is not None
    assert s["airtime_s"] > 0 and isinstance(s["uplink_values"], int) and s["wall_s"] > 0
    meta = s["meta"]
    assert meta["scratch"]["loss"] - meta["final"]["loss"] == pytest.approx(meta["margin_vs_scratch"])
    assert meta["final"]["generalisation_gap"] == pytest.approx(meta["final"]["loss"] - meta["final"]["train_agents_loss"])
    records = _records(tmp_path)
    assert [r["round"] for r in records] == [1, 2, 3]
    for key in ("accuracy", "loss", "applied", "nmse_db", "participants", "airtime_s", "meta_train_loss",
                "train_agents_loss", "generalisation_gap", "recovery_nmse_db", "selected", "outer_lr", "baseline"):
        assert key in records[0], key
    assert all(len(r["selected"]) == 2 for r in records)
    assert s["uplink_values_per_agent"] < s["model_parameters"]  # the sketch is shorter than the model
    assert load_config(tmp_path / "config.toml") == cfg


def test_noise_free_air_run_matches_its_ideal_baseline_every_round(tmp_path):
    cfg = _cfg(rounds=4, channel={"noise": False}, ota={"power_control": "full"})
    run_experiment(cfg, tmp_path, progress=False)
    for r in _records(tmp_path):
        assert r["loss"] == pytest.approx(r["baseline"]["loss"], rel=1e-9)
        assert r["meta_train_loss"] == pytest.approx(r["baseline"]["meta_train_loss"], rel=1e-9)
        assert r["nmse_db"] < -200


def test_few_shot_digits_run_reports_accuracy(tmp_path):
    cfg = _cfg({"task": "digits_fewshot", "n_way": 3, "support": 2, "query": 3, "topk_fraction": 0.05,
                "compression_ratio": 0.5, "variant": "fomaml"}, rounds=2, aggregation={"kind": "ideal"})
    s = run_experiment(cfg, tmp_path, progress=False)
    assert 0.0 <= s["final"]["accuracy"] <= 1.0 and s["baseline"] is None
    assert (tmp_path / "accuracy.png").is_file() and not (tmp_path / "aggregation_nmse.png").exists()


@pytest.mark.parametrize("name", ["meta_sine.toml", "meta_digits.toml"])
def test_shipped_meta_configs_validate(name):
    cfg = load_config(ROOT / "configs" / name)
    assert cfg.algorithm == "meta" and cfg.aggregation.kind == "ota" and cfg.channel.snr_db == 20.0


@pytest.mark.parametrize(
    "meta, must_contain",
    [
        ({"agents": 3, "agents_per_round": 5}, ["meta.agents_per_round", "cannot exceed"]),
        ({"compression": "dft", "topk_fraction": 1.0}, ["meta.topk_fraction", "below 1"]),
        ({"variant": "anil"}, ["meta.variant", "'maml'", "'reptile'"]),
        ({"inner_stepz": 2}, ["meta.inner_stepz", "allowed keys", "inner_steps"]),
        ({"heterogeneity": 1.5}, ["meta.heterogeneity", "less than or equal to 1"]),
    ],
)
def test_bad_meta_values_give_one_sentence(meta, must_contain):
    with pytest.raises(ConfigError) as info:
        validate_config({"algorithm": "meta", "meta": meta})
    message = str(info.value)
    assert "\n" not in message and message.endswith(".")
    for fragment in must_contain:
        assert fragment in message


def test_selected_devices_map_one_persistent_round_to_the_selection():
    """Only the selected agents' radios take part; the others are handed to the round as never-sent
    updates, and the stats come back as positions among the selected agents."""
    import numpy as np
    from rich.console import Console

    from airfl.fl.runners.meta import SelectedDevices, device_aggregators

    cfg = _cfg(channel={"noise": False}, ota={"power_control": "full"})
    for_devices = device_aggregators(cfg, 6, 10, Console(quiet=True))
    first, second = for_devices([1, 4]), for_devices([0, 2, 5])
    assert isinstance(first, SelectedDevices) and first.inner is second.inner  # one round protocol, kept
    updates = [np.arange(10.0), -np.arange(10.0) + 3]
    estimate, stats = first.aggregate(updates, [1.0, 3.0])
    assert stats.participants == [0, 1] and stats.rejected == [] and stats.truncated == []
    assert sorted(first.inner.last.rejected) == [0, 2, 3, 5]  # never transmitted
    np.testing.assert_allclose(estimate, 0.25 * updates[0] + 0.75 * updates[1], atol=1e-9)
