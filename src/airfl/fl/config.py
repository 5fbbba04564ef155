"""Experiment configuration: TOML in, typed and validated models out.

Every mistake a user can make in a config (unknown key, wrong type, value out of range) becomes a
`ConfigError` whose message is one sentence naming the key and what is allowed; the CLI prints it
and exits with code 2.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from airfl.fl.config_lora import LoraSectionConfig
from airfl.fl.config_meta import MetaConfig
from airfl.fl.config_radios import RadiosSection


class ConfigError(ValueError):
    """A configuration the user wrote is invalid; str(error) is one sentence for the user."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Dataset and its split across clients."""

    dataset: Literal["digits"] = "digits"
    clients: int = Field(10, ge=1, le=1000, description="number of federated clients")
    dirichlet_alpha: float = Field(0.5, gt=0, description="label skew: smaller is more non-IID")
    test_fraction: float = Field(0.25, gt=0, lt=1, description="held-out share for the global test set")
    min_samples_per_client: int = Field(10, ge=1)


class ModelConfig(_Section):
    """The model every client trains."""

    kind: Literal["mlp"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [64], description="hidden layer widths")

    @model_validator(mode="after")
    def _positive_widths(self) -> ModelConfig:
        if any(h < 1 for h in self.hidden):
            raise ValueError("model.hidden: every hidden width must be >= 1")
        return self


class TrainConfig(_Section):
    """Local training on each client, every round."""

    local_epochs: int = Field(2, ge=1, le=1000)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(0.05, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1)


class ChannelSection(_Section):
    """The loopback air (ignored on real radios). SNR: P * E|h|^2 / sigma^2 per client, in dB."""

    snr_db: float = Field(20.0, ge=-30, le=100, description="average receive SNR per client (dB)")
    path_loss_db: float = Field(0.0, ge=0, le=200, description="mean link loss (dB)")
    path_loss_spread_db: float = Field(0.0, ge=0, le=60)
    fading: Literal["none", "rayleigh", "rician"] = "rayleigh"
    rician_k_db: float = Field(6.0, ge=-20, le=40, description="Rician K-factor (dB), with fading = rician")
    coherence_time_s: float = Field(0.02, gt=0)
    max_delay_samples: int = Field(8, ge=0, le=4096)
    sample_rate_hz: float = Field(1e6, gt=0, le=61.44e6)
    center_freq_hz: float = Field(2.4e9, gt=0, le=100e9, description="carrier: sets CFO in Hz from ppm")
    noise: bool = Field(True, description="false turns receiver noise off (exact aggregation)")
    impairments: Literal["none", "lab", "lab_uncalibrated"] = Field(
        "none",
        description="radio impairments on top of fading and delays: 'lab' = every impairment at bench "
        "values after xo_correction (airfl.radio.presets.lab_impairments), 'lab_uncalibrated' = +-25 ppm",
    )
    rx_gain_db: float | None = Field(
        None, ge=-40, le=80, description="receiver gain before the ADC (dB); default -10 with impairments, else 0"
    )
    cyclic_restart_jitter_samples: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="ota.timing_mode = cyclic: re-loading a running cyclic buffer restarts it this many samples "
        "(uniform, +-) from where it was; 0 is a seamless swap (radio/cyclic.py)",
    )
    cyclic_max_host_latency_s: float = Field(
        1e-3, ge=0, le=10, description="ota.timing_mode = cyclic: each host operation takes effect after 0..this (s)"
    )


class OtaSection(_Section):
    """The round protocol (see airfl.fl.ota.OtaSettings for the meaning of each knob)."""

    tx_power: float = Field(0.1, gt=0, le=1, description="per-client power limit, full-scale units^2")
    power_control: Literal["truncated", "optimal", "full"] = Field(
        "truncated",
        description="truncated inversion at truncation_threshold_db, the threshold minimising predicted "
        "noise plus truncation bias, or full inversion (every client transmits)",
    )
    truncation_threshold_db: float = Field(-10.0, ge=-60, le=20)
    waveform: Literal["single_carrier", "ofdm"] = "single_carrier"
    timing_mode: Literal["timed", "virtual", "cyclic"] = Field(
        "timed",
        description="timed: every client its own radio with timed bursts; virtual: the clients are "
        "emulated, summed, and sent by one transmitter over one RF link (the two-radio lab); cyclic: "
        "radios without hardware time (stock Plutos) repeat their frame from a cyclic buffer, aligned by "
        "rotating it (airfl.fl.ota_cyclic)",
    )
    cyclic_tolerance_samples: float | None = Field(
        None,
        gt=0,
        description="cyclic mode: largest offset (samples) of a client from the target at which alignment stops; "
        "default 0.1 for single carrier, 1 for OFDM (inside the cyclic prefix, at most 2)",
    )
    virtual_forward_gain_db: float = Field(
        0.0,
        ge=-100,
        le=0,
        description="virtual mode: attenuation (dB) of the clients' summed signal before the real transmitter, "
        "so its peaks fit the DAC (K clients add up in power); part of the channel the round measures",
    )
    cyclic_max_iterations: int = Field(
        8, ge=1, le=1000, description="cyclic mode: alignment rotations (and channel refreshes) per round before giving up"
    )
    pilot_spacing: int = Field(32, ge=0, le=1_000_000, description="single carrier: data symbols per pilot")
    sounding_repeats: int = Field(4, ge=1, le=16, description="pilot periods; >= 2 measures each client's CFO")
    ofdm_fft: int = Field(64, ge=8, le=4096)
    ofdm_cp: int = Field(16, ge=1, le=1024)
    ofdm_used: int = Field(52, ge=2, le=4094)
    ofdm_pilot_every: int = Field(13, ge=2, le=4096)
    acquisition: Literal["first_round", "every_round", "off"] = "first_round"
    acquisition_length: int = Field(256, ge=32, le=65536)
    acquisition_search_samples: int = Field(
        256,
        ge=0,
        le=1_000_000,
        description="largest timing offset (samples, early or late) acquisition finds: each client's acquisition "
        "slot is its tone, a 127-sample marker and twice this margin (airtime, first round); at least ota.sounding_cp",
    )
    quiet_samples: int = Field(256, ge=0, le=1_000_000)
    dac_peak: float = Field(1.0, gt=0, le=1.0, description="largest |x| a transmitter may send (full scale 1)")
    peak_policy: Literal["backoff", "clip"] = "backoff"
    cfo_correction: bool = True
    timing_correction: bool = True
    fractional_timing: bool = True
    dc_correction: bool = True
    rx_iq_correction: bool = False
    max_segment_samples: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="0: one aggregation frame; else split it into segments of at most this many samples (OFDM: "
        "whole symbols), each after a phase re-sounding that corrects every client's own oscillator drift "
        "(phase noise, residual CFO); costs a gap of ~sounding length + lead per extra segment",
    )
    sounding_cp: int = Field(16, ge=0, le=4096)
    sounding_min_shift: int = Field(32, ge=4, le=65536)
    sounding_min_length: int = Field(251, ge=3, le=1_000_003)
    preamble_length: int = Field(127, ge=15, le=65535)
    guard_samples: int = Field(32, ge=0, le=65536)
    lead_samples: int = Field(64, ge=1)
    frame_period_s: float = Field(0.02, gt=0)
    false_alarm_probability: float = Field(1e-6, gt=0, lt=1)

    @model_validator(mode="after")
    def _consistent(self) -> OtaSection:
        if self.preamble_length % 2 == 0:
            raise ValueError("ota.preamble_length must be odd (a Zadoff-Chu length)")
        if self.sounding_min_shift < self.sounding_cp + 6:
            raise ValueError("ota.sounding_min_shift must be at least ota.sounding_cp + 6 samples")
        if self.lead_samples <= self.guard_samples:
            raise ValueError("ota.lead_samples must exceed ota.guard_samples")
        if self.ofdm_fft & (self.ofdm_fft - 1):
            raise ValueError("ota.ofdm_fft must be a power of two")
        if self.ofdm_used >= self.ofdm_fft or self.ofdm_used % 2:
            raise ValueError("ota.ofdm_used must be even and smaller than ota.ofdm_fft")
        if self.acquisition_length <= self.sounding_cp + 16:
            raise ValueError("ota.acquisition_length must exceed ota.sounding_cp by more than 16 samples")
        if self.acquisition_search_samples < self.sounding_cp:
            raise ValueError(
                f"ota.acquisition_search_samples ({self.acquisition_search_samples}) must be at least ota.sounding_cp "
                f"({self.sounding_cp}) samples: acquisition has to find every offset the sounding tolerates"
            )
        tol = self.cyclic_tolerance_samples
        if tol is not None and self.waveform == "single_carrier" and self.fractional_timing and tol > 0.5:
            raise ValueError(
                f"ota.cyclic_tolerance_samples ({tol:g}) must be a fraction of a sample (at most 0.5) for single "
                "carrier, e.g. 0.1"
            )
        if tol is not None and self.waveform == "ofdm" and tol > 2:
            raise ValueError(
                f"ota.cyclic_tolerance_samples ({tol:g}) must be at most 2 samples for OFDM: the part of the cyclic "
                "prefix the receiver's FFT window leaves before each symbol"
            )
        return self


class AggregationConfig(_Section):
    """How client updates are summed: over the air, or exactly (no channel)."""

    kind: Literal["ota", "ideal"] = "ota"
    baseline: bool = Field(True, description="also train with ideal aggregation, same seed")


class ExperimentConfig(_Section):
    """One experiment: `airfl run CONFIG` trains it and writes its run directory."""

    name: str = "experiment"
    seed: int = Field(0, ge=0, lt=2**32)
    rounds: int = Field(30, ge=1, le=100_000)
    algorithm: Literal["fedavg", "meta", "lora"] = "fedavg"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    aggregation: AggregationConfig = Field(default_factory=AggregationConfig)
    channel: ChannelSection = Field(default_factory=ChannelSection)
    ota: OtaSection = Field(default_factory=OtaSection)
    meta: MetaConfig = Field(default_factory=MetaConfig)
    lora: LoraSectionConfig = Field(default_factory=LoraSectionConfig)
    radios: RadiosSection = Field(default_factory=RadiosSection)
    calibration: str | None = Field(
        None, description="calibration profile (JSON from `airfl calibrate`): sets gains, xo_correction, power limit"
    )


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the section a validation error location points into."""
    current: type[BaseModel] = model
    for part in loc[:-1]:
        field = current.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None) if field else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
        else:
            break
    return list(current.model_fields)


def _sentence(error: dict[str, Any]) -> str:
    """One user-facing sentence for one pydantic error."""
    loc = tuple(p for p in error.get("loc", ()) if not isinstance(p, int))
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(ExperimentConfig, loc))
        return f"unknown config key '{key}'; allowed keys here are: {allowed}."
    msg = str(error.get("msg", "is invalid"))
    msg = msg.removeprefix("Value error, ")
    if kind == "value_error" and msg.startswith(key.split(".")[0]):
        return msg.rstrip(".") + "."
    got = error.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"config key '{key}': {msg[0].lower() + msg[1:]}{got_text}."


def validate_config(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a raw dict; raise ConfigError with one sentence on the first problem."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" ({len(errors) - 1} more problem(s) after this one)" if len(errors) > 1 else ""
        raise ConfigError(_sentence(errors[0]).rstrip(".") + more + ".") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse 'a.b.c=value'; value is read as a TOML value (number, bool, string, list), else a string."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. rounds=10 or channel.snr_db=10.")
    key, value_text = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' has an empty key; use dotted keys like train.lr=0.1.")
    try:
        value = tomllib.loads(f"v = {value_text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text.strip()
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply key=value overrides to a raw config dict (validation happens afterwards)."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is a value, not a section.")
            node = child
        node[path[-1]] = value
    return raw


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a TOML config, apply overrides, validate. Every problem is a one-sentence ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file '{p}' does not exist; see configs/ for examples.")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file '{p}' is not valid TOML: {exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file '{p}' is not UTF-8 text.") from None
    cfg = validate_config(apply_overrides(raw, overrides or []))
    if cfg.calibration:
        from airfl.fl.calibration_apply import apply_calibration  # noqa: PLC0415 - only runs that use a profile

        cfg = apply_calibration(cfg, ConfigError)
    return cfg
