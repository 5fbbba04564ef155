"""Build the aggregator a config asks for: exact averaging, or analog aggregation over the air."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from airfl.fl.aggregate import Aggregator, IdealAggregator, OverTheAirAggregator
from airfl.fl.config import ExperimentConfig
from airfl.fl.ota import OtaSettings, OverTheAirRound, segment_overhead_samples
from airfl.fl.ota_cyclic import CyclicOverTheAirRound, CyclicSettings, cyclic_period
from airfl.modem import SoundingLayout, symbol_count
from airfl.radio import AirConfig, ChannelConfig, LoopbackAir, Radio, RadioConfig
from airfl.radio.presets import LAB_RX_GAIN_DB, lab_impairments, uncalibrated_lab_impairments
from airfl.fl.config_radios import default_client_uri
from airfl.fl.radio_setup import apply_radio_settings, open_run_radios
from airfl.fl.virtual_cyclic import CyclicForwardingReceiver, cyclic_capable
from airfl.radio.cyclic import CyclicLoopbackRadio, CyclicOptions
from airfl.radio.virtual import VirtualClients


def noise_power_for_snr(snr_db: float, tx_power: float, path_loss_db: float) -> float:
    """sigma^2 such that P * E|h|^2 / sigma^2 = snr_db, with E|h|^2 = 10^(-path_loss_db/10)."""
    return tx_power * 10.0 ** (-path_loss_db / 10.0) / 10.0 ** (snr_db / 10.0)


def ota_settings(cfg: ExperimentConfig) -> OtaSettings:
    """The round protocol's knobs from the [ota] section."""
    o = cfg.ota
    truncation = {"truncated": "fixed", "optimal": "optimal", "full": "full"}[o.power_control]
    return OtaSettings(
        tx_power=o.tx_power,
        waveform=o.waveform,
        truncation=truncation,  # type: ignore[arg-type]
        truncation_threshold_db=o.truncation_threshold_db,
        sounding_repeats=o.sounding_repeats,
        pilot_spacing=o.pilot_spacing,
        ofdm_fft=o.ofdm_fft,
        ofdm_cp=o.ofdm_cp,
        ofdm_used=o.ofdm_used,
        ofdm_pilot_every=o.ofdm_pilot_every,
        acquisition=o.acquisition,
        acquisition_length=o.acquisition_length,
        acquisition_search_samples=o.acquisition_search_samples,
        quiet_samples=o.quiet_samples,
        dac_peak=o.dac_peak,
        peak_policy=o.peak_policy,
        cfo_correction=o.cfo_correction,
        timing_correction=o.timing_correction,
        fractional_timing=o.fractional_timing,
        dc_correction=o.dc_correction,
        rx_iq_correction=o.rx_iq_correction,
        max_segment_samples=o.max_segment_samples,
        center_freq_hz=cfg.channel.center_freq_hz,
        sounding_cp=o.sounding_cp,
        sounding_min_shift=o.sounding_min_shift,
        sounding_min_length=o.sounding_min_length,
        preamble_length=o.preamble_length,
        guard_samples=o.guard_samples,
        lead_samples=o.lead_samples,
        frame_period_s=o.frame_period_s,
        false_alarm_probability=o.false_alarm_probability,
    )


def cyclic_settings(cfg: ExperimentConfig) -> CyclicSettings:
    """The cyclic mode's knobs from the [ota] section."""
    return CyclicSettings(tolerance_samples=cfg.ota.cyclic_tolerance_samples, max_iterations=cfg.ota.cyclic_max_iterations)


def loopback_channel(cfg: ExperimentConfig) -> ChannelConfig:
    """The loopback air's physics from the [channel] section (impairment preset included)."""
    c = cfg.channel
    noise = noise_power_for_snr(c.snr_db, cfg.ota.tx_power, c.path_loss_db) if c.noise else 0.0
    if c.impairments == "lab":
        base = lab_impairments()
    elif c.impairments == "lab_uncalibrated":
        base = uncalibrated_lab_impairments()
    else:
        base = ChannelConfig()
    return replace(
        base,
        path_loss_db=c.path_loss_db,
        path_loss_spread_db=c.path_loss_spread_db,
        fading=c.fading,
        rician_k_db=c.rician_k_db,
        coherence_time_s=c.coherence_time_s,
        max_delay_samples=c.max_delay_samples,
        noise_power=noise,
    )


def rf_link_channel(cfg: ExperimentConfig) -> ChannelConfig:
    """The emulated RF link of the virtual mode: the radios' impairments and the receiver noise, no
    fading or delay (those are the virtual clients'). The noise is scaled with the forward gain so
    that channel.snr_db keeps meaning the SNR per client at the receiver."""
    channel = loopback_channel(cfg)
    scale = 10.0 ** (cfg.ota.virtual_forward_gain_db / 10.0)
    return replace(channel, fading="none", max_delay_samples=0, noise_power=channel.noise_power * scale)


def virtual_client_air(cfg: ExperimentConfig) -> AirConfig:
    """The emulated air of virtual clients: their channels (fading, delays), no radio impairments
    (those belong to the real RF link)."""
    c = cfg.channel
    return AirConfig(
        seed=cfg.seed + 1, sample_rate_hz=c.sample_rate_hz,
        channel=ChannelConfig(path_loss_db=c.path_loss_db, path_loss_spread_db=c.path_loss_spread_db,
                              fading=c.fading, rician_k_db=c.rician_k_db, coherence_time_s=c.coherence_time_s,
                              max_delay_samples=c.max_delay_samples),
    )


def loopback_aggregator(cfg: ExperimentConfig, n_clients: int) -> OverTheAirAggregator:
    """Over-the-air aggregation on an emulated air built from the [channel] section."""
    c = cfg.channel
    margin = 8 if c.impairments != "none" else 0  # fractional delay and multipath taps need room
    if cfg.ota.sounding_cp < c.max_delay_samples + margin:
        raise ValueError(
            f"ota.sounding_cp ({cfg.ota.sounding_cp}) must cover channel.max_delay_samples "
            f"({c.max_delay_samples}){' + 8 for the impairments' if margin else ''} or client delays cannot "
            "be measured; e.g. ota.sounding_cp=24 ota.sounding_min_shift=40"
        )
    channel = loopback_channel(cfg)
    rx_gain = c.rx_gain_db if c.rx_gain_db is not None else (LAB_RX_GAIN_DB if c.impairments != "none" else 0.0)
    rx_config = RadioConfig(sample_rate_hz=c.sample_rate_hz, center_freq_hz=c.center_freq_hz, rx_gain_db=rx_gain)
    if cfg.radios.server:
        return radios_aggregator(cfg, n_clients, rx_config)
    if cfg.ota.timing_mode == "virtual":
        # The two-radio lab: the clients' channels (fading, delays) are emulated and summed; one
        # transmitter sends the sum over one RF link, which carries the noise and radio impairments.
        rf = LoopbackAir(AirConfig(seed=cfg.seed, sample_rate_hz=c.sample_rate_hz, center_freq_hz=c.center_freq_hz,
                                   channel=rf_link_channel(cfg)))
        bank = VirtualClients(n_clients, rf.radio("tx"), virtual_client_air(cfg), forward_gain_db=cfg.ota.virtual_forward_gain_db)
        server_radio = rf.radio("rx")
        server_radio.configure(rx_config)
        protocol = OverTheAirRound(bank.clients, bank.receiver(server_radio), c.sample_rate_hz, ota_settings(cfg))
        return OverTheAirAggregator(protocol)
    air = LoopbackAir(AirConfig(seed=cfg.seed, sample_rate_hz=c.sample_rate_hz, center_freq_hz=c.center_freq_hz,
                                channel=channel))
    if cfg.ota.timing_mode == "cyclic":
        # Stock-Pluto emulation: no hardware time, cyclic buffers, host latency and restart jitter.
        options = CyclicOptions(c.cyclic_restart_jitter_samples, c.cyclic_max_host_latency_s)
        cyclic = [CyclicLoopbackRadio(air, f"client{k}", options) for k in range(n_clients)]
        for k, client in enumerate(cyclic):
            apply_radio_settings(client, default_client_uri(k), cfg, rx_config)
        receiver = CyclicLoopbackRadio(air, "server", options)
        receiver.configure(rx_config)
        return OverTheAirAggregator(
            CyclicOverTheAirRound(cyclic, receiver, c.sample_rate_hz, ota_settings(cfg), cyclic_settings(cfg))
        )
    clients = [air.radio(f"client{k}") for k in range(n_clients)]
    for k, client in enumerate(clients):
        apply_radio_settings(client, default_client_uri(k), cfg, rx_config)
    server = air.radio("server")
    server.configure(rx_config)
    protocol = OverTheAirRound(clients, server, c.sample_rate_hz, ota_settings(cfg))
    return OverTheAirAggregator(protocol)


def radios_aggregator(cfg: ExperimentConfig, n_clients: int, rx_config: RadioConfig) -> OverTheAirAggregator:
    """Over-the-air aggregation on the radios named in [radios] (loopback or hardware URIs)."""
    c = cfg.channel
    transmitters, server = open_run_radios(cfg, n_clients, rx_config)
    if cfg.ota.timing_mode == "virtual":
        gain_db = cfg.ota.virtual_forward_gain_db
        bank = VirtualClients(n_clients, transmitters[0], virtual_client_air(cfg), forward_gain_db=gain_db)
        if cyclic_capable(transmitters[0]):  # two stock Plutos: each window is one cyclic exchange
            receiver: Radio = CyclicForwardingReceiver(bank, transmitters[0], server, gain_db)
        else:
            receiver = bank.receiver(server)
        protocol = OverTheAirRound(bank.clients, receiver, c.sample_rate_hz, ota_settings(cfg))
    elif cfg.ota.timing_mode == "cyclic":
        try:
            protocol = CyclicOverTheAirRound(transmitters, server, c.sample_rate_hz, ota_settings(cfg), cyclic_settings(cfg))
        except ValueError:
            for radio in (server, *transmitters):
                radio.close()
            raise
    else:
        protocol = OverTheAirRound(transmitters, server, c.sample_rate_hz, ota_settings(cfg))
    return OverTheAirAggregator(protocol, owned=[server, *transmitters])


def warn_if_round_outlasts_coherence(cfg: ExperimentConfig, n_values: int, n_clients: int, console: Console) -> None:
    """Block fading redraws the channel every coherence time: a longer round sends on stale CSI."""
    o = cfg.ota
    if o.timing_mode == "cyclic":
        warn_if_cyclic_round_sees_fading(cfg, n_values, n_clients, console)
        return
    sounding = SoundingLayout(
        n_clients, o.sounding_cp, o.sounding_min_shift, o.sounding_min_length, o.sounding_repeats
    ).burst_length
    symbols = symbol_count(n_values)
    if o.waveform == "ofdm":
        n_data = o.ofdm_used - len(range(o.ofdm_pilot_every // 2, o.ofdm_used, o.ofdm_pilot_every))
        payload = (1 + -(-symbols // n_data)) * (o.ofdm_fft + o.ofdm_cp)
    else:
        payload = o.preamble_length + symbols + (symbols // o.pilot_spacing + 1 if o.pilot_spacing else 0)
    payload += segment_overhead_samples(n_clients, payload, ota_settings(cfg))  # re-soundings, if any
    round_samples = o.quiet_samples + sounding + payload + 3 * o.lead_samples + cfg.channel.max_delay_samples
    coherence = cfg.channel.coherence_time_s * cfg.channel.sample_rate_hz
    if cfg.channel.fading == "rayleigh" and round_samples > coherence:
        console.print(
            f"[yellow]warning:[/] one round lasts {round_samples:,} samples but the channel changes every "
            f"{coherence:,.0f} samples (channel.coherence_time_s): the payload will be sent on stale channel "
            "estimates; raise channel.coherence_time_s or channel.sample_rate_hz for a block-fading experiment"
        )


def warn_if_cyclic_round_sees_fading(cfg: ExperimentConfig, n_values: int, n_clients: int, console: Console) -> None:
    """Cyclic rounds cannot start on the fading grid (no hardware time); say how often a round will
    straddle a change of the channel."""
    c = cfg.channel
    if c.fading == "none" or cfg.radios.server:
        return
    period = cyclic_period(ota_settings(cfg), cyclic_settings(cfg), n_clients, n_values)
    span = 2 * period + 2 * c.cyclic_max_host_latency_s * c.sample_rate_hz  # a sounding and a payload capture
    coherence = c.coherence_time_s * c.sample_rate_hz
    if span > 0.1 * coherence:
        console.print(
            f"[yellow]warning:[/] a cyclic round spans at least {span:,.0f} samples (two captures of one "
            f"{period:,}-sample period plus host latency) and cannot be aligned to the channel's "
            f"{coherence:,.0f}-sample fading blocks, so about {min(1.0, span / coherence):.0%} of rounds see the "
            "channel change: they feed back again (cyclic_csi_refreshes) and a few fail; raise "
            "channel.coherence_time_s for a static bench"
        )


def make_aggregator(cfg: ExperimentConfig, n_clients: int, n_values: int, console: Console) -> Aggregator:
    """The aggregator of `cfg.aggregation.kind`, warning about physically doubtful set-ups."""
    if cfg.aggregation.kind == "ideal":
        return IdealAggregator()
    warn_if_round_outlasts_coherence(cfg, n_values, n_clients, console)
    return loopback_aggregator(cfg, n_clients)
