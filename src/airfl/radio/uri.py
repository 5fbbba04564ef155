"""Open a radio from a URI, so configs and the command line name radios the same way everywhere.

    loopback://AIR/RADIO      an emulated radio called RADIO on the in-process air called AIR
                              (e.g. loopback://bench/client3; the air is created on first use)
    loopback://AIR/RADIO?mode=cyclic
                              the same radio behaving like a stock-firmware Pluto: no hardware
                              time, cyclic transmit (radio/cyclic.py); options restart_jitter_samples
                              and max_host_latency_s, e.g. ?mode=cyclic&restart_jitter_samples=2
    pluto://usb:BUS.DEV.IF    an ADALM-Pluto through pyadi-iio, e.g. pluto://usb:1.2.5
    pluto://ip:ADDRESS        e.g. pluto://ip:192.168.2.1
    soapy://KEY=VALUE,...     a SoapySDR device by its device arguments, e.g. soapy://driver=uhd,serial=30F1234

Hardware URIs take backend options as a query, named like the fields of `PlutoOptions` /
`SoapyOptions`: pluto://ip:192.168.2.1?xo_correction_hz=39999535, soapy://driver=uhd?external_reference=true.
The driver libraries are imported only when such a radio is opened.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union
from urllib.parse import parse_qsl, urlsplit

from airfl.radio.base import Radio
from airfl.radio.cyclic import CyclicLoopbackRadio, CyclicOptions
from airfl.radio.loopback import AirConfig, LoopbackAir
from airfl.radio.pluto import PlutoOptions, PlutoRadio, iio_uri_from_pluto
from airfl.radio.soapy import SoapyOptions, SoapyRadio, parse_device_args

_T = TypeVar("_T")

ACCEPTED_FORMS = (
    "loopback://AIR/RADIO, pluto://usb:BUS.DEV.IF, pluto://ip:ADDRESS or soapy://driver=NAME,KEY=VALUE..."
)

_AIRS: dict[str, LoopbackAir] = {}
_CYCLIC: dict[tuple[str, str], CyclicLoopbackRadio] = {}
LOOPBACK_MODES = ("timed", "cyclic")


def loopback_air(name: str = "default", config: AirConfig | None = None) -> LoopbackAir:
    """The in-process air called `name`; `config` creates (or replaces) it."""
    if config is not None or name not in _AIRS:
        _AIRS[name] = LoopbackAir(config)
    return _AIRS[name]


def forget_airs() -> None:
    """Drop every named air (tests use this for isolation)."""
    _AIRS.clear()
    _CYCLIC.clear()


def open_radio(uri: str) -> Radio:
    """Open the radio a URI names; a malformed URI raises ValueError with the accepted forms."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "loopback":
        air_name = parts.netloc or "default"
        radio_name = parts.path.strip("/")
        if not radio_name or "/" in radio_name:
            raise ValueError(
                f"loopback URI {uri!r} must name one radio: loopback://AIR/RADIO, e.g. loopback://bench/client0"
            )
        return _open_loopback(air_name, radio_name, parts.query, uri)
    if scheme == "pluto":
        return PlutoRadio(iio_uri_from_pluto(uri), parse_options(PlutoOptions, parts.query, uri))
    if scheme == "soapy":
        # Split by hand: device arguments may hold characters urlsplit treats specially.
        body = uri.split("://", 1)[1]
        args_text, _, query = body.partition("?")
        args = parse_device_args(args_text)
        if not args:
            raise ValueError(f"soapy URI {uri!r} names no device: use soapy://driver=NAME[,serial=...]")
        return SoapyRadio(args, parse_options(SoapyOptions, query, uri))
    raise ValueError(f"unknown radio URI {uri!r}: use {ACCEPTED_FORMS}")


def _open_loopback(air_name: str, radio_name: str, query: str, uri: str) -> Radio:
    """A loopback radio in timed mode (the default) or cyclic mode (``?mode=cyclic``)."""
    pairs = parse_qsl(query, keep_blank_values=True)
    mode = next((v.lower() for k, v in pairs if k == "mode"), "timed")
    if mode not in LOOPBACK_MODES:
        raise ValueError(f"loopback URI {uri!r}: mode must be one of {', '.join(LOOPBACK_MODES)}, got {mode!r}")
    rest = "&".join(f"{k}={v}" for k, v in pairs if k != "mode")
    air = loopback_air(air_name)
    if mode == "timed":
        if rest:
            raise ValueError(f"loopback URI {uri!r}: options other than mode apply to mode=cyclic only (got {rest!r})")
        return air.radio(radio_name)
    options = parse_options(CyclicOptions, rest, uri)
    cached = _CYCLIC.get((air_name, radio_name))
    if cached is not None and cached.air is air and not cached.closed:
        if cached.options != options:
            raise ValueError(f"loopback URI {uri!r}: radio {radio_name!r} is already open with {cached.options}")
        return cached
    radio = _CYCLIC[(air_name, radio_name)] = CyclicLoopbackRadio(air, radio_name, options)
    return radio


def parse_options(cls: type[_T], query: str, uri: str = "") -> _T:
    """Build the options dataclass `cls` from a URI query (``a=1&b=true``), converting by field type."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in names:
            raise ValueError(f"unknown option {key!r} in radio URI {uri!r}; known options: {', '.join(sorted(names))}")
        values[key] = _convert(raw, hints[key], key, uri)
    return cls(**values)


def _convert(raw: str, hint: Any, key: str, uri: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if raw.lower() in ("", "none", "null"):
            return None
        hint = args[0]
    try:
        if hint is bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {raw!r}")
        if hint is int:
            value = float(raw)
            if not value.is_integer():
                raise ValueError(f"not an integer: {raw!r}")
            return int(value)
        if hint is float:
            return float(raw)
        return raw
    except ValueError as exc:
        raise ValueError(f"option {key}={raw!r} in radio URI {uri!r}: {exc}") from exc
