"""SA-FedLoRA's rank budget r(t): held at r_max, annealed, held at r_min; never increasing."""

import pytest

from airfl.fl.lora.rank_schedule import RankSchedule


def test_cubic_schedule_holds_anneals_and_holds():
    s = RankSchedule(r_max=16, r_min=2, rounds=20, warmup_rounds=3, final_rounds=4, shape="cubic")
    ranks = s.ranks()
    assert ranks[:3] == [16, 16, 16]  # warm-up: rounds 1..3
    assert ranks[-4:] == [2, 2, 2, 2]  # final rounds 17..20
    assert all(a >= b for a, b in zip(ranks, ranks[1:]))
    # round 4 starts the annealing at r_max; round t: s = (t - 1 - 3) / 13
    assert s.rank(4) == 16
    for t in (5, 8, 12, 16):
        progress = (t - 1 - 3) / 13
        assert s.rank(t) == round(2 + 14 * (1 - progress) ** 3)
    # cubic falls faster early than linear
    linear = RankSchedule(16, 2, 20, 3, 4, "linear")
    assert s.rank(8) < linear.rank(8)
    assert linear.rank(8) == round(2 + 14 * (1 - 4 / 13))


def test_constant_and_degenerate_schedules():
    assert RankSchedule(8, 2, 10, shape="constant").ranks() == [8] * 10
    assert RankSchedule(4, 4, 5, 1, 1).ranks() == [4] * 5
    # no annealing rounds left: warm-up at r_max, then r_min
    assert RankSchedule(8, 2, 4, warmup_rounds=2, final_rounds=2).ranks() == [8, 8, 2, 2]
    # after the last round (the server's refactorisation for "round T+1") stays at r_min
    assert RankSchedule(8, 2, 4, 1, 1).rank(5) == 2


def test_invalid_schedules_are_refused():
    with pytest.raises(ValueError, match="r_min <= r_max"):
        RankSchedule(2, 4, 10)
    with pytest.raises(ValueError, match="rounds"):
        RankSchedule(4, 2, 0)
