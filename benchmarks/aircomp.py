"""Analog over-the-air aggregation NMSE over the loopback air, beside truncated-inversion theory.

Drives `airfl.fl.ota.OverTheAirRound` (sounding, truncated inversion, simultaneous transmission,
preamble detection, de-normalisation) with `LoopbackAir` radios and random Gaussian updates, and
compares the measured NMSE of the aggregate with the perfect-CSI theory of DESIGN.md section 2:
each real entry of the de-normalised sum carries error variance sigma^2 * scale^2 / (2 * eta),
eta = P * min_k |h_k|^2 over the participants, |h_k| taken from the loopback's truth.

    python benchmarks/aircomp.py            # table (rich), with a progress bar
    python benchmarks/aircomp.py --json     # the same numbers as a JSON document
    python benchmarks/aircomp.py --impairments [--both] [--json]   # the impairment axis (below)

Every channel realisation is one round: rounds start on the protocol's frame grid (20 ms), which
coincides with the air's fading blocks (coherence time 20 ms), so each round sees a fresh Rayleigh
draw and sounding and payload see the same one. The air seed is the same at every point (common
random numbers): the SNR sweep sees the same channels at every SNR, so the curves are smooth.

Impairment axis (`--impairments`): NMSE vs SNR for each entry of
`airfl.radio.presets.lab_impairments_one_by_one` (each lab impairment alone on the air above, plus
"none" and "all" = `lab_impairments()`), single carrier or OFDM, beside the receiver's own theory
(`RoundResult.error_variance_theory`). The server radio gets the lab receive gain
(`LAB_RX_GAIN_DB`); warm-up rounds run first so the per-client CFO and timing trackers converge.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from airfl.fl.ota import OtaSettings, OverTheAirRound, RoundResult
from airfl.modem import SoundingLayout, common_scale, update_statistics
from airfl.radio import LAB_RX_GAIN_DB, AirConfig, ChannelConfig, LoopbackAir, RadioConfig
from airfl.radio.presets import lab_impairments_one_by_one

SNR_SWEEP_DB: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)
SNR_SWEEP_CLIENTS = 10
CLIENT_SWEEP: tuple[int, ...] = (2, 5, 10, 20)
CLIENT_SWEEP_SNR_DB = 20.0

IMPAIRMENT_SNRS_DB: tuple[float, ...] = (10.0, 20.0, 30.0)
IMPAIRMENT_CLIENTS = 10
IMPAIRMENT_ROUNDS = 15
IMPAIRMENT_WARMUP = 5
SWEEP_ROUNDS = 30
DEFAULT_VALUES = 20000
WAVEFORMS: tuple[str, ...] = ("single_carrier", "ofdm")
# The lab preset's delays (integer + fractional + multipath) need a longer sounding cyclic prefix.
IMPAIRMENT_SOUNDING_CP = 24
IMPAIRMENT_SOUNDING_MIN_SHIFT = 40

SAMPLE_RATE_HZ = 1e6
PATH_LOSS_DB = 0.0
MAX_DELAY_SAMPLES = 8
COHERENCE_TIME_S = 0.02  # equals OtaSettings().frame_period_s: one fading block per round

SNR_DEFINITION = (
    "SNR = average receive SNR per client = P * E|h_k|^2 / sigma^2, with P = OtaSettings.tx_power "
    "(per complex sample, full-scale units), E|h_k|^2 = 10^(-path_loss_db/10) the mean path gain "
    "(Rayleigh fading has unit mean power), sigma^2 = ChannelConfig.noise_power, the complex noise "
    "power per sample at the receiver over the full sample-rate bandwidth (1 sample per symbol); "
    "so noise_power = P * 10^(-path_loss_db/10) / 10^(snr_db/10)"
)


def noise_power_for(snr_db: float, tx_power: float, path_loss_db: float = PATH_LOSS_DB) -> float:
    """Receiver noise power (full-scale units^2 per complex sample) giving `snr_db` per client."""
    return tx_power * 10.0 ** (-path_loss_db / 10.0) / 10.0 ** (snr_db / 10.0)


def _db(num: float, den: float) -> float | None:
    """10*log10(num/den), or None when undefined (no successful round)."""
    if not den > 0 or not num > 0:
        return None
    return float(10.0 * np.log10(num / den))


def max_values(clients: int, settings: OtaSettings) -> int:
    """Longest update (values) whose round, sounding to the end of the receive window, fits one fading block.

    The protocol pre-equalises with the channel sounded at the start of the frame; a payload that
    runs into the next coherence block meets a fresh, unrelated channel, and the theory (and the
    aggregate) no longer apply. ota.py schedules t1 = t0 + sounding + lead + max delay and the
    receiver's window ends guard samples after the aggregation frame.
    """
    sounding = SoundingLayout(clients, settings.sounding_cp, settings.sounding_min_shift, settings.sounding_min_length)
    overhead = (sounding.burst_length + settings.lead_samples + MAX_DELAY_SAMPLES + settings.preamble_length
                + settings.guard_samples)
    block = int(round(COHERENCE_TIME_S * SAMPLE_RATE_HZ))
    return 2 * (block - overhead)


def check_fits_one_block(clients: int, values: int, settings: OtaSettings) -> None:
    """Refuse a configuration whose round would outlast one fading block (see `max_values`)."""
    limit = max_values(clients, settings)
    if values > limit:
        raise ValueError(
            f"with {clients} clients a round of {values} values outlasts one fading block "
            f"({COHERENCE_TIME_S * 1e3:g} ms); use --values <= {limit}"
        )


def measure_point(snr_db: float, clients: int, rounds: int, values: int, seed: int) -> dict[str, Any]:
    """Run `rounds` over-the-air rounds at one (SNR, K) point and return NMSE measured vs theory.

    NMSE = 10*log10(sum_r ||est - exact||^2 / sum_r ||exact||^2) over the rounds that delivered an
    estimate, exact = sum_k weights[k] * update_k over the participants. Theory replaces the
    measured error energy of a round by values * sigma^2 * scale^2 / (2 * eta_true) (perfect CSI,
    true noise power) or by values * result.error_variance_theory (receiver's own estimates).
    """
    settings = OtaSettings()
    check_fits_one_block(clients, values, settings)
    noise_power = noise_power_for(snr_db, settings.tx_power)
    channel = ChannelConfig(
        path_loss_db=PATH_LOSS_DB,
        fading="rayleigh",
        coherence_time_s=COHERENCE_TIME_S,
        max_delay_samples=MAX_DELAY_SAMPLES,
        noise_power=noise_power,
    )
    air = LoopbackAir(AirConfig(seed=seed, sample_rate_hz=SAMPLE_RATE_HZ, channel=channel))
    radios = [air.radio(f"client{k}") for k in range(clients)]
    server = air.radio("server")
    ota = OverTheAirRound(radios, server, SAMPLE_RATE_HZ, settings)
    rng = np.random.default_rng(np.random.SeedSequence([seed, clients, 0xA1C0]))
    weights = np.full(clients, 1.0 / clients)

    err_energy = exact_energy = theory_energy = theory_est_energy = 0.0
    participants = 0
    failures = 0
    for _ in range(rounds):
        updates = [rng.standard_normal(values) for _ in range(clients)]
        result = ota.run(updates, weights)
        if result.estimate is None:
            failures += 1
            continue
        active = result.participants
        exact = np.sum([result.weights[k] * updates[k] for k in active], axis=0)
        scale = common_scale([update_statistics(updates[k]) for k in active], result.weights[active])
        # Truth: the gain each participant's payload met, i.e. at its own send time t1 - d_k.
        assert result.channels is not None and result.error_variance_theory is not None
        valid = [k for k in range(clients) if k not in result.rejected]
        delay = {k: int(result.channels.delays[j]) for j, k in enumerate(valid)}
        t1 = result.timing["payload_at"]
        h2 = [abs(air.link(radios[k].name, server.name).true_gain(t1 - delay[k])) ** 2 for k in active]
        eta_true = settings.tx_power * min(h2)
        err_energy += float(np.sum((result.estimate - exact) ** 2))
        exact_energy += float(np.sum(exact**2))
        theory_energy += values * noise_power * scale.scale**2 / (2.0 * eta_true)
        theory_est_energy += values * result.error_variance_theory
        participants += len(active)

    measured = _db(err_energy, exact_energy)
    theory = _db(theory_energy, exact_energy)
    ok = rounds - failures
    return {
        "snr_db": float(snr_db),
        "clients": int(clients),
        "rounds": int(rounds),
        "nmse_db_measured": measured,
        "nmse_db_theory": theory,
        "gap_db": None if measured is None or theory is None else measured - theory,
        "nmse_db_theory_estimated_csi": _db(theory_est_energy, exact_energy),
        "mean_participants": participants / ok if ok else None,
        "failures": failures,
    }


def sweep_points() -> list[tuple[str, float, int]]:
    """(sweep name, SNR dB, clients) of every point, in order."""
    points = [("snr", snr, SNR_SWEEP_CLIENTS) for snr in SNR_SWEEP_DB]
    points += [("clients", CLIENT_SWEEP_SNR_DB, k) for k in CLIENT_SWEEP]
    return points


# -- impairment axis ------------------------------------------------------------------------------
def impairment_settings(waveform: str, max_segment_samples: int = 0) -> OtaSettings:
    """Round settings of the impairment axis: P = 0.1 and a longer sounding prefix for the lab delays;
    `max_segment_samples` > 0 splits the aggregation frame with phase re-soundings (OtaSettings)."""
    return OtaSettings(
        tx_power=0.1,
        waveform=waveform,  # type: ignore[arg-type]
        sounding_cp=IMPAIRMENT_SOUNDING_CP,
        sounding_min_shift=IMPAIRMENT_SOUNDING_MIN_SHIFT,
        max_segment_samples=max_segment_samples,
    )


def impairment_names() -> list[str]:
    """The rows of the impairment axis, in the preset's order ("none" first, "all" last)."""
    return list(lab_impairments_one_by_one())


def _true_csi_energy(result: RoundResult, updates: Sequence[np.ndarray], air: LoopbackAir, radios: Sequence[Any],
                     server: Any, settings: OtaSettings, noise_power: float) -> float:
    """Perfect-CSI error energy of one round on a flat channel (the "none" air), as in `measure_point`:
    sum over values of sigma^2 * scale^2 / (2 * eta_true * W_v^2), W_v = total weight of the clients
    that carried value v (1 on single carrier; OFDM values nobody carried add nothing, as in the
    receiver's own theory). Single carrier: eta_true = P * min |h_k|^2 over the participants. OFDM:
    eta_true = P * n_fft / max_k (n_used * on_k / |h_k|^2), on_k = the share of values client k
    carried (the receiver's per-subcarrier truncation, kept as it decided; on_k = 1 for everyone
    gives P * min |h_k|^2 * n_fft / n_used)."""
    active = result.participants
    assert result.channels is not None
    scale = common_scale([update_statistics(updates[k]) for k in active], result.weights[active])
    valid = [k for k in range(len(updates)) if k not in result.rejected]
    delay = {k: int(result.channels.delays[j]) for j, k in enumerate(valid)}
    t1 = result.timing["payload_at"]
    h2 = np.array([abs(air.link(radios[k].name, server.name).true_gain(t1 - delay[k])) ** 2 for k in active])
    eta_true = settings.tx_power * float(h2.min())
    if result.value_weights is not None:
        # Client k inverts |h_k|^2 on the subcarriers the receiver gave it (a share `on` of the values);
        # its mean power is eta * n_used * on_k / (|h_k|^2 * n_fft) <= P.
        on = (result.value_weights[active] > 0).mean(axis=1)
        eta_true = settings.tx_power * settings.ofdm_fft / float(np.max(settings.ofdm_used * on / h2))
        total = result.value_weights[active].sum(axis=0)
        inv_w2 = float(np.sum(np.where(total > 0, 1.0 / np.where(total > 0, total, 1.0) ** 2, 0.0)))
    else:
        inv_w2 = float(len(updates[0]))
    return noise_power * scale.scale**2 / (2.0 * eta_true) * inv_w2


def measure_impairment(
    impairment: str,
    snr_db: float,
    waveform: str = "ofdm",
    clients: int = IMPAIRMENT_CLIENTS,
    rounds: int = IMPAIRMENT_ROUNDS,
    warmup: int = IMPAIRMENT_WARMUP,
    values: int = DEFAULT_VALUES,
    seed: int = 0,
    on_round: Callable[[], None] | None = None,
    max_segment_samples: int = 0,
) -> dict[str, Any]:
    """NMSE of `rounds` measured rounds on the `impairment` air of `lab_impairments_one_by_one` at
    `snr_db`, after `warmup` discarded rounds, beside the receiver's own theory.
    `max_segment_samples` is passed to OtaSettings (0: one aggregation frame; else segments, each
    after a phase re-sounding); the record's `airtime_samples` is the mean airtime per measured round.

    NMSE = 10*log10(sum_r ||est - exact||^2 / sum_r ||exact||^2) over the rounds that delivered an
    estimate, exact = result.exact_target(updates). Theory replaces the measured error energy of a
    round by values * result.error_variance_theory; for "none" also by the perfect-CSI energy
    (`_true_csi_energy`). `on_round` is called after every round (warm-up included).
    """
    settings = impairment_settings(waveform, max_segment_samples)
    noise_power = noise_power_for(snr_db, settings.tx_power)
    configs = lab_impairments_one_by_one(noise_power=noise_power)
    if impairment not in configs:
        raise ValueError(f"unknown impairment {impairment!r}; choose from {list(configs)}")
    channel = configs[impairment]
    air = LoopbackAir(AirConfig(seed=seed, sample_rate_hz=SAMPLE_RATE_HZ, channel=channel))
    radios = [air.radio(f"client{k}") for k in range(clients)]
    server = air.radio("server")
    server.configure(RadioConfig(sample_rate_hz=SAMPLE_RATE_HZ, rx_gain_db=LAB_RX_GAIN_DB))
    ota = OverTheAirRound(radios, server, SAMPLE_RATE_HZ, settings)
    rng = np.random.default_rng(np.random.SeedSequence([seed, clients, 0xA1C1]))
    weights = np.full(clients, 1.0 / clients)
    block = int(round(COHERENCE_TIME_S * SAMPLE_RATE_HZ))

    err_energy = exact_energy = theory_energy = true_energy = estimated_energy = 0.0
    participants = failures = over_block = airtime = 0
    for r in range(warmup + rounds):
        updates = [rng.standard_normal(values) for _ in range(clients)]
        result = ota.run(updates, weights)
        if on_round is not None:
            on_round()
        if r < warmup:
            continue
        airtime += result.airtime_samples
        # Sounding to the end of the receive window must fit one fading block (see max_values).
        length = result.diagnostics.get("round_samples")
        if length is not None and length + settings.guard_samples > block:
            over_block += 1
        if result.estimate is None or result.error_variance_theory is None:
            failures += 1
            continue
        exact = result.exact_target(updates)
        err_energy += float(np.sum((result.estimate - exact) ** 2))
        exact_energy += float(np.sum(exact**2))
        # The receiver's eta (what it really equalised with) but the true noise power after its
        # receive gain: its own noise estimate also holds the clients' LO leakage and image,
        # which would make "theory" pessimistic exactly where the receiver is not at fault.
        true_noise = noise_power * 10 ** (LAB_RX_GAIN_DB / 10)
        theory_energy += values * result.error_variance_theory * true_noise / max(result.noise_power, 1e-300)
        estimated_energy += values * result.error_variance_theory
        if impairment == "none":
            true_energy += _true_csi_energy(result, updates, air, radios, server, settings, noise_power)
        participants += len(result.participants)

    measured = _db(err_energy, exact_energy)
    theory = _db(theory_energy, exact_energy)
    ok = rounds - failures
    return {
        "waveform": waveform,
        "impairment": impairment,
        "snr_db": float(snr_db),
        "clients": int(clients),
        "rounds": int(rounds),
        "warmup": int(warmup),
        "values": int(values),
        "nmse_db_measured": measured,
        "nmse_db_theory": theory,
        "gap_db": None if measured is None or theory is None else measured - theory,
        "nmse_db_theory_true_csi": _db(true_energy, exact_energy) if impairment == "none" else None,
        "nmse_db_theory_receiver_noise": _db(estimated_energy, exact_energy),
        "failures": failures,
        "mean_participants": participants / ok if ok else None,
        "rounds_over_block": over_block,
        "max_segment_samples": int(max_segment_samples),
        "airtime_samples": airtime / rounds if rounds else None,
    }


def impairment_points(waveforms: Sequence[str], snrs: Sequence[float]) -> list[tuple[str, str, float]]:
    """(waveform, impairment, SNR dB) of every point of the impairment axis, in order."""
    return [(wf, name, snr) for wf in waveforms for name in impairment_names() for snr in snrs]


IMPAIRMENT_THEORY_NOTE = (
    "theory: truncated-inversion theory sigma^2*scale^2/(2*eta) per value with the eta the receiver "
    "equalised with and the TRUE noise power (after its rx gain); OFDM: averaged over subcarriers "
    "(the true-channel theory for multipath and OFDM is per subcarrier); gap = measured - theory. "
    "(The receiver's own noise estimate also holds the clients' LO leakage and IQ image: with it the "
    "theory is pessimistic by up to 4 dB at 30 dB; JSON key nmse_db_theory_receiver_noise.) "
    "true CSI (none only, flat channels): the same formula with the loopback's true channels and noise, "
    "eta = P*min|h_k|^2 over the participants (OFDM: P*n_fft/max_k(n_used*on_k/|h_k|^2), on_k = share of "
    "subcarriers the receiver gave client k)"
)


def render_impairment_table(records: list[dict[str, Any]], command: str) -> Any:
    """A rich table of one waveform's impairment records (fits 80 columns), with caption."""
    from rich.table import Table

    waveform = records[0]["waveform"]
    r0 = records[0]
    over = sum(r["rounds_over_block"] for r in records)
    warn = (f"\nWARNING: {over} measured rounds outlasted one fading block (payload met a fresh channel); "
            "use a smaller --values." if over else "")
    table = Table(
        title=f"Over-the-air NMSE (dB) per impairment, {waveform}, K = {r0['clients']}: measured vs "
        "the receiver's theory",
        caption=f"{SNR_DEFINITION}; noise enters before the server's rx gain (LAB_RX_GAIN_DB = "
        f"{LAB_RX_GAIN_DB:g} dB).\n"
        "Rows: lab_impairments_one_by_one(): each lab-bench impairment alone on the base air (Rayleigh "
        f"block fading, {COHERENCE_TIME_S * 1e3:g} ms coherence, integer delays 0..{MAX_DELAY_SAMPLES}); "
        "none = the base air; all = lab_impairments().\n"
        "measured: sum_r||est - exact||^2 / sum_r||exact||^2 over the rounds, exact = "
        "result.exact_target(updates) (per value the weighted mean over the clients that carried it; with "
        f"OFDM a client can be silent on some subcarriers).\n{IMPAIRMENT_THEORY_NOTE}.\n"
        f"Per point: {r0['warmup']} warm-up rounds, discarded, so the per-client CFO and timing trackers "
        f"converge (the first round also acquires coarse CFO), then {r0['rounds']} measured rounds of "
        f"{r0['values']} N(0,1) values; OtaSettings(tx_power=0.1, waveform={waveform!r}, "
        f"sounding_cp={IMPAIRMENT_SOUNDING_CP}, sounding_min_shift={IMPAIRMENT_SOUNDING_MIN_SHIFT}, "
        f"max_segment_samples={r0['max_segment_samples']}): "
        "the lab delays need the longer sounding prefix; truncation -10 dB re the round's mean |h|^2. "
        f"Airtime per measured round (sounding + frame + re-sounding gaps): {_airtime_range(records)} samples. "
        f"failed = rounds without an estimate; active = mean participants.{warn}\nCommand: {command}",
        caption_justify="left",
    )
    headers = ("impairment", "SNR\n(dB)", "measured\n(dB)", "theory\n(dB)", "gap\n(dB)", "true CSI\n(dB)",
               "failed\nrounds", "mean\nactive")
    for col in headers:
        table.add_column(col, justify="left" if col == "impairment" else "right")
    previous = None
    for r in records:
        first = r["impairment"] != previous
        if first and previous is not None:
            table.add_section()
        previous = r["impairment"]
        table.add_row(
            r["impairment"] if first else "", f"{r['snr_db']:g}",
            _fmt(r["nmse_db_measured"], ".2f"), _fmt(r["nmse_db_theory"], ".2f"), _fmt(r["gap_db"], "+.2f"),
            "" if r["impairment"] != "none" else _fmt(r["nmse_db_theory_true_csi"], ".2f"),
            str(r["failures"]), _fmt(r["mean_participants"], ".2f"),
        )
    return table


def _airtime_range(records: list[dict[str, Any]]) -> str:
    """Mean airtime per measured round over the records, as 'a' or 'a-b' (samples)."""
    values = [r["airtime_samples"] for r in records if r.get("airtime_samples") is not None]
    if not values:
        return "n/a"
    lo, hi = min(values), max(values)
    return f"{lo:,.0f}" if round(lo) == round(hi) else f"{lo:,.0f}-{hi:,.0f}"


def command_line(rounds: int, values: int, seed: int, as_json: bool) -> str:
    """The command that reproduces this run, every option explicit."""
    args = ["python", "benchmarks/aircomp.py", "--rounds", str(rounds), "--values", str(values), "--seed", str(seed)]
    return shlex.join(args + (["--json"] if as_json else []))


def impairment_command_line(waveforms: Sequence[str], snrs: Sequence[float], clients: int, rounds: int,
                            warmup: int, values: int, seed: int, as_json: bool, max_segment_samples: int = 0) -> str:
    """The command that reproduces an impairment run, every option explicit."""
    args = ["python", "benchmarks/aircomp.py", "--impairments"]
    args += ["--both"] if len(waveforms) > 1 else ["--waveform", waveforms[0]]
    args += ["--snrs", *(f"{x:g}" for x in snrs), "--clients", str(clients), "--warmup", str(warmup),
             "--rounds", str(rounds), "--values", str(values), "--seed", str(seed),
             "--max-segment-samples", str(max_segment_samples)]
    return shlex.join(args + (["--json"] if as_json else []))


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def render_table(records: list[dict[str, Any]], command: str) -> Any:
    """A rich table of the records (fits 80 columns), with the SNR definition and command as caption."""
    from rich.table import Table

    settings = OtaSettings()
    rounds = sorted({r["rounds"] for r in records})
    table = Table(
        title="Over-the-air aggregation NMSE (dB), loopback air: measured vs truncated-inversion theory",
        caption=f"{SNR_DEFINITION}.\n"
        "theory: perfect CSI, sigma^2*scale^2/(2*P*min|h_k|^2) per value with the true channels of the "
        "participants; est. CSI: the same formula with the receiver's own eta and noise estimates "
        "(result.error_variance_theory); gap = measured - theory; NMSE = ratio of sums over rounds.\n"
        f"{'/'.join(map(str, rounds))} rounds (Rayleigh block-fading realisations) per point, delays "
        f"0..{MAX_DELAY_SAMPLES} samples, default OtaSettings (P = {settings.tx_power:g}, truncation "
        f"{settings.truncation_threshold_db:g} dB re the round's mean |h|^2); active = mean participants.\n"
        f"Command: {command}",
        caption_justify="left",
    )
    headers = ("sweep", "SNR\n(dB)", "K", "measured\n(dB)", "theory\n(dB)", "gap\n(dB)", "est. CSI\n(dB)",
               "mean\nactive", "failed\nrounds")
    for col in headers:
        table.add_column(col, justify="left" if col == "sweep" else "right")
    for r in records:
        table.add_row(
            "SNR" if r["sweep"] == "snr" else "K", f"{r['snr_db']:g}", str(r["clients"]),
            _fmt(r["nmse_db_measured"], ".2f"), _fmt(r["nmse_db_theory"], ".2f"), _fmt(r["gap_db"], "+.2f"),
            _fmt(r["nmse_db_theory_estimated_csi"], ".2f"), _fmt(r["mean_participants"], ".2f"), str(r["failures"]),
        )
    return table


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Over-the-air aggregation NMSE on the loopback air beside truncated-inversion theory: "
        f"an SNR sweep {list(SNR_SWEEP_DB)} dB at K = {SNR_SWEEP_CLIENTS} and a client sweep "
        f"K = {list(CLIENT_SWEEP)} at {CLIENT_SWEEP_SNR_DB:g} dB (default); or, with --impairments, NMSE vs "
        "SNR for each lab impairment alone, none and all (lab_impairments_one_by_one) beside the receiver's "
        f"own theory. {SNR_DEFINITION}.",
    )
    parser.add_argument("--rounds", type=int, default=None,
                        help=f"measured rounds (channel realisations) per point (default {SWEEP_ROUNDS}; "
                        f"{IMPAIRMENT_ROUNDS} with --impairments)")
    parser.add_argument("--values", type=int, default=DEFAULT_VALUES,
                        help=f"update length d (default {DEFAULT_VALUES})")
    parser.add_argument("--seed", type=int, default=0, help="air and update seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    imp = parser.add_argument_group("impairment axis")
    imp.add_argument("--impairments", action="store_true",
                     help="run the impairment axis instead of the SNR and K sweeps")
    which = imp.add_mutually_exclusive_group()
    which.add_argument("--waveform", choices=WAVEFORMS, default=None, help="waveform (default ofdm)")
    which.add_argument("--both", action="store_true", help="run single_carrier and ofdm")
    imp.add_argument("--snrs", type=float, nargs="+", default=None, metavar="DB",
                     help=f"SNRs in dB (default {' '.join(f'{x:g}' for x in IMPAIRMENT_SNRS_DB)})")
    imp.add_argument("--clients", type=int, default=None, help=f"K (default {IMPAIRMENT_CLIENTS})")
    imp.add_argument("--warmup", type=int, default=None,
                     help=f"discarded rounds per point before measuring, so the CFO and timing trackers "
                     f"converge (default {IMPAIRMENT_WARMUP})")
    imp.add_argument("--max-segment-samples", type=int, default=None, metavar="N",
                     help="OtaSettings.max_segment_samples: split each aggregation frame into segments of at most "
                     "N samples, each after a phase re-sounding that corrects every client's own phase drift "
                     "(default 0: one frame)")
    args = parser.parse_args(argv)
    only_axis = [opt for opt, value in (("--waveform", args.waveform), ("--both", args.both or None),
                                        ("--snrs", args.snrs), ("--clients", args.clients),
                                        ("--warmup", args.warmup),
                                        ("--max-segment-samples", args.max_segment_samples)) if value is not None]
    if only_axis and not args.impairments:
        parser.error(f"{', '.join(only_axis)} only apply with --impairments")
    if args.rounds is None:
        args.rounds = IMPAIRMENT_ROUNDS if args.impairments else SWEEP_ROUNDS
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.values < 1:
        parser.error("--values must be >= 1")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    if args.impairments:
        args.waveforms = list(WAVEFORMS) if args.both else [args.waveform or "ofdm"]
        args.snrs = list(IMPAIRMENT_SNRS_DB) if args.snrs is None else args.snrs
        args.clients = IMPAIRMENT_CLIENTS if args.clients is None else args.clients
        args.warmup = IMPAIRMENT_WARMUP if args.warmup is None else args.warmup
        args.max_segment_samples = 0 if args.max_segment_samples is None else args.max_segment_samples
        if args.max_segment_samples < 0:
            parser.error("--max-segment-samples must be >= 0 (0: one frame)")
        if args.clients < 1:
            parser.error("--clients must be >= 1")
        if args.warmup < 0:
            parser.error("--warmup must be >= 0")
        if not all(np.isfinite(args.snrs)):
            parser.error("--snrs must be finite")
        return args
    limit = min(max_values(k, OtaSettings()) for k in (SNR_SWEEP_CLIENTS, *CLIENT_SWEEP))
    if args.values > limit:
        parser.error(f"--values {args.values} makes a round outlast one fading block; use --values <= {limit}")
    return args


def run_impairments(args: argparse.Namespace) -> int:
    """The impairment axis: tables per waveform (with progress) or, with --json, a list of records."""
    command = impairment_command_line(args.waveforms, args.snrs, args.clients, args.rounds, args.warmup,
                                      args.values, args.seed, args.json, args.max_segment_samples)
    points = impairment_points(args.waveforms, args.snrs)
    records: list[dict[str, Any]] = []
    started = time.perf_counter()

    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    err = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rounds"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True) as progress:
        task = progress.add_task("rounds", total=len(points) * (args.warmup + args.rounds))
        for waveform, name, snr in points:
            progress.update(task, description=f"{waveform}: {name}, {snr:g} dB")
            record = measure_impairment(name, snr, waveform, args.clients, args.rounds, args.warmup, args.values,
                                        args.seed, on_round=lambda: progress.advance(task),
                                        max_segment_samples=args.max_segment_samples)
            records.append({**record, "command": command, "seed": args.seed})
    over = sum(r["rounds_over_block"] for r in records)
    if over:
        err.print(f"[yellow]warning: {over} measured rounds outlasted one {COHERENCE_TIME_S * 1e3:g} ms fading "
                  "block; use a smaller --values[/yellow]")
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        out = Console()
        for waveform in args.waveforms:
            out.print(render_impairment_table([r for r in records if r["waveform"] == waveform], command))
    err.print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run both sweeps (or, with --impairments, the impairment axis); print the table (with progress)
    or, with --json, JSON."""
    args = parse_args(argv)
    if args.impairments:
        return run_impairments(args)
    command = command_line(args.rounds, args.values, args.seed, args.json)
    points = sweep_points()
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    if args.json:
        for sweep, snr, k in points:
            records.append({"sweep": sweep, **measure_point(snr, k, args.rounds, args.values, args.seed)})
        doc = {"snr_definition": SNR_DEFINITION, "command": command, "seed": args.seed,
               "values": args.values, "records": records}
        print(json.dumps(doc, indent=2))
        return 0

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task("points", total=len(points))
        for sweep, snr, k in points:
            progress.update(task, description=f"{sweep}: {snr:g} dB, K = {k}")
            records.append({"sweep": sweep, **measure_point(snr, k, args.rounds, args.values, args.seed)})
            progress.advance(task)
    Console().print(render_table(records, command))
    err.print(f"wall time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
