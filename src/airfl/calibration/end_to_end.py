"""End to end: known vectors summed over the air, NMSE beside truncated-inversion theory.

The final check of a bench: K known update vectors (seeded N(0, 1) values, one per transmitter)
go through real over-the-air rounds (fl/ota.py `OverTheAirRound`: sounding, feedback, truncated
inversion, simultaneous transmission, detection, pilot tracking, de-normalisation) with the bench's
receiver as the server and its transmitters as the clients, and the estimate is compared with the
exact weighted sum of the same vectors (`RoundResult.exact_target`: the renormalised weights of
the participants; with OFDM, per value, of the clients that carried it):

    NMSE = ||estimate - exact||^2 / ||exact||^2                  (per round, and over all rounds)

Theory (DESIGN.md section 2, as benchmarks/aircomp.py reports it): truncated inversion delivers
each real value with error variance sigma^2 scale^2 / (2 eta) (OFDM: averaged over subcarriers
with the per-subcarrier weight renormalisation), from the receiver's own estimates of eta and the
noise power sigma^2 (`RoundResult.error_variance_theory`); theory NMSE = d x that / ||exact||^2.
The gap (measured - theory, dB) is what the bench loses beyond noise: misalignment (see the
alignment procedure, whose predicted NMSE it should match), clipping, stale channels. On emulated
benches the theory is also given with the air's true noise power at the receiver's output
(noise_power x rx gain, plus the ADC's quantisation noise).

`warmup_rounds` run first and are not scored: the round's CFO and timing trackers converge over
the first rounds (the first one also acquires the coarse CFO). Per measured round the report
lists the participants, eta, the mean receive SNR per client (P |h_k|^2 / sigma^2), the preamble's
detection metric, the timing error of the detected frame (samples), the residual common CFO and
the pilots' SNR after tracking, the alignment of the summed preamble (dB, degrees), and each
client's CFO (Hz) and delay (samples) the round measured. Every round's received sounding and
aggregation frame are saved as SigMF recordings with the sounding, preamble, pilot and payload
spans annotated.

Timed benches (the loopback, SoapySDR with hardware time) run `OverTheAirRound`; cyclic-only
benches (stock Plutos: no hardware time) run the cyclic timing mode's `CyclicOverTheAirRound`
(fl/ota_cyclic.py: the same protocol with buffers aligned by rotation, the same `RoundResult`), and
a round that cannot align its clients is reported as a failed round. The cyclic round does not hand
out its received windows, so no recordings are saved there (a note says so).
Units: samples at the bench's sample rate; powers in full-scale units^2 per complex sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from airfl.calibration import plots
from airfl.calibration.alignment import power_plan, profile_gains
from airfl.calibration.bench import Bench, BenchError
from airfl.calibration.noise_floor import quantisation_floor
from airfl.calibration.output import ProcedureOutput, ProcedureResult
from airfl.fl.ota import OtaSettings, OverTheAirRound, RoundResult
from airfl.modem import AggregationLayout, SoundingLayout, symbol_count
from airfl.modem.frame import OfdmAggregationLayout
from airfl.modem.ofdm import OfdmLayout
from airfl.radio.base import RadioError
from airfl.radio.recording import Annotation

SUMMARY = "end to end: known vectors summed over the air, NMSE per round beside truncated-inversion theory"


@dataclass(frozen=True)
class Options:
    """waveform: "single_carrier" or "ofdm". n_values: length d of each update vector. rounds:
    scored rounds; warmup_rounds: rounds run first and not scored (trackers converge). seed: of the
    update vectors. tx_power: per-client power limit P (full-scale units^2); None: the smallest
    max_tx_power of the transmitters in `profile`, else OtaSettings' 0.1. profile: a calibration
    profile whose gains and max_tx_power are applied for the run. truncation /
    truncation_threshold_db: the round's power control (OtaSettings). sounding_cp /
    sounding_min_shift: the round's sounding layout (the lab's delays need cp >= 24).
    """

    waveform: str = "single_carrier"
    n_values: int = 2000
    rounds: int = 5
    warmup_rounds: int = 2
    seed: int = 0
    tx_power: float | None = None
    profile: str | None = None
    truncation: str = "fixed"
    truncation_threshold_db: float = -10.0
    sounding_cp: int = 24
    sounding_min_shift: int = 40

    def __post_init__(self) -> None:
        if self.waveform not in ("single_carrier", "ofdm"):
            raise ValueError(f"waveform must be single_carrier or ofdm, got {self.waveform!r}")
        if self.n_values < 2:
            raise ValueError(f"n_values must be >= 2, got {self.n_values}")
        if self.rounds < 1 or self.warmup_rounds < 0:
            raise ValueError("rounds must be >= 1 and warmup_rounds >= 0")
        if self.tx_power is not None and not (math.isfinite(self.tx_power) and 0 < self.tx_power <= 1):
            raise ValueError(f"tx_power must be in (0, 1] full-scale units^2, got {self.tx_power}")
        if self.truncation not in ("fixed", "optimal", "full"):
            raise ValueError(f"truncation must be fixed, optimal or full, got {self.truncation!r}")
        if self.sounding_min_shift < self.sounding_cp + 6:
            raise ValueError("sounding_min_shift must be at least sounding_cp + 6 samples")


def settings_for(options: Options, tx_power: float, center_freq_hz: float) -> OtaSettings:
    """The round's settings for this procedure (everything else at OtaSettings' defaults)."""
    return OtaSettings(
        tx_power=tx_power,
        waveform=options.waveform,  # type: ignore[arg-type]
        truncation=options.truncation,  # type: ignore[arg-type]
        truncation_threshold_db=options.truncation_threshold_db,
        sounding_cp=options.sounding_cp,
        sounding_min_shift=options.sounding_min_shift,
        center_freq_hz=center_freq_hz,
    )


def make_round(bench: Bench, settings: OtaSettings) -> OverTheAirRound:
    """The round protocol for this bench: timed, or the cyclic timing mode on radios without
    hardware time (stock Plutos)."""
    if bench.timed:
        return OverTheAirRound(bench.transmitters, bench.receiver, bench.sample_rate_hz, settings)
    from airfl.fl.ota_cyclic import CyclicOverTheAirRound  # noqa: PLC0415 - only cyclic benches need it

    try:
        return CyclicOverTheAirRound(bench.transmitters, bench.receiver, bench.sample_rate_hz, settings)
    except ValueError as exc:
        raise BenchError(str(exc)) from exc


def known_updates(options: Options, clients: int, round_index: int) -> list[np.ndarray]:
    """The update vectors of one round: N(0, 1) values drawn from (seed, round, client)."""
    return [
        np.random.default_rng([options.seed, round_index, k]).standard_normal(options.n_values) for k in range(clients)
    ]


def frame_annotations(result: RoundResult, settings: OtaSettings, n_values: int) -> list[Annotation]:
    """Spans of the received aggregation frame (indices into captures["payload"]): preamble,
    pilots and data, where the receiver detected the frame."""
    start = settings.guard_samples + int(result.diagnostics.get("timing_error", 0.0))
    if result.diagnostics.get("segments", 1.0) > 1:
        return [Annotation(start, len(result.captures["payload"][1]) - start, "payload",
                           "segmented frame with phase re-soundings between segments")]
    n_symbols = symbol_count(n_values)
    if settings.waveform == "ofdm":
        o = OfdmLayout(settings.ofdm_fft, settings.ofdm_cp, settings.ofdm_used, settings.ofdm_pilot_every)
        layout_o = OfdmAggregationLayout(n_symbols, o)
        pilots = ", ".join(str(int(f)) for f in o.signed_used[o.pilot_slots])
        return [
            Annotation(start, o.symbol_length, "preamble", "OFDM preamble symbol, every used subcarrier"),
            Annotation(start + o.symbol_length, layout_o.n_ofdm_symbols * o.symbol_length, "payload",
                       f"{layout_o.n_ofdm_symbols} OFDM symbols; pilots on subcarriers {pilots}"),
        ]
    layout = AggregationLayout(n_symbols, settings.preamble_length, settings.pilot_spacing)
    spans = [Annotation(start, layout.preamble_length, "preamble", "Zadoff-Chu preamble, all participants")]
    payload = start + layout.preamble_length
    spans.append(Annotation(payload, layout.pattern.length, "payload", f"{n_symbols} data symbols with pilots"))
    spans += [Annotation(payload + int(p), 1, "pilot", "") for p in layout.pattern.pilot_positions]
    return spans


def _db(num: float, den: float) -> float | None:
    return float(10 * np.log10(num / den)) if num > 0 and den > 0 and math.isfinite(num) else None


def run(bench: Bench, out: ProcedureOutput, options: Options) -> ProcedureResult:
    bench.require_transmitters("end_to_end")
    plan = power_plan(bench, options.tx_power, options.profile)
    k = len(bench.transmitters)
    weights = np.full(k, 1.0 / k)
    settings = settings_for(options, plan.tx_power, bench.center_freq_hz)
    rows: list[dict[str, Any]] = []
    totals = {"error": 0.0, "exact": 0.0, "theory": 0.0, "theory_true": 0.0}
    last: tuple[RoundResult, np.ndarray] | None = None
    failures: list[str] = []
    with profile_gains(bench, plan):
        ota = make_round(bench, settings)
        true_noise = _true_noise(bench)
        for r in range(options.warmup_rounds + options.rounds):
            updates = known_updates(options, k, r)
            try:
                result = ota.run(updates, weights)
            except RadioError as exc:  # the cyclic mode could not align its clients (one sentence)
                if r >= options.warmup_rounds:
                    failures.append(f"round {r - options.warmup_rounds}: {exc}")
                    rows.append({"round": r - options.warmup_rounds, "delivered": False, "participants": 0})
                continue
            if r < options.warmup_rounds:
                continue
            index = r - options.warmup_rounds
            _save(out, bench, result, settings, options, index)
            if result.estimate is None:
                failures.append(f"round {index}: {result.failure}")
                rows.append({"round": index, "delivered": False, "participants": len(result.participants)})
                continue
            exact = result.exact_target(updates)
            error = float(np.sum((result.estimate - exact) ** 2))
            energy = float(np.sum(exact**2))
            assert result.error_variance_theory is not None
            theory = options.n_values * result.error_variance_theory
            totals["error"] += error
            totals["exact"] += energy
            totals["theory"] += theory
            if true_noise is not None and result.noise_power > 0:
                totals["theory_true"] += theory * true_noise / result.noise_power
            rows.append(_row(index, result, error, energy, theory, plan.tx_power))
            last = (result, exact)
        gains = (list(bench.tx_gains_db), bench.config.rx_gain_db)
    measured = _db(totals["error"], totals["exact"])
    theory_db = _db(totals["theory"], totals["exact"])
    scored = [row for row in rows if row.get("delivered", True)]
    summary: dict[str, Any] = {
        "waveform": options.waveform,
        "n_values": options.n_values,
        "rounds": options.rounds,
        "warmup_rounds": options.warmup_rounds,
        "failures": len(failures),
        "tx_power": plan.tx_power,
        "tx_power_source": plan.source,
        "tx_gains_db": gains[0],
        "rx_gain_db": gains[1],
        "nmse_db": measured,
        "nmse_db_theory": theory_db,
        "gap_db": None if measured is None or theory_db is None else measured - theory_db,
        "mean_participants": float(np.mean([row["participants"] for row in scored])) if scored else None,
        "snr_db_mean": float(np.mean([row["snr_dB"] for row in scored])) if scored else None,
    }
    if true_noise is not None:
        summary["truth_noise_power"] = true_noise
        summary["nmse_db_theory_true_noise"] = _db(totals["theory_true"], totals["exact"])
    if last is not None:
        result = last[0]
        summary["client_cfo_hz"] = {bench.transmitter_uris[c]: v for c, v in result.client_cfo_hz.items()}
        summary["client_delay_samples"] = {bench.transmitter_uris[c]: v for c, v in result.client_delay.items()}
    notes = list(failures)
    if not bench.timed:
        notes.append("cyclic bench: rounds ran in the cyclic timing mode (fl/ota_cyclic.py), which does not hand out its "
                     "received windows, so no recordings were saved")
    coherence = _coherence_samples(bench)
    long_rounds = [row["round"] for row in scored if coherence and row["round_samples"] > coherence]
    if long_rounds:
        notes.append(
            f"rounds {long_rounds} outlasted the air's coherence time ({coherence} samples): their payload met a "
            "channel it was not pre-equalised for; lower n_values"
        )
    if summary["gap_db"] is not None and summary["gap_db"] > 1.5:
        notes.append(
            "more than 1.5 dB above theory: run the alignment procedure (its nmse_predicted_db includes the "
            "misalignment this round cannot see in its own theory); single carrier at one sample per symbol "
            "suffers from fractional delays and multipath, OFDM does not"
        )
    _figures(out, rows, last, options)
    return ProcedureResult("end_to_end", rows, summary, {}, notes)


def _row(
    index: int, result: RoundResult, error: float, energy: float, theory: float, tx_power: float
) -> dict[str, Any]:
    est = result.channels
    assert est is not None
    snr = tx_power * np.abs(est.gains) ** 2 / max(result.noise_power, 1e-30)
    align = result.alignment if result.alignment is not None else complex("nan")
    d = result.diagnostics
    return {
        "round": index,
        "nmse_dB": _db(error, energy),
        "theory_dB": _db(theory, energy),
        "gap_dB": (_db(error, energy) or math.nan) - (_db(theory, energy) or math.nan),
        "participants": len(result.participants),
        "truncated": len(result.truncated),
        "eta": result.eta,
        "snr_dB": float(10 * np.log10(np.mean(snr))),
        "detection_metric": result.detection_metric,
        "timing_error_samples": d.get("timing_error"),
        "residual_cfo_Hz": d.get("residual_cfo_hz"),
        "pilot_snr_dB": d.get("pilot_snr_db"),
        "alignment_dB": float(20 * np.log10(abs(align))) if abs(align) > 0 else None,
        "alignment_deg": float(np.degrees(np.angle(align))),
        "papr_backoff_dB": d.get("papr_backoff_db"),
        "round_samples": int(d.get("round_samples", 0)),
    }


def _true_noise(bench: Bench) -> float | None:
    """The receiver's noise power at its output on an emulated air: thermal x rx gain + ADC."""
    air = bench.air
    if air is None:
        return None
    thermal = air.config.channel.noise_power * 10 ** (bench.config.rx_gain_db / 10)
    return thermal + quantisation_floor(air.config.channel.frontend.adc_bits)


def _coherence_samples(bench: Bench) -> int | None:
    air = bench.air
    if air is None or air.config.channel.fading == "none":
        return None
    return int(round(air.config.channel.coherence_time_s * bench.sample_rate_hz))


def _save(out: ProcedureOutput, bench: Bench, result: RoundResult, settings: OtaSettings, options: Options,
          index: int) -> None:
    extra = {"round": index, "waveform": settings.waveform, "n_values": options.n_values, "seed": options.seed,
             "eta": result.eta, "participants": [bench.transmitter_uris[c] for c in result.participants]}
    if "sounding" in result.captures:
        start, samples = result.captures["sounding"]
        n_valid = len(bench.transmitters) - len(result.rejected)
        layout = SoundingLayout(n_valid, settings.sounding_cp, settings.sounding_min_shift,
                                settings.sounding_min_length, settings.sounding_repeats)
        out.save_capture(
            f"round{index}_sounding", samples, bench, description=f"round {index}: code-orthogonal sounding",
            annotations=[Annotation(0, layout.burst_length, "sounding",
                                    f"cp {layout.cp}, N {layout.length} x {layout.repeats}, shift {layout.shift}")],
            extra=extra | {"start_sample": start},
        )
    if "payload" in result.captures:
        start, samples = result.captures["payload"]
        spans = frame_annotations(result, settings, options.n_values) if result.estimate is not None else []
        out.save_capture(
            f"round{index}_payload", samples, bench, description=f"round {index}: the superposed aggregation frame",
            annotations=spans, extra=extra | {"start_sample": start, "guard_samples": settings.guard_samples},
        )


def _figures(out: ProcedureOutput, rows: list[dict[str, Any]], last: tuple[RoundResult, np.ndarray] | None,
             options: Options) -> None:
    scored = [row for row in rows if row.get("nmse_dB") is not None]
    if scored:
        plots.curve(
            out.figure_path("nmse_per_round"), [row["round"] for row in scored],
            {"measured": [row["nmse_dB"] for row in scored], "theory": [row["theory_dB"] for row in scored]},
            "round", "NMSE (dB)", f"end to end: {options.waveform}, d = {options.n_values}",
        )
    if last is not None and last[0].estimate is not None:
        plots.scatter(out.figure_path("estimate_vs_exact"), last[1], last[0].estimate, "exact weighted sum",
                      "over-the-air estimate", "last round: estimate against the exact sum")
