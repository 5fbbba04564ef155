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
from airfl.radio.loopback import AirConfig, LoopbackAir, LoopbackRadio
from airfl.radio.uri import forget_airs, loopback_air, open_radio

__all__ = [
    "AirConfig",
    "Capabilities",
    "ChannelConfig",
    "DriverMissingError",
    "LateCommandError",
    "LinkModel",
    "LoopbackAir",
    "LoopbackRadio",
    "Radio",
    "RadioConfig",
    "RadioError",
    "forget_airs",
    "loopback_air",
    "open_radio",
]
