"""Pure policy objects: breaker, balancing, backoff - time is a parameter, nothing sleeps."""

from __future__ import annotations

import pytest

from router.balancing import BalancingPolicy, Endpoint
from router.breaker import CIRCUIT_OPEN, DEGRADED, HEALTHY, BreakerBoard, CircuitBreaker
from router.failover import Backoff
from router.inflight import InflightBook


def make_breaker(**overrides: object) -> tuple[CircuitBreaker, list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    breaker = CircuitBreaker("w1", threshold=3, recovery_s=120.0,
                             on_transition=lambda w, old, new: seen.append((old, new)),
                             **overrides)  # type: ignore[arg-type]
    return breaker, seen


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    breaker, seen = make_breaker()
    breaker.record_failure(now=0.0)
    breaker.record_failure(now=1.0)
    assert breaker.state == DEGRADED and breaker.available(2.0)
    breaker.record_failure(now=2.0)
    assert breaker.state == CIRCUIT_OPEN
    assert not breaker.available(3.0) and not breaker.acquire(121.0)
    assert seen == [(HEALTHY, DEGRADED), (DEGRADED, CIRCUIT_OPEN)]


def test_a_success_resets_the_consecutive_count() -> None:
    breaker, _ = make_breaker()
    breaker.record_failure(now=0.0)
    breaker.record_failure(now=0.0)
    breaker.record_success()
    breaker.record_failure(now=0.0)
    assert breaker.state == DEGRADED


def test_half_open_lets_exactly_one_probe_through() -> None:
    breaker, _ = make_breaker()
    for _ in range(3):
        breaker.record_failure(now=0.0)
    assert breaker.available(120.0)
    assert breaker.acquire(120.0)
    assert not breaker.available(120.5) and not breaker.acquire(120.5)
    breaker.record_success()
    assert breaker.state == HEALTHY and breaker.acquire(121.0)


def test_failed_probe_waits_a_full_recovery_again() -> None:
    breaker, _ = make_breaker()
    for _ in range(3):
        breaker.record_failure(now=0.0)
    assert breaker.acquire(130.0)
    breaker.record_failure(now=130.0)
    assert breaker.state == CIRCUIT_OPEN
    assert not breaker.available(249.0) and breaker.available(250.0)


def test_abandoned_probe_frees_the_slot() -> None:
    breaker, _ = make_breaker()
    for _ in range(3):
        breaker.record_failure(now=0.0)
    assert breaker.acquire(200.0)
    breaker.record_abandoned()
    assert breaker.acquire(200.0)


def test_success_rate_falls_with_failures_and_recovers() -> None:
    breaker, _ = make_breaker()
    for _ in range(10):
        breaker.record_failure(now=0.0)
        breaker.record_success()
    assert 0.5 < breaker.success_rate < 1.0
    low = breaker.success_rate
    for _ in range(20):
        breaker.record_success()
    assert breaker.success_rate > low


def test_board_forgets_departed_workers() -> None:
    board = BreakerBoard(threshold=3, recovery_s=1.0)
    board.get("a").record_failure(now=0.0)
    board.get("b")
    assert board.forget_except({"b"}) == ["a"]
    assert board.states() == {"b": HEALTHY}


def _endpoints(*depths: int) -> list[Endpoint]:
    return [Endpoint(key=f"w{i}", base_url=f"http://w{i}", queue_depth=d)
            for i, d in enumerate(depths)]


def test_least_outstanding_counts_other_replicas_and_breaks_ties_by_queue_depth() -> None:
    policy = BalancingPolicy.make("least_outstanding")
    book = InflightBook()
    endpoints = _endpoints(0, 5, 1)
    book.set_peers({"w0": 3})  # another replica holds 3 requests on w0
    book.start("w1")
    book.start("w2")
    # w0: 3, w1: 1 (qd 5), w2: 1 (qd 1) -> w2
    assert policy.choose(endpoints, book).key == "w2"


def test_least_outstanding_falls_back_to_queue_depth_without_shared_counts() -> None:
    policy = BalancingPolicy.make("least_outstanding")
    book = InflightBook()
    book.set_peers({"w0": 10})
    book.shared = False
    endpoints = _endpoints(0, 4)
    assert policy.choose(endpoints, book).key == "w0"  # the stale peer count is not used
    for _ in range(5):
        book.start("w0")  # own requests still count on top of the reported depth
    assert policy.choose(endpoints, book).key == "w1"


def test_exact_ties_rotate_instead_of_piling_on_the_first() -> None:
    policy = BalancingPolicy.make("least_outstanding")
    book = InflightBook()
    endpoints = _endpoints(0, 0, 0)
    chosen = {policy.choose(endpoints, book).key for _ in range(3)}
    assert chosen == {"w0", "w1", "w2"}


def test_round_robin_takes_turns() -> None:
    policy = BalancingPolicy.make("round_robin")
    endpoints = _endpoints(0, 9)
    assert [policy.choose(endpoints, InflightBook()).key for _ in range(4)] == \
        ["w0", "w1", "w0", "w1"]


def test_unknown_policy_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="least_outstanding"):
        BalancingPolicy.make("fastest")


def test_backoff_grows_exponentially_with_equal_jitter_and_a_cap() -> None:
    low = Backoff(0.1, 1.0, rand=lambda: 0.0)
    high = Backoff(0.1, 1.0, rand=lambda: 1.0)
    assert [low.delay(r) for r in (1, 2, 3)] == [0.05, 0.1, 0.2]
    assert [high.delay(r) for r in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert high.delay(10) == 1.0 and low.delay(10) == 0.5


def test_inflight_book_counts_local_and_peers() -> None:
    book = InflightBook()
    book.start("w")
    book.start("w")
    book.finish("w")
    book.set_peers({"w": 2, "x": 0})
    assert book.local("w") == 1 and book.outstanding("w") == 3
    assert book.peer_counts() == {"w": 2}
    book.finish("w")
    assert book.local_counts() == {}
