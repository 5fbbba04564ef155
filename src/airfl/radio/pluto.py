"""ADALM-Pluto through pyadi-iio (`adi.Pluto`), stock firmware: no hardware time, cyclic transmit.

URIs: ``pluto://usb:1.2.3`` or ``pluto://ip:192.168.2.1`` (the part after ``pluto://`` is the libiio
context URI pyadi-iio takes), optionally with options as a query:
``pluto://ip:192.168.2.1?xo_correction_hz=39999535&rf_bandwidth_hz=2e6``.

Sample times without a hardware clock
--------------------------------------
Stock Pluto firmware cannot timestamp samples or schedule a burst, so this backend keeps a software
sample counter instead (`capabilities.timed_tx/timed_rx` are False, and the round protocol must use
the cyclic mode):

* ``now()`` is the number of samples `receive()` has delivered (including skipped ones) since the
  radio was opened. It is a *count*, not a clock: samples that arrive between two calls are not
  counted, so sample times are only meaningful inside one `receive()` window.
* ``receive(n, at_sample)`` captures one contiguous device buffer of ``(at_sample - now()) + n``
  samples, drops the first ``at_sample - now()`` and returns the last ``n``. ``at_sample < now()``
  raises `LateCommandError`. By default the RX buffer is re-created for every call
  (`PlutoOptions.fresh_rx`), so the window starts after the call: libiio keeps several kernel blocks
  queued, and without this a capture could be data recorded before the last settings change.
* ``transmit(x, at_sample)`` sends `x` once, right now; ``at_sample`` must equal ``now()``.
  Any other time raises `RadioError` (there is no transmit clock to schedule against). To align
  several Plutos use `transmit_cyclic(x)`: the buffer repeats until `stop_transmit()`, and a client
  advances its timing by rotating the buffer (``np.roll``) by the measured offset.

Scaling: samples are complex full-scale units (|x| <= 1). Transmit multiplies by 2**14 (pyadi-iio's
convention for the AD936x DAC, leaving 6 dB of headroom in the int16 word) after refusing any burst
with |x| > 1; receive divides the 12-bit ADC codes (sign-extended int16 in [-2048, 2047]) by 2**11.

Gains: `RadioConfig.rx_gain_db` is the manual RX gain (about -3..71 dB, range depends on the LO);
`tx_gain_db` is the TX gain, which on the AD936x is an attenuation: 0 dB is maximum power, down to
-89.75 dB.
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
    check_transmit_now,
    untimed_window,
)

PLUTO_INSTALL_HINT = (
    "the Pluto backend needs pyadi-iio and libiio: pip install pyadi-iio 'pylibiio==0.25' "
    "and apt-get install libiio0 (or run make setup as root)"
)

TX_FULL_SCALE = 2.0**14
"""int16 DAC code for |x| = 1 (pyadi-iio convention for the AD936x)."""
RX_FULL_SCALE = 2.0**11
"""int16 ADC code for |x| = 1 (12-bit ADC, sign-extended)."""
ADC_BITS = 12
MIN_SAMPLE_RATE_HZ = 521e3
"""pyadi-iio's `sample_rate` setter refuses lower rates (it would need the FPGA decimators)."""
MAX_SAMPLE_RATE_HZ = 61.44e6
TX_GAIN_RANGE_DB = (-89.75, 0.0)
MAX_RX_WINDOW = 1 << 24
"""Largest single receive (samples): one contiguous device buffer of 64 MiB."""

# Every pyadi-iio name this backend touches, so tests can check them against the real `adi.Pluto`.
PLUTO_PROPERTIES = (
    "sample_rate",
    "rx_lo",
    "tx_lo",
    "rx_rf_bandwidth",
    "tx_rf_bandwidth",
    "gain_control_mode_chan0",
    "rx_hardwaregain_chan0",
    "tx_hardwaregain_chan0",
    "rx_buffer_size",
    "tx_cyclic_buffer",
)
PLUTO_METHODS = ("rx", "tx", "rx_destroy_buffer", "tx_destroy_buffer", "_get_iio_dev_attr_str", "_set_iio_dev_attr")
XO_ATTR = "xo_correction"
"""Device attribute of ad9361-phy: the actual reference frequency (Hz), nominally 40 MHz."""


def load_adi() -> ModuleType:
    """Import pyadi-iio lazily; a missing library (or libiio under it) raises DriverMissingError."""
    try:
        import adi  # noqa: PLC0415 - optional driver, imported on use
    except Exception as exc:  # ImportError, or OSError when pylibiio cannot load libiio.so
        raise DriverMissingError(f"{PLUTO_INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc
    return adi


def to_dac(samples: np.ndarray) -> np.ndarray:
    """Full-scale complex samples -> complex array of integer DAC codes (|x| = 1 -> 2**14).

    Raises ValueError, before anything reaches the device, if any |x| > 1 (the DAC would clip).
    """
    x = as_baseband(samples)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0 + 1e-12:
        raise ValueError(
            f"burst peak |x| = {peak:.4g} exceeds full scale 1.0 and would clip in the DAC; "
            f"scale it down by at least {20 * math.log10(peak):.2f} dB"
        )
    # pyadi-iio casts real/imag with astype(int16), which truncates: round here instead.
    return np.round(x.real * TX_FULL_SCALE) + 1j * np.round(x.imag * TX_FULL_SCALE)


def from_adc(codes: np.ndarray) -> np.ndarray:
    """Complex ADC codes as returned by `adi.Pluto.rx()` -> full-scale units (2**11 -> 1.0)."""
    return np.asarray(codes).astype(np.complex128) / RX_FULL_SCALE


@dataclass(frozen=True)
class PlutoOptions:
    """Pluto-only settings (also accepted as URI query keys).

    rf_bandwidth_hz: analog filter bandwidth of both paths (Hz); None leaves the device's setting.
    xo_correction_hz: the measured reference frequency (Hz, nominally 40e6) written to ad9361-phy's
        `xo_correction`; None leaves it. Needs firmware that exposes the attribute (v0.31+).
    rx_buffer_size: device RX buffer (samples) set at configure; receive() resizes it as needed.
    fresh_rx: re-create the RX buffer before each receive so the window starts after the call.
    """

    rf_bandwidth_hz: float | None = None
    xo_correction_hz: int | None = None
    rx_buffer_size: int = 1 << 15
    fresh_rx: bool = True

    def __post_init__(self) -> None:
        if self.rx_buffer_size < 1 or self.rx_buffer_size > MAX_RX_WINDOW:
            raise ValueError(f"rx_buffer_size must be in [1, {MAX_RX_WINDOW}] samples, got {self.rx_buffer_size}")
        if self.rf_bandwidth_hz is not None and not self.rf_bandwidth_hz > 0:
            raise ValueError(f"rf_bandwidth_hz must be > 0 Hz, got {self.rf_bandwidth_hz}")


def iio_uri_from_pluto(uri: str) -> str:
    """``pluto://usb:1.2.3`` -> ``usb:1.2.3``; ``pluto://ip:HOST`` -> ``ip:HOST`` (query ignored)."""
    rest = uri.split("://", 1)[1] if "://" in uri else uri
    rest = rest.split("?", 1)[0]
    kind, _, where = rest.partition(":")
    if kind.lower() not in ("usb", "ip") or not where:
        raise ValueError(
            f"Pluto URI {uri!r} must be pluto://usb:BUS.DEV.IFACE or pluto://ip:ADDRESS, "
            "e.g. pluto://usb:1.2.5 or pluto://ip:192.168.2.1 (airfl devices lists them)"
        )
    return f"{kind.lower()}:{where}"


def pluto_capabilities(name: str = "pluto") -> Capabilities:
    """What a stock-firmware Pluto can do (no hardware time; cyclic TX; full duplex; 12-bit ADC)."""
    return Capabilities(
        name=name,
        timed_tx=False,
        timed_rx=False,
        cyclic_tx=True,
        full_duplex=True,
        max_sample_rate_hz=MAX_SAMPLE_RATE_HZ,
        adc_bits=ADC_BITS,
    )


class PlutoRadio:
    """One ADALM-Pluto through pyadi-iio. Several can be open at once (one per iio URI)."""

    def __init__(self, iio_uri: str, options: PlutoOptions | None = None):
        self._iio_uri = iio_uri if iio_uri.startswith(("usb:", "ip:")) else iio_uri_from_pluto(iio_uri)
        self.options = options or PlutoOptions()
        adi = load_adi()
        try:
            self._sdr: Any = adi.Pluto(uri=self._iio_uri)
        except Exception as exc:
            raise RadioError(
                f"no Pluto at {self._iio_uri!r} ({exc}); check the cable, `iio_info -s`, and `airfl devices`"
            ) from exc
        self._config = RadioConfig(sample_rate_hz=self._read_rate())
        self._count = 0
        self._tx_mode: str | None = None  # None, "once" or "cyclic"
        self._tx_len = 0
        self._tx_busy_until = 0.0  # monotonic time (s) when queued one-shot samples have left
        self._closed = False

    # -- identity ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"pluto:{self._iio_uri}"

    @property
    def capabilities(self) -> Capabilities:
        return pluto_capabilities(self.name)

    @property
    def device(self) -> Any:
        """The underlying `adi.Pluto` (for settings this class does not wrap)."""
        self._check_open()
        return self._sdr

    @property
    def config(self) -> RadioConfig:
        return self._config

    # -- settings ------------------------------------------------------------------------
    def configure(self, config: RadioConfig) -> None:
        """Apply sample rate, LOs, manual gains, bandwidth, xo_correction and RX buffer size."""
        self._check_open()
        rate = config.sample_rate_hz
        if not MIN_SAMPLE_RATE_HZ <= rate <= MAX_SAMPLE_RATE_HZ:
            raise RadioError(
                f"{self.name}: sample rate {rate:g} Hz is outside [{MIN_SAMPLE_RATE_HZ:g}, {MAX_SAMPLE_RATE_HZ:g}] Hz "
                "(pyadi-iio does not set rates below 521 kHz)"
            )
        lo, hi = TX_GAIN_RANGE_DB
        if not lo <= config.tx_gain_db <= hi:
            raise RadioError(
                f"{self.name}: tx_gain_db {config.tx_gain_db} dB is outside [{lo}, {hi}] dB "
                "(the Pluto's TX gain is an attenuation: 0 dB is full power)"
            )
        # Buffers hold samples of the old settings and a fixed length: drop them first.
        self._destroy_buffers()
        sdr = self._sdr
        opts = self.options
        # pyadi-iio writes LO/bandwidth through _set_iio_attr_int, which rejects floats: cast to int.
        steps: list[tuple[str, Any]] = [("sample_rate", int(round(rate)))]
        if opts.rf_bandwidth_hz is not None:
            bw = int(round(opts.rf_bandwidth_hz))
            steps += [("rx_rf_bandwidth", bw), ("tx_rf_bandwidth", bw)]
        steps += [
            ("rx_lo", int(round(config.center_freq_hz))),
            ("tx_lo", int(round(config.center_freq_hz))),
            # rx_hardwaregain_chan0 is silently ignored unless the AGC is off: order matters.
            ("gain_control_mode_chan0", "manual"),
            ("rx_hardwaregain_chan0", float(config.rx_gain_db)),
            ("tx_hardwaregain_chan0", float(config.tx_gain_db)),
            ("rx_buffer_size", int(opts.rx_buffer_size)),
        ]
        for attr, value in steps:
            try:
                setattr(sdr, attr, value)
            except Exception as exc:
                raise RadioError(f"{self.name}: setting {attr} = {value!r} failed: {exc}") from exc
        if opts.xo_correction_hz is not None:
            self.set_xo_correction(opts.xo_correction_hz)
        self._config = config

    def has_xo_correction(self) -> bool:
        """Whether this firmware exposes ad9361-phy's `xo_correction` attribute."""
        self._check_open()
        ctrl = getattr(self._sdr, "_ctrl", None)
        try:
            return ctrl is not None and XO_ATTR in ctrl.attrs
        except Exception:
            return False

    def xo_correction(self) -> int | None:
        """The reference frequency the AD9361 assumes (Hz), or None if the firmware lacks it."""
        if not self.has_xo_correction():
            return None
        return int(float(self._sdr._get_iio_dev_attr_str(XO_ATTR)))

    def set_xo_correction(self, reference_hz: int) -> None:
        """Tell the AD9361 its reference actually runs at `reference_hz` (Hz, nominally 40e6)."""
        if not self.has_xo_correction():
            raise RadioError(
                f"{self.name}: this firmware has no ad9361-phy xo_correction attribute; "
                "update the Pluto firmware (v0.31 or later) to correct the reference frequency"
            )
        try:
            self._sdr._set_iio_dev_attr(XO_ATTR, int(reference_hz))
        except Exception as exc:
            raise RadioError(
                f"{self.name}: setting xo_correction = {int(reference_hz)} Hz failed ({exc}); "
                "the allowed range is in ad9361-phy's xo_correction_available (about 40 MHz +- 200 ppm)"
            ) from exc

    # -- samples -------------------------------------------------------------------------
    def now(self) -> int:
        """Samples delivered by receive() so far (a software count; see the module docstring)."""
        self._check_open()
        return self._count

    def transmit(self, samples: np.ndarray, at_sample: int) -> None:
        """Send `samples` once, immediately; `at_sample` must be `now()` (no transmit clock)."""
        self._check_open()
        check_transmit_now(self.name, int(at_sample), self._count)
        data = to_dac(samples)
        if data.size == 0:
            return
        self._push(data, cyclic=False)
        self._tx_busy_until = max(time.monotonic(), self._tx_busy_until) + data.size / self._config.sample_rate_hz

    def transmit_cyclic(self, samples: np.ndarray) -> None:
        """Repeat `samples` (full-scale units) forever, replacing any previous transmission."""
        self._check_open()
        data = to_dac(samples)
        if data.size == 0:
            raise ValueError("a cyclic buffer needs at least one sample")
        self._push(data, cyclic=True)

    def stop_transmit(self) -> None:
        """Stop a cyclic transmission (destroys the TX buffer)."""
        self._check_open()
        self._destroy_tx()

    def receive(self, n_samples: int, at_sample: int) -> np.ndarray:
        """Capture samples [at_sample, at_sample + n) of the software count, in full-scale units."""
        self._check_open()
        skip, total = untimed_window(self.name, int(n_samples), int(at_sample), self._count)
        if total == 0:
            return np.zeros(0, dtype=np.complex128)
        if total > MAX_RX_WINDOW:
            raise RadioError(
                f"{self.name}: a window of {total} samples ({skip} skipped + {n_samples}) exceeds the "
                f"{MAX_RX_WINDOW}-sample limit of one device buffer"
            )
        sdr = self._sdr
        try:
            if self.options.fresh_rx or sdr.rx_buffer_size != total:
                sdr.rx_destroy_buffer()
            sdr.rx_buffer_size = total
            raw = np.asarray(sdr.rx())
        except Exception as exc:
            self._destroy_rx()
            raise RadioError(f"{self.name}: receiving {total} samples failed: {exc}") from exc
        if raw.ndim != 1 or raw.size != total:
            self._destroy_rx()
            raise RadioError(f"{self.name}: the driver returned {raw.shape} samples, expected ({total},)")
        self._count += total
        return from_adc(raw[skip:])

    def close(self) -> None:
        """Destroy both buffers (stops a cyclic transmission) and release the iio context."""
        if self._closed:
            return
        self._closed = True
        sdr, self._sdr = self._sdr, None
        # Destroy buffers while the context is still alive: libiio 0.x crashes if a buffer outlives it.
        for method in ("tx_destroy_buffer", "rx_destroy_buffer", "close"):
            fn = getattr(sdr, method, None)
            if fn is not None:
                try:
                    fn()
                except Exception:
                    pass

    def __enter__(self) -> PlutoRadio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------
    def _push(self, data: np.ndarray, *, cyclic: bool) -> None:
        sdr = self._sdr
        mode = "cyclic" if cyclic else "once"
        try:
            # A cyclic buffer cannot be refilled, and a buffer's length is fixed when it is created.
            if self._tx_mode is not None and (cyclic or self._tx_mode != mode or self._tx_len != data.size):
                self._destroy_tx()
            if self._tx_mode is None:
                sdr.tx_cyclic_buffer = cyclic  # pyadi-iio refuses this while a TX buffer exists
            sdr.tx(data)
        except Exception as exc:
            self._destroy_tx()
            kind = "cyclic" if cyclic else "one-shot"
            raise RadioError(f"{self.name}: {kind} transmit of {data.size} samples failed: {exc}") from exc
        self._tx_mode, self._tx_len = mode, data.size

    def _read_rate(self) -> float:
        try:
            rate = float(self._sdr.sample_rate)
        except Exception:
            rate = 0.0
        return rate if rate > 0 else MIN_SAMPLE_RATE_HZ

    def _destroy_tx(self) -> None:
        if self._tx_mode == "once":
            # Destroying a one-shot buffer cuts off samples still queued: let them leave first.
            wait = self._tx_busy_until - time.monotonic()
            if wait > 0:
                time.sleep(wait + 0.01)
        self._tx_mode, self._tx_len = None, 0
        try:
            self._sdr.tx_destroy_buffer()
        except Exception:
            pass

    def _destroy_rx(self) -> None:
        try:
            self._sdr.rx_destroy_buffer()
        except Exception:
            pass

    def _destroy_buffers(self) -> None:
        self._destroy_tx()
        self._destroy_rx()

    def _check_open(self) -> None:
        if self._closed:
            raise RadioError(f"{self.name} is closed; open it again with open_radio()")
