"""Pluto backend against the real pyadi-iio.

Everything pyadi-iio does without a device runs for real: its `adi.Pluto` class, property setters,
attribute helpers, rx()/tx() assembly and cyclic-buffer rules. Only what needs a Pluto is replaced:
the libiio control device behind `_ctrl` (a dict of attribute strings) and the four buffer hooks
that move samples through libiio (`_rx_init_channels`, `_rx_buffered_data`, `_tx_init_channels`,
`_tx_buffer_push`), in `BenchPluto`, a subclass of the real class.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

from airfl.radio import LateCommandError, PlutoOptions, PlutoRadio, Radio, RadioConfig, RadioError, open_radio
from airfl.radio import pluto as pluto_mod
from airfl.radio.base import DriverMissingError

adi = pytest.importorskip("adi", reason="pyadi-iio not installed")


# -- a libiio stand-in for the ad9361-phy control device -----------------------------------
class _Attr:
    def __init__(self, value: str, fail: bool = False):
        self._value = value
        self.fail = fail

    @property
    def value(self) -> str:
        return self._value

    @value.setter
    def value(self, v: str) -> None:
        if self.fail:
            raise OSError(22, "Invalid argument")
        self._value = v


class _Channel:
    def __init__(self, attrs: dict[str, str]):
        self.attrs = {k: _Attr(v) for k, v in attrs.items()}


class FakePhy:
    """ad9361-phy as libiio shows it: channels (name, is_output) with attributes, device attributes."""

    name = "ad9361-phy"

    def __init__(self, with_xo: bool = True):
        self.channels_by_key = {
            ("voltage0", False): _Channel(
                {"sampling_frequency": "30720000", "rf_bandwidth": "18000000",
                 "gain_control_mode": "slow_attack", "hardwaregain": "71.000000 dB"}
            ),
            ("voltage0", True): _Channel(
                {"sampling_frequency": "30720000", "rf_bandwidth": "18000000", "hardwaregain": "-10.000000 dB"}
            ),
            ("altvoltage0", True): _Channel({"frequency": "2400000000"}),
            ("altvoltage1", True): _Channel({"frequency": "2450000000"}),
            ("out", False): _Channel({"voltage_filter_fir_en": "0"}),
        }
        self.attrs = {
            "filter_fir_config": _Attr(""),
            "tx_path_rates": _Attr("BBPLL:983040004 DAC:122880000 T2:122880000 T1:61440000 TF:30720000 TXSAMP:30720000"),
        }
        if with_xo:
            self.attrs["xo_correction"] = _Attr("40000000")
            self.attrs["xo_correction_available"] = _Attr("[39992000 1 40008000]")
        self.debug_attrs: dict[str, _Attr] = {}

    @property
    def channels(self) -> list[_Channel]:
        return list(self.channels_by_key.values())

    def find_channel(self, name: str, output: bool = False) -> _Channel | None:
        return self.channels_by_key.get((name, bool(output)))

    def get(self, name: str, output: bool, attr: str) -> str:
        return self.channels_by_key[(name, output)].attrs[attr].value


class _DataDevice:
    channels: list = []

    def find_channel(self, name: str, output: bool = False) -> None:
        return None


class BenchPluto(adi.Pluto):
    """The real adi.Pluto with its libiio context and buffers replaced (they need a device)."""

    _tx_data_type = np.dtype(np.int16)  # pyadi-iio reads this from the TX channel's data format

    instances: list[BenchPluto] = []

    def __init__(self, uri: str = "", with_xo: bool = True):  # no iio context
        self.uri = uri
        self._ctrl = FakePhy(with_xo)
        self._rxadc = _DataDevice()
        self._txdac = _DataDevice()
        adi.rx_tx.rx_core.__init__(self)
        adi.rx_tx.tx_core.__init__(self)
        self.events: list[tuple] = []
        self.pushed: list[np.ndarray] = []
        self.fail_rx = False
        self.fail_tx = False
        BenchPluto.instances.append(self)

    # the four buffer hooks pyadi-iio implements with libiio
    def _rx_init_channels(self) -> None:
        self._rxbuf = object()
        self.events.append(("rx_create", self.rx_buffer_size))

    def _rx_buffered_data(self) -> list[np.ndarray]:
        if not self._rxbuf:
            self._rx_init_channels()
        if self.fail_rx:
            raise OSError(5, "Input/output error")
        n = self.rx_buffer_size
        codes = (np.arange(n) % 4096 - 2048).astype(np.int16)  # every 12-bit code, sign-extended
        return [codes, (-codes - 1).astype(np.int16)]

    def _tx_init_channels(self) -> None:
        self._txbuf = object()
        self.events.append(("tx_create", self._tx_buffer_size, self.tx_cyclic_buffer))

    def _tx_buffer_push(self, data: np.ndarray) -> None:
        if self.fail_tx:
            raise OSError(5, "Input/output error")
        self.pushed.append(np.array(data))
        self.events.append(("tx_push", len(data) // 2))

    def rx_destroy_buffer(self) -> None:
        self.events.append(("rx_destroy",))
        super().rx_destroy_buffer()

    def tx_destroy_buffer(self) -> None:
        self.events.append(("tx_destroy",))
        super().tx_destroy_buffer()


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> type[BenchPluto]:
    """PlutoRadio builds BenchPluto instead of opening a libiio context."""
    BenchPluto.instances = []
    monkeypatch.setattr(pluto_mod, "load_adi", lambda: types.SimpleNamespace(Pluto=BenchPluto))
    return BenchPluto


def _radio(bench: type[BenchPluto], **opts) -> tuple[PlutoRadio, BenchPluto]:
    radio = PlutoRadio("ip:192.168.2.1", PlutoOptions(**opts))
    return radio, bench.instances[-1]


# -- the real pyadi-iio API -------------------------------------------------------------------
def test_every_name_the_backend_uses_exists_on_real_adi_pluto():
    for name in pluto_mod.PLUTO_PROPERTIES:
        assert isinstance(getattr(adi.Pluto, name, None), property), name
        assert getattr(adi.Pluto, name).fset is not None, f"{name} is read-only in pyadi-iio"
    for name in pluto_mod.PLUTO_METHODS:
        assert callable(getattr(adi.Pluto, name, None)), name


def test_real_sample_rate_setter_refuses_rates_below_our_minimum():
    with pytest.raises(ValueError, match="521e3"):
        adi.Pluto.sample_rate.fset(adi.Pluto.__new__(adi.Pluto), pluto_mod.MIN_SAMPLE_RATE_HZ - 1)


def test_real_lo_setter_rejects_floats_which_is_why_configure_casts():
    sdr = BenchPluto()
    with pytest.raises(Exception, match="must be an int"):
        sdr.rx_lo = 2.4e9
    sdr.rx_lo = 2_400_000_000
    assert sdr._ctrl.get("altvoltage0", True, "frequency") == "2400000000"


def test_real_rx_gain_setter_is_a_silent_no_op_under_agc():
    sdr = BenchPluto()
    sdr.rx_hardwaregain_chan0 = 20.0  # gain_control_mode is slow_attack: pyadi-iio ignores it
    assert sdr._ctrl.get("voltage0", False, "hardwaregain") == "71.000000 dB"


def test_real_pyadi_refuses_a_second_cyclic_push_without_destroy():
    sdr = BenchPluto()
    sdr.tx_cyclic_buffer = True
    sdr.tx(np.ones(8, dtype=complex))
    with pytest.raises(Exception, match="cyclic"):
        sdr.tx(np.ones(8, dtype=complex))
    with pytest.raises(Exception, match="destroyed"):
        sdr.tx_cyclic_buffer = False


def test_unreachable_pluto_through_real_pyadi_is_a_radio_error():
    with pytest.raises(RadioError, match="no Pluto at 'ip:127.0.0.1'"):
        PlutoRadio("ip:127.0.0.1")


# -- scaling -----------------------------------------------------------------------------------
def test_to_dac_scales_full_scale_to_2_pow_14_and_rounds():
    codes = pluto_mod.to_dac(np.array([1, -1, 1j, 0.5 + 0.5j, 0.3 / 16384]))
    np.testing.assert_array_equal(codes, [16384, -16384, 16384j, 8192 + 8192j, 0])


def test_to_dac_refuses_clipping_with_the_margin_in_db():
    with pytest.raises(ValueError, match=r"exceeds full scale.*6\.02 dB"):
        pluto_mod.to_dac(np.array([0.1, 2.0]))
    with pytest.raises(ValueError, match="NaN"):
        pluto_mod.to_dac(np.array([np.nan]))


def test_from_adc_maps_12_bit_codes_to_unit_full_scale():
    x = pluto_mod.from_adc(np.array([-2048 - 2048j, 2047, 1024j]))
    np.testing.assert_allclose(x, [-1 - 1j, 2047 / 2048, 0.5j])


def test_capabilities_describe_stock_firmware():
    caps = pluto_mod.pluto_capabilities()
    assert (caps.timed_tx, caps.timed_rx, caps.cyclic_tx, caps.full_duplex, caps.adc_bits) == (
        False, False, True, True, 12
    )


# -- PlutoRadio over the real class -----------------------------------------------------------
def test_configure_writes_every_setting_through_real_pyadi(bench):
    radio, sdr = _radio(bench, rf_bandwidth_hz=2e6, xo_correction_hz=39_999_535, rx_buffer_size=4096)
    assert isinstance(radio, Radio)
    radio.configure(RadioConfig(sample_rate_hz=1e6, center_freq_hz=915e6, tx_gain_db=-20, rx_gain_db=30))
    phy = sdr._ctrl
    assert phy.get("voltage0", False, "sampling_frequency") == "1000000"
    assert phy.get("altvoltage0", True, "frequency") == "915000000"
    assert phy.get("altvoltage1", True, "frequency") == "915000000"
    assert phy.get("voltage0", False, "rf_bandwidth") == "2000000"
    assert phy.get("voltage0", True, "rf_bandwidth") == "2000000"
    assert phy.get("voltage0", False, "gain_control_mode") == "manual"
    assert phy.get("voltage0", False, "hardwaregain") == "30.0"  # applied: AGC was switched off first
    assert phy.get("voltage0", True, "hardwaregain") == "-20.0"
    assert phy.attrs["xo_correction"].value == "39999535"
    assert "RX 3 GAIN -6 DEC 4" in phy.attrs["filter_fir_config"].value  # pyadi-iio's FIR for <= 20 MS/s
    assert sdr.rx_buffer_size == 4096
    assert radio.xo_correction() == 39_999_535


def test_configure_validates_before_touching_the_device(bench):
    radio, sdr = _radio(bench)
    with pytest.raises(RadioError, match="outside"):
        radio.configure(RadioConfig(sample_rate_hz=100e3))
    with pytest.raises(RadioError, match="attenuation"):
        radio.configure(RadioConfig(sample_rate_hz=1e6, tx_gain_db=5))
    assert sdr._ctrl.get("voltage0", False, "gain_control_mode") == "slow_attack"


def test_configure_failure_names_the_attribute_and_leaves_no_buffers(bench):
    radio, sdr = _radio(bench)
    radio.transmit_cyclic(np.full(16, 0.5))
    sdr._ctrl.find_channel("altvoltage0", True).attrs["frequency"].fail = True
    with pytest.raises(RadioError, match="rx_lo = 7000000000"):
        radio.configure(RadioConfig(sample_rate_hz=1e6, center_freq_hz=7e9))
    assert sdr._txbuf is None and sdr._rxbuf is None


def test_xo_correction_missing_from_old_firmware(bench, monkeypatch):
    monkeypatch.setattr(
        pluto_mod, "load_adi", lambda: types.SimpleNamespace(Pluto=lambda uri: BenchPluto(uri, with_xo=False))
    )
    radio = PlutoRadio("usb:1.2.5")
    assert radio.xo_correction() is None
    with pytest.raises(RadioError, match="firmware"):
        radio.set_xo_correction(40_000_100)


def test_receive_counts_samples_skips_forward_and_scales(bench):
    radio, sdr = _radio(bench)
    assert radio.now() == 0
    x = radio.receive(100, 0)
    assert x.dtype == np.complex128 and x.shape == (100,)
    np.testing.assert_allclose(x[:3], [(-2048 + 2047j) / 2048, (-2047 + 2046j) / 2048, (-2046 + 2045j) / 2048])
    assert radio.now() == 100
    y = radio.receive(10, 150)  # one contiguous buffer of 60, first 50 dropped
    assert sdr.events[-2:] == [("rx_destroy",), ("rx_create", 60)]
    np.testing.assert_allclose(y[0], (50 - 2048 + (2048 - 50 - 1) * 1j) / 2048)
    assert radio.now() == 160
    with pytest.raises(LateCommandError):
        radio.receive(10, 159)
    assert radio.receive(0, 160).shape == (0,)


def test_fresh_rx_recreates_the_buffer_each_call_unless_disabled(bench):
    radio, sdr = _radio(bench, fresh_rx=False)
    radio.receive(64, 0)
    radio.receive(64, radio.now())
    assert [e for e in sdr.events if e[0] == "rx_create"] == [("rx_create", 64)]
    radio2, sdr2 = _radio(bench)
    radio2.receive(64, 0)
    radio2.receive(64, radio2.now())
    assert [e for e in sdr2.events if e[0] == "rx_create"] == [("rx_create", 64), ("rx_create", 64)]


def test_receive_error_destroys_the_rx_buffer(bench):
    radio, sdr = _radio(bench)
    sdr.fail_rx = True
    with pytest.raises(RadioError, match="receiving 32 samples failed"):
        radio.receive(32, 0)
    assert sdr.events[-1] == ("rx_destroy",) and sdr._rxbuf is None
    assert radio.now() == 0
    sdr.fail_rx = False
    assert radio.receive(32, 0).shape == (32,)


def test_one_shot_transmit_goes_through_real_tx_with_2_pow_14_scaling(bench):
    radio, sdr = _radio(bench)
    radio.transmit(np.array([1, -1, 1j, 0.5 + 0.5j]), radio.now())
    np.testing.assert_array_equal(sdr.pushed[-1], np.array([16384, 0, -16384, 0, 0, 16384, 8192, 8192], np.int16))
    assert ("tx_create", 4, False) in sdr.events
    radio.transmit(np.zeros(4), radio.now())  # same length: the buffer is reused
    assert sdr.events.count(("tx_destroy",)) == 0
    radio.transmit(np.zeros(6), radio.now())  # another length: a new buffer
    assert sdr.events[-3:] == [("tx_destroy",), ("tx_create", 6, False), ("tx_push", 6)]


def test_transmit_cannot_be_scheduled_without_hardware_time(bench):
    radio, sdr = _radio(bench)
    radio.receive(10, 0)
    with pytest.raises(RadioError, match="transmit_cyclic"):
        radio.transmit(np.zeros(4), 1000)
    with pytest.raises(LateCommandError):
        radio.transmit(np.zeros(4), 5)
    with pytest.raises(ValueError, match="clip"):
        radio.transmit(np.full(4, 1.5), radio.now())
    assert sdr.pushed == []


def test_cyclic_transmit_replaces_the_previous_buffer(bench):
    radio, sdr = _radio(bench)
    radio.transmit_cyclic(np.full(8, 0.25))
    radio.transmit_cyclic(np.roll(np.linspace(0, 1, 8), 3))  # e.g. a timing advance of 3 samples
    assert sdr.events == [
        ("tx_create", 8, True), ("tx_push", 8), ("tx_destroy",), ("tx_create", 8, True), ("tx_push", 8)
    ]
    assert sdr.tx_cyclic_buffer is True
    radio.stop_transmit()
    assert sdr._txbuf is None
    radio.transmit(np.zeros(8), radio.now())  # back to one-shot after a cyclic buffer
    assert sdr.events[-2] == ("tx_create", 8, False)


def test_transmit_error_destroys_the_tx_buffer(bench):
    radio, sdr = _radio(bench)
    sdr.fail_tx = True
    with pytest.raises(RadioError, match="cyclic transmit of 8 samples failed"):
        radio.transmit_cyclic(np.zeros(8))
    assert sdr._txbuf is None and sdr.events[-1] == ("tx_destroy",)
    sdr.fail_tx = False
    radio.transmit_cyclic(np.zeros(8))
    assert sdr.events[-1] == ("tx_push", 8)


def test_close_destroys_buffers_and_is_idempotent(bench):
    radio, sdr = _radio(bench)
    radio.transmit_cyclic(np.zeros(8))
    radio.receive(8, 0)
    radio.close()
    radio.close()
    assert sdr._txbuf is None and sdr._rxbuf is None
    assert ("tx_destroy",) in sdr.events and sdr.events[-1] == ("rx_destroy",)
    with pytest.raises(RadioError, match="closed"):
        radio.receive(8, 8)


def test_several_plutos_are_independent(bench):
    a = open_radio("pluto://usb:1.2.5")
    b = open_radio("pluto://ip:192.168.3.1?fresh_rx=false&rx_buffer_size=2048")
    assert [p.uri for p in bench.instances] == ["usb:1.2.5", "ip:192.168.3.1"]
    assert a.name == "pluto:usb:1.2.5" and b.options == PlutoOptions(rx_buffer_size=2048, fresh_rx=False)
    a.transmit_cyclic(np.zeros(4))
    assert bench.instances[1].events == []


# -- URIs and missing drivers ------------------------------------------------------------------
@pytest.mark.parametrize("uri", ["pluto://", "pluto://192.168.2.1", "pluto://serial:xyz", "pluto://ip:"])
def test_malformed_pluto_uris(uri):
    with pytest.raises(ValueError, match="pluto://usb"):
        open_radio(uri)


def test_unknown_uri_option_is_rejected(bench):
    with pytest.raises(ValueError, match="unknown option 'xo'"):
        open_radio("pluto://ip:192.168.2.1?xo=1")
    with pytest.raises(ValueError, match="not an integer"):
        open_radio("pluto://ip:192.168.2.1?xo_correction_hz=40000000.5")


def test_missing_pyadi_is_one_clear_sentence(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "adi", None)
    with pytest.raises(DriverMissingError, match=r"pip install pyadi-iio 'pylibiio==0.25' and apt-get install libiio0"):
        open_radio("pluto://ip:192.168.2.1")


# -- a real Pluto ------------------------------------------------------------------------------
@pytest.mark.hardware
def test_real_pluto_round_trip(radio_uri):
    if not radio_uri.startswith("pluto://"):
        pytest.skip("--radio is not a Pluto")
    radio = open_radio(radio_uri)
    try:
        radio.configure(RadioConfig(sample_rate_hz=1e6, center_freq_hz=2.4e9, tx_gain_db=-30, rx_gain_db=20))
        radio.transmit_cyclic(0.5 * np.exp(2j * np.pi * 0.01 * np.arange(1000)))
        x = radio.receive(10_000, radio.now() + 1000)
        assert x.shape == (10_000,) and np.all(np.abs(x.real) <= 1) and np.all(np.abs(x.imag) <= 1)
        radio.stop_transmit()
    finally:
        radio.close()
