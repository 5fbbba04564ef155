"""Open the radios a run names in [radios] and apply their per-radio settings.

The round protocol does not care what a radio is; this module turns URIs into radios:
loopback URIs get an air built from [channel] (named by the URI's AIR part), hardware URIs open
their backend (pyadi-iio, SoapySDR). Every radio is configured with the run's sample rate and
carrier, its own TX gain (radios.tx_gain_db) and, where given, its xo_correction; the server gets
channel.rx_gain_db. A radio that cannot do what the timing mode needs is refused with a sentence
that says which mode it can do. The virtual mode takes either timed radios (the sum is sent at the
sample time the round asks) or a cyclic transmitter such as a stock Pluto (every window is one cyclic
exchange, fl/virtual_cyclic.py).
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from airfl.fl.config import ExperimentConfig
from airfl.radio.base import Radio, RadioConfig, RadioError
from airfl.radio.loopback import AirConfig
from airfl.radio.uri import loopback_air, open_radio


def apply_radio_settings(radio: Radio, uri: str, cfg: ExperimentConfig, base: RadioConfig) -> None:
    """Configure a transmitter: the run's rates, its TX gain (dB) and, if set, its xo_correction (Hz)."""
    radio.configure(replace(base, tx_gain_db=cfg.radios.tx_gain_db.get(uri, 0.0)))
    xo = cfg.radios.xo_correction_hz.get(uri)
    if xo is not None:
        setter = getattr(radio, "set_xo_correction", None)
        if setter is None:
            raise ValueError(
                f"radios.xo_correction_hz sets {uri}, but that radio has no xo_correction "
                "(only Plutos and loopback radios do); remove the entry"
            )
        setter(int(xo))


def _prepare_loopback_airs(cfg: ExperimentConfig, uris: list[str]) -> None:
    from airfl.fl.air_setup import loopback_channel, rf_link_channel  # noqa: PLC0415 - air_setup imports this module

    c = cfg.channel
    channel = rf_link_channel(cfg) if cfg.ota.timing_mode == "virtual" else loopback_channel(cfg)
    names = {urlsplit(u).netloc or "default" for u in uris if urlsplit(u).scheme.lower() == "loopback"}
    for name in names:
        loopback_air(
            name,
            AirConfig(seed=cfg.seed, sample_rate_hz=c.sample_rate_hz, center_freq_hz=c.center_freq_hz, channel=channel),
        )


def open_run_radios(cfg: ExperimentConfig, n_clients: int, rx_config: RadioConfig) -> tuple[list[Radio], Radio]:
    """(transmitters, server) from [radios]: one radio per client (timed, cyclic) or the one real
    transmitter (virtual). Closes what it opened if anything fails."""
    r = cfg.radios
    assert r.server is not None
    virtual = cfg.ota.timing_mode == "virtual"
    if virtual:
        if not r.transmitter:
            raise ValueError('ota.timing_mode = "virtual" with [radios] needs radios.transmitter (the one real transmitter)')
        tx_uris = [r.transmitter]
    else:
        if len(r.clients) != n_clients:
            raise ValueError(
                f"radios.clients lists {len(r.clients)} radio(s) but the experiment has {n_clients} clients; "
                'list one URI per client, or use ota.timing_mode = "virtual" with radios.transmitter'
            )
        tx_uris = list(r.clients)
    _prepare_loopback_airs(cfg, [r.server, *tx_uris])
    opened: list[Radio] = []
    try:
        server = open_radio(r.server)
        opened.append(server)
        server.configure(rx_config)
        transmitters: list[Radio] = []
        for uri in tx_uris:
            radio = open_radio(uri)
            opened.append(radio)
            apply_radio_settings(radio, uri, cfg, rx_config)
            transmitters.append(radio)
        two_plutos = virtual and transmitters[0].capabilities.cyclic_tx and not transmitters[0].capabilities.timed_tx
        if cfg.ota.timing_mode in ("timed", "virtual") and not two_plutos:
            for radio in opened:
                caps = radio.capabilities
                if not (caps.timed_tx and caps.timed_rx):
                    hint = 'use ota.timing_mode = "cyclic"' if caps.cyclic_tx else "use a radio with hardware time"
                    raise ValueError(
                        f"{radio.name} has no hardware time, but ota.timing_mode = {cfg.ota.timing_mode!r} schedules "
                        f"bursts at sample times; {hint}"
                    )
    except (ValueError, RadioError):
        for radio in opened:
            radio.close()
        raise
    return transmitters, server
