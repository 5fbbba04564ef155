"""Per-client phase error budget of the OFDM aggregation frame, from the loopback's truth.

Runs the impairment axis's rounds (`aircomp.measure_impairment`'s set-up: lab receive gain, K
clients, N(0, 1) updates, warm-up rounds discarded) and, for every measured round, re-creates each
participant's received payload *noise-free*: the bursts it sent (recorded by a thin wrapper around
its radio) are propagated through its link with `LinkModel.propagate`, the receiver's common
carrier correction is applied, the re-sounding gaps are spliced out, and the OFDM symbols are
demodulated where the receiver found the frame. Comparing each client's subcarriers with what it
meant to deliver gives its complex gain per OFDM symbol; its phase relative to the participants'
mean (the part the payload pilots remove) is that client's misalignment phi_k(t).

Printed (or `--json`): the measured gap to theory (as `aircomp.py --impairments`); the noise-free
misalignment energy over the theory's noise energy (so gap ~ 10*log10(1 + ratio) + the rest);
the mean Var(phi) (rad^2) and its value per OFDM symbol; with one segment, its split into the
oscillators' own wander since the sounding (truth: Wiener phase of each client's oscillator minus
its mean over the sounding) and the rest (a constant offset plus a ramp over the payload: the CFO
tracker's error); and the tracker's frequency error at the payload (truth, rms, Hz).

    python benchmarks/phase_budget.py                                   # phase noise, 30 dB, one frame
    python benchmarks/phase_budget.py --max-segment-samples 1040        # segmented frame
    python benchmarks/phase_budget.py --impairment all --snr 30 --json

Timing figures assume the lab layout (OtaSettings of `aircomp.impairment_settings`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

import airfl.fl.ota as ota_module
from airfl.fl.ota import OverTheAirRound, segment_cuts
from airfl.modem import SoundingLayout
from airfl.modem.aircomp import client_symbols
from airfl.modem.cfo import correct
from airfl.radio import LAB_RX_GAIN_DB, AirConfig, LoopbackAir, RadioConfig
from airfl.radio.presets import lab_impairments_one_by_one

try:  # run as a script from the repository root, or imported from benchmarks/
    from aircomp import SAMPLE_RATE_HZ, impairment_settings, noise_power_for
except ImportError:  # pragma: no cover
    from benchmarks.aircomp import SAMPLE_RATE_HZ, impairment_settings, noise_power_for


class RecordingRadio:
    """A radio that remembers what it transmitted this round: [(samples, start sample)]."""

    def __init__(self, radio: Any):
        self.radio = radio
        self.sent: list[tuple[np.ndarray, int]] = []

    @property
    def name(self) -> str:
        return str(self.radio.name)

    @property
    def capabilities(self) -> Any:
        return self.radio.capabilities

    def configure(self, config: RadioConfig) -> None:
        self.radio.configure(config)

    def now(self) -> int:
        return int(self.radio.now())

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        self.sent.append((np.array(samples, dtype=np.complex128), int(at_sample)))
        self.radio.transmit(samples, at_sample)

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        return np.asarray(self.radio.receive(n_samples, at_sample))

    def close(self) -> None:
        self.radio.close()


@contextmanager
def captured_ofdm_receive() -> Iterator[dict[str, Any]]:
    """Record the arguments of the round's OFDM receive (layout, eta, scale, carrier weights) and its
    report, while it runs unchanged."""
    seen: dict[str, Any] = {}
    real = ota_module.receive_sum_ofdm

    def spy(window, layout, eta, scale, n_values, carrier_w, carrier_n, pfa=1e-6):  # type: ignore[no-untyped-def]
        estimate, report = real(window, layout, eta, scale, n_values, carrier_w, carrier_n, pfa)
        seen.update(layout=layout, eta=eta, scale=scale, report=report, carrier_w=carrier_w, carrier_n=carrier_n,
                    pfa=pfa)
        return estimate, report

    ota_module.receive_sum_ofdm = spy  # type: ignore[assignment]
    try:
        yield seen
    finally:
        ota_module.receive_sum_ofdm = real  # type: ignore[assignment]


def measure_budget(impairment: str = "phase noise", snr_db: float = 30.0, max_segment_samples: int = 0,
                   clients: int = 10, rounds: int = 15, warmup: int = 5, values: int = 4810,
                   seed: int = 0) -> dict[str, Any]:
    """The per-client phase budget (module docstring) of one impairment-axis point, OFDM."""
    settings = impairment_settings("ofdm", max_segment_samples)
    noise_power = noise_power_for(snr_db, settings.tx_power)
    channel = lab_impairments_one_by_one(noise_power=noise_power)[impairment]
    air = LoopbackAir(AirConfig(seed=seed, sample_rate_hz=SAMPLE_RATE_HZ, channel=channel))
    radios = [RecordingRadio(air.radio(f"client{k}")) for k in range(clients)]
    server = air.radio("server")
    server.configure(RadioConfig(sample_rate_hz=SAMPLE_RATE_HZ, rx_gain_db=LAB_RX_GAIN_DB))
    ota = OverTheAirRound(radios, server, SAMPLE_RATE_HZ, settings)
    rng = np.random.default_rng(np.random.SeedSequence([seed, clients, 0xA1C1]))  # as aircomp.py
    weights = np.full(clients, 1.0 / clients)
    fs, rx_gain, o = SAMPLE_RATE_HZ, 10 ** (LAB_RX_GAIN_DB / 20), ota.ofdm
    guard = settings.guard_samples
    layout_s = SoundingLayout(clients, settings.sounding_cp, settings.sounding_min_shift,
                              settings.sounding_min_length, settings.sounding_repeats)
    sounding_span = layout_s.burst_length - layout_s.cp  # the periods the gains are averaged over
    err = exact_energy = theory = misalignment = 0.0
    phis: list[np.ndarray] = []
    wanders: list[np.ndarray] = []
    freq_errors: list[float] = []
    times: np.ndarray | None = None
    with captured_ofdm_receive() as seen:
        for r in range(warmup + rounds):
            for radio in radios:
                radio.sent.clear()
            updates = [rng.standard_normal(values) for _ in range(clients)]
            result = ota.run(updates, weights)
            if r < warmup or result.estimate is None or result.error_variance_theory is None:
                continue
            exact = result.exact_target(updates)
            err += float(np.sum((result.estimate - exact) ** 2))
            exact_energy += float(np.sum(exact**2))
            true_noise = noise_power * 10 ** (LAB_RX_GAIN_DB / 10)
            theory += values * result.error_variance_theory * true_noise / max(result.noise_power, 1e-300)
            layout, eta, scale, report = seen["layout"], seen["eta"], seen["scale"], seen["report"]
            t_s, t_1 = result.timing["sounding_at"], result.timing["payload_at"]
            segments = int(result.diagnostics.get("segments", 1))
            gap = int(result.diagnostics.get("segment_overhead_samples", 0)) // max(segments - 1, 1)
            cuts = segment_cuts(layout.burst_length, settings.max_segment_samples, o.symbol_length, o.symbol_length)
            keep = np.ones(layout.burst_length + (segments - 1) * gap + 2 * guard, dtype=bool)
            for i, c in enumerate(cuts):
                keep[guard + c + i * gap : guard + c + (i + 1) * gap] = False
            lo, n = t_1 - guard, len(keep)
            rate = float(ota.common_tracker.x[0, 1]) / fs
            start = report.detection.index + o.symbol_length
            n_sym = layout.n_ofdm_symbols - 1  # the last OFDM symbol is mostly padding
            position = (np.arange(n_sym) + 1.5) * o.symbol_length
            position = position + gap * np.searchsorted(np.asarray(cuts), position, side="right")
            times = (t_1 - t_s) + position  # receiver samples after the sounding's start
            gains, counts, wander, total = {}, {}, {}, np.zeros(layout.burst_length + 2 * guard, complex)
            for k in result.participants:
                link = air.link(radios[k].name, server.name)
                y = np.zeros(n, dtype=np.complex128)
                for samples, at in radios[k].sent:
                    got = link.propagate(samples, at, lo, lo + n)
                    if got is not None:
                        a, seg = got
                        y[a - lo : a - lo + len(seg)] += seg
                y = correct(y * rx_gain, ota.common, lo - t_s, rate)[keep]
                total += y
                grid = o.demodulate(y[start:], n_sym)
                want = o.data_grid(client_symbols(updates[k], float(result.weights[k]), scale)) * np.sqrt(eta)
                on = np.zeros(o.n_used, dtype=bool)
                assert result.value_weights is not None
                on[o.data_slots] = result.value_weights[k, 0 : 2 * o.n_data : 2] > 0
                if not on.any():
                    continue
                gains[k] = np.sum(grid[:, on] * np.conj(want[:n_sym, on]), 1) / np.sum(np.abs(want[:n_sym, on]) ** 2, 1)
                counts[k] = int(on.sum())
                osc = air.oscillator(radios[k].name)
                sounding = t_s + settings.sounding_cp + np.arange(sounding_span, dtype=np.float64)
                wander[k] = osc.phase_noise(t_s + times) - float(np.mean(osc.phase_noise(sounding)))
                middle = float(t_s + times.mean())
                nco = ota.cfo[k] + ota.tracker.x[k, 1] / fs * (middle - t_s) / fs + ota.common + rate * (middle - t_s)
                freq_errors.append(float(link.cfo_hz(middle)) - float(nco) * fs)
            # the whole misalignment, noise-free, through the receiver's own decoding
            estimate_nf, _ = ota_module.receive_sum_ofdm(
                total, layout, eta, scale, values, seen["carrier_w"], seen["carrier_n"], seen["pfa"]
            )
            misalignment += float(np.sum((estimate_nf - exact) ** 2))
            mean = sum(gains[k] * counts[k] for k in gains) / sum(counts.values())
            common_wander = np.mean([wander[k] for k in gains], axis=0)
            for k in gains:
                phis.append(np.angle(gains[k] / mean))
                wanders.append(wander[k] - common_wander)
    phi = np.array(phis)
    wan = np.array(wanders)
    out: dict[str, Any] = {
        "impairment": impairment, "snr_db": snr_db, "max_segment_samples": max_segment_samples,
        "clients": clients, "rounds": rounds, "warmup": warmup, "values": values, "seed": seed,
        "gap_db": float(10 * np.log10(err / theory)),
        "misalignment_to_noise": misalignment / theory,
        "phase_var_rad2": float(np.mean(phi**2)),
        "phase_var_per_symbol_rad2": [float(v) for v in np.mean(phi**2, axis=0)],
        "symbol_times_after_sounding": [float(t) for t in (times if times is not None else [])],
        "tracker_frequency_error_hz_rms": float(np.sqrt(np.mean(np.square(freq_errors)))),
    }
    if max_segment_samples == 0 and times is not None:
        rest = phi - wan
        design = np.vstack([np.ones_like(times), times - times.mean()]).T
        coef, *_ = np.linalg.lstsq(design, rest.T, rcond=None)
        fit = (design @ coef).T
        out.update(
            wander_var_rad2=float(np.mean(wan**2)),
            rest_var_rad2=float(np.mean(rest**2)),
            rest_offset_var_rad2=float(np.mean(coef[0] ** 2)),
            rest_ramp_var_rad2=float(np.mean((fit - coef[0][:, None]) ** 2)),
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impairment", default="phase noise", help="row of lab_impairments_one_by_one")
    parser.add_argument("--snr", type=float, default=30.0, help="SNR (dB), as aircomp.py")
    parser.add_argument("--max-segment-samples", type=int, default=0)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--values", type=int, default=4810)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    a = parser.parse_args(argv)
    out = measure_budget(a.impairment, a.snr, a.max_segment_samples, a.clients, a.rounds, a.warmup, a.values, a.seed)
    if a.json:
        print(json.dumps(out, indent=2))
        return 0
    per = np.array(out["phase_var_per_symbol_rad2"])
    print(f"{a.impairment}, OFDM, {a.snr:g} dB, K = {a.clients}, d = {a.values}, max_segment_samples = "
          f"{a.max_segment_samples}, seed {a.seed}: gap {out['gap_db']:+.2f} dB")
    r = out["misalignment_to_noise"]
    print(f"  noise-free misalignment energy / theory's noise energy = {r:.3f} "
          f"(alone it would make a gap of 10*log10(1 + {r:.3f}) = {10 * np.log10(1 + r):+.2f} dB)")
    print(f"  per-client misalignment phase, mean Var = {out['phase_var_rad2']:.2e} rad^2 "
          f"(first / middle / last OFDM symbol: {per[0]:.1e} / {per[len(per) // 2]:.1e} / {per[-1]:.1e})")
    print(f"  CFO tracker error at the payload (truth): {out['tracker_frequency_error_hz_rms']:.2f} Hz rms")
    if "wander_var_rad2" in out:
        print(f"  split: own oscillator wander since the sounding {out['wander_var_rad2']:.2e}; rest "
              f"{out['rest_var_rad2']:.2e} = offset {out['rest_offset_var_rad2']:.2e} + ramp "
              f"{out['rest_ramp_var_rad2']:.2e} (+ covariance)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
