"""Analog over-the-air aggregation NMSE over the loopback air, beside truncated-inversion theory.

Drives `airfl.fl.ota.OverTheAirRound` (sounding, truncated inversion, simultaneous transmission,
preamble detection, de-normalisation) with `LoopbackAir` radios and random Gaussian updates, and
compares the measured NMSE of the aggregate with the perfect-CSI theory of DESIGN.md section 2:
each real entry of the de-normalised sum carries error variance sigma^2 * scale^2 / (2 * eta),
eta = P * min_k |h_k|^2 over the participants, |h_k| taken from the loopback's truth.

    python benchmarks/aircomp.py            # table (rich), with a progress bar
    python benchmarks/aircomp.py --json     # the same numbers as a JSON document

Every channel realisation is one round: rounds start on the protocol's frame grid (20 ms), which
coincides with the air's fading blocks (coherence time 20 ms), so each round sees a fresh Rayleigh
draw and sounding and payload see the same one. The air seed is the same at every point (common
random numbers): the SNR sweep sees the same channels at every SNR, so the curves are smooth.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from airfl.fl.ota import OtaSettings, OverTheAirRound
from airfl.modem import SoundingLayout, common_scale, update_statistics
from airfl.radio import AirConfig, ChannelConfig, LoopbackAir

SNR_SWEEP_DB: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0)
SNR_SWEEP_CLIENTS = 10
CLIENT_SWEEP: tuple[int, ...] = (2, 5, 10, 20)
CLIENT_SWEEP_SNR_DB = 20.0

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


def command_line(rounds: int, values: int, seed: int, as_json: bool) -> str:
    """The command that reproduces this run, every option explicit."""
    args = ["python", "benchmarks/aircomp.py", "--rounds", str(rounds), "--values", str(values), "--seed", str(seed)]
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
        f"K = {list(CLIENT_SWEEP)} at {CLIENT_SWEEP_SNR_DB:g} dB. {SNR_DEFINITION}.",
    )
    parser.add_argument("--rounds", type=int, default=30, help="rounds (channel realisations) per point (default 30)")
    parser.add_argument("--values", type=int, default=20000, help="update length d (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="air and update seed (default 0)")
    parser.add_argument("--json", action="store_true", help="print a JSON document instead of the table")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.values < 1:
        parser.error("--values must be >= 1")
    if args.seed < 0:
        parser.error("--seed must be >= 0")
    limit = min(max_values(k, OtaSettings()) for k in (SNR_SWEEP_CLIENTS, *CLIENT_SWEEP))
    if args.values > limit:
        parser.error(f"--values {args.values} makes a round outlast one fading block; use --values <= {limit}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run both sweeps; print the table (with progress) or, with --json, a JSON document."""
    args = parse_args(argv)
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
