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
from airfl.radio.frontend import Frontend, FrontendConfig, FrontendOverride
from airfl.radio.loopback import AirConfig, LoopbackAir, LoopbackRadio
from airfl.radio.oscillator import Oscillator, OscillatorConfig, OscillatorOverride
from airfl.radio.pluto import PlutoOptions, PlutoRadio
from airfl.radio.presets import LAB_RX_GAIN_DB, lab_impairments
from airfl.radio.soapy import SoapyLateCommandError, SoapyOptions, SoapyRadio, SoapyStreamError
from airfl.radio.uri import forget_airs, loopback_air, open_radio

__all__ = [
    "AirConfig",
    "Capabilities",
    "ChannelConfig",
    "DeviceInfo",
    "DriverMissingError",
    "Frontend",
    "FrontendConfig",
    "FrontendOverride",
    "LAB_RX_GAIN_DB",
    "LateCommandError",
    "LinkModel",
    "LoopbackAir",
    "LoopbackRadio",
    "Oscillator",
    "OscillatorConfig",
    "OscillatorOverride",
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
    "lab_impairments",
    "list_devices",
    "loopback_air",
    "open_radio",
]
