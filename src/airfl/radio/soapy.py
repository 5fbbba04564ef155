"""Any SoapySDR device (USRP, LimeSDR, bladeRF, ...): timed bursts on the device's hardware clock.

URI: ``soapy://KEY=VALUE,KEY=VALUE`` — the SoapySDR device arguments, e.g.
``soapy://driver=uhd,serial=30F1234``; options follow as a query,
``soapy://driver=uhd,serial=30F1234?external_reference=true&channel=0``.

Sample times: with hardware time (`hasHardwareTime()`), sample ``k`` is hardware time
``ticksToTimeNs(k, rate)``; ``now()`` reads `getHardwareTime()`; `transmit` writes one burst with
``SOAPY_SDR_HAS_TIME | SOAPY_SDR_END_BURST`` at that time and `receive` activates the RX stream for
exactly ``n`` samples at that time, then checks the timestamp of the first packet. Devices without
hardware time get the same software sample count as the Pluto backend: ``now()`` counts samples
delivered by `receive`, `receive` skips forward to ``at_sample``, and `transmit` only accepts
``at_sample == now()`` (send at once).

Streams are CF32, where SoapySDR's converters map the device's full scale to 1.0, so |x| <= 1 is
the DAC range here as on every backend (bursts with |x| > 1 are refused). Negative stream codes
become `SoapyStreamError` (with `.code`); SOAPY_SDR_TIME_ERROR becomes `SoapyLateCommandError`,
a `LateCommandError`. A stream is closed on every error path and by `close()`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from airfl.radio.base import (
    Capabilities,
    DriverMissingError,
    LateCommandError,
    RadioConfig,
    RadioError,
    as_baseband,
)

SOAPY_INSTALL_HINT = (
    "the SoapySDR backend needs the Debian SoapySDR bindings: apt-get install python3-soapysdr "
    "soapysdr-tools (plus your device's module, e.g. soapysdr-module-uhd), then make setup"
)

_HINTS = {
    "TIMEOUT": "no samples or status arrived in time; check the stream is active and the timeout is long enough",
    "STREAM_ERROR": "the driver reported a stream error (UHD reports a late timed receive this way)",
    "CORRUPTION": "the driver saw a malformed or out-of-sequence packet; check the USB/Ethernet link",
    "OVERFLOW": "the host did not read fast enough and samples were dropped; lower the sample rate or read sooner",
    "NOT_SUPPORTED": "this driver does not support the operation (the null device streams nothing)",
    "TIME_ERROR": "the requested time had already passed (late command); schedule further in the future",
    "UNDERFLOW": "the device ran out of samples mid-burst; the burst was written too slowly",
}


def load_soapy() -> ModuleType:
    """Import SoapySDR lazily; a missing module raises DriverMissingError naming what to install."""
    try:
        import SoapySDR  # noqa: PLC0415 - optional driver, imported on use
    except Exception as exc:  # ImportError, or a broken/ABI-mismatched binding
        raise DriverMissingError(f"{SOAPY_INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc
    return SoapySDR


class SoapyStreamError(RadioError):
    """A negative SoapySDR stream return code; `.code` is the number, `.code_name` its errToStr."""

    def __init__(self, message: str, code: int, code_name: str):
        super().__init__(message)
        self.code = code
        self.code_name = code_name


class SoapyLateCommandError(LateCommandError, SoapyStreamError):
    """SOAPY_SDR_TIME_ERROR: a timed burst or window was scheduled at a time already past."""


def stream_error(soapy: ModuleType, code: int, what: str) -> SoapyStreamError:
    """The exception for a negative stream return `code` during `what` (names it via errToStr)."""
    name = str(soapy.errToStr(int(code)))
    hint = _HINTS.get(name, "see the driver's log for details")
    message = f"{what} failed with SoapySDR {name} ({code}): {hint}"
    if code == soapy.SOAPY_SDR_TIME_ERROR:
        return SoapyLateCommandError(message, int(code), name)
    return SoapyStreamError(message, int(code), name)


def parse_device_args(text: str) -> dict[str, str]:
    """``driver=uhd,serial=123`` -> {"driver": "uhd", "serial": "123"} (empty text -> {})."""
    args: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"SoapySDR device argument {item!r} is not KEY=VALUE; write e.g. soapy://driver=uhd,serial=30F1234"
            )
        args[key.strip()] = value.strip()
    return args


def format_device_args(args: dict[str, str]) -> str:
    """Inverse of `parse_device_args`."""
    return ",".join(f"{k}={v}" for k, v in args.items())


def ticks_to_ns(soapy: ModuleType, ticks: int, rate_hz: float) -> int:
    """Sample index -> hardware time (ns), using SoapySDR's own rounding when it has it."""
    fn = getattr(soapy, "ticksToTimeNs", None)
    if fn is not None:
        return int(fn(int(ticks), float(rate_hz)))
    return int(round(int(ticks) * 1e9 / rate_hz))


def ns_to_ticks(soapy: ModuleType, time_ns: int, rate_hz: float) -> int:
    """Hardware time (ns) -> sample index, the inverse of `ticks_to_ns`."""
    fn = getattr(soapy, "timeNsToTicks", None)
    if fn is not None:
        return int(fn(int(time_ns), float(rate_hz)))
    return int(round(int(time_ns) * rate_hz / 1e9))


@dataclass(frozen=True)
class SoapyOptions:
    """SoapySDR-only settings (also accepted as URI query keys).

    channel: the RX and TX channel index used. bandwidth_hz: analog filter bandwidth (Hz) of both
    directions; None leaves the driver's choice. rx_antenna / tx_antenna: None leaves the default.
    external_reference: use the 'external' clock source (10 MHz) and time source (PPS) wherever
        listClockSources()/listTimeSources() offer them; RadioError if neither is offered.
    timeout_s: slack (s) added to every blocking stream call beyond the burst's own duration.
    """

    channel: int = 0
    bandwidth_hz: float | None = None
    rx_antenna: str | None = None
    tx_antenna: str | None = None
    external_reference: bool = False
    timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if self.channel < 0:
            raise ValueError(f"channel must be >= 0, got {self.channel}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 s, got {self.timeout_s}")
        if self.bandwidth_hz is not None and not self.bandwidth_hz > 0:
            raise ValueError(f"bandwidth_hz must be > 0 Hz, got {self.bandwidth_hz}")


class SoapyRadio:
    """One SoapySDR device, one channel per direction, CF32 streams."""

    def __init__(self, device_args: dict[str, str] | str, options: SoapyOptions | None = None):
        self._soapy = S = load_soapy()
        self._args = parse_device_args(device_args) if isinstance(device_args, str) else dict(device_args)
        self.options = options or SoapyOptions()
        try:
            self._dev: Any = S.Device(self._args)
        except Exception as exc:
            raise RadioError(
                f"no SoapySDR device matches {format_device_args(self._args)!r} ({exc}); "
                "check `SoapySDRUtil --find` and that the driver's module is listed by `SoapySDRUtil --info`"
            ) from exc
        self._closed = False
        self._name = f"soapy:{format_device_args(self._args)}"
        self.reference: dict[str, str] = {}  # what external_reference switched: {"clock"/"time": "external"}
        self._streams: dict[int, Any] = {}  # direction -> stream handle (may legitimately be None)
        self._tx_unacked = 0  # bursts written whose END_BURST acknowledgement has not been seen
        self._count = 0  # software sample count for devices without hardware time
        try:
            self._name = f"soapy:{self._dev.getDriverKey()}:{self._dev.getHardwareKey()}"
            ch = self.options.channel
            self._n_channels = {d: int(self._dev.getNumChannels(d)) for d in (S.SOAPY_SDR_RX, S.SOAPY_SDR_TX)}
            self._hardware_time = bool(self._dev.hasHardwareTime())
            has_both = all(n > ch for n in self._n_channels.values())
            self._full_duplex = has_both and all(
                bool(self._dev.getFullDuplex(d, ch)) for d in (S.SOAPY_SDR_RX, S.SOAPY_SDR_TX)
            )
            self._max_rate = self._max_sample_rate()
            if self.options.external_reference:
                self._use_external_reference()
        except Exception as exc:
            self.close()
            if isinstance(exc, RadioError):
                raise
            raise RadioError(f"SoapySDR device {format_device_args(self._args)!r} could not be queried: {exc}") from exc
        self._config = RadioConfig()
        self._rate = self._config.sample_rate_hz

    # -- identity ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            name=self._name,
            timed_tx=self._hardware_time,
            timed_rx=self._hardware_time,
            cyclic_tx=False,
            full_duplex=self._full_duplex,
            max_sample_rate_hz=self._max_rate,
            adc_bits=None,
        )

    @property
    def device(self) -> Any:
        """The underlying `SoapySDR.Device` (do not use it after close(): that crashes the process)."""
        self._check_open()
        return self._dev

    @property
    def sample_rate_hz(self) -> float:
        """The rate sample times are counted at (Hz): the driver's actual rate after configure()."""
        return self._rate

    # -- settings ------------------------------------------------------------------------
    def configure(self, config: RadioConfig) -> None:
        """Set rate, carrier, manual gain (and bandwidth/antenna options) on every direction that has the channel."""
        self._check_open()
        S, dev, ch, opts = self._soapy, self._dev, self.options.channel, self.options
        directions = [d for d in (S.SOAPY_SDR_RX, S.SOAPY_SDR_TX) if self._n_channels[d] > ch]
        if not directions:
            raise RadioError(
                f"{self._name} has no channel {ch} ({self._n_channels[S.SOAPY_SDR_RX]} RX, "
                f"{self._n_channels[S.SOAPY_SDR_TX]} TX channels); pick another device or channel"
            )
        for d in directions:
            label = "RX" if d == S.SOAPY_SDR_RX else "TX"
            antenna = opts.rx_antenna if d == S.SOAPY_SDR_RX else opts.tx_antenna
            gain = config.rx_gain_db if d == S.SOAPY_SDR_RX else config.tx_gain_db
            steps: list[tuple[str, Any]] = [("setSampleRate", config.sample_rate_hz)]
            steps.append(("setFrequency", config.center_freq_hz))
            if dev.hasGainMode(d, ch):
                steps.append(("setGainMode", False))  # some drivers (Pluto) start with AGC on
            steps.append(("setGain", gain))
            if opts.bandwidth_hz is not None:
                steps.append(("setBandwidth", opts.bandwidth_hz))
            if antenna is not None:
                steps.append(("setAntenna", antenna))
            for method, value in steps:
                try:
                    getattr(dev, method)(d, ch, value)
                except Exception as exc:
                    raise RadioError(f"{self._name}: {method}({label}, {ch}, {value!r}) failed: {exc}") from exc
        try:
            actual = float(dev.getSampleRate(directions[0], ch))
        except Exception:
            actual = 0.0
        # Drivers round the rate; count sample times at the rate the hardware really runs at.
        self._rate = actual if actual > 0 else config.sample_rate_hz
        self._config = config

    def set_time(self, sample: int, at_next_pps: bool = False) -> None:
        """Set the hardware clock so that now() == `sample` (at the next PPS edge if asked)."""
        self._check_open()
        self._require_hardware_time("set the hardware time")
        what = "PPS" if at_next_pps else ""
        try:
            self._dev.setHardwareTime(ticks_to_ns(self._soapy, sample, self._rate), what)
        except Exception as exc:
            raise RadioError(f"{self._name}: setHardwareTime failed: {exc}") from exc

    # -- samples -------------------------------------------------------------------------
    def now(self) -> int:
        """Current sample time: hardware time at the sample rate, else the software count."""
        self._check_open()
        if not self._hardware_time:
            return self._count
        try:
            return ns_to_ticks(self._soapy, self._dev.getHardwareTime(), self._rate)
        except Exception as exc:
            raise RadioError(f"{self._name}: getHardwareTime failed: {exc}") from exc

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Write one burst to leave at `at_sample` (timed), or at once (`at_sample == now()`)."""
        self._check_open()
        S = self._soapy
        buf = _to_cf32(samples)
        at_sample = int(at_sample)
        now = self.now()
        if at_sample < now:
            raise LateCommandError(
                f"{self._name}: transmit at sample {at_sample} asked, but the clock is already at {now}; "
                "schedule bursts in the future"
            )
        if self._hardware_time:
            flags, time_ns = S.SOAPY_SDR_HAS_TIME | S.SOAPY_SDR_END_BURST, ticks_to_ns(S, at_sample, self._rate)
        elif at_sample != now:
            raise RadioError(
                f"{self._name} has no hardware time, so a burst cannot be scheduled at sample {at_sample} "
                f"(now() = {now}); pass at_sample=now() to send at once"
            )
        else:
            flags, time_ns = S.SOAPY_SDR_END_BURST, 0
        if buf.size == 0:
            return
        stream = self._stream(S.SOAPY_SDR_TX)
        budget = (at_sample - now + buf.size) / self._rate + self.options.timeout_s
        deadline = time.monotonic() + budget
        sent = 0
        try:
            while sent < buf.size:
                # HAS_TIME applies to the first sample of a call: only the first call carries it.
                # END_BURST on every call: a driver marks the burst's end once all samples are taken.
                timeout_us = _timeout_us(deadline)
                r = self._dev.writeStream(stream, [buf[sent:]], buf.size - sent, flags, time_ns, timeout_us)
                if r.ret < 0:
                    raise stream_error(S, r.ret, f"{self._name}: writing a {buf.size}-sample burst")
                if r.ret == 0 and time.monotonic() > deadline:
                    raise stream_error(S, S.SOAPY_SDR_TIMEOUT, f"{self._name}: writing a {buf.size}-sample burst")
                sent += r.ret
                flags &= ~S.SOAPY_SDR_HAS_TIME
            self._tx_unacked += 1
            self._poll_tx_status(0.0)
        except BaseException:
            self._close_stream(S.SOAPY_SDR_TX)
            raise

    def wait_transmit_done(self, timeout_s: float) -> bool:
        """Wait until every written burst is acknowledged (True), or `timeout_s` passes (False).

        Raises the mapped error if the device reports a late burst or an underflow. Returns False at
        once if the driver has no transmit status (readStreamStatus NOT_SUPPORTED).
        """
        self._check_open()
        if self._soapy.SOAPY_SDR_TX not in self._streams:
            return True
        try:
            return self._poll_tx_status(timeout_s)
        except BaseException:
            self._close_stream(self._soapy.SOAPY_SDR_TX)
            raise

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """Capture `n_samples` from `at_sample` on (complex128, full-scale units); blocks until then."""
        self._check_open()
        S = self._soapy
        n_samples, at_sample = int(n_samples), int(at_sample)
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        now = self.now()
        if at_sample < now:
            raise LateCommandError(
                f"{self._name}: receive from sample {at_sample} asked, but the clock is already at {now}; "
                "receive windows must start in the future"
            )
        if n_samples == 0:
            return np.zeros(0, dtype=np.complex128)
        timed = self._hardware_time
        total = n_samples if timed else at_sample - now + n_samples
        stream = self._stream(S.SOAPY_SDR_RX)
        what = f"{self._name}: receiving {n_samples} samples from sample {at_sample}"
        try:
            if timed:
                flags = S.SOAPY_SDR_HAS_TIME | S.SOAPY_SDR_END_BURST
                ret = self._dev.activateStream(stream, flags, ticks_to_ns(S, at_sample, self._rate), total)
            else:
                ret = self._dev.activateStream(stream)
            if ret < 0:
                raise stream_error(S, ret, f"{what}: activateStream")
            wait = (at_sample - now + total) / self._rate if timed else total / self._rate
            out = self._read(stream, total, time.monotonic() + wait + self.options.timeout_s, at_sample if timed else None, what)
            self._dev.deactivateStream(stream)
        except BaseException:
            self._close_stream(S.SOAPY_SDR_RX)
            raise
        if not timed:
            self._count += total
        return out[total - n_samples :].astype(np.complex128)

    def close(self) -> None:
        """Close every stream and release the device; safe to call twice."""
        if self._closed:
            return
        for direction in list(self._streams):
            self._close_stream(direction)
        self._closed = True
        dev, self._dev = self._dev, None
        try:
            dev.close()  # unmakes the device; the Python object must never be used again
        except Exception:
            pass

    def __enter__(self) -> SoapyRadio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------
    def _read(self, stream: Any, total: int, deadline: float, at_sample: int | None, what: str) -> np.ndarray:
        S, dev = self._soapy, self._dev
        out = np.empty(total, dtype=np.complex64)
        got = 0
        while got < total:
            r = dev.readStream(stream, [out[got:]], total - got, 0, _timeout_us(deadline))
            if r.ret in (0, S.SOAPY_SDR_TIMEOUT) and time.monotonic() < deadline:
                continue
            if r.ret == 0:
                raise stream_error(S, S.SOAPY_SDR_TIMEOUT, what)
            if r.ret < 0:
                late = at_sample is not None and got == 0 and r.ret == S.SOAPY_SDR_STREAM_ERROR
                if late and self.now() >= at_sample:
                    err = stream_error(S, S.SOAPY_SDR_TIME_ERROR, what)
                    raise SoapyLateCommandError(f"{err} (driver reported {S.errToStr(r.ret)})", err.code, err.code_name)
                raise stream_error(S, r.ret, what)
            if got == 0 and at_sample is not None and r.flags & S.SOAPY_SDR_HAS_TIME:
                first = ns_to_ticks(S, r.timeNs, self._rate)
                if first != at_sample:
                    raise RadioError(
                        f"{what}: the first packet is stamped sample {first}, not {at_sample}; "
                        "this driver does not honour timed receive"
                    )
            got += r.ret
        return out

    def _poll_tx_status(self, timeout_s: float) -> bool:
        """Drain transmit status events; True when no burst is left unacknowledged.

        Returns as soon as the queue is empty and every burst is acknowledged; otherwise waits up
        to `timeout_s` (0: never blocks) for the acknowledgements.
        """
        S, dev = self._soapy, self._dev
        stream = self._streams[S.SOAPY_SDR_TX]
        deadline = time.monotonic() + timeout_s
        while True:
            waiting = self._tx_unacked > 0 and timeout_s > 0
            r = dev.readStreamStatus(stream, _timeout_us(deadline) if waiting else 0)
            if r.ret == S.SOAPY_SDR_NOT_SUPPORTED:
                return self._tx_unacked == 0
            if r.ret == S.SOAPY_SDR_TIMEOUT:
                if not waiting or time.monotonic() >= deadline:
                    return self._tx_unacked == 0
                continue
            if r.ret < 0:
                self._tx_unacked = 0
                raise stream_error(S, r.ret, f"{self._name}: transmit status")
            if r.flags & S.SOAPY_SDR_END_BURST:
                self._tx_unacked = max(0, self._tx_unacked - 1)

    def _stream(self, direction: int) -> Any:
        if direction in self._streams:
            return self._streams[direction]
        S, dev = self._soapy, self._dev
        label = "TX" if direction == S.SOAPY_SDR_TX else "RX"
        try:
            stream = dev.setupStream(direction, S.SOAPY_SDR_CF32, [self.options.channel])
        except Exception as exc:
            raise RadioError(f"{self._name}: setting up the {label} CF32 stream failed: {exc}") from exc
        self._streams[direction] = stream
        if direction == S.SOAPY_SDR_TX:
            self._tx_unacked = 0
            ret = dev.activateStream(stream)
            if ret < 0:
                self._close_stream(direction)
                raise stream_error(S, ret, f"{self._name}: activating the TX stream")
        return stream

    def _close_stream(self, direction: int) -> None:
        if direction not in self._streams or self._dev is None:
            self._streams.pop(direction, None)
            return
        stream = self._streams.pop(direction)
        for call in (lambda: self._dev.deactivateStream(stream), lambda: self._dev.closeStream(stream)):
            try:
                call()
            except Exception:
                pass
        if direction == self._soapy.SOAPY_SDR_TX:
            self._tx_unacked = 0

    def _use_external_reference(self) -> None:
        clocks = [str(c) for c in self._dev.listClockSources()]
        times = [str(t) for t in self._dev.listTimeSources()]
        if "external" not in clocks and "external" not in times:
            raise RadioError(
                f"{self._name}: external_reference asked, but the device offers clock sources {clocks} and "
                f"time sources {times}, none of them 'external'"
            )
        if "external" in clocks:
            self._dev.setClockSource("external")
            self.reference["clock"] = "external"
        if "external" in times:
            self._dev.setTimeSource("external")
            self.reference["time"] = "external"

    def _max_sample_rate(self) -> float:
        best = 0.0
        for d, n in self._n_channels.items():
            if n <= self.options.channel:
                continue
            for r in self._dev.getSampleRateRange(d, self.options.channel):
                best = max(best, float(r.maximum()))
        return best

    def _require_hardware_time(self, what: str) -> None:
        if not self._hardware_time:
            raise RadioError(f"{self._name} has no hardware time (hasHardwareTime() is False); cannot {what}")

    def _check_open(self) -> None:
        if self._closed:
            raise RadioError(f"{self._name} is closed; open it again with open_radio()")


def _to_cf32(samples: np.ndarray) -> np.ndarray:
    """Validate a burst and convert it to a contiguous complex64 buffer, refusing |x| > 1."""
    x = as_baseband(samples)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0 + 1e-6:
        raise ValueError(
            f"burst peak |x| = {peak:.4g} exceeds full scale 1.0 and would clip; "
            f"scale it down by at least {20 * math.log10(peak):.2f} dB"
        )
    return np.ascontiguousarray(x, dtype=np.complex64)


def _timeout_us(deadline: float) -> int:
    """Microseconds until `deadline` (monotonic s), at least 1 ms and at most 1 s per call."""
    left = deadline - time.monotonic()
    return int(min(max(left, 1e-3), 1.0) * 1e6)
