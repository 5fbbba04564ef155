"""Device discovery: real libiio and SoapySDR scans where installed, notices instead of exceptions."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from airfl.radio import DeviceInfo, list_devices
from airfl.radio import discovery
from airfl.radio.pluto import iio_uri_from_pluto
from airfl.radio.soapy import parse_device_args


def test_real_scan_never_raises_and_every_entry_is_usable():
    devices = list_devices(iio_backends=("usb", "ip"), soapy_args={"driver": "null"})
    assert isinstance(devices, list)
    for d in devices:
        assert isinstance(d, DeviceInfo) and d.backend in ("pluto", "soapy")
        if d.is_notice:
            assert d.notice
        elif d.backend == "pluto":
            iio_uri_from_pluto(d.uri)  # what open_radio() will accept
            assert (d.hardware_time, d.cyclic_only, d.full_duplex) == (False, True, True)
        else:
            assert parse_device_args(d.uri.removeprefix("soapy://"))
    json.dumps([d.to_dict() for d in devices])  # the CLI can print it as JSON


def test_real_usb_scan_through_libiio_returns_contexts():
    iio = pytest.importorskip("iio", reason="pylibiio not installed")
    contexts = discovery.scan_iio(iio, "usb")
    assert isinstance(contexts, dict)
    assert all(uri.startswith("usb:") for uri in contexts)


def test_found_plutos_become_pluto_uris(monkeypatch):
    pytest.importorskip("iio", reason="pylibiio not installed")
    scans = {
        "usb": {
            "usb:1.2.5": "0456:b673 (Analog Devices Inc. PlutoSDR (ADALM-PLUTO)), serial=1044730a1997",
            "usb:1.3.1": "0456:b672 (Analog Devices Inc. M2k (ADALM-2000)), serial=xyz",
        },
        "ip": {"ip:192.168.2.1": "192.168.2.1 (Analog Devices PlutoSDR Rev.C (Z7010-AD9363A)), serial=1044"},
    }
    monkeypatch.setattr(discovery, "scan_iio", lambda iio, backend: scans[backend])
    devices = list_devices(soapy=False)
    assert [d.uri for d in devices] == ["pluto://usb:1.2.5", "pluto://ip:192.168.2.1"]
    assert all((d.hardware_time, d.cyclic_only, d.full_duplex) == (False, True, True) for d in devices)


def test_a_failing_network_scan_is_a_notice_and_does_not_hide_usb(monkeypatch):
    pytest.importorskip("iio", reason="pylibiio not installed")

    def scan(iio: Any, backend: str) -> dict[str, str]:
        if backend == "ip":
            raise OSError(26, "Text file busy")  # what libiio 0.24 raises without an avahi daemon
        return {"usb:1.2.5": "PlutoSDR (ADALM-PLUTO)"}

    monkeypatch.setattr(discovery, "scan_iio", scan)
    devices = list_devices(soapy=False)
    assert devices[0].uri == "pluto://usb:1.2.5"
    assert devices[1].is_notice and "avahi" in devices[1].notice


class _FakeSoapyDevice:
    def __init__(self, args: dict[str, str]):
        if args.get("serial") == "busy":
            raise RuntimeError("device in use")
        self.args = args

    @staticmethod
    def enumerate(args: dict[str, str]) -> list[dict[str, str]]:
        return [
            {"driver": "uhd", "type": "b200", "serial": "30F1234", "label": "B210 [30F1234]"},
            {"driver": "rtlsdr", "label": "Generic RTL2832U"},
            {"driver": "uhd", "serial": "busy", "label": "B200 busy"},
        ]

    def getNumChannels(self, d: int) -> int:
        return 0 if self.args["driver"] == "rtlsdr" and d == 0 else 1

    def getFullDuplex(self, d: int, ch: int) -> bool:
        return True

    def hasHardwareTime(self, what: str = "") -> bool:
        return self.args["driver"] == "uhd"

    def close(self) -> None:
        pass


def test_soapy_devices_are_probed_for_what_they_can_do(monkeypatch):
    SoapySDR = pytest.importorskip("SoapySDR", reason="SoapySDR bindings not installed")

    class Module:
        Device = _FakeSoapyDevice

        def __getattr__(self, name: str) -> Any:
            return getattr(SoapySDR, name)

    monkeypatch.setattr(discovery, "load_soapy", lambda: Module())
    usrp, rtl, busy = list_devices(pluto=False)
    assert (usrp.uri, usrp.hardware_time, usrp.cyclic_only, usrp.full_duplex) == (
        "soapy://driver=uhd,serial=30F1234", True, False, True
    )
    assert (rtl.uri, rtl.hardware_time, rtl.full_duplex, rtl.notice) == (
        "soapy://driver=rtlsdr", False, False, "receive only"
    )
    assert busy.uri and busy.hardware_time is None and "device in use" in busy.notice
    text = discovery.describe([usrp, rtl, busy])
    assert "soapy://driver=uhd,serial=30F1234" in text and "hw time" in text


def test_missing_drivers_give_notices_not_exceptions(monkeypatch):
    monkeypatch.setitem(sys.modules, "iio", None)
    monkeypatch.setitem(sys.modules, "SoapySDR", None)
    devices = list_devices()
    assert [d.backend for d in devices] == ["pluto", "soapy"]
    assert all(d.is_notice for d in devices)
    assert "pip install pyadi-iio" in devices[0].notice
    assert "apt-get install python3-soapysdr" in devices[1].notice
    assert discovery.describe(devices).startswith("no radios found")


def test_package_imports_and_explains_without_any_driver():
    code = textwrap.dedent(
        """
        import sys
        for name in ("adi", "iio", "SoapySDR"):
            sys.modules[name] = None  # as on a machine without them
        import airfl.radio as r
        assert all(sys.modules.get(n) is None for n in ("adi", "iio", "SoapySDR"))
        for uri in ("pluto://ip:192.168.2.1", "soapy://driver=uhd"):
            try:
                r.open_radio(uri)
            except r.DriverMissingError as exc:
                print(exc)
        print(len([d for d in r.list_devices() if d.is_notice]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("the Pluto backend needs pyadi-iio and libiio: pip install pyadi-iio")
    assert lines[1].startswith("the SoapySDR backend needs the Debian SoapySDR bindings: apt-get install")
    assert lines[2] == "2"


def test_importing_airfl_radio_loads_no_driver():
    code = "import sys, airfl.radio; print([m for m in ('adi', 'iio', 'SoapySDR') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
