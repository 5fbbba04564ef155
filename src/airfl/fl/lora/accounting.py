"""Communication accounting: values and airtime sent, per round and cumulative, beside what
full-model FedAvg would have sent in the same rounds to the same clients.

- Uplink values: reals put on the air by the clients that transmitted (participants), i.e. values
  per client x participants (what `AggregationStats.uplink_values` counts).
- Downlink values: reals the server broadcasts at the start of the round (once: a broadcast reaches
  every client).
- Uplink airtime (s): measured by the over-the-air aggregator (acquisition, sounding, aggregation
  frame) when there is one; with ideal aggregation, the same frames computed from the modem's
  layouts for the clients that sent, so the two agree (tests check it).
- Downlink airtime (s): an estimate for an analog broadcast on the same radio: one aggregation
  frame (preamble, two reals per complex symbol, pilots), no sounding, no coding.
Full-model FedAvg's figures use the same formulas with the full model's parameter count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airfl.fl.ota import OtaSettings, acquisition_samples
from airfl.modem import AggregationLayout, SoundingLayout, symbol_count
from airfl.modem.frame import OfdmAggregationLayout
from airfl.modem.ofdm import OfdmLayout


@dataclass(frozen=True)
class RadioFrame:
    """The airtime one over-the-air aggregation occupies with the round protocol's settings
    (`airfl.fl.ota.OtaSettings`, built from [ota]) at the radio's sample rate: acquisition slots
    (tone, marker and search margins; first round, or every round), the sounding burst, and the
    aggregation frame (single carrier with pilots, or OFDM), as `OverTheAirRound` counts them."""

    settings: OtaSettings = field(default_factory=OtaSettings)
    sample_rate_hz: float = 1e6

    def acquisition_samples(self, n_clients: int, first_round: bool) -> int:
        """Acquisition slots (tone, marker, search margins) of `n_clients`, when the round acquires
        (its first round, or every round); a client re-acquired after a lost sounding is not foreseen."""
        s = self.settings
        if not (s.cfo_correction or s.timing_correction) or s.acquisition == "off":
            return 0
        if s.acquisition == "first_round" and not first_round:
            return 0
        return acquisition_samples(n_clients, s)

    def payload_samples(self, n_values: int) -> int:
        """Aggregation frame (preamble + payload) for `n_values` reals; also an analog broadcast."""
        s = self.settings
        if n_values < 1:
            return 0
        n_symbols = symbol_count(n_values)
        if s.waveform == "ofdm":
            ofdm = OfdmLayout(s.ofdm_fft, s.ofdm_cp, s.ofdm_used, s.ofdm_pilot_every)
            return OfdmAggregationLayout(n_symbols, ofdm).burst_length
        return AggregationLayout(n_symbols, s.preamble_length, s.pilot_spacing).burst_length

    def uplink_samples(self, n_values: int, n_clients: int, first_round: bool = False) -> int:
        """Samples of one aggregation of `n_values` reals after sounding `n_clients` clients."""
        if n_clients < 1 or n_values < 1:
            return 0
        s = self.settings
        sounding = SoundingLayout(n_clients, s.sounding_cp, s.sounding_min_shift, s.sounding_min_length, s.sounding_repeats)
        return self.acquisition_samples(n_clients, first_round) + sounding.burst_length + self.payload_samples(n_values)

    def downlink_samples(self, n_values: int) -> int:
        """Samples of an analog broadcast of `n_values` reals (one aggregation frame, no sounding)."""
        return self.payload_samples(n_values)

    def seconds(self, samples: int) -> float:
        return samples / self.sample_rate_hz


@dataclass
class Totals:
    """Cumulative values and airtime (s)."""

    uplink_values: int = 0
    downlink_values: int = 0
    uplink_airtime_s: float = 0.0
    downlink_airtime_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "uplink_values": self.uplink_values,
            "downlink_values": self.downlink_values,
            "uplink_airtime_s": self.uplink_airtime_s,
            "downlink_airtime_s": self.downlink_airtime_s,
        }


def saving_pct(used: float, reference: float) -> float | None:
    """100 * (1 - used / reference): the share of the reference saved (None if nothing to compare)."""
    return 100.0 * (1.0 - used / reference) if reference > 0 else None


@dataclass
class Ledger:
    """Per-round and cumulative communication of a run, and of full-model FedAvg in its place."""

    frame: RadioFrame
    full_values: int
    run: Totals = field(default_factory=Totals)
    full: Totals = field(default_factory=Totals)

    def record(
        self,
        first_round: bool,
        values_per_client: int,
        senders: int,
        downlink_values: int,
        sounded: int,
        measured_airtime_s: float | None,
    ) -> dict[str, Any]:
        """Add one round: `senders` clients each sent `values_per_client` reals after `sounded`
        clients were sounded; the server broadcast `downlink_values`; `measured_airtime_s` is what
        the over-the-air aggregator measured (None with ideal aggregation). Returns the round's keys."""
        up_values = values_per_client * senders
        if measured_airtime_s is not None:
            up_air = measured_airtime_s
        else:
            up_air = self.frame.seconds(self.frame.uplink_samples(values_per_client, sounded, first_round)) if senders else 0.0
        down_air = self.frame.seconds(self.frame.downlink_samples(downlink_values))
        full_up_air = self.frame.seconds(self.frame.uplink_samples(self.full_values, sounded, first_round)) if senders else 0.0
        full_down_air = self.frame.seconds(self.frame.downlink_samples(self.full_values))
        self.run.uplink_values += up_values
        self.run.downlink_values += downlink_values
        self.run.uplink_airtime_s += up_air
        self.run.downlink_airtime_s += down_air
        self.full.uplink_values += self.full_values * senders
        self.full.downlink_values += self.full_values
        self.full.uplink_airtime_s += full_up_air
        self.full.downlink_airtime_s += full_down_air
        return {
            "uplink_values_per_client": values_per_client,
            "downlink_values": downlink_values,
            "uplink_airtime_s": up_air,
            "downlink_airtime_s": down_air,
            "uplink_values_cumulative": self.run.uplink_values,
            "downlink_values_cumulative": self.run.downlink_values,
            "uplink_airtime_s_cumulative": self.run.uplink_airtime_s,
            "downlink_airtime_s_cumulative": self.run.downlink_airtime_s,
            "full_fedavg_uplink_values_cumulative": self.full.uplink_values,
            "full_fedavg_uplink_airtime_s_cumulative": self.full.uplink_airtime_s,
            "uplink_saving_pct": saving_pct(self.run.uplink_values, self.full.uplink_values),
        }

    def summary(self) -> dict[str, Any]:
        """Totals over the run, beside full-model FedAvg's, and the savings in percent."""
        return {
            "full_model_values": self.full_values,
            "totals": self.run.as_dict(),
            "full_fedavg_totals": self.full.as_dict(),
            "uplink_saving_pct": saving_pct(self.run.uplink_values, self.full.uplink_values),
            "downlink_saving_pct": saving_pct(self.run.downlink_values, self.full.downlink_values),
            "uplink_airtime_saving_pct": saving_pct(self.run.uplink_airtime_s, self.full.uplink_airtime_s),
        }
