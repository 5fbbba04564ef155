"""SoapySDR backend against the real SoapySDR bindings and its built-in `null` device.

The real module supplies every constant, flag, error code, errToStr and the tick/ns conversions.
The `null` device (always built into libSoapySDR) has no channels and no hardware time; it is
opened, queried and streamed to for real, which exercises the untimed path and the error paths
(its streams answer NOT_SUPPORTED). Timed bursts need a device with a hardware clock, so they run
against `TimedDevice`, a small stand-in that speaks SoapySDR's Python API with the real constants.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import numpy as np
import pytest

from airfl.radio import LateCommandError, Radio, RadioConfig, RadioError, open_radio
from airfl.radio import soapy as soapy_mod
from airfl.radio.base import DriverMissingError
from airfl.radio.soapy import (
    SoapyLateCommandError,
    SoapyOptions,
    SoapyRadio,
    SoapyStreamError,
    ns_to_ticks,
    parse_device_args,
    stream_error,
    ticks_to_ns,
)

SoapySDR = pytest.importorskip("SoapySDR", reason="SoapySDR bindings not installed (apt-get install python3-soapysdr)")


def _null_available() -> bool:
    try:
        dev = SoapySDR.Device(dict(driver="null"))
    except Exception:
        return False
    dev.close()
    return True


needs_null = pytest.mark.skipif(not _null_available(), reason="SoapySDR has no null device")


# -- the real module ----------------------------------------------------------------------------
def test_real_constants_flags_and_error_names():
    S = SoapySDR
    assert (S.SOAPY_SDR_TX, S.SOAPY_SDR_RX) == (0, 1)
    assert S.SOAPY_SDR_END_BURST == 1 << 1 and S.SOAPY_SDR_HAS_TIME == 1 << 2
    assert S.SOAPY_SDR_CF32 == "CF32"
    codes = {
        S.SOAPY_SDR_TIMEOUT: "TIMEOUT",
        S.SOAPY_SDR_STREAM_ERROR: "STREAM_ERROR",
        S.SOAPY_SDR_CORRUPTION: "CORRUPTION",
        S.SOAPY_SDR_OVERFLOW: "OVERFLOW",
        S.SOAPY_SDR_NOT_SUPPORTED: "NOT_SUPPORTED",
        S.SOAPY_SDR_TIME_ERROR: "TIME_ERROR",
        S.SOAPY_SDR_UNDERFLOW: "UNDERFLOW",
    }
    assert sorted(codes) == list(range(-7, 0))
    for code, name in codes.items():
        assert S.errToStr(code) == name
        assert name in soapy_mod._HINTS  # every code the library names has a hint
    assert S.errToStr(-99) == "UNKNOWN"


def test_stream_errors_map_to_exceptions_with_the_code():
    S = SoapySDR
    late = stream_error(S, S.SOAPY_SDR_TIME_ERROR, "tx")
    assert isinstance(late, SoapyLateCommandError) and isinstance(late, LateCommandError)
    assert late.code == -6 and late.code_name == "TIME_ERROR"
    for code in (S.SOAPY_SDR_TIMEOUT, S.SOAPY_SDR_OVERFLOW, S.SOAPY_SDR_UNDERFLOW, S.SOAPY_SDR_CORRUPTION):
        err = stream_error(S, code, "rx")
        assert type(err) is SoapyStreamError and isinstance(err, RadioError)
        assert S.errToStr(code) in str(err) and err.code == code
    assert "UNKNOWN" in str(stream_error(S, -42, "rx"))


@pytest.mark.parametrize("rate", [1e6, 30.72e6, 61.44e6, 1e6 / 3])
def test_real_tick_conversions_round_trip(rate):
    for ticks in (0, 1, 12345, 10**10 + 7):
        ns = ticks_to_ns(SoapySDR, ticks, rate)
        assert ns_to_ticks(SoapySDR, ns, rate) == ticks
        assert abs(ns - ticks * 1e9 / rate) <= 1
    bare = type("NoConversions", (), {})()  # an old binding without ticksToTimeNs
    assert ticks_to_ns(bare, 1000, 1e6) == ticks_to_ns(SoapySDR, 1000, 1e6) == 1_000_000
    assert ns_to_ticks(bare, 1_000_000, 1e6) == 1000


def test_device_args_parse_and_real_kwargs_agree():
    args = parse_device_args("driver=uhd, serial=30F1234,type=b200")
    assert args == {"driver": "uhd", "serial": "30F1234", "type": "b200"}
    assert dict(SoapySDR.KwargsFromString("driver=uhd,serial=30F1234,type=b200")) == args
    assert parse_device_args("") == {}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_device_args("driver=uhd,serial")


# -- the real null device -----------------------------------------------------------------------
@needs_null
def test_null_device_opens_and_reports_what_it_cannot_do():
    radio = open_radio("soapy://driver=null")
    try:
        assert isinstance(radio, SoapyRadio) and isinstance(radio, Radio)
        caps = radio.capabilities
        assert radio.name == "soapy:null:null"
        assert (caps.timed_tx, caps.timed_rx, caps.cyclic_tx, caps.full_duplex) == (False, False, False, False)
        assert radio.now() == 0
        with pytest.raises(RadioError, match="no channel 0"):
            radio.configure(RadioConfig())
        with pytest.raises(RadioError, match="no hardware time"):
            radio.set_time(0)
    finally:
        radio.close()


class Recorder:
    """Wraps a real SoapySDR.Device and records the stream calls made through it."""

    def __init__(self, dev: Any):
        self._dev = dev
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._dev, name)
        if name in ("setupStream", "activateStream", "deactivateStream", "closeStream", "writeStream", "readStream"):
            def call(*a: Any, **k: Any) -> Any:
                self.calls.append(name)
                return target(*a, **k)
            return call
        return target


@needs_null
def test_null_device_streams_fail_clearly_and_are_closed():
    radio = SoapyRadio("driver=null", SoapyOptions(timeout_s=0.05))
    rec = radio._dev = Recorder(radio._dev)
    try:
        with pytest.raises(SoapyStreamError, match="NOT_SUPPORTED") as info:
            radio.transmit(np.full(32, 0.5 + 0.5j), radio.now())
        assert info.value.code == SoapySDR.SOAPY_SDR_NOT_SUPPORTED
        assert rec.calls == ["setupStream", "activateStream", "writeStream", "deactivateStream", "closeStream"]
        rec.calls.clear()
        with pytest.raises(SoapyStreamError, match="receiving 16 samples.*NOT_SUPPORTED"):
            radio.receive(16, radio.now())
        assert rec.calls == ["setupStream", "activateStream", "readStream", "deactivateStream", "closeStream"]
        assert radio._streams == {} and radio.now() == 0
    finally:
        radio.close()


@needs_null
def test_null_device_refuses_bad_requests_before_streaming():
    radio = SoapyRadio({"driver": "null"})
    rec = radio._dev = Recorder(radio._dev)
    try:
        with pytest.raises(RadioError, match="no hardware time"):
            radio.transmit(np.zeros(8), 100)
        with pytest.raises(LateCommandError):
            radio.receive(8, -1)
        with pytest.raises(ValueError, match="clip"):
            radio.transmit(np.full(8, 1.01), 0)
        assert rec.calls == []
    finally:
        radio.close()


@needs_null
def test_null_device_close_is_idempotent_and_use_after_close_is_an_error_not_a_crash():
    # Calling a real SoapySDR.Device after close() segfaults, so the radio must refuse first.
    radio = SoapyRadio("driver=null")
    radio.close()
    radio.close()
    for action in (radio.now, lambda: radio.receive(4, 0), lambda: radio.configure(RadioConfig())):
        with pytest.raises(RadioError, match="closed"):
            action()


@needs_null
def test_external_reference_needs_an_offered_source():
    with pytest.raises(RadioError, match="none of them 'external'"):
        open_radio("soapy://driver=null?external_reference=true")


def test_no_matching_device_is_a_radio_error():
    with pytest.raises(RadioError, match="no SoapySDR device matches 'driver=airfl_no_such_driver'"):
        open_radio("soapy://driver=airfl_no_such_driver")


@pytest.mark.parametrize("uri", ["soapy://", "soapy://?channel=1", "soapy://driver"])
def test_malformed_soapy_uris(uri):
    with pytest.raises(ValueError):
        open_radio(uri)


def test_missing_soapysdr_is_one_clear_sentence(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "SoapySDR", None)
    with pytest.raises(DriverMissingError, match="apt-get install python3-soapysdr soapysdr-tools.*make setup"):
        open_radio("soapy://driver=null")


def test_soapysdr_util_finds_the_null_module():
    try:
        out = subprocess.run(["SoapySDRUtil", "--probe=driver=null"], capture_output=True, text=True, timeout=20)
    except FileNotFoundError:
        pytest.skip("SoapySDRUtil not installed (apt-get install soapysdr-tools)")
    assert "driver=null" in out.stdout


# -- timed bursts on a stand-in device with a hardware clock --------------------------------------
class _Result:
    def __init__(self, ret: int, flags: int = 0, time_ns: int = 0):
        self.ret, self.flags, self.timeNs, self.chanMask = ret, flags, time_ns, 1


class TimedDevice:
    """SoapySDR's Device API for a device with hardware time (real constants, fake hardware).

    The clock stands at `clock_ns`; writes take at most `mtu` samples per call; receives deliver
    `mtu`-sample packets stamped from the activated time; `rx_script`/`status_script` inject codes.
    """

    def __init__(self, args: dict[str, str]):
        S = SoapySDR
        self.args = dict(args)
        self.clock_ns = 5_000_000  # 5 ms
        self.mtu = 100
        self.calls: list[tuple] = []
        self.written: list[np.ndarray] = []
        self.rx_script: list[int] = []
        self.status_script: list[int] = []
        self.rx_stamp_offset = 0
        self.rx_silent = False  # every read times out, as a device that never starts streaming
        self.sources = {"clock": ["internal", "external"], "time": ["none", "external"]}
        self._rx_next_ns = 0
        self._rx_left = 0
        self._rate = 1e6
        self._acks = 0
        self.S = S

    # identification and settings
    def getDriverKey(self) -> str: return "timed"
    def getHardwareKey(self) -> str: return "bench"
    def getNumChannels(self, d: int) -> int: return 1
    def hasHardwareTime(self, what: str = "") -> bool: return True
    def getFullDuplex(self, d: int, ch: int) -> bool: return True
    def getSampleRateRange(self, d: int, ch: int) -> list: return [SoapySDR.Range(1e5, 56e6)]
    def hasGainMode(self, d: int, ch: int) -> bool: return True
    def listClockSources(self) -> list[str]: return self.sources["clock"]
    def listTimeSources(self) -> list[str]: return self.sources["time"]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("set"):
            return lambda *a: self.calls.append((name, *a))
        raise AttributeError(name)

    def setSampleRate(self, d: int, ch: int, rate: float) -> None:
        self.calls.append(("setSampleRate", d, ch, rate))
        self._rate = round(rate / 1000) * 1000.0 + 1.0  # drivers round: 1 Hz off on purpose

    def getSampleRate(self, d: int, ch: int) -> float: return self._rate
    def getHardwareTime(self, what: str = "") -> int: return self.clock_ns
    def close(self) -> None: self.calls.append(("close",))

    # streams
    def setupStream(self, d: int, fmt: str, chans: list[int]) -> str:
        self.calls.append(("setupStream", d, fmt, tuple(chans)))
        return f"stream{d}"

    def activateStream(self, s: str, flags: int = 0, time_ns: int = 0, num: int = 0) -> int:
        self.calls.append(("activateStream", s, flags, time_ns, num))
        self._rx_next_ns, self._rx_left = time_ns, num
        return 0

    def deactivateStream(self, s: str, flags: int = 0, time_ns: int = 0) -> int:
        self.calls.append(("deactivateStream", s))
        return 0

    def closeStream(self, s: str) -> None: self.calls.append(("closeStream", s))

    def writeStream(self, s: str, buffs: list, n: int, flags: int = 0, time_ns: int = 0, timeoutUs: int = 0) -> _Result:
        S = self.S
        if flags & S.SOAPY_SDR_HAS_TIME and time_ns < self.clock_ns:
            self.status_script.append(S.SOAPY_SDR_TIME_ERROR)
        k = min(n, self.mtu)
        assert buffs[0].dtype == np.complex64 and buffs[0].flags.c_contiguous
        self.written.append(buffs[0][:k].copy())
        self.calls.append(("writeStream", flags, time_ns, k))
        if k == n and flags & S.SOAPY_SDR_END_BURST:
            self._acks += 1
        return _Result(k)

    def readStreamStatus(self, s: str, timeoutUs: int = 0) -> _Result:
        if self.status_script:
            return _Result(self.status_script.pop(0))
        if self._acks:
            self._acks -= 1
            return _Result(0, self.S.SOAPY_SDR_END_BURST)
        return _Result(self.S.SOAPY_SDR_TIMEOUT)

    def readStream(self, s: str, buffs: list, n: int, flags: int = 0, timeoutUs: int = 0) -> _Result:
        S = self.S
        if self.rx_silent:
            time.sleep(min(timeoutUs, 1000) / 1e6)
            return _Result(S.SOAPY_SDR_TIMEOUT)
        if self.rx_script:
            code = self.rx_script.pop(0)
            if code == S.SOAPY_SDR_STREAM_ERROR:
                self.clock_ns = self._rx_next_ns + 1  # UHD: a late command shows up as STREAM_ERROR
            return _Result(code)
        k = min(n, self.mtu, self._rx_left)
        start = SoapySDR.timeNsToTicks(self._rx_next_ns, self._rate)
        buffs[0][:k] = (np.arange(start, start + k) % 1000) / 1000 * (1 - 1j)
        stamp = SoapySDR.ticksToTimeNs(start + self.rx_stamp_offset, self._rate)
        self._rx_next_ns = SoapySDR.ticksToTimeNs(start + k, self._rate)
        self._rx_left -= k
        self.clock_ns = max(self.clock_ns, self._rx_next_ns)
        return _Result(k, S.SOAPY_SDR_HAS_TIME, stamp)


class _SoapyWithTimedDevice:
    """The real SoapySDR module, except that Device is the stand-in."""

    Device = TimedDevice

    def __getattr__(self, name: str) -> Any:
        return getattr(SoapySDR, name)


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> SoapyRadio:
    monkeypatch.setattr(soapy_mod, "load_soapy", lambda: _SoapyWithTimedDevice())
    radio = open_radio("soapy://driver=timed,serial=7?timeout_s=0.05&bandwidth_hz=2e6&tx_antenna=TX/RX")
    radio.configure(RadioConfig(sample_rate_hz=1e6, center_freq_hz=915e6, tx_gain_db=10, rx_gain_db=20))
    return radio


def test_timed_capabilities_and_configure(timed):
    S, dev = SoapySDR, timed._dev
    caps = timed.capabilities
    assert (caps.timed_tx, caps.timed_rx, caps.full_duplex, caps.max_sample_rate_hz) == (True, True, True, 56e6)
    rx_calls = [c for c in dev.calls if c[0].startswith("set") and c[1] == S.SOAPY_SDR_RX]
    assert [c[0] for c in rx_calls] == ["setSampleRate", "setFrequency", "setGainMode", "setGain", "setBandwidth"]
    assert ("setGainMode", S.SOAPY_SDR_RX, 0, False) in dev.calls  # AGC off before the manual gain
    assert ("setGain", S.SOAPY_SDR_TX, 0, 10) in dev.calls
    assert ("setAntenna", S.SOAPY_SDR_TX, 0, "TX/RX") in dev.calls
    assert timed.sample_rate_hz == 1_000_001.0  # sample times count at the driver's actual rate
    assert timed.now() == SoapySDR.timeNsToTicks(5_000_000, 1_000_001.0)


def test_timed_transmit_writes_one_burst_with_time_on_the_first_chunk_only(timed):
    S, dev = SoapySDR, timed._dev
    at = timed.now() + 10_000
    x = np.exp(2j * np.pi * np.arange(250) / 25) * 0.9
    timed.transmit(x, at)
    writes = [c for c in dev.calls if c[0] == "writeStream"]
    both = S.SOAPY_SDR_HAS_TIME | S.SOAPY_SDR_END_BURST
    assert writes == [
        ("writeStream", both, SoapySDR.ticksToTimeNs(at, timed.sample_rate_hz), 100),
        ("writeStream", S.SOAPY_SDR_END_BURST, SoapySDR.ticksToTimeNs(at, timed.sample_rate_hz), 100),
        ("writeStream", S.SOAPY_SDR_END_BURST, SoapySDR.ticksToTimeNs(at, timed.sample_rate_hz), 50),
    ]
    np.testing.assert_allclose(np.concatenate(dev.written), x.astype(np.complex64))
    assert ("setupStream", S.SOAPY_SDR_TX, "CF32", (0,)) in dev.calls
    assert timed.wait_transmit_done(0.05) is True


def test_timed_transmit_in_the_past_is_late_before_writing(timed):
    with pytest.raises(LateCommandError, match="already at"):
        timed.transmit(np.zeros(10), timed.now() - 1)
    assert not any(c[0] == "writeStream" for c in timed._dev.calls)


def test_device_time_error_becomes_late_command_and_closes_the_stream(timed):
    S, dev = SoapySDR, timed._dev
    dev.status_script.append(S.SOAPY_SDR_TIME_ERROR)
    with pytest.raises(SoapyLateCommandError, match="TIME_ERROR"):
        timed.transmit(np.zeros(10), timed.now() + 100)
    assert ("closeStream", f"stream{S.SOAPY_SDR_TX}") in dev.calls and timed._streams == {}
    timed.transmit(np.zeros(10), timed.now() + 100)  # a fresh stream
    dev.status_script.append(S.SOAPY_SDR_UNDERFLOW)  # reported after the write returned
    with pytest.raises(SoapyStreamError, match="UNDERFLOW"):
        timed.wait_transmit_done(0.05)
    assert timed._streams == {}


def test_timed_receive_activates_at_the_time_and_assembles_packets(timed):
    S, dev = SoapySDR, timed._dev
    rate = timed.sample_rate_hz
    at = timed.now() + 500
    x = timed.receive(250, at)
    assert ("activateStream", f"stream{S.SOAPY_SDR_RX}", S.SOAPY_SDR_HAS_TIME | S.SOAPY_SDR_END_BURST,
            SoapySDR.ticksToTimeNs(at, rate), 250) in dev.calls
    expected = ((np.arange(at, at + 250) % 1000) / 1000 * (1 - 1j)).astype(np.complex64)
    assert x.dtype == np.complex128
    np.testing.assert_array_equal(x, expected)
    assert dev.calls[-1] == ("deactivateStream", f"stream{S.SOAPY_SDR_RX}")
    with pytest.raises(LateCommandError):
        timed.receive(10, at)


def test_timed_receive_checks_the_first_timestamp(timed):
    timed._dev.rx_stamp_offset = 3
    with pytest.raises(RadioError, match="stamped sample"):
        timed.receive(50, timed.now() + 10)
    assert ("closeStream", f"stream{SoapySDR.SOAPY_SDR_RX}") in timed._dev.calls


@pytest.mark.parametrize(
    ("code", "exc", "text"),
    [
        (SoapySDR.SOAPY_SDR_OVERFLOW, SoapyStreamError, "OVERFLOW"),
        (SoapySDR.SOAPY_SDR_STREAM_ERROR, SoapyLateCommandError, "driver reported STREAM_ERROR"),
        (SoapySDR.SOAPY_SDR_CORRUPTION, SoapyStreamError, "CORRUPTION"),
    ],
)
def test_receive_errors_are_mapped_and_close_the_stream(timed, code, exc, text):
    timed._dev.rx_script.append(code)
    with pytest.raises(exc, match=text):
        timed.receive(50, timed.now() + 10)
    assert timed._streams == {}


def test_receive_times_out_with_a_clear_error(timed):
    timed._dev.rx_silent = True
    with pytest.raises(SoapyStreamError, match="TIMEOUT") as info:
        timed.receive(10, timed.now() + 1)
    assert info.value.code == SoapySDR.SOAPY_SDR_TIMEOUT


def test_set_time_and_external_reference(timed, monkeypatch):
    timed.set_time(1000, at_next_pps=True)
    assert ("setHardwareTime", SoapySDR.ticksToTimeNs(1000, timed.sample_rate_hz), "PPS") in timed._dev.calls
    radio = open_radio("soapy://driver=timed?external_reference=1")
    assert radio.reference == {"clock": "external", "time": "external"}
    assert ("setClockSource", "external") in radio._dev.calls and ("setTimeSource", "external") in radio._dev.calls
    radio.close()
    assert radio._dev is None


# -- a real SoapySDR radio ---------------------------------------------------------------------
@pytest.mark.hardware
def test_real_soapy_device_timed_loop(radio_uri):
    if not radio_uri.startswith("soapy://"):
        pytest.skip("--radio is not a SoapySDR device")
    radio = open_radio(radio_uri)
    try:
        radio.configure(RadioConfig(sample_rate_hz=1e6, center_freq_hz=2.4e9, tx_gain_db=0, rx_gain_db=20))
        start = radio.now() + 100_000  # 0.1 s ahead
        radio.transmit(0.3 * np.ones(1000), start)
        x = radio.receive(2000, start)
        assert x.shape == (2000,)
        if radio.capabilities.timed_tx:
            assert radio.wait_transmit_done(1.0)
    finally:
        radio.close()
