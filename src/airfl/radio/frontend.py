"""Analog front ends: IQ imbalance, DC offset, DAC clipping, transmit compression, receive gain and
ADC quantisation.

Samples are in full-scale units: |I|, |Q| <= 1 is the converters' range. Chains, in order:

    transmit:  x -> IQ imbalance -> + DC -> DAC (I, Q clipped to [-1, 1] when dac_clipping;
               samples beyond full scale are counted either way) -> * 10^(tx_gain_db/20)
               -> amplifier compression (Rapp AM/AM, when tx_saturation is set)
    receive:   y (+ thermal noise, added by the air) -> IQ imbalance -> * 10^(rx_gain_db/20)
               -> + DC -> ADC (adc_bits: I, Q clipped and quantised to the grid of 2^bits levels
               in [-1, 1); clipped samples counted); no AGC.

The receive DC offset is added after the gain, at the ADC input, so its level is `rx_dc_dbfs` at
the converter whatever the gain (dBFS is defined there).

IQ imbalance with amplitude imbalance g (dB) and phase skew phi (deg) acts as

    y = mu * x + nu * conj(x),   mu = (1 + G e^{-j phi}) / 2,   nu = (1 - G e^{+j phi}) / 2,  G = 10^(g/20)

i.e. I' = I and Q' = G (Q cos phi - I sin phi); a tone at f gets an image at -f with power ratio
|nu / mu|^2 (the image rejection ratio).

Transmit compression (off by default) is the Rapp model of a solid-state amplifier after the TX
attenuator, with unit small-signal gain, output saturation amplitude A (full-scale units at the
output, i.e. on air before the channel) and smoothness p (larger is sharper; p -> inf is an ideal
limiter):

    out = in / (1 + (|in| / A)^(2p))^(1/(2p))         (AM/AM only: the phase is kept)

The gain of a constant-envelope input of amplitude r is -(10/p)*log10(1 + (r/A)^(2p)) dB, so it is
1 dB down at the input amplitude r_1dB = A * (10^(p/10) - 1)^(1/(2p)): input P1dB = r_1dB^2 and
output P1dB = r_1dB^2 * 10^(-1/10) (full-scale units^2; `Frontend.tx_p1db_input_power`). Because the
attenuation comes first, a tone of DAC power P at tx gain g (dB) drives the amplifier with
P * 10^(g/10): sweeping the attenuation walks up the compression curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from airfl.radio.oscillator import frozen_mapping
from airfl.radio.seeding import TAG_FRONTEND, seeded_rng, stable_id

PLUTO_ADC_BITS = 12  # AD9361: 12-bit ADC and DAC


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")


def _check_iq(prefix: str, gain_db: float, gain_spread_db: float, phase_deg: float, phase_spread_deg: float) -> None:
    _finite(f"{prefix}_iq_gain_db", gain_db)
    _finite(f"{prefix}_iq_phase_deg", phase_deg)
    for name, value in ((f"{prefix}_iq_gain_spread_db", gain_spread_db), (f"{prefix}_iq_phase_spread_deg", phase_spread_deg)):
        _finite(name, value)
        if value < 0:
            raise ValueError(f"{name} must be >= 0 (a half-width), got {value}")
    if abs(gain_db) + gain_spread_db > 6.0:
        raise ValueError(f"{prefix}_iq_gain_db +- spread must stay within +-6 dB, got {gain_db} +- {gain_spread_db}")
    if abs(phase_deg) + phase_spread_deg > 45.0:
        raise ValueError(f"{prefix}_iq_phase_deg +- spread must stay within +-45 deg, got {phase_deg} +- {phase_spread_deg}")


def _check_dc(name: str, value: float | None) -> None:
    if value is None:
        return
    _finite(name, value)
    if value > 0:
        raise ValueError(f"{name} must be <= 0 dBFS (an offset above full scale saturates the converter), got {value}")


def _check_dc_value(name: str, value: complex | None) -> None:
    if value is None:
        return
    value = complex(value)
    if not (math.isfinite(value.real) and math.isfinite(value.imag)) or abs(value) > 1.0:
        raise ValueError(f"{name} must be a finite complex value with |dc| <= 1 (full-scale units), got {value}")


def _check_saturation(name: str, value: float | None) -> None:
    if value is None:
        return
    _finite(name, value)
    if not 0.0 < value <= 100.0:
        raise ValueError(f"{name} must be in (0, 100] full-scale units (an output amplitude), got {value}")


@dataclass(frozen=True)
class FrontendOverride:
    """Exact front-end values for one radio; None keeps the value drawn from the seed.

    *_iq_gain_db (dB) and *_iq_phase_deg (deg): IQ imbalance of the TX / RX chain.
    tx_dc / rx_dc: complex DC offset (full-scale units), e.g. 0.005 + 0.002j.
    tx_saturation: the transmit amplifier's output saturation amplitude (full-scale units); it turns
        compression on for this radio with FrontendConfig.tx_rapp_p (see the module docstring).
    """

    tx_iq_gain_db: float | None = None
    tx_iq_phase_deg: float | None = None
    rx_iq_gain_db: float | None = None
    rx_iq_phase_deg: float | None = None
    tx_dc: complex | None = None
    rx_dc: complex | None = None
    tx_saturation: float | None = None

    def __post_init__(self) -> None:
        for prefix in ("tx", "rx"):
            g = getattr(self, f"{prefix}_iq_gain_db")
            p = getattr(self, f"{prefix}_iq_phase_deg")
            _check_iq(prefix, 0.0 if g is None else g, 0.0, 0.0 if p is None else p, 0.0)
            _check_dc_value(f"{prefix}_dc", getattr(self, f"{prefix}_dc"))
        _check_saturation("tx_saturation", self.tx_saturation)


@dataclass(frozen=True)
class FrontendConfig:
    """Converter and analog impairments of every radio. The default is ideal (all off).

    Per-radio values are drawn from the air seed and the radio name: value = nominal + spread * u,
    u uniform in [-1, 1) (exactly the nominal value when the spread is 0); `overrides` pins exact
    values for named radios.

    tx_iq_gain_db / tx_iq_gain_spread_db: TX amplitude imbalance of Q relative to I (dB) and half-width.
    tx_iq_phase_deg / tx_iq_phase_spread_deg: TX quadrature phase skew (deg) and half-width.
    rx_iq_*: the same for the receive chain.
    tx_dc_dbfs / rx_dc_dbfs: DC offset magnitude (dBFS, 20*log10|dc|), a random phase per radio;
        None turns it off.
    dac_clipping: clip I and Q at the DAC's full scale +-1 (samples beyond it are counted always).
    tx_saturation: output saturation amplitude A of the transmit amplifier (full-scale units at the
        output, after the TX attenuation); None turns compression off (the default).
    tx_saturation_spread_db: per-radio spread of A (dB half-width: A * 10^(spread * u / 20)).
    tx_rapp_p: smoothness p of the Rapp AM/AM curve (0.5..20; SSPAs are typically 1..3).
    adc_bits: ADC resolution (bits; Pluto: 12); None means no ADC (ideal, unquantised samples).
    overrides: radio name -> FrontendOverride with exact values.
    """

    tx_iq_gain_db: float = 0.0
    tx_iq_gain_spread_db: float = 0.0
    tx_iq_phase_deg: float = 0.0
    tx_iq_phase_spread_deg: float = 0.0
    rx_iq_gain_db: float = 0.0
    rx_iq_gain_spread_db: float = 0.0
    rx_iq_phase_deg: float = 0.0
    rx_iq_phase_spread_deg: float = 0.0
    tx_dc_dbfs: float | None = None
    rx_dc_dbfs: float | None = None
    dac_clipping: bool = False
    adc_bits: int | None = None
    overrides: Mapping[str, FrontendOverride] = field(default_factory=dict, hash=False)
    tx_saturation: float | None = None
    tx_saturation_spread_db: float = 0.0
    tx_rapp_p: float = 2.0

    def __post_init__(self) -> None:
        _check_iq("tx", self.tx_iq_gain_db, self.tx_iq_gain_spread_db, self.tx_iq_phase_deg, self.tx_iq_phase_spread_deg)
        _check_iq("rx", self.rx_iq_gain_db, self.rx_iq_gain_spread_db, self.rx_iq_phase_deg, self.rx_iq_phase_spread_deg)
        _check_dc("tx_dc_dbfs", self.tx_dc_dbfs)
        _check_dc("rx_dc_dbfs", self.rx_dc_dbfs)
        _check_saturation("tx_saturation", self.tx_saturation)
        _finite("tx_saturation_spread_db", self.tx_saturation_spread_db)
        if not 0.0 <= self.tx_saturation_spread_db <= 10.0:
            raise ValueError(f"tx_saturation_spread_db must be in [0, 10] dB (a half-width), got {self.tx_saturation_spread_db}")
        _finite("tx_rapp_p", self.tx_rapp_p)
        if not 0.5 <= self.tx_rapp_p <= 20.0:
            raise ValueError(f"tx_rapp_p must be in [0.5, 20] (Rapp smoothness), got {self.tx_rapp_p}")
        if self.adc_bits is not None and (isinstance(self.adc_bits, bool) or not 2 <= int(self.adc_bits) <= 24
                                          or int(self.adc_bits) != self.adc_bits):
            raise ValueError(f"adc_bits must be an integer in [2, 24] bits or None (no ADC), got {self.adc_bits}")
        object.__setattr__(self, "overrides", frozen_mapping(self.overrides, "overrides", FrontendOverride))


def iq_coefficients(gain_db: float, phase_deg: float) -> tuple[complex, complex]:
    """(mu, nu) of y = mu*x + nu*conj(x) for amplitude imbalance `gain_db` (dB), skew `phase_deg` (deg)."""
    g = 10.0 ** (gain_db / 20.0)
    phi = math.radians(phase_deg)
    return (1.0 + g * complex(math.cos(phi), -math.sin(phi))) / 2.0, (1.0 - g * complex(math.cos(phi), math.sin(phi))) / 2.0


def apply_iq(x: np.ndarray, mu: complex, nu: complex) -> np.ndarray:
    """y = mu * x + nu * conj(x)."""
    return mu * x + nu * np.conj(x)


def rapp(x: np.ndarray, saturation: float, p: float) -> np.ndarray:
    """Rapp AM/AM compression with unit small-signal gain: x / (1 + (|x|/saturation)^(2p))^(1/(2p))."""
    r = np.abs(x) / saturation
    return x / (1.0 + r ** (2.0 * p)) ** (1.0 / (2.0 * p))


def rapp_gain_db(amplitude: float | np.ndarray, saturation: float, p: float) -> np.ndarray:
    """Gain (dB, <= 0) of the Rapp curve for a constant-envelope input of `amplitude` (full-scale units)."""
    r = np.asarray(amplitude, dtype=np.float64) / saturation
    return -10.0 / p * np.log10(1.0 + r ** (2.0 * p))


def rapp_p1db_amplitude(saturation: float, p: float) -> float:
    """Input amplitude (full-scale units) at which the Rapp gain is 1 dB down: A*(10^(p/10) - 1)^(1/(2p))."""
    return float(saturation * (10.0 ** (p / 10.0) - 1.0) ** (1.0 / (2.0 * p)))


def over_full_scale(x: np.ndarray, limit: float = 1.0) -> np.ndarray:
    """Boolean mask of samples whose I or Q magnitude exceeds `limit`."""
    return (np.abs(x.real) > limit) | (np.abs(x.imag) > limit)


def dac_clip(x: np.ndarray) -> np.ndarray:
    """Clip I and Q separately to the DAC's full scale [-1, 1]."""
    return np.clip(x.real, -1.0, 1.0) + 1j * np.clip(x.imag, -1.0, 1.0)


def adc_quantize(x: np.ndarray, bits: int) -> tuple[np.ndarray, int]:
    """An N-bit two's-complement ADC on I and Q: levels k * D, k in [-2^(N-1), 2^(N-1) - 1], D = 2 / 2^N.

    Rounds to the nearest level (error uniform, variance D^2/12 per rail, when not clipping) and
    clips to [-1, 1 - D]. Returns the quantised samples and the number of samples with I or Q clipped.
    """
    step = 2.0 / (1 << bits)
    top = (1 << (bits - 1)) - 1
    codes_i = np.round(x.real / step)
    codes_q = np.round(x.imag / step)
    clipped = (codes_i > top) | (codes_i < -top - 1) | (codes_q > top) | (codes_q < -top - 1)
    y = np.clip(codes_i, -top - 1, top) * step + 1j * (np.clip(codes_q, -top - 1, top) * step)
    return y, int(np.count_nonzero(clipped))


class Frontend:
    """One radio's drawn front-end values (truth for tests) and its transmit/receive chains."""

    def __init__(self, config: FrontendConfig, name: str, seed: int):
        self.name = name
        self.config = config
        u = seeded_rng(seed, stable_id(name), TAG_FRONTEND).uniform(-1.0, 1.0, 6)
        over = config.overrides.get(name, FrontendOverride())
        assert isinstance(over, FrontendOverride)

        def pick(exact: float | None, nominal: float, spread: float, draw: float) -> float:
            if exact is not None:
                return float(exact)
            return float(nominal + spread * draw) if spread > 0 else float(nominal)

        def dc(exact: complex | None, dbfs: float | None, draw: float) -> complex:
            if exact is not None:
                return complex(exact)
            if dbfs is None:
                return 0j
            return complex(10.0 ** (dbfs / 20.0) * np.exp(1j * math.pi * draw))

        c = config
        #: TX / RX IQ amplitude imbalance (dB) and phase skew (deg)
        self.tx_iq_gain_db = pick(over.tx_iq_gain_db, c.tx_iq_gain_db, c.tx_iq_gain_spread_db, u[0])
        self.tx_iq_phase_deg = pick(over.tx_iq_phase_deg, c.tx_iq_phase_deg, c.tx_iq_phase_spread_deg, u[1])
        self.rx_iq_gain_db = pick(over.rx_iq_gain_db, c.rx_iq_gain_db, c.rx_iq_gain_spread_db, u[2])
        self.rx_iq_phase_deg = pick(over.rx_iq_phase_deg, c.rx_iq_phase_deg, c.rx_iq_phase_spread_deg, u[3])
        #: TX / RX DC offsets (complex, full-scale units)
        self.tx_dc = dc(over.tx_dc, c.tx_dc_dbfs, u[4])
        self.rx_dc = dc(over.rx_dc, c.rx_dc_dbfs, u[5])
        self.tx_mu, self.tx_nu = iq_coefficients(self.tx_iq_gain_db, self.tx_iq_phase_deg)
        self.rx_mu, self.rx_nu = iq_coefficients(self.rx_iq_gain_db, self.rx_iq_phase_deg)
        self.adc_bits = c.adc_bits
        #: transmit amplifier: output saturation amplitude (full-scale units; None: no compression)
        #: and Rapp smoothness. Drawn from its own stream so the draws above never move.
        self.tx_rapp_p = float(c.tx_rapp_p)
        self.tx_saturation: float | None = None
        if over.tx_saturation is not None:
            self.tx_saturation = float(over.tx_saturation)
        elif c.tx_saturation is not None:
            spread = 0.0
            if c.tx_saturation_spread_db > 0:
                draw = seeded_rng(seed, stable_id(name), TAG_FRONTEND, 1).uniform(-1.0, 1.0)
                spread = c.tx_saturation_spread_db * float(draw)
            self.tx_saturation = float(c.tx_saturation * 10.0 ** (spread / 20.0))

    @property
    def tx_image_ratio(self) -> float:
        """|nu/mu|^2 of the TX chain (linear power ratio of a tone's image to the tone)."""
        return abs(self.tx_nu / self.tx_mu) ** 2

    @property
    def rx_image_ratio(self) -> float:
        """|nu/mu|^2 of the RX chain (linear power ratio of a tone's image to the tone)."""
        return abs(self.rx_nu / self.rx_mu) ** 2

    @property
    def tx_p1db_input_power(self) -> float | None:
        """Input 1 dB compression point of the transmit amplifier: the power of a constant-envelope
        signal at its input (DAC power * 10^(tx_gain_db/10), full-scale units^2) at which its gain is
        1 dB down; None without compression."""
        if self.tx_saturation is None:
            return None
        return rapp_p1db_amplitude(self.tx_saturation, self.tx_rapp_p) ** 2

    @property
    def tx_p1db_output_power(self) -> float | None:
        """Output 1 dB compression point (full-scale units^2): the input one, 1 dB down."""
        p_in = self.tx_p1db_input_power
        return None if p_in is None else p_in * 10.0 ** (-0.1)

    @property
    def tx_iq_ideal(self) -> bool:
        return self.tx_iq_gain_db == 0.0 and self.tx_iq_phase_deg == 0.0

    @property
    def rx_iq_ideal(self) -> bool:
        return self.rx_iq_gain_db == 0.0 and self.rx_iq_phase_deg == 0.0

    def transmit(self, x: np.ndarray, tx_gain_db: float = 0.0) -> tuple[np.ndarray, int]:
        """TX chain on a burst: IQ -> DC -> DAC clip -> gain -> amplifier compression.
        Returns (samples on air, over-range count at the DAC).

        With every impairment off and 0 dB gain the input array is returned unchanged (bit-exact).
        """
        y = x
        if not self.tx_iq_ideal:
            y = apply_iq(y, self.tx_mu, self.tx_nu)
        if self.tx_dc != 0:
            y = y + self.tx_dc
        over = over_full_scale(y)
        n_over = int(np.count_nonzero(over))
        if self.config.dac_clipping and n_over:
            y = dac_clip(y)
        if tx_gain_db != 0.0:
            y = y * 10.0 ** (tx_gain_db / 20.0)
        if self.tx_saturation is not None:
            y = rapp(y, self.tx_saturation, self.tx_rapp_p)
        return y, n_over

    def receive(self, y: np.ndarray, rx_gain_db: float = 0.0) -> tuple[np.ndarray, int]:
        """RX chain on a window (noise already added): IQ -> gain -> DC -> ADC. Returns (samples, ADC clips).

        With every impairment off and 0 dB gain the input array is returned unchanged (bit-exact).
        """
        if not self.rx_iq_ideal:
            y = apply_iq(y, self.rx_mu, self.rx_nu)
        if rx_gain_db != 0.0:
            y = y * 10.0 ** (rx_gain_db / 20.0)
        if self.rx_dc != 0:
            y = y + self.rx_dc
        if self.adc_bits is not None:
            return adc_quantize(y, self.adc_bits)
        return y, 0
