"""Noise floor against receive gain, and the receive gain to use.

With every transmitter silent, the receiver captures `n_samples` at each gain of a sweep and
measures the noise power after removing the DC (full-scale units^2 per complex sample, shown in
dBFS). Two floors shape the curve:

    thermal:       N_in * 10^(g/10)        grows dB for dB with the gain g (dB)
    quantisation:  Delta^2 / 6             fixed by the ADC (12 bits: Delta = 2/2^12, -74 dBFS)

At low gain the ADC's own floor hides the thermal noise (when the noise is below about one LSB the
quantisation error is no longer uniform, so the floor there can sit 1-2 dB off Delta^2/6) (the converter, not the air, limits SNR);
at high gain the noise and any signal climb towards full scale and clip. The recommended gain is the
lowest at which the measured floor is `margin_db` above the quantisation floor (the ADC then costs
< 10*log10(1 + 10^(-margin/10)) dB of SNR: 0.4 dB at 10 dB), which keeps the most headroom.

Usable SNR range at a gain: from 0 dB (a signal at the floor) up to the SNR of a signal whose
peaks reach full scale, mean power -headroom_db dBFS (the PAPR back-off of the waveform):
max_snr = -headroom_db - floor_dBFS. Below the recommended gain the floor is the ADC's and that
ceiling stops rising. The input-referred noise N_in = floor / 10^(g/10) (full-scale units^2 at
0 dB gain) is what `noise_power` means on the loopback.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from airfl.calibration import plots
from airfl.calibration.bench import Bench
from airfl.calibration.output import ProcedureOutput, ProcedureResult
from airfl.radio.recording import Annotation

SUMMARY = "receiver noise power against receive gain; the gain to use and the usable SNR range"


@dataclass(frozen=True)
class Options:
    """gains_db: the receive gains to sweep (dB; default: 0..70 dB on a Pluto, -40..30 dB otherwise).
    n_samples: samples per capture. adc_bits: the receiver's ADC resolution (default: what the radio
    reports). margin_db: how far above the quantisation floor the thermal noise must be at the
    recommended gain (dB). headroom_db: mean signal power below full scale that leaves room for the
    waveform's peaks (dB)."""

    gains_db: list[float] | None = None
    n_samples: int = 16384
    adc_bits: int | None = None
    margin_db: float = 10.0
    headroom_db: float = 12.0

    def __post_init__(self) -> None:
        if self.n_samples < 256:
            raise ValueError(f"n_samples must be >= 256 for a usable noise estimate, got {self.n_samples}")
        if self.gains_db is not None and len(self.gains_db) < 2:
            raise ValueError("gains_db needs at least two gains to sweep")
        if self.margin_db < 0 or self.headroom_db < 0:
            raise ValueError("margin_db and headroom_db must be >= 0 dB")


def default_gains(bench: Bench) -> list[float]:
    """The sweep for the bench's receiver (dB)."""
    if bench.hardware(bench.receiver).startswith("pluto"):
        return [float(g) for g in range(0, 71, 5)]
    return [float(g) for g in range(-40, 31, 5)]


def quantisation_floor(adc_bits: int | None) -> float:
    """Noise power of an ideal N-bit ADC on I and Q (full-scale units^2 per complex sample)."""
    if adc_bits is None:
        return 0.0
    step = 2.0 / (1 << adc_bits)
    return step * step / 6.0


def db(x: float) -> float:
    return float(10.0 * np.log10(x)) if x > 0 else float("-inf")


def run(bench: Bench, out: ProcedureOutput, options: Options) -> ProcedureResult:
    gains = list(options.gains_db) if options.gains_db is not None else default_gains(bench)
    bits = options.adc_bits if options.adc_bits is not None else bench.receiver.capabilities.adc_bits
    q_floor = quantisation_floor(bits)
    original_gain = bench.config.rx_gain_db
    rows: list[dict[str, object]] = []
    floors: list[float] = []
    captures: dict[float, np.ndarray] = {}
    try:
        for g in gains:
            bench.set_rx_gain(g)
            cap = bench.listen(options.n_samples)
            y = cap.samples
            dc = complex(np.mean(y))
            floor = float(np.mean(np.abs(y - dc) ** 2))
            clipped = int(np.count_nonzero((np.abs(y.real) >= 1.0 - 1e-9) | (np.abs(y.imag) >= 1.0 - 1e-9)))
            floors.append(floor)
            captures[g] = y
            out.save_capture(
                f"noise_gain_{g:+.0f}dB",
                cap,
                bench,
                description=f"receiver noise, transmitters silent, rx gain {g:g} dB",
                annotations=[Annotation(0, len(y), "noise", f"rx_gain_db={g:g}")],
                extra={"rx_gain_db": g},
            )
            rows.append(
                {
                    "rx_gain_dB": g,
                    "floor_dBFS": db(floor),
                    "input_referred_dBFS": db(floor) - g,
                    "above_adc_dB": db(floor) - db(q_floor) if q_floor > 0 else None,
                    "max_snr_dB": -options.headroom_db - db(floor),
                    "dc_dBFS": db(abs(dc) ** 2),
                    "clipped": clipped,
                }
            )
    finally:
        bench.set_rx_gain(original_gain)
    floors_arr = np.asarray(floors)
    clean = [i for i, r in enumerate(rows) if r["clipped"] == 0]
    thermal_ok = [i for i in clean if q_floor == 0 or floors_arr[i] >= q_floor * 10 ** (options.margin_db / 10)]
    notes: list[str] = []
    if thermal_ok:
        best = min(thermal_ok, key=lambda i: gains[i])
    else:
        best = max(clean, key=lambda i: floors_arr[i]) if clean else int(np.argmin(floors_arr))
        notes.append(
            f"no gain put the noise {options.margin_db:g} dB above the ADC floor without clipping: the receiver "
            "is ADC-limited at every swept gain; sweep higher gains (-o gains_db=...) or lower margin_db"
        )
    # Input-referred noise from the gains where the thermal noise dominates (quantisation removed).
    usable = thermal_ok or [best]
    n_in = float(np.median([(floors_arr[i] - q_floor) / 10 ** (gains[i] / 10) for i in usable]))
    rec_gain = gains[best]
    summary = {
        "recommended_rx_gain_db": rec_gain,
        "noise_power_at_recommended": float(floors_arr[best]),
        "noise_floor_dbfs_at_recommended": db(float(floors_arr[best])),
        "input_referred_noise_dbfs": db(n_in) if n_in > 0 else None,
        "adc_floor_dbfs": db(q_floor) if q_floor > 0 else None,
        "max_snr_db_at_recommended": float(rows[best]["max_snr_dB"]),  # type: ignore[arg-type]
    }
    air = bench.air
    if air is not None:
        truth = air.config.channel.noise_power
        summary["truth_input_noise_dbfs"] = db(truth) if truth > 0 else None
    plots.curve(
        out.figure_path("noise_floor"),
        gains,
        {"measured floor": [db(f) for f in floors]}
        | ({"ADC floor": [db(q_floor)] * len(gains)} if q_floor > 0 else {})
        | ({"thermal (input-referred x gain)": [db(n_in) + g for g in gains]} if n_in > 0 else {}),
        "rx gain (dB)",
        "noise power (dBFS per complex sample)",
        f"noise floor of {bench.receiver_uri}",
        marks={"recommended": rec_gain},
    )
    plots.spectrum(
        out.figure_path("noise_spectrum"), captures[rec_gain], bench.sample_rate_hz, f"noise at rx gain {rec_gain:g} dB"
    )
    profile = {bench.receiver_uri: {"rx_gain_db": rec_gain, "noise_power": float(floors_arr[best])}}
    return ProcedureResult("noise_floor", rows, summary, profile, notes)
