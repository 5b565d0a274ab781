"""Placement: which (type, zone) slot the next replica tries first, and the price ceiling."""

from __future__ import annotations

import collections

from control_plane.providers.interruptions import DEMOTED, SUSPECT, DemotionTracker
from control_plane.providers.placement import (
    PRICE_ABOVE_CAP,
    PRICE_UNKNOWN,
    eligible_slots,
    order_slots,
)

TYPES = ("g6.2xlarge", "g5.2xlarge")
ZONES = [("a", "subnet-a"), ("b", "subnet-b"), ("c", "subnet-c")]


def place(count: int, existing: list[tuple[str, str | None]] | None = None,
          penalty=lambda _t, _z: 0, types=TYPES,
          zones=("a", "b", "c")) -> list[tuple[str, str | None]]:
    slots, _ = eligible_slots(types, [z for z in ZONES if z[0] in zones], "spot", {}, None)
    placed = list(existing or [])
    out = []
    for _ in range(count):
        best = order_slots(slots, placed, type_priority=types, zone_order=["a", "b", "c"],
                           penalty=penalty)[0]
        placed.append(best.pool_key)
        out.append(best.pool_key)
    return out


def test_first_replicas_take_the_preferred_type_across_zones() -> None:
    assert place(3) == [("g6.2xlarge", "a"), ("g6.2xlarge", "b"), ("g6.2xlarge", "c")]


def test_six_replicas_over_two_types_and_three_zones_hold_one_per_capacity_pool() -> None:
    counts = collections.Counter(place(6))
    assert len(counts) == 6 and set(counts.values()) == {1}


def test_next_replica_avoids_the_pools_existing_replicas_use() -> None:
    assert place(1, existing=[("g6.2xlarge", "a"), ("g6.2xlarge", "b")]) == [("g6.2xlarge", "c")]


def test_demoted_and_suspect_pools_go_last_but_are_not_banned() -> None:
    tracker = DemotionTracker(suspect_for_s=180, interruptions_to_demote=2)
    tracker.record_interruption("g6.2xlarge", "a", now=0)
    tracker.record_interruption("g6.2xlarge", "b", now=0)
    tracker.record_interruption("g6.2xlarge", "b", now=10)
    assert tracker.penalty("g6.2xlarge", "a", 20) == SUSPECT
    assert tracker.penalty("g6.2xlarge", "b", 20) == DEMOTED
    penalty = lambda t, z: tracker.penalty(t, z, 20)  # noqa: E731
    order = place(4, penalty=penalty)
    assert order == [("g6.2xlarge", "c"), ("g5.2xlarge", "a"), ("g5.2xlarge", "b"),
                     ("g5.2xlarge", "c")]
    # With only the suspect and the demoted pool left, the suspect one comes first.
    assert place(1, penalty=penalty, types=("g6.2xlarge",), zones=["a", "b"]) == [
        ("g6.2xlarge", "a")]
    assert place(2, penalty=penalty, types=("g6.2xlarge",), zones=["b"]) == [
        ("g6.2xlarge", "b"), ("g6.2xlarge", "b")]


def test_price_ceiling_skips_expensive_and_unpriced_slots_and_says_why() -> None:
    prices = {("g6.2xlarge", "a"): 1.5, ("g6.2xlarge", "b"): 0.9, ("g5.2xlarge", "a"): 0.6,
              ("g5.2xlarge", "b"): 0.6, ("g5.2xlarge", "c"): 0.6}
    slots, skipped = eligible_slots(TYPES, ZONES, "spot", prices, 1.0)
    assert {s.pool_key for s in slots} == {("g6.2xlarge", "b"), ("g5.2xlarge", "a"),
                                           ("g5.2xlarge", "b"), ("g5.2xlarge", "c")}
    reasons = {(a.instance_type, a.zone): a.outcome for a in skipped}
    assert reasons == {("g6.2xlarge", "a"): PRICE_ABOVE_CAP, ("g6.2xlarge", "c"): PRICE_UNKNOWN}
    assert [s.subnet_id for s in slots if s.instance_type == "g5.2xlarge"] == [
        "subnet-a", "subnet-b", "subnet-c"]


def test_without_a_ceiling_unknown_prices_do_not_block_a_launch() -> None:
    slots, skipped = eligible_slots(TYPES, ZONES, "spot", {}, None)
    assert len(slots) == 6 and skipped == []
