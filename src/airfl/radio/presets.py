"""Named impairment sets for the loopback air.

`lab_impairments()` is a bench of ADALM-Plutos a few metres apart indoors, every impairment on:

=========================  =====================================  ====================================================
impairment                 value                                  source / justification
=========================  =====================================  ====================================================
reference error            uniform in +-1 ppm per radio          what is left after calibrating each Pluto's
                                                                  `xo_correction` (the frequency procedure of
                                                                  `airfl calibrate`): the crystal itself is specified
                                                                  at +-25 ppm (see `uncalibrated_lab_impairments()`:
                                                                  up to 120 kHz between two radios at 2.4 GHz, 0.12 fs
                                                                  at 1 MS/s, too much to correct digitally without
                                                                  pushing the band past the converters' passband).
                                                                  At 2.4 GHz 1 ppm is 2.4 kHz.
reference drift            uniform in +-0.02 ppm/s per radio      an uncompensated crystal warming up after power-on
                                                                  or in a draughty lab drifts ~1 ppm/min
                                                                  (0.017 ppm/s); at 2.4 GHz that is 48 Hz/s, so a CFO
                                                                  estimated in one round is a few Hz off ten rounds
                                                                  (200 ms) later.
sample clock               locked to the reference                the AD9361 derives the BBPLL (sample clock) and the
                                                                  RF PLLs from one reference, so SCO ppm = CFO ppm.
phase noise                Wiener, linewidth 0.01 Hz              close-in phase noise of a crystal-referenced PLL:
                                                                  L(f) = linewidth / (2*pi*f^2) = -88 dBc/Hz at 1 kHz
                                                                  offset (one-sided phase PSD S_phi(f) =
                                                                  linewidth / (pi*f^2) = -85 dB rad^2/Hz); phase
                                                                  wander 2*pi*0.01 Hz*20 ms = 1.3e-3 rad^2 (2 deg RMS)
                                                                  over a 20 ms round. A Wiener model has no PLL
                                                                  loop-bandwidth plateau, so far-out noise is lower
                                                                  than the AD9361's (~-100 dBc/Hz at 100 kHz).
integer delay              uniform in [0, 8] samples per link     USB/Ethernet host scheduling is absorbed by timed
                                                                  commands; what is left is converter and filter
                                                                  latency differences between devices, a few samples.
fractional delay           uniform in [0, 1) sample per link      the sampling instants of independent radios are
                                                                  unrelated: any fraction of a sample.
multipath                  exponential PDP, 50 ns RMS spread      indoor office/lab: Saleh & Valenzuela (1987) measured
                                                                  RMS spreads up to ~50 ns in a medium-size office;
                                                                  ITU-R P.1238 gives tens to ~100 ns indoors. Flat at
                                                                  1 MS/s (second tap -26 dB), frequency-selective at
                                                                  tens of MS/s.
block fading               Rayleigh, 20 ms coherence              people moving in a lab at walking speed (~1 m/s)
                                                                  at 2.4 GHz: Doppler ~8 Hz, coherence ~0.42/f_D =
                                                                  50 ms; 20 ms is one protocol frame, a conservative
                                                                  bench value. Rician is one switch away:
                                                                  `lab_impairments(fading="rician")` with K = 6 dB
                                                                  (indoor line of sight, typically 3-10 dB).
IQ imbalance (TX and RX)   +-0.1 dB, +-0.5 deg per chain          AD9361 after its quadrature calibration; image
                                                                  rejection ~-42 dBc at the corners.
DC offset (TX and RX)      -45 dBFS, random phase per chain       residual TX LO leakage and RX DC after the AD9361's
                                                                  tracking calibrations.
DAC clipping               on (I and Q at +-1)                    the converters' full scale.
ADC                        12 bits, rx gain LAB_RX_GAIN_DB        the AD9361's 12-bit ADC; manual gain, no AGC.
=========================  =====================================  ====================================================

Receive gain. The loopback's full-scale units are referred to the converters and path_loss_db is
0 here, so a client sending at the protocol's tx_power 0.1 (-10 dBFS) through a unit-mean channel
arrives at -10 dBFS before the receive gain. Set `RadioConfig.rx_gain_db = LAB_RX_GAIN_DB` (-10 dB)
on the server. Then a sounding through a +10 dB Rayleigh peak reaches -10 dBFS at the ADC; the sum
of K = 10 channel-inverted clients (each received at eta ~ 0.01-0.02) is about -20 dBFS for
independent updates and about -10 dBFS for a fully coherent sum (identical updates), leaving ~10 dB
for peaks; and at 30 dB SNR the thermal noise (noise_power 1e-4 = -40 dBFS at the input, -50 dBFS
after the gain) is 24 dB above the 12-bit quantisation noise (Delta^2/6 = -74 dBFS per complex
sample), so quantisation costs < 0.02 dB of SNR. A real bench with 60 dB path loss and 50 dB
receive gain is the same operating point.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from airfl.radio.channel import ChannelConfig
from airfl.radio.frontend import PLUTO_ADC_BITS, FrontendConfig
from airfl.radio.oscillator import OscillatorConfig

LAB_RX_GAIN_DB = -10.0
"""Receive gain (dB) to configure on the receiving radio with `lab_impairments()` (see module doc)."""

LAB_OSCILLATOR = OscillatorConfig(
    ppm=0.0,
    ppm_spread=1.0,
    drift_ppm_per_s=0.0,
    drift_spread_ppm_per_s=0.02,
    linewidth_hz=0.01,
    sample_clock="locked",
)

LAB_FRONTEND = FrontendConfig(
    tx_iq_gain_spread_db=0.1,
    tx_iq_phase_spread_deg=0.5,
    rx_iq_gain_spread_db=0.1,
    rx_iq_phase_spread_deg=0.5,
    tx_dc_dbfs=-45.0,
    rx_dc_dbfs=-45.0,
    dac_clipping=True,
    adc_bits=PLUTO_ADC_BITS,
)


def lab_impairments(**changes: Any) -> ChannelConfig:
    """Every impairment on at lab-bench values (table in the module docstring).

    Keyword arguments replace fields of the returned ChannelConfig, e.g.
    `lab_impairments(noise_power=1e-4, fading="rician")`.
    """
    base = ChannelConfig(
        path_loss_db=0.0,
        fading="rayleigh",
        rician_k_db=6.0,
        coherence_time_s=0.02,
        max_delay_samples=8,
        max_fractional_delay=1.0,
        rms_delay_spread_ns=50.0,
        oscillator=LAB_OSCILLATOR,
        frontend=LAB_FRONTEND,
    )
    return replace(base, **changes)


UNCALIBRATED_OSCILLATOR = replace(LAB_OSCILLATOR, ppm_spread=25.0)
"""A Pluto straight out of the box: +-25 ppm, before `xo_correction` is calibrated."""


def uncalibrated_lab_impairments(**changes: Any) -> ChannelConfig:
    """`lab_impairments()` with the reference errors of uncalibrated Plutos (+-25 ppm).

    At 2.4 GHz and 1 MS/s that is up to 0.12 cycles/sample between two radios: correcting it
    digitally pushes part of the band past the converters' passband, so a bench first calibrates
    `xo_correction` (or retunes the LO) and leaves only the residual to the modem.
    """
    return lab_impairments(oscillator=UNCALIBRATED_OSCILLATOR, **changes)


def lab_impairments_one_by_one(**changes: Any) -> dict[str, ChannelConfig]:
    """Each impairment of `lab_impairments()` alone on the issue-2 air (Rayleigh block fading and
    integer delays up to 8 samples), plus "none" and "all": the impairment axis of the benchmarks.

    Keyword arguments replace fields of every returned ChannelConfig (e.g. noise_power).
    """
    base = ChannelConfig(fading="rayleigh", coherence_time_s=0.02, max_delay_samples=8)
    osc = OscillatorConfig()
    fe = FrontendConfig()
    variants = {
        "none": base,
        "cfo + drift": replace(base, oscillator=replace(osc, ppm_spread=1.0, drift_spread_ppm_per_s=0.02)),
        "sample clock": replace(
            base, oscillator=replace(osc, sample_clock="independent", sample_clock_ppm_spread=1.0)
        ),
        "fractional delay": replace(base, max_fractional_delay=1.0),
        "phase noise": replace(base, oscillator=replace(osc, linewidth_hz=LAB_OSCILLATOR.linewidth_hz)),
        "multipath": replace(base, rms_delay_spread_ns=50.0),
        "rician": replace(base, fading="rician"),
        "iq imbalance": replace(
            base,
            frontend=replace(
                fe, tx_iq_gain_spread_db=0.1, tx_iq_phase_spread_deg=0.5, rx_iq_gain_spread_db=0.1,
                rx_iq_phase_spread_deg=0.5,
            ),
        ),
        "dc offset": replace(base, frontend=replace(fe, tx_dc_dbfs=-45.0, rx_dc_dbfs=-45.0)),
        "dac + adc": replace(base, frontend=replace(fe, dac_clipping=True, adc_bits=PLUTO_ADC_BITS)),
        "all": lab_impairments(),
    }
    return {name: replace(cfg, **changes) for name, cfg in variants.items()}
