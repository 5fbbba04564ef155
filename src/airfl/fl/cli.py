"""The `airfl` command. Thin: parse, validate, call a function that is also usable from Python.

User mistakes (bad config, bad override, missing file) print one sentence and exit with code 2;
a traceback means a bug in airfl.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

EXIT_USAGE = 2


def _cmd_run(args: argparse.Namespace) -> int:
    from airfl.fl.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"airfl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from airfl.fl.experiment import run_experiment
    from airfl.radio.base import RadioError

    out = Path(args.out) if args.out else Path("runs") / cfg.name
    try:
        run_experiment(cfg, out, Console(), progress=not args.quiet)
    except (ValueError, RadioError) as exc:  # combinations found while building the run; a radio refusing
        print(f"airfl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"airfl: interrupted; the rounds finished so far are in {out}", file=sys.stderr)
        return 130
    return 0


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence what C libraries print on file descriptor 2 (SoapySDR's module scan loads audio
    drivers that complain about a missing sound card); Python's own errors still show."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _cmd_devices(args: argparse.Namespace) -> int:
    from airfl.radio.discovery import describe, list_devices

    with _quiet_native_stderr():
        devices = list_devices()
    if args.json:
        print(json.dumps([d.to_dict() for d in devices], indent=2))
    else:
        print(describe(devices))
    return 0


def _cmd_modem(args: argparse.Namespace) -> int:
    from airfl.fl import modem_commands as mc

    try:
        if args.modem_command == "plan":
            spec = mc.plan(
                args.updates, args.out, args.weights, args.channels, args.channel_seed, args.tx_power,
                args.threshold_db, args.waveform, args.sample_rate,
            )
            print(f"frame spec for {len(spec.weights)} clients ({spec.n_active} transmit) written to {args.out}")
        elif args.modem_command == "encode":
            path = mc.encode(args.update, args.spec, args.client, args.out)
            print(f"burst of client {args.client} written to {path}")
        elif args.modem_command == "decode":
            report = mc.decode(args.recording, args.out, args.report, args.spec)
            print(json.dumps({k: v for k, v in report.items() if k != "aggregate_channel"}, indent=1))
        else:
            print("airfl modem: choose plan, encode or decode (see airfl modem --help)", file=sys.stderr)
            return EXIT_USAGE
    except mc.UsageError as exc:
        print(f"airfl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from airfl.calibration.bench import BenchError, open_bench
    from airfl.calibration.profile import ProfileError, load_profile
    from airfl.calibration.registry import (
        PROCEDURES,
        ProcedureError,
        apply_profile_to_bench,
        parse_procedure_options,
        run_procedure,
    )
    from airfl.calibration.output import render_table

    console = Console()
    names = list(PROCEDURES) if args.procedure == "all" else [args.procedure]
    try:
        options = {n: parse_procedure_options(n, args.option if args.procedure != "all" else []) for n in names}
        bench = open_bench(
            args.radio, args.tx, sample_rate_hz=args.sample_rate, center_freq_hz=args.center_freq,
            rx_gain_db=0.0 if args.rx_gain is None else args.rx_gain,
            tx_gain_db=-10.0 if args.tx_gain is None else args.tx_gain, air=args.air, seed=args.seed,
            noise_power=args.noise_power,
        )
    except (ProcedureError, BenchError) as exc:
        print(f"airfl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(args.out)
    profile_path = Path(args.profile) if args.profile else out / "profile.json"
    try:
        for name in names:
            if profile_path.is_file():  # what earlier procedures found, unless given on the command line
                applied = apply_profile_to_bench(
                    bench, load_profile(profile_path), rx_gain=args.rx_gain is None, tx_gain=args.tx_gain is None
                )
                for line in applied:
                    console.print(f"  from {profile_path}: {line}")
            with console.status(f"calibrating: {name}"):
                result, _ = run_procedure(name, bench, out, options[name], profile_path)
            console.print(render_table(f"airfl calibrate {name}", result.rows))
            for key, value in result.summary.items():
                console.print(f"  {key}: {value}")
            for note in result.notes:
                console.print(f"  [yellow]note:[/yellow] {note}")
            console.print(f"  report, figures and SigMF captures in {out / name}")
        console.print(f"profile updated: {profile_path}")
    except (ProcedureError, BenchError, ProfileError) as exc:
        print(f"airfl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"airfl: interrupted; finished procedures are in {out} and {profile_path}", file=sys.stderr)
        return 130
    finally:
        bench.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airfl", description="Over-the-air federated learning on real SDRs or the loopback air."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="train an experiment from a TOML config and write its run directory")
    run.add_argument("config", help="experiment config (TOML), e.g. configs/fedavg_digits.toml")
    run.add_argument("overrides", nargs="*", metavar="key=value", help="override config keys, e.g. channel.snr_db=10")
    run.add_argument("--out", help="run directory (default: runs/NAME)")
    run.add_argument("--quiet", action="store_true", help="no progress bar or table")
    run.set_defaults(func=_cmd_run)
    devices = sub.add_parser("devices", help="list the radios this machine can see and what each can do")
    devices.add_argument("--json", action="store_true", help="print JSON instead of a table")
    devices.set_defaults(func=_cmd_devices)

    modem = sub.add_parser("modem", help="the modem on files: plan a frame, encode a burst, decode a recording")
    msub = modem.add_subparsers(dest="modem_command", metavar="STEP")
    p = msub.add_parser("plan", help="frame spec (feedback) for clients' updates over given or drawn channels")
    p.add_argument("updates", nargs="+", help="one .npy update vector per client")
    p.add_argument("--out", required=True, help="frame spec to write (JSON)")
    p.add_argument("--weights", type=float, nargs="+", help="aggregation weights (default: equal)")
    p.add_argument("--channels", help=".npy complex gains: shape (K,) single carrier, (K, 52) OFDM")
    p.add_argument("--channel-seed", type=int, help="draw Rayleigh channels with this seed instead")
    p.add_argument("--tx-power", type=float, default=0.1, help="per-client power limit P (full-scale units^2)")
    p.add_argument("--threshold-db", type=float, help="truncation threshold re mean |h|^2 (default: full inversion)")
    p.add_argument("--waveform", default="single_carrier", choices=["single_carrier", "ofdm"])
    p.add_argument("--sample-rate", type=float, default=1e6, help="sample rate recorded in the files (Hz)")
    e = msub.add_parser("encode", help="one client's transmit burst as a SigMF recording")
    e.add_argument("update", help="the client's update (.npy)")
    e.add_argument("--spec", required=True, help="frame spec from `airfl modem plan`")
    e.add_argument("--client", type=int, required=True, help="the client's index in the spec")
    e.add_argument("--out", required=True, help="recording base name (writes .sigmf-data and .sigmf-meta)")
    d = msub.add_parser("decode", help="estimated weighted mean from a received superposition (SigMF)")
    d.add_argument("recording", help="SigMF recording of the received sum")
    d.add_argument("--spec", help="frame spec (default: the one stored in the recording)")
    d.add_argument("--out", required=True, help="estimate to write (.npy)")
    d.add_argument("--report", required=True, help="report to write (JSON)")
    modem.set_defaults(func=_cmd_modem)

    from airfl.calibration.registry import PROCEDURES

    cal = sub.add_parser(
        "calibrate",
        help="measure the bench: noise floor, frequency, IQ/DC, TX linearity, timing, alignment, end to end",
        description="Run a calibration procedure (or 'all', in order) and merge its findings into a profile "
        "that `airfl run` loads with calibration = \"profile.json\". Procedures: " + ", ".join(PROCEDURES) + ".",
    )
    cal.add_argument("procedure", choices=[*PROCEDURES, "all"], metavar="PROCEDURE", help="one of: " + ", ".join([*PROCEDURES, "all"]))
    cal.add_argument("--radio", required=True, metavar="URI", help="the receiving (reference) radio, e.g. pluto://ip:192.168.2.1 or loopback://bench/server")
    cal.add_argument("--tx", action="append", default=[], metavar="URI", help="a transmitter (repeat for several)")
    cal.add_argument("--out", default="calibration", help="directory for reports, figures and captures (default: calibration)")
    cal.add_argument("--profile", help="calibration profile to update (default: OUT/profile.json)")
    cal.add_argument("--sample-rate", type=float, default=1e6, help="sample rate (Hz, default 1e6)")
    cal.add_argument("--center-freq", type=float, default=2.44e9, help="carrier (Hz, default 2.44e9)")
    cal.add_argument("--rx-gain", type=float, help="receive gain (dB) unless a procedure sweeps it (default: the profile's, else 0)")
    cal.add_argument("--tx-gain", type=float, help="transmit gain (dB, <= 0) unless a procedure sweeps it (default: the profile's, else -10)")
    cal.add_argument("--air", default="lab", help="loopback only: physics preset of the emulated air (ideal, lab, lab_uncalibrated, cabled)")
    cal.add_argument("--seed", type=int, default=0, help="loopback only: seed of the emulated air")
    cal.add_argument("--noise-power", type=float, default=1e-4, help="loopback only: receiver noise (full-scale units^2, default 1e-4 = -40 dBFS)")
    cal.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="a procedure option, e.g. -o n_samples=65536")
    cal.set_defaults(func=_cmd_calibrate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
