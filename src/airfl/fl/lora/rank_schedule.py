"""SA-FedLoRA's rank budget r(t): high while "heating", shrinking to a small budget when "cooled".

Shaped like AdaLoRA's budget schedule (Zhang et al., 2023): with rounds t = 1..T, t_w warm-up
rounds and t_f final rounds, and s = (t - 1 - t_w) / (T - t_w - t_f) the progress through the
annealing stage,

    r(t) = r_max                                    for t <= t_w
    r(t) = r_min + (r_max - r_min) * (1 - s)^p      for t_w < t <= T - t_f
    r(t) = r_min                                    for t > T - t_f

with p = 3 (cubic, AdaLoRA's), 1 (linear) or the constant r_max. Ranks are rounded to the nearest
integer; the schedule never increases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Shape = Literal["cubic", "linear", "constant"]
_POWER: dict[str, int] = {"cubic": 3, "linear": 1}


@dataclass(frozen=True)
class RankSchedule:
    """r(t) for rounds 1..rounds (see the module docstring)."""

    r_max: int
    r_min: int
    rounds: int
    warmup_rounds: int = 0
    final_rounds: int = 0
    shape: Shape = "cubic"

    def __post_init__(self) -> None:
        if not 1 <= self.r_min <= self.r_max:
            raise ValueError(f"rank schedule needs 1 <= r_min <= r_max, got r_min={self.r_min}, r_max={self.r_max}")
        if self.rounds < 1 or self.warmup_rounds < 0 or self.final_rounds < 0:
            raise ValueError("rank schedule needs rounds >= 1 and non-negative warm-up and final rounds")

    def rank(self, t: int) -> int:
        """The rank budget of round t (1-based)."""
        if self.shape == "constant" or self.r_min == self.r_max:
            return self.r_max
        t0 = t - 1
        annealing = self.rounds - self.warmup_rounds - self.final_rounds
        if t0 < self.warmup_rounds:
            return self.r_max
        if annealing <= 0 or t0 >= self.rounds - self.final_rounds:
            return self.r_min
        s = (t0 - self.warmup_rounds) / annealing
        return int(round(self.r_min + (self.r_max - self.r_min) * (1.0 - s) ** _POWER[self.shape]))

    def ranks(self) -> list[int]:
        """[r(1), ..., r(rounds)]."""
        return [self.rank(t) for t in range(1, self.rounds + 1)]
