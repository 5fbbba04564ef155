"""The [radios] section: which radios a run uses, by URI, and their per-radio settings.

Without it a run builds its own loopback air from [channel] (radios loopback://airfl/server and
loopback://airfl/client0 ... in the names a calibration profile uses). With it the run opens the
radios named here (radio/uri.py: loopback://, pluto://, soapy://):

    [radios]
    server = "soapy://driver=uhd,serial=30F1234"          # the receiving radio
    clients = ["soapy://driver=uhd,serial=30F1235", ...]  # one per client (timed and cyclic modes)
    transmitter = "pluto://usb:1.4.5"                     # virtual mode: the one real transmitter
    tx_gain_db = { "soapy://driver=uhd,serial=30F1235" = -10.0 }   # per radio (dB, <= 0)
    xo_correction_hz = { "pluto://usb:1.4.5" = 39999535 }          # per Pluto (Hz)

`calibration = "profile.json"` (top level) fills tx_gain_db, xo_correction_hz, channel.rx_gain_db
and caps ota.tx_power from a calibration profile; the filled values are in the run's config.toml.
Loopback URIs in [radios] run on an air built from [channel], exactly as the default does.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_AIR = "airfl"
"""Name of the air of a run's own loopback radios (URIs loopback://airfl/NAME)."""


def default_server_uri() -> str:
    return f"loopback://{DEFAULT_AIR}/server"


def default_client_uri(k: int) -> str:
    return f"loopback://{DEFAULT_AIR}/client{k}"


class RadiosSection(BaseModel):
    """Radio URIs of a run and per-radio settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server: str | None = Field(None, description="URI of the receiving radio; unset: the run's own loopback air")
    clients: list[str] = Field(default_factory=list, description="one URI per client (timed and cyclic modes)")
    transmitter: str | None = Field(None, description="virtual mode: URI of the one real transmitter")
    tx_gain_db: dict[str, float] = Field(default_factory=dict, description="URI -> TX gain (dB, <= 0)")
    xo_correction_hz: dict[str, int] = Field(default_factory=dict, description="URI -> AD9361 reference (Hz)")

    @model_validator(mode="after")
    def _consistent(self) -> RadiosSection:
        if (self.clients or self.transmitter) and not self.server:
            raise ValueError("radios.server must name the receiving radio when radios.clients or radios.transmitter is set")
        uris = [u for u in (self.server, self.transmitter, *self.clients) if u]
        if len(set(uris)) != len(uris):
            raise ValueError("radios: each radio URI may appear once (server, transmitter and clients must differ)")
        for uri, gain in self.tx_gain_db.items():
            if not gain <= 0.0:
                raise ValueError(f"radios.tx_gain_db for {uri} is {gain} dB; a TX gain is an attenuation (<= 0 dB)")
        for uri, ref in self.xo_correction_hz.items():
            if not 39e6 <= ref <= 41e6:
                raise ValueError(
                    f"radios.xo_correction_hz for {uri} is {ref} Hz; it is the AD9361 reference, near 40e6 Hz"
                )
        return self
