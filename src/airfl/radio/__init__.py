"""radio: complex baseband samples in and out of devices, and the emulated air between them.

Never imports modem/, fl/ or calibration/.
"""

from airfl.radio.base import (
    Capabilities,
    DriverMissingError,
    LateCommandError,
    Radio,
    RadioConfig,
    RadioError,
)
from airfl.radio.channel import ChannelConfig, LinkModel
from airfl.radio.discovery import DeviceInfo, list_devices
from airfl.radio.loopback import AirConfig, LoopbackAir, LoopbackRadio
from airfl.radio.pluto import PlutoOptions, PlutoRadio
from airfl.radio.soapy import SoapyLateCommandError, SoapyOptions, SoapyRadio, SoapyStreamError
from airfl.radio.uri import forget_airs, loopback_air, open_radio

__all__ = [
    "AirConfig",
    "Capabilities",
    "ChannelConfig",
    "DeviceInfo",
    "DriverMissingError",
    "LateCommandError",
    "LinkModel",
    "LoopbackAir",
    "LoopbackRadio",
    "PlutoOptions",
    "PlutoRadio",
    "Radio",
    "RadioConfig",
    "RadioError",
    "SoapyLateCommandError",
    "SoapyOptions",
    "SoapyRadio",
    "SoapyStreamError",
    "forget_airs",
    "list_devices",
    "loopback_air",
    "open_radio",
]
