"""Modem throughput on one core: complex samples per second through the transmit chain and the full
receive chain, single carrier and OFDM, beside 61.44 MS/s (the top sample rate of Pluto and B210).

transmit: normalise + map + pilots/OFDM + pre-equalise one client's update (what each client does).
receive:  sounding (channel, delay, CFO, noise estimates for K clients) + preamble detection +
          pilot tracking / OFDM demodulation + de-normalisation of the superposition.
Rates count the samples on air that each chain handles. Timing: best of --repeats runs.

    python benchmarks/modem_throughput.py [--samples 2000000] [--clients 10] [--repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from airfl.modem import SoundingLayout, common_scale, estimate_channels, symbol_count, update_statistics
from airfl.modem.aircomp import client_burst, client_burst_ofdm, client_symbols, receive_sum, receive_sum_ofdm
from airfl.modem.frame import AggregationLayout, OfdmAggregationLayout
from airfl.modem.ofdm import OfdmLayout

PLUTO_B210_MAX_RATE = 61.44e6


def _best_time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(waveform: str, n_samples: int, clients: int, repeats: int, seed: int = 0) -> dict[str, float | str | int]:
    """Transmit and receive rates (samples/s) for a frame of about n_samples samples."""
    rng = np.random.default_rng(seed)
    n_values = 2 * n_samples  # two reals per complex sample
    update = rng.standard_normal(n_values)
    scale = common_scale([update_statistics(update)], np.ones(1))
    guard = 32
    if waveform == "ofdm":
        ofdm = OfdmLayout()
        layout_o = OfdmAggregationLayout(symbol_count(n_values), ofdm)
        b = np.ones(ofdm.n_used, dtype=complex) * 0.3
        counts = np.ones(ofdm.n_used)

        def tx() -> np.ndarray:
            return client_burst_ofdm(client_symbols(update, 1.0, scale), b, layout_o)

        burst = tx()

        def rx_payload(window: np.ndarray) -> object:
            return receive_sum_ofdm(window, layout_o, 0.09, scale, n_values, counts, counts)
    else:
        layout = AggregationLayout(symbol_count(n_values), 127, 32)

        def tx() -> np.ndarray:
            return client_burst(client_symbols(update, 1.0, scale), 0.3 + 0j, layout)

        burst = tx()

        def rx_payload(window: np.ndarray) -> object:
            return receive_sum(window, layout, 0.09, scale, n_values, 1.0, 1)

    noise = 1e-3 * (rng.standard_normal(len(burst) + 2 * guard) + 1j * rng.standard_normal(len(burst) + 2 * guard))
    window = noise.copy()
    window[guard : guard + len(burst)] += burst
    sounding = SoundingLayout(clients, repeats=3)
    pilots = sum(sounding.pilot(k) * (0.5 + 0.1 * k) for k in range(clients))

    def rx() -> None:
        estimate_channels(pilots, sounding)
        rx_payload(window)

    t_tx = _best_time(tx, repeats)
    t_rx = _best_time(rx, repeats)
    on_air = len(burst) + sounding.burst_length
    return {
        "waveform": waveform,
        "samples": int(on_air),
        "tx_msps": len(burst) / t_tx / 1e6,
        "rx_msps": on_air / t_rx / 1e6,
        "rx_ratio_to_61_44": on_air / t_rx / PLUTO_B210_MAX_RATE,
        "tx_ratio_to_61_44": len(burst) / t_tx / PLUTO_B210_MAX_RATE,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2_000_000, help="payload samples per frame")
    parser.add_argument("--clients", type=int, default=10, help="clients in the sounding")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs (best is kept)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rows = [measure(w, args.samples, args.clients, args.repeats) for w in ("single_carrier", "ofdm")]
    command = "python benchmarks/modem_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.json:
        print(json.dumps({"command": command, "machine": platform.processor() or platform.machine(), "records": rows}, indent=1))
        return 0
    table = Table(title="Modem throughput on one core (MS/s = million complex samples per second)")
    for col in ("waveform", "frame samples", "transmit MS/s", "receive MS/s", "receive / 61.44 MS/s"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["waveform"]), f"{r['samples']:,}", f"{r['tx_msps']:.1f}", f"{r['rx_msps']:.1f}",
            f"{r['rx_ratio_to_61_44']:.2f}x",
        )
    table.caption = f"{command}\nreceive = sounding estimation for {args.clients} clients + detection + tracking + demodulation"
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
