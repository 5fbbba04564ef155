"""A run loads a calibration profile; the applied values are in its resolved config."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from rich.console import Console

from airfl.calibration.profile import CalibrationProfile, save_profile
from airfl.fl.air_setup import make_aggregator
from airfl.fl.config import ConfigError, load_config, validate_config
from airfl.fl.rundir import RunDirectory


def _config_file(tmp_path, text: str = "") -> str:
    path = tmp_path / "exp.toml"
    path.write_text('name = "cal"\nrounds = 2\n[data]\nclients = 3\n' + text)
    return str(path)


def _profile(tmp_path) -> str:
    p = CalibrationProfile(sample_rate_hz=1e6, center_freq_hz=2.4e9)
    p.update("loopback://airfl/server", rx_gain_db=-12.0, noise_power=1e-6)
    p.update("loopback://airfl/client0", tx_gain_db=-3.0, max_tx_power=0.08)
    p.update("loopback://airfl/client1", tx_gain_db=-1.0, max_tx_power=0.05)
    p.update("loopback://airfl/client2", max_tx_power=0.2)
    p.update("loopback://other/client0", tx_gain_db=-20.0)  # another bench: never applied
    return str(save_profile(p, tmp_path / "profile.json"))


def test_profile_values_fill_the_config_and_show_in_the_resolved_config(tmp_path):
    cfg = load_config(_config_file(tmp_path), [f"calibration={_profile(tmp_path)!r}".replace("'", '"')])
    assert cfg.channel.rx_gain_db == -12.0
    assert cfg.radios.tx_gain_db == {"loopback://airfl/client0": -3.0, "loopback://airfl/client1": -1.0}
    assert cfg.ota.tx_power == 0.05  # capped by the weakest clean transmitter
    run = RunDirectory(tmp_path / "run")
    run.write_config(cfg)
    resolved = tomllib.loads((tmp_path / "run" / "config.toml").read_text())
    assert resolved["channel"]["rx_gain_db"] == -12.0
    assert resolved["radios"]["tx_gain_db"]["loopback://airfl/client0"] == -3.0
    assert resolved["ota"]["tx_power"] == 0.05
    assert validate_config(resolved) == cfg  # re-runnable as is (applying again changes nothing)


def test_config_values_win_over_the_profile(tmp_path):
    text = '[channel]\nrx_gain_db = 5.0\n[radios.tx_gain_db]\n"loopback://airfl/client0" = -7.0\n'
    cfg = load_config(_config_file(tmp_path, text), [f'calibration="{_profile(tmp_path)}"'])
    assert cfg.channel.rx_gain_db == 5.0
    assert cfg.radios.tx_gain_db["loopback://airfl/client0"] == -7.0


def test_tx_gains_from_the_profile_reach_the_emulated_radios(tmp_path):
    cfg = load_config(_config_file(tmp_path), [f'calibration="{_profile(tmp_path)}"'])
    aggregator = make_aggregator(cfg, 3, 100, Console(quiet=True))
    clients = aggregator.round.clients
    assert [c.config.tx_gain_db for c in clients] == [-3.0, -1.0, 0.0]
    assert aggregator.round.server.config.rx_gain_db == -12.0


def test_a_profile_for_other_radios_is_refused(tmp_path):
    p = CalibrationProfile()
    p.update("pluto://usb:1.2.3", tx_gain_db=-3.0)
    path = save_profile(p, tmp_path / "p.json")
    with pytest.raises(ConfigError, match="no entry for this run's radios.*pluto://usb:1.2.3"):
        load_config(_config_file(tmp_path), [f'calibration="{path}"'])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(_config_file(tmp_path), ['calibration="missing.json"'])


def test_radios_section_with_loopback_uris_is_the_same_air_as_the_default(tmp_path):
    """[radios] naming loopback radios runs on an air from [channel]: same seed and names, same samples."""
    uris = 'server = "loopback://airfl/server"\nclients = ["loopback://airfl/client0", "loopback://airfl/client1", "loopback://airfl/client2"]\n'
    default = load_config(_config_file(tmp_path))
    named = load_config(_config_file(tmp_path, "[radios]\n" + uris))
    rng = np.random.default_rng(0)
    updates = [rng.standard_normal(500) for _ in range(3)]
    results = []
    for cfg in (default, named):
        agg = make_aggregator(cfg, 3, 500, Console(quiet=True))
        results.append(agg.aggregate(updates, [1.0, 1.0, 1.0])[0])
        agg.close()
    np.testing.assert_array_equal(results[0], results[1])


def test_radios_section_errors_are_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match="radios.server must name"):
        load_config(_config_file(tmp_path, '[radios]\nclients = ["loopback://a/c0"]\n'))
    with pytest.raises(ConfigError, match="attenuation"):
        load_config(_config_file(tmp_path, '[radios.tx_gain_db]\n"loopback://a/c0" = 3.0\n'))
    cfg = load_config(_config_file(tmp_path, '[radios]\nserver = "loopback://a/s"\nclients = ["loopback://a/c0"]\n'))
    with pytest.raises(ValueError, match="lists 1 radio.*3 clients"):
        make_aggregator(cfg, 3, 100, Console(quiet=True))
    cfg = load_config(_config_file(tmp_path, '[radios]\nserver = "loopback://a/s"\n[ota]\ntiming_mode = "virtual"\n'))
    with pytest.raises(ValueError, match="radios.transmitter"):
        make_aggregator(cfg, 3, 100, Console(quiet=True))
