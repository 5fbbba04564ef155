"""Apply a calibration profile to an experiment config (`calibration = "profile.json"`).

fl/ reads calibration *results* (the profile file and its schema), never runs a procedure. The
profile's values are written into the config itself, so the run's resolved config.toml shows
exactly what was applied and re-runs without the profile the same way:

    server's rx_gain_db            -> channel.rx_gain_db        (unless the config sets it)
    each transmitter's tx_gain_db  -> radios.tx_gain_db[URI]    (unless the config sets it)
    xo_correction_hz               -> radios.xo_correction_hz[URI] (unless the config sets it)
    max_tx_power (min over the run's transmitters) caps ota.tx_power

Radios are matched by URI: the run's [radios] URIs, or, for a run on its own loopback air,
loopback://airfl/server and loopback://airfl/clientK (calibrate those URIs with `--air` and `--seed`
equal to the run's impairments and seed, and the emulated radios are the same ones).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from airfl.calibration.profile import CalibrationProfile, ProfileError, load_profile
from airfl.fl.config_radios import DEFAULT_AIR, default_server_uri

if TYPE_CHECKING:
    from airfl.fl.config import ExperimentConfig

_DEFAULT_CLIENT = re.compile(rf"^loopback://{DEFAULT_AIR}/client\d+$")


def run_transmitter_uris(cfg: ExperimentConfig, profile: CalibrationProfile) -> list[str]:
    """URIs of the run's transmitters that the profile knows."""
    radios = cfg.radios
    if radios.server:
        wanted = [radios.transmitter] if cfg.ota.timing_mode == "virtual" and radios.transmitter else list(radios.clients)
        return [u for u in wanted if profile.entry(u) is not None]
    return sorted((e.uri for e in profile.radios.values() if _DEFAULT_CLIENT.match(e.uri)), key=_natural)


def _natural(uri: str) -> tuple[str, int]:
    m = re.search(r"(\d+)$", uri)
    return (uri[: m.start()] if m else uri, int(m.group(1)) if m else -1)


def apply_calibration(cfg: ExperimentConfig, error: type[Exception]) -> ExperimentConfig:
    """A copy of `cfg` (an ExperimentConfig) with the profile's values filled in; problems with the
    profile become `error` (ConfigError) with one sentence."""
    path = Path(cfg.calibration)
    try:
        profile = load_profile(path)
    except ProfileError as exc:
        raise error(str(exc).rstrip(".") + ".") from None
    radios = cfg.radios
    server_uri = radios.server or default_server_uri()
    channel = cfg.channel
    ota = cfg.ota
    server = profile.entry(server_uri)
    if server is None and not any(profile.entry(u) for u in run_transmitter_uris(cfg, profile)):
        known = ", ".join(e.uri for e in profile.radios.values()) or "none"
        raise error(
            f"calibration profile {path} has no entry for this run's radios ({server_uri} and its clients); "
            f"it knows: {known}."
        )
    channel_changes: dict[str, object] = {}
    if server is not None and server.rx_gain_db is not None and channel.rx_gain_db is None:
        channel_changes["rx_gain_db"] = server.rx_gain_db
    tx_gain = dict(radios.tx_gain_db)
    xo = dict(radios.xo_correction_hz)
    powers: list[float] = []
    for uri in run_transmitter_uris(cfg, profile):
        entry = profile.entry(uri)
        assert entry is not None
        if entry.tx_gain_db is not None:
            tx_gain.setdefault(uri, entry.tx_gain_db)
        if entry.xo_correction_hz is not None:
            xo.setdefault(uri, entry.xo_correction_hz)
        if entry.max_tx_power is not None:
            powers.append(entry.max_tx_power)
    ota_changes: dict[str, object] = {}
    if powers and min(powers) < ota.tx_power:
        ota_changes["tx_power"] = min(powers)
    data = cfg.model_dump()
    data["channel"].update(channel_changes)
    data["ota"].update(ota_changes)
    data["radios"].update({"tx_gain_db": tx_gain, "xo_correction_hz": xo})
    return type(cfg).model_validate(data)
