"""`airfl modem plan | encode | decode`: the modem on files, for recordings from any SDR or simulator.

plan   update files + channel gains          -> frame spec (JSON): the round's feedback
encode one client's update + the frame spec   -> that client's transmit burst (SigMF)
decode a received superposition (SigMF) + spec -> estimated weighted mean (.npy) + report (JSON)

Each function raises `UsageError` (one sentence) for a user mistake; the CLI prints it, exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from airfl.modem.offline import FrameSpec, decode_sum, encode_client, plan_round
from airfl.modem.ofdm import OfdmLayout
from airfl.radio.recording import Annotation, Recording, read_recording, write_recording


class UsageError(ValueError):
    """A mistake in the command's inputs; str() is one sentence for the user."""


def _load_vector(path: str | Path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"update file '{p}' does not exist.")
    try:
        v = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UsageError(f"'{p}' is not a readable .npy array ({exc}).") from None
    if not np.issubdtype(v.dtype, np.number) or np.iscomplexobj(v):
        raise UsageError(f"'{p}' must hold a real numeric array, got dtype {v.dtype}.")
    return np.asarray(v, dtype=np.float64).ravel()


def load_spec(path: str | Path) -> FrameSpec:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"frame spec '{p}' does not exist; make one with `airfl modem plan`.")
    try:
        return FrameSpec.from_dict(json.loads(p.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise UsageError(f"frame spec '{p}' is not valid: {exc}.") from None


def plan(
    update_paths: list[str],
    out: str | Path,
    weights: list[float] | None = None,
    channels_path: str | None = None,
    channel_seed: int | None = None,
    tx_power: float = 0.1,
    threshold_db: float | None = None,
    waveform: str = "single_carrier",
    sample_rate_hz: float = 1e6,
) -> FrameSpec:
    """Write the frame spec for these clients' updates over the given (or drawn) channels."""
    updates = [_load_vector(p) for p in update_paths]
    if not updates:
        raise UsageError("give at least one update file.")
    if len({u.size for u in updates}) != 1:
        raise UsageError("every update must have the same number of values.")
    w = weights or [1.0] * len(updates)
    if len(w) != len(updates) or any(x < 0 for x in w) or sum(w) <= 0:
        raise UsageError("give one non-negative weight per update, not all zero.")
    if waveform not in ("single_carrier", "ofdm"):
        raise UsageError(f"waveform must be single_carrier or ofdm, got {waveform!r}.")
    layout = OfdmLayout()
    shape: tuple[int, ...] = (len(updates),) if waveform == "single_carrier" else (len(updates), layout.n_used)
    if channels_path:
        h = np.load(channels_path, allow_pickle=False)
        if h.shape != shape:
            raise UsageError(f"channels file must hold a complex array of shape {shape}, got {h.shape}.")
    else:
        rng = np.random.default_rng(channel_seed)
        h = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    gain2 = np.abs(h) ** 2
    threshold = 0.0 if threshold_db is None else float(np.mean(gain2)) * 10 ** (threshold_db / 10)
    spec = plan_round(updates, w, h, tx_power, threshold, waveform, layout, sample_rate_hz=sample_rate_hz)  # type: ignore[arg-type]
    if spec.eta <= 0:
        raise UsageError("every client is below the truncation threshold; lower --threshold-db.")
    Path(out).write_text(json.dumps(spec.to_dict(), indent=1))
    return spec


def _annotations(spec: FrameSpec) -> list[Annotation]:
    if spec.waveform == "ofdm":
        o = spec.ofdm_layout()
        return [
            Annotation(0, o.ofdm.symbol_length, "preamble", "OFDM preamble symbol"),
            Annotation(o.ofdm.symbol_length, o.burst_length - o.ofdm.symbol_length, "payload",
                       f"{o.n_ofdm_symbols} OFDM symbols, pilots every {o.ofdm.pilot_every} subcarriers"),
        ]
    lay = spec.sc_layout()
    return [
        Annotation(0, lay.preamble_length, "preamble", "Zadoff-Chu preamble"),
        Annotation(lay.preamble_length, lay.pattern.length, "payload",
                   f"pilot every {lay.pilot_spacing} data symbols" if lay.pilot_spacing else "no pilots"),
    ]


def encode(update_path: str, spec_path: str, client: int, out: str | Path) -> Path:
    """Write client `client`'s burst as a SigMF recording carrying the frame spec."""
    spec = load_spec(spec_path)
    try:
        burst = encode_client(_load_vector(update_path), spec, client)
    except ValueError as exc:
        raise UsageError(str(exc).rstrip(".") + ".") from None
    rec = Recording(
        samples=burst,
        sample_rate_hz=spec.sample_rate_hz,
        description=f"airfl client {client} aggregation burst",
        annotations=_annotations(spec),
        extra={"frame": spec.to_dict(), "client": client},
    )
    return write_recording(out, rec)


def decode(recording_path: str, out: str | Path, report_path: str | Path, spec_path: str | None = None) -> dict[str, Any]:
    """Decode a received superposition; writes the estimate (.npy) and the report (JSON)."""
    try:
        rec = read_recording(recording_path)
    except FileNotFoundError as exc:
        raise UsageError(str(exc) + ".") from None
    if spec_path:
        spec = load_spec(spec_path)
    elif "frame" in rec.extra:
        spec = FrameSpec.from_dict(rec.extra["frame"])
    else:
        raise UsageError("the recording carries no airfl frame spec; pass --spec FILE.")
    from airfl.modem.aircomp import FrameNotDetectedError  # noqa: PLC0415

    try:
        estimate, report = decode_sum(rec.samples, spec)
    except FrameNotDetectedError as exc:
        raise UsageError(f"{exc}.") from None
    np.save(out, estimate)
    Path(report_path).write_text(json.dumps(report, indent=1))
    return report
