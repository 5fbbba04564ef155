"""Open a radio from a URI, so configs and the command line name radios the same way everywhere.

    loopback://AIR/RADIO      an emulated radio called RADIO on the in-process air called AIR
                              (e.g. loopback://bench/client3; the air is created on first use)

Hardware schemes (pluto://, soapy://) are added by their backends.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from airfl.radio.base import Radio
from airfl.radio.loopback import AirConfig, LoopbackAir

_AIRS: dict[str, LoopbackAir] = {}


def loopback_air(name: str = "default", config: AirConfig | None = None) -> LoopbackAir:
    """The in-process air called `name`; `config` creates (or replaces) it."""
    if config is not None or name not in _AIRS:
        _AIRS[name] = LoopbackAir(config)
    return _AIRS[name]


def forget_airs() -> None:
    """Drop every named air (tests use this for isolation)."""
    _AIRS.clear()


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
        return loopback_air(air_name).radio(radio_name)
    raise ValueError(
        f"unknown radio URI {uri!r}: use loopback://AIR/RADIO"
    )
