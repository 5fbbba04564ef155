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

    out = Path(args.out) if args.out else Path("runs") / cfg.name
    try:
        run_experiment(cfg, out, Console(), progress=not args.quiet)
    except ValueError as exc:  # configuration combinations only discovered while building the run
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
