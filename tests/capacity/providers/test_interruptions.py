"""The demotion tracker: repeated interruptions or capacity errors push a pool to the back."""

from __future__ import annotations

from control_plane.providers.interruptions import CLEAN, DEMOTED, SUSPECT, DemotionTracker


def test_one_interruption_makes_its_pool_suspect_for_three_minutes() -> None:
    tracker = DemotionTracker()
    assert tracker.record_interruption("g5.xlarge", "us-east-1a", now=100) is False
    assert tracker.penalty("g5.xlarge", "us-east-1a", 100 + 179) == SUSPECT
    assert tracker.penalty("g5.xlarge", "us-east-1b", 150) == CLEAN
    assert tracker.penalty("g6.xlarge", "us-east-1a", 150) == CLEAN
    assert tracker.penalty("g5.xlarge", "us-east-1a", 100 + 181) == CLEAN


def test_repeated_interruptions_in_the_window_demote_for_a_while() -> None:
    tracker = DemotionTracker(interruption_window_s=600, interruptions_to_demote=2,
                              demote_for_s=1800)
    tracker.record_interruption("g5.xlarge", "a", now=0)
    assert tracker.record_interruption("g5.xlarge", "a", now=120) is True
    assert tracker.penalty("g5.xlarge", "a", 500) == DEMOTED
    [demotion] = tracker.demotions(500)
    assert (demotion.instance_type, demotion.zone, demotion.until) == ("g5.xlarge", "a", 1920)
    assert tracker.penalty("g5.xlarge", "a", 1921) == CLEAN
    assert tracker.demotions(1921) == []


def test_interruptions_far_apart_do_not_demote() -> None:
    tracker = DemotionTracker(interruption_window_s=600, interruptions_to_demote=2)
    tracker.record_interruption("g5.xlarge", "a", now=0)
    assert tracker.record_interruption("g5.xlarge", "a", now=601) is False
    assert tracker.penalty("g5.xlarge", "a", 700) == SUSPECT


def test_capacity_error_demotes_for_the_capacity_window_only() -> None:
    tracker = DemotionTracker(capacity_error_demote_s=300)
    tracker.record_capacity_error("g6.2xlarge", "b", now=10)
    assert tracker.penalty("g6.2xlarge", "b", 309) == DEMOTED
    assert tracker.penalty("g6.2xlarge", "b", 311) == CLEAN
