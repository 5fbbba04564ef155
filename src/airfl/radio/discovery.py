"""Which radios can this machine see, and what can each do? (`airfl devices`)

Plutos come from libiio's context scan (USB and network backends scanned separately, so a network
scan that fails — e.g. no avahi daemon — does not hide USB devices); SoapySDR devices from
`SoapySDR.Device.enumerate()`. Nothing here raises for a missing driver or an empty bench: such
problems come back as notice entries (`DeviceInfo.notice`) saying what is missing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from airfl.radio.base import DriverMissingError
from airfl.radio.pluto import PLUTO_INSTALL_HINT, pluto_capabilities
from airfl.radio.soapy import format_device_args, load_soapy

IIO_BACKENDS = ("usb", "ip")
_PLUTO_MARKERS = ("plutosdr", "adalm-pluto", "adalm pluto")


@dataclass(frozen=True)
class DeviceInfo:
    """One radio found (or, with `notice` set and `uri` None, one thing that stopped the search).

    backend: "pluto" or "soapy". uri: what open_radio() takes. hardware_time: timed bursts possible.
    cyclic_only: the transmitter can only repeat a buffer (no timed bursts): the cyclic timing mode.
    full_duplex: transmits and receives at once. None means unknown without opening the device.
    """

    backend: str
    uri: str | None
    description: str
    hardware_time: bool | None = None
    cyclic_only: bool | None = None
    full_duplex: bool | None = None
    notice: str | None = None

    @property
    def is_notice(self) -> bool:
        return self.uri is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_devices(
    *,
    pluto: bool = True,
    soapy: bool = True,
    iio_backends: Iterable[str] = IIO_BACKENDS,
    soapy_args: dict[str, str] | None = None,
    probe_soapy: bool = True,
) -> list[DeviceInfo]:
    """Every Pluto and SoapySDR device visible, then notices for whatever could not be searched.

    iio_backends: libiio scan backends for Plutos. soapy_args: filter for SoapySDR enumeration
    (e.g. {"driver": "uhd"}). probe_soapy: open each SoapySDR device briefly to read whether it has
    hardware time and full duplex (a device busy elsewhere gets a notice instead).
    """
    found: list[DeviceInfo] = []
    notices: list[DeviceInfo] = []
    if pluto:
        _find_plutos(tuple(iio_backends), found, notices)
    if soapy:
        _find_soapy(soapy_args or {}, probe_soapy, found, notices)
    return found + notices


def describe(devices: list[DeviceInfo]) -> str:
    """A plain-text table of `list_devices()` for the command line."""
    def flag(value: bool | None) -> str:
        return "?" if value is None else ("yes" if value else "no")

    rows = [d for d in devices if not d.is_notice]
    lines = []
    if rows:
        lines.append(f"{'URI':44} {'hw time':8} {'cyclic only':12} {'full duplex':12} description")
        for d in rows:
            lines.append(
                f"{d.uri or '':44} {flag(d.hardware_time):8} {flag(d.cyclic_only):12} {flag(d.full_duplex):12} "
                f"{d.description}" + (f" ({d.notice})" if d.notice else "")
            )
    else:
        lines.append("no radios found")
    lines += [f"note [{d.backend}]: {d.notice}" for d in devices if d.is_notice]
    return "\n".join(lines)


# -- Pluto (libiio scan) -----------------------------------------------------------------
def _load_iio() -> Any:
    try:
        import iio  # noqa: PLC0415 - optional driver
    except Exception as exc:
        raise DriverMissingError(f"{PLUTO_INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc
    return iio


def scan_iio(iio: Any, backend: str) -> dict[str, str]:
    """libiio contexts {uri: description} found by one scan backend ("usb", "ip").

    pylibiio 0.25's public scan_contexts() scans every backend at once and fails as a whole when one
    of them does (the ip backend raises without an avahi daemon), so one backend is scanned through
    the binding's own ctypes functions when it has them; otherwise the public call is used.
    """
    needed = ("_create_scan_context", "_get_context_info_list", "_context_info_get_uri",
              "_context_info_get_description", "_context_info_list_free", "_destroy_scan_context",
              "_POINTER", "_ContextInfoPtr", "_byref")
    if not all(hasattr(iio, name) for name in needed):
        return {u: d for u, d in iio.scan_contexts().items() if u.startswith(backend + ":")}
    ctx = iio._create_scan_context(backend.encode("ascii"), 0)
    try:
        ptr = iio._POINTER(iio._ContextInfoPtr)()
        n = iio._get_context_info_list(ctx, iio._byref(ptr))
        try:
            return {
                iio._context_info_get_uri(ptr[i]).decode("ascii"): iio._context_info_get_description(ptr[i]).decode(
                    "ascii", "replace"
                )
                for i in range(n)
            }
        finally:
            iio._context_info_list_free(ptr)
    finally:
        iio._destroy_scan_context(ctx)


def _find_plutos(backends: tuple[str, ...], found: list[DeviceInfo], notices: list[DeviceInfo]) -> None:
    try:
        iio = _load_iio()
    except DriverMissingError as exc:
        notices.append(DeviceInfo("pluto", None, "Plutos not searched", notice=str(exc)))
        return
    caps = pluto_capabilities()
    for backend in backends:
        try:
            contexts = scan_iio(iio, backend)
        except Exception as exc:
            hint = " (network scan needs a running avahi-daemon; open pluto://ip:ADDRESS directly)" if backend == "ip" else ""
            notices.append(
                DeviceInfo("pluto", None, f"libiio {backend} scan failed", notice=f"{type(exc).__name__}: {exc}{hint}")
            )
            continue
        for iio_uri, description in sorted(contexts.items()):
            if not any(m in description.lower() for m in _PLUTO_MARKERS):
                continue  # another IIO device (not a radio airfl drives)
            found.append(
                DeviceInfo(
                    "pluto",
                    f"pluto://{iio_uri}",
                    description,
                    hardware_time=caps.timed_tx,
                    cyclic_only=caps.cyclic_tx and not caps.timed_tx,
                    full_duplex=caps.full_duplex,
                )
            )


# -- SoapySDR enumeration ----------------------------------------------------------------
def _soapy_uri(args: dict[str, str]) -> str:
    keep = {k: v for k, v in args.items() if k in ("driver", "serial")} if "serial" in args else {
        k: v for k, v in args.items() if k != "label"
    }
    return "soapy://" + format_device_args(keep)


def _find_soapy(
    filter_args: dict[str, str], probe: bool, found: list[DeviceInfo], notices: list[DeviceInfo]
) -> None:
    try:
        S = load_soapy()
    except DriverMissingError as exc:
        notices.append(DeviceInfo("soapy", None, "SoapySDR devices not searched", notice=str(exc)))
        return
    try:
        results = [dict(r) for r in S.Device.enumerate(dict(filter_args))]
    except Exception as exc:
        notices.append(DeviceInfo("soapy", None, "SoapySDR enumeration failed", notice=f"{type(exc).__name__}: {exc}"))
        return
    for args in results:
        description = args.get("label") or format_device_args(args)
        uri = _soapy_uri(args)
        if not probe:
            found.append(DeviceInfo("soapy", uri, description, cyclic_only=False))
            continue
        found.append(_probe_soapy(S, args, uri, description))


def _probe_soapy(S: Any, args: dict[str, str], uri: str, description: str) -> DeviceInfo:
    dev = None
    try:
        dev = S.Device(args)
        rx, tx = S.SOAPY_SDR_RX, S.SOAPY_SDR_TX
        n_rx, n_tx = int(dev.getNumChannels(rx)), int(dev.getNumChannels(tx))
        duplex = n_rx > 0 and n_tx > 0 and bool(dev.getFullDuplex(rx, 0)) and bool(dev.getFullDuplex(tx, 0))
        note = None if n_tx > 0 else "receive only"
        return DeviceInfo("soapy", uri, description, bool(dev.hasHardwareTime()), False, duplex, note)
    except Exception as exc:
        return DeviceInfo("soapy", uri, description, cyclic_only=False, notice=f"could not open to probe: {exc}")
    finally:
        if dev is not None:
            try:
                dev.close()
            except Exception:
                pass
