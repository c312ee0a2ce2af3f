"""The pure rules of guardian presence (issue 4): hysteresis, face tracking, age boundaries."""

from __future__ import annotations

from datetime import date

import pytest

from core.config.presence import PresenceConfig
from identity.guardian.presence_policy import (
    Observation,
    PresenceMachine,
    Track,
    iou,
    is_under,
    reuse,
)


def feed(machine: PresenceMachine, pattern: str, start: float = 0.0, step: float = 1.0,
         faces: int = 2) -> list[tuple[float, str]]:
    """One sample per character every `step` s: 'G' guardian matched, '.' not matched."""
    changes = []
    for i, c in enumerate(pattern):
        at = start + i * step
        for ch in machine.observe(Observation(at, c == "G", faces if c == "G" else 1, 0.3)):
            changes.append((at, ch.kind))
    return changes


def test_present_after_two_consecutive_matches_and_not_one() -> None:
    m = PresenceMachine(absent_after_s=5, present_after=2)
    assert feed(m, "G.G.G.") == []
    assert m.state == "unknown"
    assert feed(m, "GG", start=6) == [(7, "present")]


def test_one_missed_frame_never_flaps() -> None:
    m = PresenceMachine(absent_after_s=5, present_after=2)
    changes = feed(m, "GG" + ".G" * 20 + "..G" * 10 + "....G" * 5)
    assert changes == [(1, "present")]
    assert m.state == "present"


def test_absent_after_five_seconds_unseen_then_back_after_two_matches() -> None:
    m = PresenceMachine(absent_after_s=5, present_after=2)
    changes = feed(m, "GGG" + "......" + "G.GG")
    # last seen at t=2; absent at the first sample 5 s later (t=7); present again at t=12.
    assert changes == [(1, "present"), (7, "absent"), (12, "present")]


def test_absence_evidence_and_limit_reported_once() -> None:
    m = PresenceMachine(absent_after_s=5, present_after=2, limit_s=10)
    m.observe(Observation(0, True, 2, 0.21))
    m.observe(Observation(1, True, 2, 0.22))
    got = []
    for t in range(2, 20):
        got += m.observe(Observation(t, False, 1, None))
    kinds = [(c.at, c.kind) for c in got]
    assert kinds == [(6, "absent"), (11, "limit")]
    absent = got[0]
    assert absent.previous == "present" and absent.unseen_s == 5 and absent.faces == 1


def test_sample_jitter_does_not_cost_a_whole_interval() -> None:
    m = PresenceMachine(absent_after_s=5, present_after=1, slack_s=0.2)
    m.observe(Observation(0.0, True, 2))
    changes = [c.kind for t in (1.0, 1.98, 2.97, 3.99, 4.97)
               for c in m.observe(Observation(t, False, 1))]
    assert changes == ["absent"]


def test_no_video_still_ends_absent() -> None:
    m = PresenceMachine(absent_after_s=5, present_after=1)
    m.observe(Observation(0, True, 2))
    assert m.tick(4.7) == []
    assert [c.kind for c in m.tick(5.0)] == ["absent"]


def test_reuse_keeps_a_still_face_and_encodes_a_moved_or_stale_one() -> None:
    guardian = Track((100, 200, 200, 100), 0.2, encoded_at=10.0)
    child = Track((120, 500, 200, 420), 0.8, encoded_at=10.0)
    same = [(102, 203, 201, 101), (121, 502, 199, 421)]
    assert reuse(same, [guardian, child], now=12.0, refresh_s=5.0) == [guardian, child]
    assert reuse(same, [guardian, child], now=15.0, refresh_s=5.0) == [None, None]
    moved = [(300, 200, 400, 100)]
    assert reuse(moved, [guardian], now=12.0, refresh_s=5.0) == [None]
    # One track is never given to two faces.
    assert reuse([same[0], same[0]], [guardian], now=12.0, refresh_s=5.0) == [guardian, None]
    assert iou(guardian.box, guardian.box) == 1.0


@pytest.mark.parametrize(("birth", "on", "under"), [
    (date(2008, 3, 1), date(2026, 2, 28), True),   # the day before the 18th birthday
    (date(2008, 3, 1), date(2026, 3, 1), False),   # the birthday itself: 18
    (date(2008, 2, 29), date(2026, 2, 27), True),  # leap-day birth, common year
    (date(2008, 2, 29), date(2026, 2, 28), False),  # ...complete on 28 February (Civil Code §202)
    (date(2008, 2, 29), date(2024, 2, 28), True),  # 16th birthday in a leap year is 29 February
])
def test_under_18_boundaries(birth: date, on: date, under: bool) -> None:
    assert is_under(birth, 18, on) is under


@pytest.mark.parametrize(("birth", "on", "under"), [
    (date(2020, 6, 15), date(2026, 6, 14), True),
    (date(2020, 6, 15), date(2026, 6, 15), False),
    (date(2020, 2, 29), date(2026, 2, 27), True),
    (date(2020, 2, 29), date(2026, 2, 28), False),
    (date(2024, 2, 29), date(2028, 2, 29), True),  # 4 years old on a leap day: still under 6
])
def test_under_6_boundaries(birth: date, on: date, under: bool) -> None:
    assert is_under(birth, 6, on) is under


def test_config_refuses_an_unknown_action_and_a_limit_shorter_than_absence() -> None:
    with pytest.raises(ValueError, match="ABSENT_ACTION"):
        PresenceConfig(absent_action="shrug").checked()
    with pytest.raises(ValueError, match="LIMIT"):
        PresenceConfig(absent_limit_s=2, absent_after_s=5).checked()
