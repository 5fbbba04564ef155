"""The calibration procedures, in the order a lab runs them, and how to run one.

Each procedure is a module of this package with
    SUMMARY: str                 one line for `airfl calibrate --help`
    Options                      a dataclass of its settings (units in the field names), all defaulted
    run(bench, out, options) -> ProcedureResult
so it is importable from Python and runnable as `airfl calibrate NAME --radio URI [--tx URI ...]`.
`run_procedure` opens nothing: it runs a procedure on a bench, writes the report and merges the
procedure's findings into a calibration profile.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

from threadpoolctl import threadpool_limits

from airfl.calibration.bench import Bench
from airfl.calibration.output import ProcedureOutput, ProcedureResult, write_report
from airfl.calibration.profile import CalibrationProfile, load_or_new_profile, save_profile

PROCEDURES: dict[str, str] = {
    "noise_floor": "airfl.calibration.noise_floor",
    "frequency": "airfl.calibration.frequency",
    "iq_dc": "airfl.calibration.iq_dc",
    "tx_linearity": "airfl.calibration.tx_linearity",
    "timing": "airfl.calibration.timing",
    "alignment": "airfl.calibration.alignment",
    "end_to_end": "airfl.calibration.end_to_end",
}
"""Procedure name -> module, in the order hil_setup.md runs them."""


class ProcedureError(ValueError):
    """A procedure cannot run as asked (unknown name, bad option); one sentence for the user."""


def procedure_module(name: str) -> ModuleType:
    if name not in PROCEDURES:
        raise ProcedureError(f"unknown calibration procedure {name!r}; choose one of {', '.join(PROCEDURES)}")
    return importlib.import_module(PROCEDURES[name])


def parse_procedure_options(name: str, pairs: list[str]) -> Any:
    """Build procedure `name`'s Options from KEY=VALUE strings, converting by field type."""
    module = procedure_module(name)
    cls = module.Options
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ProcedureError(f"option {pair!r} is not KEY=VALUE (e.g. -o duration_s=2)")
        if key not in fields:
            raise ProcedureError(f"{name} has no option {key!r}; its options are: {', '.join(sorted(fields))}")
        values[key] = _convert(raw, hints[key], key)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ProcedureError(f"{name}: {exc}") from exc


def _convert(raw: str, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and args:
        if raw.lower() in ("", "none"):
            return None
        hint = args[0]
        origin = typing.get_origin(hint)
        args = list(typing.get_args(hint))
    try:
        if origin in (list, tuple):
            inner = args[0] if args else str
            return [_convert(part, inner, key) for part in raw.split(",") if part]
        if hint is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        return raw
    except ValueError as exc:
        raise ProcedureError(f"option {key}={raw!r}: {exc}") from exc


def run_procedure(
    name: str,
    bench: Bench,
    out_dir: str | Path,
    options: Any = None,
    profile_path: str | Path | None = None,
) -> tuple[ProcedureResult, CalibrationProfile | None]:
    """Run procedure `name` on `bench`, write OUT_DIR/NAME/report.{txt,json} (plus its captures and
    figures) and, if `profile_path` is given, merge its findings into that profile and save it."""
    module = procedure_module(name)
    opts = options if options is not None else module.Options()
    out = ProcedureOutput(Path(out_dir) / name)
    # Procedures fit many small least-squares problems; a multi-threaded BLAS spends more time
    # waking threads than computing them (7x slower on a 2-core machine), so they run on one.
    with threadpool_limits(limits=1, user_api="blas"):
        result: ProcedureResult = module.run(bench, out, opts)
    write_report(result, out)
    profile = None
    if profile_path is not None:
        profile = load_or_new_profile(profile_path)
        profile.sample_rate_hz = bench.sample_rate_hz
        profile.center_freq_hz = bench.center_freq_hz
        for uri, values in result.profile.items():
            radio = next((r for r, u in _radios(bench) if u == uri), None)
            serial = getattr(radio, "serial", None) if radio is not None else None
            hardware = bench.hardware(radio) if radio is not None else None
            profile.update(uri, serial=serial, hardware=hardware, **values)
        profile.record(name, str(out.directory), result.summary)
        save_profile(profile, profile_path)
    return result, profile


def apply_profile_to_bench(
    bench: Bench, profile: CalibrationProfile, *, rx_gain: bool = True, tx_gain: bool = True
) -> list[str]:
    """Set what earlier procedures found on the bench's radios: the receiver's `rx_gain_db`, each
    transmitter's `tx_gain_db` and `xo_correction_hz` (radios that have one). Returns what was set,
    one line each, for the console. `rx_gain` / `tx_gain` False leave gains the user chose alone."""
    done: list[str] = []
    rx = profile.entry(bench.receiver_uri, getattr(bench.receiver, "serial", None))
    if rx_gain and rx is not None and rx.rx_gain_db is not None and rx.rx_gain_db != bench.config.rx_gain_db:
        bench.set_rx_gain(rx.rx_gain_db)
        done.append(f"{bench.receiver_uri}: rx_gain_db = {rx.rx_gain_db:g} dB")
    for i, (radio, uri) in enumerate(zip(bench.transmitters, bench.transmitter_uris, strict=True)):
        entry = profile.entry(uri, getattr(radio, "serial", None))
        if entry is None:
            continue
        if tx_gain and entry.tx_gain_db is not None and entry.tx_gain_db != bench.tx_gains_db[i]:
            bench.set_tx_gain(i, entry.tx_gain_db)
            done.append(f"{uri}: tx_gain_db = {entry.tx_gain_db:g} dB")
        has_xo = getattr(radio, "has_xo_correction", None)
        if entry.xo_correction_hz is not None and callable(has_xo) and has_xo():
            if radio.xo_correction() != entry.xo_correction_hz:  # type: ignore[attr-defined]
                radio.set_xo_correction(entry.xo_correction_hz)  # type: ignore[attr-defined]
                done.append(f"{uri}: xo_correction = {entry.xo_correction_hz} Hz")
    return done


def _radios(bench: Bench) -> list[tuple[Any, str]]:
    return [(bench.receiver, bench.receiver_uri), *zip(bench.transmitters, bench.transmitter_uris, strict=True)]
