"""Calibration profiles: what the procedures measured, per radio, in a versioned JSON file.

A profile is the hand-over from `airfl calibrate ...` (which writes it) to `airfl run` (which
reads it with `calibration = "profile.json"` and applies gains, `xo_correction` and power limits).
One entry per radio, keyed by its serial number when the backend reports one, else by its URI.
Every field is optional: a procedure fills only what it measured, and running the procedures in
the order of hil_setup.md builds the profile up.

Schema (`schema = "airfl-calibration"`, `version = 1`); units are in the field names:

    sample_rate_hz, center_freq_hz       the settings the radios were calibrated at
    radios.ID.uri / serial / hardware     how to find the radio again
    radios.ID.rx_gain_db                  receive gain to use (dB)
    radios.ID.tx_gain_db                  transmit gain to use (dB, <= 0: an attenuation)
    radios.ID.max_tx_power                highest clean mean transmit power (full-scale units^2,
                                          |x|^2 averaged, at tx_gain_db): the P power control may use
    radios.ID.xo_correction_hz            AD9361 reference frequency to write (Pluto), Hz
    radios.ID.carrier_offset_ppm          carrier offset against the receiver before correction (ppm)
    radios.ID.residual_offset_ppm         the same after correction (ppm)
    radios.ID.noise_power                 receiver noise power at rx_gain_db (full-scale units^2 per
                                          complex sample)
    radios.ID.timing_offset_samples,      timing offset against the receiver (samples) and its drift
    radios.ID.timing_drift_ppm            (ppm of elapsed time)
    radios.ID.tx_iq / rx_iq               IQ imbalance {gain_db, phase_deg}
    radios.ID.tx_dc / rx_dc               DC offset [re, im] in full-scale units
    procedures                            which procedure ran when, with its report directory
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

import airfl

SCHEMA_NAME = "airfl-calibration"
SCHEMA_VERSION = 1


class ProfileError(ValueError):
    """A calibration profile cannot be read or used; str(error) is one sentence for the user."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IqImbalance(_Model):
    """IQ imbalance of one chain: amplitude ratio (dB) and phase skew (degrees)."""

    gain_db: float
    phase_deg: float


class RadioCalibration(_Model):
    """What the procedures measured for one radio (None: not measured)."""

    uri: str
    serial: str | None = None
    hardware: str | None = None
    rx_gain_db: float | None = None
    tx_gain_db: float | None = Field(None, le=0.0)
    max_tx_power: float | None = Field(None, gt=0.0)
    xo_correction_hz: int | None = Field(None, gt=0)
    carrier_offset_ppm: float | None = None
    residual_offset_ppm: float | None = None
    noise_power: float | None = Field(None, ge=0.0)
    timing_offset_samples: float | None = None
    timing_drift_ppm: float | None = None
    tx_iq: IqImbalance | None = None
    rx_iq: IqImbalance | None = None
    tx_dc: tuple[float, float] | None = None
    rx_dc: tuple[float, float] | None = None


class ProcedureRecord(_Model):
    """One procedure run: its name, when (UTC, ISO 8601), where its report is, its headline figures."""

    name: str
    when: str
    report: str | None = None
    summary: dict[str, Any] = Field(default_factory=dict)


class CalibrationProfile(_Model):
    """A versioned calibration profile (see the module docstring for the fields and units)."""

    schema_name: Literal["airfl-calibration"] = Field(SCHEMA_NAME, alias="schema")
    version: int = SCHEMA_VERSION
    airfl_version: str = airfl.__version__
    created: str = Field(default_factory=lambda: _now())
    updated: str = Field(default_factory=lambda: _now())
    sample_rate_hz: float | None = Field(None, gt=0)
    center_freq_hz: float | None = Field(None, gt=0)
    radios: dict[str, RadioCalibration] = Field(default_factory=dict)
    procedures: list[ProcedureRecord] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def entry(self, uri: str, serial: str | None = None) -> RadioCalibration | None:
        """The entry of the radio with this serial (preferred) or URI, or None."""
        if serial and serial in self.radios:
            return self.radios[serial]
        for entry in self.radios.values():
            if entry.uri == uri or (serial and entry.serial == serial):
                return entry
        return None

    def update(self, uri: str, serial: str | None = None, hardware: str | None = None, **values: Any) -> RadioCalibration:
        """Set measured fields of a radio's entry, creating it (keyed by serial, else URI) if new."""
        current = self.entry(uri, serial)
        data = current.model_dump() if current is not None else {"uri": uri}
        data.update({k: v for k, v in values.items()})
        if serial:
            data["serial"] = serial
        if hardware:
            data["hardware"] = hardware
        entry = RadioCalibration.model_validate(data)
        key = next((k for k, v in self.radios.items() if v is current), None) if current is not None else None
        self.radios[key or serial or uri] = entry
        self.updated = _now()
        return entry

    def record(self, name: str, report: str | None, summary: dict[str, Any]) -> None:
        """Note that procedure `name` ran now, with its report directory and headline figures."""
        self.procedures.append(ProcedureRecord(name=name, when=_now(), report=report, summary=summary))
        self.updated = _now()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def load_profile(path: str | Path) -> CalibrationProfile:
    """Read and validate a profile; every problem is a ProfileError with one sentence."""
    p = Path(path)
    if not p.is_file():
        raise ProfileError(f"calibration profile {p} does not exist; create it with `airfl calibrate NAME --profile {p}`")
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ProfileError(f"calibration profile {p} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_NAME:
        raise ProfileError(f"{p} is not an airfl calibration profile (its \"schema\" must be {SCHEMA_NAME!r})")
    version = data.get("version")
    if version != SCHEMA_VERSION:
        raise ProfileError(
            f"calibration profile {p} has schema version {version!r}; this airfl reads version {SCHEMA_VERSION} "
            "(re-run the calibration procedures to write a current profile)"
        )
    try:
        return CalibrationProfile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ProfileError(f"calibration profile {p}: {where}: {err['msg']}") from exc


def load_or_new_profile(path: str | Path) -> CalibrationProfile:
    """The profile at `path`, or a new empty one if the file does not exist yet."""
    return load_profile(path) if Path(path).is_file() else CalibrationProfile()


def save_profile(profile: CalibrationProfile, path: str | Path) -> Path:
    """Write the profile atomically (a crash never leaves half a file); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(profile.model_dump(mode="json", by_alias=True), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=p.name, dir=p.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
